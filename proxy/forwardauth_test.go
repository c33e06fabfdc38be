package proxy_test

import (
	"github.com/authgate/authgate/internal/attackpaths"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/authn/apikey"
	"github.com/authgate/authgate/internal/clientip"
	"github.com/authgate/authgate/policy"
	"github.com/authgate/authgate/proxy"
)

// faPolicy covers every access level.
const faPolicy = `roles: [admin, user, reader]
rules:
  - id: public
    path: /public/**
    public: true
  - id: api
    path: /api/**
    authenticated: true
  - id: admin
    path: /admin/**
    roles: [admin]
  - id: reports
    path: /reports/*
    methods: [GET]
    roles: [reader, admin]
`

// The API keys of the tests, by role.
const (
	adminKey  = "agk_admin-secret-key"
	userKey   = "agk_user-secret-key"
	readerKey = "agk_reader-secret-key"
)

func faKeysYAML() string {
	return "keys:\n" +
		"  - name: admin-key\n    sha256: " + apikey.Digest(adminKey) + "\n    roles: [admin]\n" +
		"  - name: user-key\n    sha256: " + apikey.Digest(userKey) + "\n    roles: [user]\n" +
		"  - name: reader-key\n    sha256: " + apikey.Digest(readerKey) + "\n    roles: [reader]\n"
}

// faEnv is a gateway built the way main builds it, with observed logs and
// its own metrics registry.
type faEnv struct {
	gw   *proxy.Gateway
	logs *observer.ObservedLogs
	reg  *prometheus.Registry
}

func newFAEnv(t *testing.T, policyText string) *faEnv {
	t.Helper()
	return newGatewayEnv(t, policyText, "http://127.0.0.1:1", nil) // never contacted by forward-auth
}

// newGatewayEnv builds a gateway for upstream; mod, if set, adjusts the
// options first.
func newGatewayEnv(t *testing.T, policyText, upstream string, mod func(*proxy.Options)) *faEnv {
	t.Helper()
	var store *policy.Store
	if policyText == "" {
		store = &policy.Store{} // no policy loaded
	} else {
		set, err := policy.Load("policy.yaml", []byte(policyText))
		if err != nil {
			t.Fatalf("policy.Load: %v", err)
		}
		store = policy.NewStore(set)
	}
	keys, err := apikey.Parse("keys.yaml", []byte(faKeysYAML()))
	if err != nil {
		t.Fatalf("apikey.Parse: %v", err)
	}
	var ks apikey.Store
	ks.Swap(keys)
	core, logs := observer.New(zapcore.DebugLevel)
	reg := prometheus.NewRegistry()
	up, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	o := proxy.Options{
		Upstream:      up,
		Policy:        store,
		Authenticator: authn.Chain{APIKey: apikey.NewAuthenticator(&ks, nil)},
		Logger:        zap.New(core),
		Metrics:       proxy.NewMetrics(reg),
	}
	if mod != nil {
		mod(&o)
	}
	gw, err := proxy.New(o)
	if err != nil {
		t.Fatalf("proxy.New: %v", err)
	}
	return &faEnv{gw: gw, logs: logs, reg: reg}
}

func mustTrusted(t *testing.T, cidrs ...string) clientip.Trusted {
	t.Helper()
	tr, err := clientip.Parse(cidrs)
	if err != nil {
		t.Fatalf("clientip.Parse(%q): %v", cidrs, err)
	}
	return tr
}

