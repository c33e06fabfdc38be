package proxy_test

import (
	"fmt"
	"github.com/authgate/authgate/internal/attackpaths"
	"github.com/authgate/authgate/internal/nginxtest"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/authgate/authgate/proxy"
)

// readmeNginx builds an nginx.conf from the forward-auth snippets of
// README.md, exactly as documented, with authgate:8080 and app:8081
// pointed at the test's listeners. Each front is one server block; its
// adapt, if set, edits that server's copy of the snippet (after the
// addresses were replaced), and extraHTTP is added to the http block.
func readmeNginx(t *testing.T, gateway, upstream, extraHTTP string, fronts []nginxFront) string {
	t.Helper()
	httpPart := nginxtest.Snippet(t, "../README.md", "nginx-forward-auth-http")
	server := nginxtest.Snippet(t, "../README.md", "nginx-forward-auth-server")
	server = nginxtest.Replace(t, server, "http://authgate:8080", "http://"+gateway)
	server = nginxtest.Replace(t, server, "http://app:8081", "http://"+upstream)
	var b strings.Builder
	b.WriteString(nginxtest.Prelude)
	b.WriteString(httpPart)
	b.WriteString(extraHTTP)
	for _, f := range fronts {
		s := server
		if f.adapt != nil {
			s = f.adapt(t, s)
		}
		fmt.Fprintf(&b, "server {\n  listen 127.0.0.1:%d;\n%s\n}\n", f.Port, s)
	}
	b.WriteString("}\n")
	return b.String()
}

// nginxFront is one server block of the README configuration: "raw"
// proxies with proxy_pass without a URI part (nginx forwards the client's
// request target as sent), "normalized" with a URI part (nginx forwards
// its own decoded and normalized $uri). The decision is always made on the
// raw $request_uri.
type nginxFront struct {
	Name  string
	Port  int
	adapt func(t *testing.T, server string) string
}

// upRecorder is an upstream that records what it receives.
type upRecorder struct {
	mu   sync.Mutex
	reqs []upRequest
}

type upRequest struct {
	Method     string
	RequestURI string // the request target exactly as nginx sent it
	Header     http.Header
}

func (u *upRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.reqs = append(u.reqs, upRequest{Method: r.Method, RequestURI: r.RequestURI, Header: r.Header.Clone()})
	u.mu.Unlock()
	_, _ = io.WriteString(w, "upstream")
}

func (u *upRecorder) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

func (u *upRecorder) since(n int) []upRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]upRequest(nil), u.reqs[n:]...)
}

func freePort(t *testing.T) int { return nginxtest.FreePort(t) }

type nginxEnv struct {
	up     *upRecorder
	fronts map[string]string // name -> address
}

// startNginx runs a real nginx with the README's forward-auth
// configuration in front of an upstream recorder, asking the forward-auth
// endpoint of gw (mounted at /_authgate/verify) for every request.
func startNginx(t *testing.T) *nginxEnv {
	t.Helper()
	e := newFAEnv(t, faPolicy)
	env := &nginxEnv{up: &upRecorder{}, fronts: map[string]string{}}
	upSrv := httptest.NewServer(env.up)
	t.Cleanup(upSrv.Close)
	up := strings.TrimPrefix(upSrv.URL, "http://")
	fronts := []nginxFront{
		{Name: "raw", Port: freePort(t)},
		{Name: "normalized", Port: freePort(t), adapt: func(t *testing.T, s string) string {
			return nginxtest.Replace(t, s, "proxy_pass http://"+up+";", "proxy_pass http://"+up+"/;")
		}},
	}
	startREADMENginx(t, e, up, "", fronts)
	for _, f := range fronts {
		env.fronts[f.Name] = fmt.Sprintf("127.0.0.1:%d", f.Port)
	}
	return env
}

// startREADMENginx serves the forward-auth endpoint of e at the README's
// path and runs the README's nginx configuration in front of upstream.
func startREADMENginx(t *testing.T, e *faEnv, upstream, extraHTTP string, fronts []nginxFront) {
	t.Helper()
	nginxtest.Binary(t)
	mux := http.NewServeMux()
	mux.Handle("/_authgate/verify", e.gw.ForwardAuth(proxy.ForwardAuthOptions{TrustedPeers: mustTrusted(t, "127.0.0.1")}))
	gwSrv := httptest.NewServer(mux)
	t.Cleanup(gwSrv.Close)
	ports := make([]int, len(fronts))
	for i, f := range fronts {
		ports[i] = f.Port
	}
	nginxtest.Start(t, readmeNginx(t, strings.TrimPrefix(gwSrv.URL, "http://"), upstream, extraHTTP, fronts), nil, ports...)
}

