package proxy_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/authgate/authgate/proxy"
)

const signInPolicy = faPolicy + `  - id: ui
    path: /ui/**
    authenticated: true
    on_unauthenticated: redirect
  - id: export
    path: /export/**
    authenticated: true
    on_unauthenticated: deny
`

// TestSignInNegotiation: only a browser's top-level navigation is sent to
// the sign-in page; scripts, API clients and bad credentials keep the 401.
func TestSignInNegotiation(t *testing.T) {
	const html = "text/html,application/xhtml+xml,*/*;q=0.8"
	for _, tc := range []struct {
		name, method, path string
		def                bool
		hdr                []string
		want               int
	}{
		{"navigation", "GET", "/api/x", true, []string{"Accept", html, "Sec-Fetch-Mode", "navigate"}, 302},
		{"navigation without fetch metadata", "GET", "/api/x", true, []string{"Accept", html}, 302},
		{"HEAD navigation", "HEAD", "/api/x", true, []string{"Accept", html}, 302},
		{"role rule", "GET", "/admin/x", true, []string{"Accept", html}, 302},
		{"fetch from a script", "GET", "/api/x", true, []string{"Accept", html, "Sec-Fetch-Mode", "cors"}, 401},
		{"no-cors subresource", "GET", "/api/x", true, []string{"Accept", "text/html", "Sec-Fetch-Mode", "no-cors"}, 401},
		{"XHR", "GET", "/api/x", true, []string{"Accept", html, "X-Requested-With", "XMLHttpRequest"}, 401},
		{"API client", "GET", "/api/x", true, []string{"Accept", "application/json"}, 401},
		{"no Accept", "GET", "/api/x", true, nil, 401},
		{"POST", "POST", "/api/x", true, []string{"Accept", html}, 401},
		{"bad API key", "GET", "/api/x", true, []string{"Accept", html, "X-API-Key", "nope"}, 401},
		{"unmatched path", "GET", "/nowhere", true, []string{"Accept", html}, 401},
		{"public path", "GET", "/public/x", true, []string{"Accept", html}, 200},
		{"default deny", "GET", "/api/x", false, []string{"Accept", html}, 401},
		{"rule redirect beats default deny", "GET", "/ui/x", false, []string{"Accept", html}, 302},
		{"rule deny beats default redirect", "GET", "/export/x", true, []string{"Accept", html}, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := startGoUpstream(t)
			e := newGatewayEnv(t, signInPolicy, up.srv.URL, func(o *proxy.Options) {
				o.SignIn = &proxy.SignIn{Path: "/auth/sign_in", Default: tc.def}
			})
			r := httptest.NewRequest(tc.method, "http://app.example"+tc.path+"?a=1&b=%2F", nil)
			for i := 0; i+1 < len(tc.hdr); i += 2 {
				r.Header.Set(tc.hdr[i], tc.hdr[i+1])
			}
			w := httptest.NewRecorder()
			e.gw.ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Fatalf("%s %s = %d, want %d (body %q)", tc.method, tc.path, w.Code, tc.want, w.Body.String())
			}
			if tc.want == 302 {
				want := "/auth/sign_in?rd=" + strings.ReplaceAll(strings.ReplaceAll(tc.path, "/", "%2F"), "?", "%3F") + "%3Fa%3D1%26b%3D%252F"
				if loc := w.Header().Get("Location"); loc != want {
					t.Errorf("Location = %q, want %q", loc, want)
				}
				if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
					t.Errorf("Cache-Control = %q, want no-store", cc)
				}
			}
		})
	}
}

// TestGatewayCookiesNeverReachTheUpstream: the session and CSRF cookies
// are credentials; the app sees its own cookies only, and cannot set ours.
func TestGatewayCookiesNeverReachTheUpstream(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("X-Seen-Cookie", strings.Join(r.Header.Values("Cookie"), " | "))
		w.Header().Add("Set-Cookie", "__Host-authgate_session=planted; Path=/; Secure")
		w.Header().Add("Set-Cookie", "app=1; Path=/")
		w.Header().Add("Set-Cookie", " authgate_csrf =x")
	}))
	t.Cleanup(up.Close)
	e := newGatewayEnv(t, faPolicy, up.URL, func(o *proxy.Options) {
		o.Cookies = []string{"__Host-authgate_session", "authgate_csrf"}
	})
	r := httptest.NewRequest("GET", "http://app.example/public/x", nil)
	r.Header.Add("Cookie", "theme=dark; __Host-authgate_session=secret-id; lang=en")
	r.Header.Add("Cookie", "authgate_csrf=tok")
	w := httptest.NewRecorder()
	e.gw.ServeHTTP(w, r)
	if got := w.Header().Get("X-Seen-Cookie"); got != "theme=dark; lang=en" {
		t.Errorf("upstream saw Cookie %q, want %q", got, "theme=dark; lang=en")
	}
	if got := w.Header().Values("Set-Cookie"); len(got) != 1 || got[0] != "app=1; Path=/" {
		t.Errorf("client got Set-Cookie %q, want only the app's", got)
	}
}