// requestsTotal returns the sum of authgate_requests_total samples whose
// labels include every pair in want.
func requestsTotal(t *testing.T, reg *prometheus.Registry, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != "authgate_requests_total" {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue metrics
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

const (
	ingressAddr = "10.0.0.5:40000" // a trusted ingress controller
	clientAddr  = "192.0.2.7:51000"
)

// check builds a forward-auth check request from peer with the given
// headers (name, value pairs).
func check(peer, target string, kv ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	r.RemoteAddr = peer
	for i := 0; i+1 < len(kv); i += 2 {
		r.Header.Add(kv[i], kv[i+1])
	}
	return r
}

func nginxCheck(peer, method, uri string, kv ...string) *http.Request {
	return check(peer, "/verify", append([]string{"X-Original-Method", method, "X-Original-URI", uri}, kv...)...)
}

func traefikCheck(peer, method, uri string, kv ...string) *http.Request {
	return check(peer, "/verify", append([]string{"X-Forwarded-Method", method, "X-Forwarded-Uri", uri, "X-Forwarded-Host", "app.example"}, kv...)...)
}

func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestForwardAuthTrustedPeers(t *testing.T) {
	e := newFAEnv(t, faPolicy)
	h := e.gw.ForwardAuth(proxy.ForwardAuthOptions{TrustedPeers: mustTrusted(t, "10.0.0.0/24")})
	zero := e.gw.ForwardAuth(proxy.ForwardAuthOptions{})

	tests := []struct {
		name string
		h    http.Handler
		r    *http.Request
		want int
	}{
		{"trusted ingress, public uri", h, nginxCheck(ingressAddr, "GET", "/public/a"), 200},
		{"client names a public uri (nginx headers)", h, nginxCheck(clientAddr, "GET", "/public/a"), 403},
		{"client names a public uri (traefik headers)", h, traefikCheck(clientAddr, "GET", "/public/a"), 403},
		{"client with an admin key", h, nginxCheck(clientAddr, "GET", "/admin/x", "X-API-Key", adminKey), 403},
		{"client without any header", h, check(clientAddr, "/verify"), 403},
		{"zero options trust nobody", zero, nginxCheck(ingressAddr, "GET", "/public/a"), 403},
		{"zero options, loopback", zero, nginxCheck("127.0.0.1:5000", "GET", "/public/a"), 403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := requestsTotal(t, e.reg, map[string]string{"reason": "untrusted_peer"})
			w := serve(tc.h, tc.r)
			if w.Code != tc.want {
				t.Fatalf("ForwardAuth(%s) = %d %s, want %d", tc.name, w.Code, w.Body, tc.want)
			}
			if tc.want != 403 {
				return
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" || !strings.Contains(w.Body.String(), `"error":"forbidden"`) {
				t.Errorf("untrusted peer answer = %q %s, want JSON forbidden", ct, w.Body)
			}
			if got := w.Header().Get("X-Auth-Subject"); got != "" {
				t.Errorf("untrusted peer got X-Auth-Subject %q", got)
			}
			after := requestsTotal(t, e.reg, map[string]string{"reason": "untrusted_peer", "decision": "deny"})
			if after != before+1 {
				t.Errorf("untrusted_peer counter went %v -> %v, want +1", before, after)
			}
		})
	}
	logged := e.logs.FilterField(zap.String("reason", "untrusted_peer")).All()
	if len(logged) != 6 {
		t.Fatalf("logged %d untrusted_peer lines, want 6", len(logged))
	}
	for _, l := range logged {
		if l.Level != zapcore.WarnLevel {
			t.Errorf("untrusted_peer logged at %v, want warn", l.Level)
		}
	}
}

func TestForwardAuthDecisions(t *testing.T) {
	e := newFAEnv(t, faPolicy)
	h := e.gw.ForwardAuth(proxy.ForwardAuthOptions{TrustedPeers: mustTrusted(t, "10.0.0.0/24")})
	type ident struct{ subject, roles, method, key string }
	tests := []struct {
		name      string
		r         *http.Request
		want      int
		ident     ident  // on 200
		challenge string // WWW-Authenticate on 401
	}{
		{"admin key on /admin", nginxCheck(ingressAddr, "GET", "/admin/users?x=1", "X-API-Key", adminKey), 200,
			ident{"admin-key", "admin", "apikey", "admin-key"}, ""},
		{"admin key via traefik headers", traefikCheck(ingressAddr, "DELETE", "/admin/users/7", "X-API-Key", adminKey), 200,
			ident{"admin-key", "admin", "apikey", "admin-key"}, ""},
		{"user key on /api", nginxCheck(ingressAddr, "POST", "/api/items", "X-API-Key", userKey), 200,
			ident{"user-key", "user", "apikey", "user-key"}, ""},
		{"anonymous on public", nginxCheck(ingressAddr, "GET", "/public/index.html"), 200, ident{}, ""},
		{"both families agree", nginxCheck(ingressAddr, "GET", "/public/a", "X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/public/a"), 200, ident{}, ""},
		{"client-written identity is dropped before deciding", nginxCheck(ingressAddr, "GET", "/public/a",
			"X-Auth-Subject", "root", "X-Auth-Roles", "admin", "X-Request-Id", "bad id\x01"), 200, ident{}, ""},
		// The ingress overwrites only the exact spelling; the app would
		// read these as the client wrote them.
		{"underscore identity header", nginxCheck(ingressAddr, "GET", "/public/a", "X_Auth_Roles", "admin"), 403, ident{}, ""},
		{"underscore request id", nginxCheck(ingressAddr, "GET", "/public/a", "X_Request_Id", "x"), 403, ident{}, ""},
		{"another proxy's identity header", nginxCheck(ingressAddr, "GET", "/public/a", "X-Forwarded-User", "admin"), 403, ident{}, ""},
		{"another proxy's prefixed header", nginxCheck(ingressAddr, "GET", "/public/a", "X-Auth-Request-Email", "a@b"), 403, ident{}, ""},
		{"authelia header", nginxCheck(ingressAddr, "GET", "/public/a", "Remote-User", "admin"), 403, ident{}, ""},
		{"method override", nginxCheck(ingressAddr, "GET", "/public/a", "X-HTTP-Method-Override", "DELETE"), 403, ident{}, ""},
		{"path override", nginxCheck(ingressAddr, "GET", "/public/a", "X-Original-URL", "/admin/users"), 403, ident{}, ""},
		{"path override, absolute", nginxCheck(ingressAddr, "GET", "/public/a", "X-Original-URL", "http://app.example/admin/users"), 403, ident{}, ""},
		{"path override underscore", nginxCheck(ingressAddr, "GET", "/public/a", "X_Original_URL", "/admin/users"), 403, ident{}, ""},
		{"ingress-nginx headers", nginxCheck(ingressAddr, "GET", "/public/a?x=1", "X-Original-URL", "https://app.example/public/a?x=1",
			"X-Auth-Request-Redirect", "/public/a?x=1", "X-Sent-From", "nginx-ingress-controller", "X-Scheme", "https"), 200, ident{}, ""},
		{"original upgrade h2c", nginxCheck(ingressAddr, "GET", "/public/a", "X-Original-Upgrade", "h2c"), 403, ident{}, ""},
		{"original upgrade websocket", nginxCheck(ingressAddr, "GET", "/public/a", "X-Original-Upgrade", "websocket"), 200, ident{}, ""},
		{"websocket upgrade on POST", nginxCheck(ingressAddr, "POST", "/api/x", "X-Original-Upgrade", "websocket", "X-API-Key", userKey), 403, ident{}, ""},
		{"conflicting upgrade", nginxCheck(ingressAddr, "GET", "/public/a", "X-Original-Upgrade", "websocket", "Upgrade", "h2c"), 403, ident{}, ""},
		{"original body on GET", nginxCheck(ingressAddr, "GET", "/public/a", "X-Original-Content-Length", "12"), 403, ident{}, ""},
		{"original chunked DELETE", nginxCheck(ingressAddr, "DELETE", "/api/x", "X-Original-Transfer-Encoding", "chunked", "X-API-Key", userKey), 403, ident{}, ""},
		{"original zero length on GET", nginxCheck(ingressAddr, "GET", "/public/a", "X-Original-Content-Length", "0"), 200, ident{}, ""},
		{"original body on POST", nginxCheck(ingressAddr, "POST", "/api/x", "X-Original-Content-Length", "12", "X-API-Key", userKey), 200,
			ident{"user-key", "user", "apikey", "user-key"}, ""},
		{"malformed original length", nginxCheck(ingressAddr, "POST", "/api/x", "X-Original-Content-Length", "1e3", "X-API-Key", userKey), 403, ident{}, ""},
		{"unnamed method", nginxCheck(ingressAddr, "PROPFIND", "/public/a"), 403, ident{}, ""},
		{"anonymous on /api", nginxCheck(ingressAddr, "GET", "/api/items"), 401, ident{}, `Bearer realm="authgate"`},
		{"anonymous on /admin", nginxCheck(ingressAddr, "GET", "/admin/"), 401, ident{}, `Bearer realm="authgate"`},
		{"unknown key", nginxCheck(ingressAddr, "GET", "/api/items", "X-API-Key", "agk_nope"), 401, ident{}, `Bearer realm="authgate"`},
		{"bad bearer", nginxCheck(ingressAddr, "GET", "/public/a", "Authorization", "Basic Zm9vOmJhcg=="), 401, ident{}, `Bearer realm="authgate", error="invalid_token"`},
		{"user key on /admin", nginxCheck(ingressAddr, "GET", "/admin/users", "X-API-Key", userKey), 403, ident{}, ""},
		{"reader posts a report", nginxCheck(ingressAddr, "POST", "/reports/q1", "X-API-Key", readerKey), 403, ident{}, ""},
		{"reader reads a report", nginxCheck(ingressAddr, "GET", "/reports/q1", "X-API-Key", readerKey), 200,
			ident{"reader-key", "reader", "apikey", "reader-key"}, ""},
		{"unmatched path, admin", nginxCheck(ingressAddr, "GET", "/secret", "X-API-Key", adminKey), 403, ident{}, ""},
		{"two credentials", nginxCheck(ingressAddr, "GET", "/api/x", "X-API-Key", adminKey, "Authorization", "Bearer a.b.c"), 403, ident{}, ""},

		{"no original headers", check(ingressAddr, "/verify"), 403, ident{}, ""},
		{"method without uri", check(ingressAddr, "/verify", "X-Original-Method", "GET"), 403, ident{}, ""},
		{"uri without method", check(ingressAddr, "/verify", "X-Forwarded-Uri", "/public/a"), 403, ident{}, ""},
		{"empty uri", nginxCheck(ingressAddr, "GET", ""), 403, ident{}, ""},
		{"conflicting uri", nginxCheck(ingressAddr, "GET", "/admin/x", "X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/public/x", "X-API-Key", userKey), 403, ident{}, ""},
		{"conflicting method", nginxCheck(ingressAddr, "DELETE", "/reports/q1", "X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/reports/q1", "X-API-Key", readerKey), 403, ident{}, ""},
		{"client adds half a pair", traefikCheck(ingressAddr, "GET", "/admin/x", "X-Original-URI", "/public/x"), 403, ident{}, ""},
		{"repeated uri", nginxCheck(ingressAddr, "GET", "/admin/x", "X-Original-URI", "/public/x"), 403, ident{}, ""},
		{"absolute-form uri", nginxCheck(ingressAddr, "GET", "http://app.example/public/a"), 403, ident{}, ""},
		{"relative uri", nginxCheck(ingressAddr, "GET", "public/a"), 403, ident{}, ""},
		{"asterisk uri", nginxCheck(ingressAddr, "OPTIONS", "*"), 403, ident{}, ""},
		{"fragment", nginxCheck(ingressAddr, "GET", "/public/a#x"), 403, ident{}, ""},
		{"raw space", nginxCheck(ingressAddr, "GET", "/public/a b"), 403, ident{}, ""},
		{"raw backslash", nginxCheck(ingressAddr, "GET", "/public/a\\b"), 403, ident{}, ""},
		{"raw non-ascii", nginxCheck(ingressAddr, "GET", "/public/caf\xc3\xa9"), 403, ident{}, ""},
		{"encoded non-ascii", nginxCheck(ingressAddr, "GET", "/public/caf%c3%a9"), 200, ident{}, ""},
		{"encoded space and query", nginxCheck(ingressAddr, "GET", "/public/a%20b?x=/../admin#y"), 200, ident{}, ""},
		{"h2c upgrade", nginxCheck(ingressAddr, "GET", "/public/a", "Upgrade", "h2c"), 403, ident{}, ""},
		{"CONNECT", nginxCheck(ingressAddr, "CONNECT", "/public/a"), 403, ident{}, ""},
		{"TRACE", nginxCheck(ingressAddr, "TRACE", "/public/a"), 403, ident{}, ""},
		{"lower-case get", nginxCheck(ingressAddr, "get", "/reports/q1", "X-API-Key", readerKey), 403, ident{}, ""},
		{"method with space", nginxCheck(ingressAddr, "G ET", "/public/a"), 403, ident{}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := serve(h, tc.r)
			if w.Code != tc.want {
				t.Fatalf("ForwardAuth(%s) = %d %s, want %d", tc.name, w.Code, w.Body, tc.want)
			}
			rid := w.Header().Get("X-Request-Id")
			if rid == "" || rid != proxy.RequestID(rid) {
				t.Errorf("X-Request-Id = %q, want a valid request id", rid)
			}
			if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", cc)
			}
			got := ident{w.Header().Get("X-Auth-Subject"), w.Header().Get("X-Auth-Roles"), w.Header().Get("X-Auth-Method"), w.Header().Get("X-Auth-Key-Name")}
			if tc.want == 200 {
				if w.Body.Len() != 0 {
					t.Errorf("200 body = %q, want empty", w.Body)
				}
				if got != tc.ident {
					t.Errorf("identity = %+v, want %+v", got, tc.ident)
				}
				return
			}
			if got != (ident{}) {
				t.Errorf("denied check carries identity %+v", got)
			}
			if !strings.Contains(w.Header().Get("Content-Type"), "application/json") || !strings.Contains(w.Body.String(), rid) {
				t.Errorf("denial = %q %s, want JSON with the request id", w.Header().Get("Content-Type"), w.Body)
			}
			if ch := w.Header().Get("WWW-Authenticate"); ch != tc.challenge {
				t.Errorf("WWW-Authenticate = %q, want %q", ch, tc.challenge)
			}
			// A refusal of the request's form names its reason; a policy
			// decision does not.
			reason := w.Header().Get("X-Authgate-Reason")
			policyDenial := strings.HasPrefix(tc.name, "user key") || strings.HasPrefix(tc.name, "reader") || strings.HasPrefix(tc.name, "unmatched")
			if tc.want == 403 && !policyDenial && reason == "" {
				t.Errorf("403 without X-Authgate-Reason")
			}
			if (tc.want == 401 || policyDenial) && reason != "" {
				t.Errorf("policy decision carries X-Authgate-Reason %q", reason)
			}
		})
	}
}