// send writes one raw HTTP/1.1 request for target to addr and returns the
// response with its body read.
func send(t *testing.T, addr, method, target string, kv ...string) (*http.Response, string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n", method, target)
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", kv[i], kv[i+1])
	}
	b.WriteString("\r\n")
	return roundTrip(t, addr, b.String())
}

func TestNginxForwardAuth(t *testing.T) {
	env := startNginx(t)
	spoofed := []string{
		"X-Auth-Subject", "root",
		"X-Auth-Roles", "admin",
		"x-auth-method", "jwt",
		"X-Auth-Key-Name", "forged",
		"X-Auth-Issuer", "https://evil.example",
		"X_Auth_Subject", "root",
	}
	type ident struct{ subject, roles, method, key string }
	tests := []struct {
		name      string
		method    string
		target    string
		kv        []string
		want      int
		reach     bool
		ident     ident
		forwarded map[string]string // front -> request target the upstream must see
	}{
		{name: "anonymous public", method: "GET", target: "/public/a?x=1", want: 200, reach: true,
			forwarded: map[string]string{"raw": "/public/a?x=1", "normalized": "/public/a?x=1"}},
		{name: "anonymous public with spoofed identity", method: "GET", target: "/public/a", kv: spoofed, want: 200, reach: true},
		{name: "admin key on /admin", method: "GET", target: "/admin/users", kv: []string{"X-API-Key", adminKey}, want: 200, reach: true,
			ident: ident{"admin-key", "admin", "apikey", "admin-key"}},
		{name: "user key with spoofed identity", method: "POST", target: "/api/items", kv: append([]string{"X-API-Key", userKey}, spoofed...), want: 200, reach: true,
			ident: ident{"user-key", "user", "apikey", "user-key"}},
		{name: "encoded unreserved, authorized as /public/A", method: "GET", target: "/public/%41", want: 200, reach: true,
			forwarded: map[string]string{"raw": "/public/%41", "normalized": "/public/A"}},
		{name: "anonymous on /admin", method: "GET", target: "/admin/users", want: 401},
		{name: "anonymous on /api", method: "GET", target: "/api/items", want: 401},
		{name: "unknown key", method: "GET", target: "/api/items", kv: []string{"X-API-Key", "agk_nope"}, want: 401},
		{name: "user key on /admin", method: "GET", target: "/admin/users", kv: []string{"X-API-Key", userKey}, want: 403},
		{name: "reader posts a report", method: "POST", target: "/reports/q1", kv: []string{"X-API-Key", readerKey}, want: 403},
		{name: "client X-Original-URI is overwritten", method: "GET", target: "/admin/users",
			kv: []string{"X-Original-URI", "/public/a", "X-Original-Method", "GET"}, want: 401},
		{name: "client X-Forwarded-Uri conflicts", method: "GET", target: "/admin/users",
			kv: []string{"X-Forwarded-Uri", "/public/a", "X-Forwarded-Method", "GET"}, want: 403},
		{name: "malformed path", method: "GET", target: "/public/%2e%2e/admin/users", want: 403},
		// A method the policy does not name: 403, never nginx's 500.
		{name: "unnamed method", method: "PROPFIND", target: "/public/a", want: 403},
		{name: "another proxy's identity header", method: "GET", target: "/public/a", kv: []string{"Remote-User", "admin"}, want: 403},
		{name: "oauth2-proxy identity header", method: "GET", target: "/public/a", kv: []string{"X-Auth-Request-User", "admin"}, want: 403},
		{name: "method override", method: "GET", target: "/public/a", kv: []string{"X-HTTP-Method-Override", "DELETE"}, want: 403},
		{name: "h2c upgrade", method: "GET", target: "/public/a", kv: []string{"Upgrade", "h2c", "HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA"}, want: 403},
		{name: "client X-Forwarded-Uri equal to the request", method: "GET", target: "/public/a",
			kv: []string{"X-Forwarded-Uri", "/public/a", "X-Forwarded-Method", "GET"}, want: 200, reach: true},
	}
	for _, front := range []string{"raw", "normalized"} {
		for _, tc := range tests {
			t.Run(front+"/"+tc.name, func(t *testing.T) {
				before := env.up.count()
				resp, body := send(t, env.fronts[front], tc.method, tc.target, tc.kv...)
				got := env.up.since(before)
				want := tc.want
				if resp.StatusCode != want {
					t.Fatalf("%s %s = %d %s, want %d", tc.method, tc.target, resp.StatusCode, body, want)
				}
				if !tc.reach {
					if len(got) != 0 {
						t.Fatalf("%s %s reached the upstream as %q", tc.method, tc.target, got[0].RequestURI)
					}
					if ch := resp.Header.Values("WWW-Authenticate"); want == 401 && (len(ch) != 1 || !strings.HasPrefix(ch[0], "Bearer ")) {
						t.Errorf("401 through nginx has WWW-Authenticate %q, want one Bearer challenge", ch)
					}
					return
				}
				if len(got) != 1 {
					t.Fatalf("%s %s reached the upstream %d times, want once", tc.method, tc.target, len(got))
				}
				up := got[0]
				if want, ok := tc.forwarded[front]; ok && up.RequestURI != want {
					t.Errorf("upstream got %q, want %q", up.RequestURI, want)
				}
				h := up.Header
				have := ident{h.Get("X-Auth-Subject"), h.Get("X-Auth-Roles"), h.Get("X-Auth-Method"), h.Get("X-Auth-Key-Name")}
				if have != tc.ident {
					t.Errorf("upstream identity = %+v, want %+v", have, tc.ident)
				}
				if _, ok := h["X-Auth-Subject"]; ok && tc.ident.subject == "" {
					t.Errorf("anonymous request reached the upstream with X-Auth-Subject %q", h["X-Auth-Subject"])
				}
				for k, vs := range h {
					lk := strings.ToLower(strings.ReplaceAll(k, "_", "-"))
					if strings.HasPrefix(lk, "x-auth-") && len(vs) != 1 {
						t.Errorf("upstream got %s = %q, want one value", k, vs)
					}
					if lk == "x-auth-subject" && k != "X-Auth-Subject" {
						t.Errorf("upstream got a client-written %s: %q", k, vs)
					}
				}
				if v, ok := h["X-Auth-Issuer"]; ok {
					t.Errorf("upstream got X-Auth-Issuer %q, which authgate did not send", v)
				}
				if v := h.Get("X-Api-Key"); v != "" {
					t.Errorf("upstream got the API key")
				}
				if rid := h.Get("X-Request-Id"); rid == "" || rid != proxy.RequestID(rid) {
					t.Errorf("upstream X-Request-Id = %q, want the decision's request id", rid)
				}
			})
		}
	}
}

