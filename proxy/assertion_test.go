package proxy_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/authn/assertion"
	"github.com/authgate/authgate/authn/token"
	"github.com/authgate/authgate/policy"
	"github.com/authgate/authgate/proxy"
)

// authFunc is an Authenticator from a function.
type authFunc func(*http.Request) (authn.Principal, bool, error)

func (f authFunc) Authenticate(r *http.Request) (authn.Principal, bool, error) { return f(r) }

// trustEnv is a gateway signing assertions in front of an app that checks
// them with package assertion and records what it saw.
type trustEnv struct {
	gw      *httptest.Server
	app     *httptest.Server
	mu      sync.Mutex
	seen    []*http.Request
	refused []error
}

const trustPolicy = "rules:\n  - path: /public/**\n    public: true\n  - path: /**\n    authenticated: true\n"

var alice = authn.Principal{Subject: "alice", Roles: []string{"admin"}, Method: authn.MethodJWT, Issuer: "https://login.example.com",
	ClaimValues: map[string]string{"email": "alice@example.com", "groups": "staff,CN=x%2CDC=y"}}

func newTrustEnv(t *testing.T, base string, mod func(*proxy.Options)) *trustEnv {
	t.Helper()
	priv, _ := token.GenerateKey(token.AlgEdDSA)
	ks, err := token.NewKeySetFrom(token.Material{Signing: priv})
	if err != nil {
		t.Fatal(err)
	}
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(ks.JWKS()) }))
	t.Cleanup(jwks.Close)
	e := &trustEnv{}
	e.app = httptest.NewUnstartedServer(nil)
	aud := "http://" + e.app.Listener.Addr().String()
	v, err := assertion.New(assertion.Config{JWKSURL: jwks.URL, Issuer: "https://login.example.com", Audience: aud, AllowAnonymous: true,
		OnError: func(_ *http.Request, err error) { e.mu.Lock(); e.refused = append(e.refused, err); e.mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	e.app.Config.Handler = v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.seen = append(e.seen, r)
		e.mu.Unlock()
		p, _ := assertion.FromContext(r.Context())
		fmt.Fprintf(w, "%s|%s", p.Subject, r.Header.Get("X-Auth-Email"))
	}))
	e.app.Start()
	t.Cleanup(e.app.Close)
	asserter, err := token.NewAsserter(ks, token.AssertionSettings{Issuer: "https://login.example.com", Audience: aud, TTL: 30 * time.Second, CacheSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	set, err := policy.Load("policy.yaml", []byte(trustPolicy))
	if err != nil {
		t.Fatal(err)
	}
	up, _ := url.Parse(e.app.URL + base)
	o := proxy.Options{
		Upstream: up, Policy: policy.NewStore(set), PreserveHost: true, Assertion: asserter,
		Headers: proxy.IdentityHeaders{Claims: map[string]string{"X-Auth-Email": "email", "x-auth-groups": "groups"}},
		Authenticator: authFunc(func(r *http.Request) (authn.Principal, bool, error) {
			if r.Header.Get("Authorization") == "Bearer alice" {
				return alice, true, nil
			}
			return authn.Principal{}, false, nil
		}),
	}
	if mod != nil {
		mod(&o)
	}
	gw, err := proxy.New(o)
	if err != nil {
		t.Fatal(err)
	}
	e.gw = httptest.NewServer(gw)
	t.Cleanup(e.gw.Close)
	return e
}

// The assertion the gateway signs verifies at the app for the request the
// app receives, whatever the path's encoding, the base path, the Host or
// the method; the app never needs to know how the gateway forwards.
func TestAssertionBindsTheForwardedRequest(t *testing.T) {
	cases := []struct {
		name, base, method, target, host string
		preserve                         bool
	}{
		{"plain", "", "GET", "/api/items", "app.example.com", true},
		{"query not bound", "", "GET", "/api/items?page=2&x=%20", "app.example.com", true},
		{"encoded bytes", "", "GET", "/api/a%20b%22c", "app.example.com", true},
		{"escaped by the transport", "", "GET", "/api/x!y*(z)'", "app.example.com", true},
		{"utf-8", "", "POST", "/api/caf%C3%A9", "app.example.com", true},
		{"upper-case host", "", "PUT", "/api/x", "App.Example.COM:8443", true},
		{"slashes collapsed", "", "DELETE", "/api//a///b", "app.example.com", true},
		{"base path", "/base%20x", "GET", "/api/a%20b", "app.example.com", true},
		{"upstream host", "/base", "GET", "/api/x", "client.example.com", false},
		{"anonymous on a public path", "", "GET", "/public/x", "app.example.com", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newTrustEnv(t, tc.base, func(o *proxy.Options) { o.PreserveHost = tc.preserve })
			req, _ := http.NewRequest(tc.method, e.gw.URL+tc.target, nil)
			req.Host = tc.host
			if !strings.HasPrefix(tc.target, "/public/") {
				req.Header.Set("Authorization", "Bearer alice")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("%s %s = %d %q; app refused %v", tc.method, tc.target, resp.StatusCode, body, e.refused)
			}
			if tc.target != "/public/x" && string(body) != "alice|alice@example.com" {
				t.Errorf("app saw %q", body)
			}
		})
	}
}