func TestForwardAuthKeepsValidRequestID(t *testing.T) {
	e := newFAEnv(t, faPolicy)
	h := e.gw.ForwardAuth(proxy.ForwardAuthOptions{TrustedPeers: mustTrusted(t, "10.0.0.5")})
	w := serve(h, nginxCheck(ingressAddr, "GET", "/public/a", "X-Request-Id", "ingress-123"))
	if got := w.Header().Get("X-Request-Id"); w.Code != 200 || got != "ingress-123" {
		t.Fatalf("check with X-Request-Id ingress-123 = %d, id %q", w.Code, got)
	}
}

func TestForwardAuthNoPolicy(t *testing.T) {
	e := newFAEnv(t, "")
	h := e.gw.ForwardAuth(proxy.ForwardAuthOptions{TrustedPeers: mustTrusted(t, "10.0.0.5")})
	w := serve(h, nginxCheck(ingressAddr, "GET", "/public/a"))
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("check without a policy = %d, want 503", w.Code)
	}
}

func TestForwardAuthLogsDecision(t *testing.T) {
	e := newFAEnv(t, faPolicy)
	h := e.gw.ForwardAuth(proxy.ForwardAuthOptions{TrustedPeers: mustTrusted(t, "10.0.0.5")})
	serve(h, nginxCheck(ingressAddr, "DELETE", "/admin/%75sers", "X-API-Key", userKey))
	logs := e.logs.All()
	if len(logs) != 1 {
		t.Fatalf("logged %d lines, want 1", len(logs))
	}
	f := logs[0].ContextMap()
	want := map[string]any{"method": "DELETE", "path": "/admin/users", "decision": "deny", "reason": "deny_missing_role",
		"rule_id": "admin", "subject": "user-key", "auth_method": "apikey", "status": int64(403)}
	for k, v := range want {
		if f[k] != v {
			t.Errorf("log field %s = %v, want %v", k, f[k], v)
		}
	}
	for k, v := range f {
		if s, ok := v.(string); ok && strings.Contains(s, userKey) {
			t.Errorf("log field %s contains the api key", k)
		}
	}
	if n := requestsTotal(t, e.reg, map[string]string{"decision": "deny", "reason": "deny_missing_role", "auth_method": "apikey", "code_class": "4xx"}); n != 1 {
		t.Errorf("authgate_requests_total{deny,deny_missing_role,apikey,4xx} = %v, want 1", n)
	}
}