// TestNginxPathConfusion sends every attack path through nginx, with both
// proxy_pass forms, anonymously and with a non-admin key. Whatever nginx
// normalizes, rejects or forwards, the upstream must never receive a
// request target it could read as /admin.
func TestNginxPathConfusion(t *testing.T) {
	env := startNginx(t)
	callers := []struct {
		name string
		kv   []string
	}{
		{"anonymous", nil},
		{"user", []string{"X-API-Key", userKey}},
	}
	reached := 0
	for _, front := range []string{"raw", "normalized"} {
		for _, c := range callers {
			for _, target := range attackpaths.Admin {
				t.Run(front+"/"+c.name+"/"+target, func(t *testing.T) {
					before := env.up.count()
					resp, body := send(t, env.fronts[front], "GET", target, c.kv...)
					got := env.up.since(before)
					var fwd []string
					for _, up := range got {
						fwd = append(fwd, up.RequestURI)
					}
					t.Logf("GET %s = %d, upstream got %q", target, resp.StatusCode, fwd)
					if len(got) == 0 {
						if resp.StatusCode == 200 {
							t.Errorf("GET %s = 200 %q without reaching the upstream", target, body)
						}
						return
					}
					reached++
					for _, up := range got {
						if p, bad := attackpaths.ReadsAsAdmin(up.RequestURI); bad {
							t.Errorf("GET %s as %s reached the upstream as %q, which an upstream may read as %q",
								target, c.name, up.RequestURI, p)
						}
					}
				})
			}
		}
	}
	t.Logf("%d of %d attack requests reached the upstream (none as /admin)", reached, 4*len(attackpaths.Admin))
}