// Claim headers are set from the principal, and a client's copies are
// removed in every spelling, the assertion header's too.
func TestClaimAndAssertionHeadersReserved(t *testing.T) {
	e := newTrustEnv(t, "", nil)
	for _, tc := range []struct {
		path string
		auth bool
	}{{"/public/x", false}, {"/api/x", true}} {
		req, _ := http.NewRequest("GET", e.gw.URL+tc.path, nil)
		for _, h := range []string{"X-Auth-Email", "X_Auth_Email", "x-auth-groups", "X-AUTH_GROUPS"} {
			req.Header[h] = []string{"forged@evil"}
		}
		req.Header["X_Auth_Assertion"] = []string{"forged"}
		if tc.auth {
			req.Header.Set("Authorization", "Bearer alice")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s = %d (app refused %v)", tc.path, resp.StatusCode, e.refused)
		}
		e.mu.Lock()
		got := e.seen[len(e.seen)-1].Header
		e.mu.Unlock()
		for k, v := range got {
			if strings.Contains(strings.Join(v, ","), "forged") {
				t.Errorf("%s: upstream got the client's %s: %q", tc.path, k, v)
			}
		}
		if tc.auth && (got.Get("X-Auth-Email") != "alice@example.com" || got.Get("X-Auth-Groups") != "staff,CN=x%2CDC=y") {
			t.Errorf("claim headers %q %q", got.Get("X-Auth-Email"), got.Get("X-Auth-Groups"))
		}
		if !tc.auth && (got.Get("X-Auth-Email") != "" || len(got.Values("X-Auth-Assertion")) != 1) {
			t.Errorf("public path: email %q, %d assertions", got.Get("X-Auth-Email"), len(got.Values("X-Auth-Assertion")))
		}
	}
}

// A failing signer refuses the request: nothing reaches the upstream
// without the assertion the gateway promises.
func TestAssertionFailureRefuses(t *testing.T) {
	e := newTrustEnv(t, "", func(o *proxy.Options) { o.Assertion = failingAsserter{} })
	resp, err := http.Get(e.gw.URL + "/public/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError || len(e.seen) != 0 {
		t.Fatalf("status %d, upstream saw %d requests; want 500 and none", resp.StatusCode, len(e.seen))
	}
}

type failingAsserter struct{}

func (failingAsserter) Assert(authn.Principal, string, string, string) (string, error) {
	return "", fmt.Errorf("no key")
}

// The gateway's idea of which bytes the transport escapes in a path
// matches url.URL.EscapedPath for every byte.
func TestEscapedPathAgreement(t *testing.T) {
	e := newTrustEnv(t, "", nil)
	for c := 0x21; c < 0x7f; c++ {
		if c == '?' || c == '#' || c == '%' || c == '/' || c == '.' {
			continue
		}
		req, _ := http.NewRequest("GET", e.gw.URL+"/api/", nil)
		req.URL.RawPath = ""
		req.URL.Opaque = "/api/" + url.PathEscape(string(rune(c)))
		req.Header.Set("Authorization", "Bearer alice")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 && resp.StatusCode != 400 {
			t.Errorf("path with %q: status %d (app refused %v)", string(rune(c)), resp.StatusCode, e.refused)
		}
	}
}