func TestForwardAuthEnvoy(t *testing.T) {
	e := newFAEnv(t, faPolicy)
	h := e.gw.ForwardAuth(proxy.ForwardAuthOptions{TrustedPeers: mustTrusted(t, "10.0.0.0/24"), EnvoyPrefix: "/envoy/"})
	envoy := func(method, target string, kv ...string) *http.Request {
		r := check(ingressAddr, target, kv...)
		r.Method = method
		return r
	}
	tests := []struct {
		name    string
		r       *http.Request
		want    int
		subject string
	}{
		{"admin key on /admin", envoy("GET", "/envoy/admin/users?q=1", "X-API-Key", adminKey), 200, "admin-key"},
		{"anonymous on /admin", envoy("GET", "/envoy/admin/users"), 401, ""},
		{"x-original-uri is ignored", envoy("GET", "/envoy/admin/users", "X-Original-Method", "GET", "X-Original-URI", "/public/a"), 401, ""},
		{"x-forwarded-uri is ignored", envoy("GET", "/envoy/admin/users", "X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/public/a"), 401, ""},
		{"method from the request line", envoy("POST", "/envoy/reports/q1", "X-API-Key", readerKey), 403, ""},
		{"get from the request line", envoy("GET", "/envoy/reports/q1", "X-API-Key", readerKey), 200, "reader-key"},
		{"anonymous public", envoy("GET", "/envoy/public/a", "X-Auth-Subject", "root"), 200, ""},
		{"prefix is matched by segment", envoy("GET", "/envoyx/public/a"), 403, ""},
		{"prefix alone", envoy("GET", "/envoy"), 403, ""},
		{"doubled slash after prefix", envoy("GET", "/envoy//public/a"), 200, ""},
		{"dot segment after prefix", envoy("GET", "/envoy/public/%2e%2e/admin/x"), 403, ""},
		{"TRACE", envoy("TRACE", "/envoy/public/a"), 403, ""},
		{"nginx form still works", nginxCheck(ingressAddr, "GET", "/admin/x", "X-API-Key", adminKey), 200, "admin-key"},
		{"untrusted envoy peer", func() *http.Request {
			r := envoy("GET", "/envoy/public/a")
			r.RemoteAddr = clientAddr
			return r
		}(), 403, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := serve(h, tc.r)
			if w.Code != tc.want {
				t.Fatalf("%s %s = %d %s, want %d", tc.r.Method, tc.r.URL, w.Code, w.Body, tc.want)
			}
			if got := w.Header().Get("X-Auth-Subject"); got != tc.subject {
				t.Errorf("X-Auth-Subject = %q, want %q", got, tc.subject)
			}
			if tc.want == 200 && strings.HasPrefix(tc.r.URL.Path, "/envoy/") {
				// Every identity header is present, so Envoy's
				// allowed_upstream_headers overwrite client copies.
				for _, k := range []string{"X-Auth-Subject", "X-Auth-Roles", "X-Auth-Method", "X-Auth-Key-Name"} {
					if _, ok := w.Header()[k]; !ok {
						t.Errorf("Envoy answer lacks %s", k)
					}
				}
			}
		})
	}
}

func TestForwardAuthPathAttacksNeverAllowAdmin(t *testing.T) {
	if len(attackpaths.Admin) < 30 {
		t.Fatalf("only %d attack paths", len(attackpaths.Admin))
	}
	e := newFAEnv(t, faPolicy)
	h := e.gw.ForwardAuth(proxy.ForwardAuthOptions{TrustedPeers: mustTrusted(t, "10.0.0.0/24"), EnvoyPrefix: "/envoy"})
	callers := []struct {
		name string
		kv   []string
	}{
		{"anonymous", nil},
		{"user", []string{"X-API-Key", userKey}},
	}
	shapes := []struct {
		name string
		req  func(target string, kv []string) *http.Request
	}{
		{"nginx", func(target string, kv []string) *http.Request { return nginxCheck(ingressAddr, "GET", target, kv...) }},
		{"traefik", func(target string, kv []string) *http.Request { return traefikCheck(ingressAddr, "GET", target, kv...) }},
		{"envoy", func(target string, kv []string) *http.Request {
			// The target as it appears in Envoy's request line; targets
			// Go cannot parse as a request line are covered by the others.
			u, err := url.ParseRequestURI("/envoy" + target)
			if err != nil {
				return nil
			}
			r := check(ingressAddr, "/verify", kv...)
			r.URL, r.RequestURI = u, "/envoy"+target
			return r
		}},
	}
	allowed := 0
	for _, shape := range shapes {
		for _, c := range callers {
			for _, target := range attackpaths.Admin {
				t.Run(shape.name+"/"+c.name+"/"+target, func(t *testing.T) {
					r := shape.req(target, c.kv)
					if r == nil {
						t.Skip("not a parsable request line")
					}
					w := serve(h, r)
					switch w.Code {
					case 200:
						allowed++
						if p, bad := attackpaths.ReadsAsAdmin(target); bad {
							t.Errorf("%s %s as %s = 200; an upstream may read it as %q", shape.name, target, c.name, p)
						}
					case 401, 403:
					default:
						t.Errorf("%s %s as %s = %d, want 200, 401 or 403 (what an ingress passes on)", shape.name, target, c.name, w.Code)
					}
				})
			}
		}
	}
	t.Logf("%d attack checks allowed (all outside /admin)", allowed)
}

// TestForwardAuthAgreesWithProxy sends every attack path both through the
// proxy and as a forward-auth check: the forward-auth decision is never
// looser than the proxy's.
func TestForwardAuthAgreesWithProxy(t *testing.T) {
	e := newFAEnv(t, faPolicy)
	h := e.gw.ForwardAuth(proxy.ForwardAuthOptions{TrustedPeers: mustTrusted(t, "10.0.0.0/24")})
	for _, target := range attackpaths.Admin {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			continue
		}
		t.Run(target, func(t *testing.T) {
			pr := httptest.NewRequest("GET", "/", nil)
			pr.URL, pr.RequestURI, pr.RemoteAddr = u, target, clientAddr
			pw := serve(e.gw, pr) // the upstream is unreachable: allowed means 502
			fw := serve(h, nginxCheck(ingressAddr, "GET", target))
			proxyAllowed := pw.Code == http.StatusBadGateway
			if fw.Code == 200 && !proxyAllowed {
				t.Errorf("GET %s: forward-auth 200, proxy %d", target, pw.Code)
			}
			if fw.Code != 200 && proxyAllowed {
				t.Errorf("GET %s: forward-auth %d, proxy allowed", target, fw.Code)
			}
		})
	}
}

func BenchmarkForwardAuthAllowedAPIKey(b *testing.B) {
	set, err := policy.Load("policy.yaml", []byte(faPolicy))
	if err != nil {
		b.Fatal(err)
	}
	keys, err := apikey.Parse("keys.yaml", []byte(faKeysYAML()))
	if err != nil {
		b.Fatal(err)
	}
	var ks apikey.Store
	ks.Swap(keys)
	up, _ := url.Parse("http://127.0.0.1:1")
	gw, err := proxy.New(proxy.Options{Upstream: up, Policy: policy.NewStore(set), Authenticator: authn.Chain{APIKey: apikey.NewAuthenticator(&ks, nil)}})
	if err != nil {
		b.Fatal(err)
	}
	tr, _ := clientip.Parse([]string{"10.0.0.0/24"})
	h := gw.ForwardAuth(proxy.ForwardAuthOptions{TrustedPeers: tr})
	b.ReportAllocs()
	for b.Loop() {
		r := nginxCheck(ingressAddr, "GET", "/admin/users/42?x=1", "X-API-Key", adminKey)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 200 {
			b.Fatalf("check = %d", w.Code)
		}
	}
}
