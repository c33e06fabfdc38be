package proxy_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authgate/authgate/authn/state"
	"github.com/authgate/authgate/proxy"
)

// recordingUpstream counts the requests it serves and answers with
// its own CORS headers, which the gateway must replace where it owns CORS.
type recordingUpstream struct {
	hits atomic.Int64
	last atomic.Value // http.Header
}

func (u *recordingUpstream) start(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		u.last.Store(r.Header.Clone())
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

const rulesPolicy = `roles: [admin, user, reader]
cors:
  origins: ["https://app.example.com", "https://*.tools.example.com"]
  methods: [GET, POST, DELETE]
  headers: [content-type, x-api-key]
  expose_headers: [x-request-id]
  credentials: true
  max_age: 10m
rules:
  - {id: public, path: /public/**, public: true}
  - {id: inside, path: /inside/**, public: true, source_cidrs: [10.0.0.0/8]}
  - {id: host, path: /host/**, authenticated: true, hosts: ["*.example.com"]}
  - {id: keys-only, path: /keys/**, roles: [admin, user], auth_methods: [apikey], key_names: [admin-key]}
  - {id: api, path: /api/**, authenticated: true}
  - {id: no-delete, path: /api/**, methods: [DELETE], deny: true}
  - {id: never, path: /public/secret, deny: true}
  - id: limited
    path: /limited/**
    authenticated: true
    rate_limit: {per: subject, every: 1h, burst: 2}
  - id: limited-ip
    path: /limited-ip/**
    public: true
    rate_limit: {per: client_ip, every: 1h, burst: 1}
  - id: fwd
    path: /fwd/**
    authenticated: true
    cors: {origins: ["https://app.example.com"], forward_preflight: true}
`

func TestRuleConditionsThroughTheGateway(t *testing.T) {
	var up recordingUpstream
	env := newGatewayEnv(t, rulesPolicy, up.start(t), func(o *proxy.Options) {
		o.Trusted = mustTrusted(t, "10.0.0.5/32")
	})
	for _, tt := range []struct {
		name   string
		method string
		target string
		peer   string
		host   string
		hdr    []string
		want   int
	}{
		{"public", "GET", "/public/x", "", "", nil, 200},
		{"deny inside a public rule, anonymous gets 403", "GET", "/public/secret", "", "", nil, 403},
		{"source_cidrs holds", "GET", "/inside/x", "10.1.1.1:5000", "", nil, 200},
		{"source_cidrs fails", "GET", "/inside/x", "192.0.2.1:5000", "", nil, 403},
		{"source_cidrs behind a trusted proxy", "GET", "/inside/x", "10.0.0.5:5000", "", []string{"X-Forwarded-For", "10.9.9.9"}, 200},
		{"source_cidrs: X-Forwarded-For from a client is not believed", "GET", "/inside/x", "192.0.2.1:5000", "", []string{"X-Forwarded-For", "10.9.9.9"}, 403},
		{"hosts wildcard", "GET", "/host/x", "", "a.example.com:8443", []string{"X-API-Key", userKey}, 200},
		{"hosts after canonicalising", "GET", "/host/x", "", "A.EXAMPLE.COM.", []string{"X-API-Key", userKey}, 200},
		{"hosts: X-Forwarded-Host is not the host", "GET", "/host/x", "", "evil.test", []string{"X-API-Key", userKey, "X-Forwarded-Host", "a.example.com"}, 403},
		{"auth_methods and key_names hold", "GET", "/keys/x", "", "", []string{"X-API-Key", adminKey}, 200},
		{"key_names fails", "GET", "/keys/x", "", "", []string{"X-API-Key", userKey}, 403},
		{"deny rule beats allow", "DELETE", "/api/x", "", "", []string{"X-API-Key", adminKey}, 403},
		{"allow", "GET", "/api/x", "", "", []string{"X-API-Key", adminKey}, 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, tt.target, nil)
			if tt.peer != "" {
				r.RemoteAddr = tt.peer
			}
			if tt.host != "" {
				r.Host = tt.host
			}
			for i := 0; i+1 < len(tt.hdr); i += 2 {
				r.Header.Set(tt.hdr[i], tt.hdr[i+1])
			}
			before := up.hits.Load()
			w := serve(env.gw, r)
			if w.Code != tt.want {
				t.Fatalf("%s %s = %d, want %d (%s)", tt.method, tt.target, w.Code, tt.want, w.Body)
			}
			if reached := up.hits.Load() > before; reached != (tt.want == 200) {
				t.Errorf("upstream reached = %v, want %v", reached, tt.want == 200)
			}
		})
	}
}

func TestRouteRateLimits(t *testing.T) {
	var up recordingUpstream
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	mem, err := state.NewMemory(state.MemoryOptions{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	env := newGatewayEnv(t, rulesPolicy, up.start(t), func(o *proxy.Options) { o.RateLimits = mem })
	get := func(path, key, peer string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", path, nil)
		if key != "" {
			r.Header.Set("X-API-Key", key)
		}
		if peer != "" {
			r.RemoteAddr = peer
		}
		return serve(env.gw, r)
	}
	for i := 0; i < 2; i++ {
		if w := get("/limited/x", adminKey, ""); w.Code != 200 || w.Header().Get("RateLimit-Policy") != `"limited";q=2;w=7200` {
			t.Fatalf("request %d = %d, RateLimit-Policy %q; want 200 and \"limited\";q=2;w=7200", i, w.Code, w.Header().Get("RateLimit-Policy"))
		}
	}
	w := get("/limited/x", adminKey, "")
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "3600" || w.Header().Get("RateLimit") != `"limited";r=0;t=3600` {
		t.Fatalf("third request = %d, Retry-After %q, RateLimit %q; want 429, 3600, \"limited\";r=0;t=3600 (%s)",
			w.Code, w.Header().Get("Retry-After"), w.Header().Get("RateLimit"), w.Body)
	}
	if !strings.Contains(w.Body.String(), `"too_many_requests"`) {
		t.Errorf("429 body = %s, want the gateway's JSON error", w.Body)
	}
	if w := get("/limited/x", userKey, ""); w.Code != 200 {
		t.Errorf("another subject = %d, want 200: buckets are per subject", w.Code)
	}
	if w := get("/limited-ip/x", "", "192.0.2.1:1"); w.Code != 200 {
		t.Fatalf("first from an address = %d, want 200", w.Code)
	}
	if w := get("/limited-ip/x", "", "192.0.2.1:2"); w.Code != 429 {
		t.Errorf("second from the same address = %d, want 429", w.Code)
	}
	if w := get("/limited-ip/x", "", "192.0.2.2:1"); w.Code != 200 {
		t.Errorf("another address = %d, want 200", w.Code)
	}
	now = now.Add(time.Hour)
	if w := get("/limited/x", adminKey, ""); w.Code != 200 {
		t.Errorf("after a refill = %d, want 200", w.Code)
	}
	if got := rateLimitCount(t, env, "limited", "limited"); got != 1 {
		t.Errorf(`authgate_rate_limit_total{rule_id="limited",result="limited"} = %v, want 1`, got)
	}
}

// failingStore is a state store that is down.
type failingStore struct{ calls atomic.Int64 }

func (f *failingStore) Allow(context.Context, state.Scope, string, state.Limit) (bool, time.Duration, error) {
	f.calls.Add(1)
	return false, 0, errors.Join(state.ErrUnavailable, errors.New("connection refused"))
}

// TestRateLimitStoreOutageFailsOpen: the request was authorized, so a
// store outage lets it through, counted; it never turns into a deny.
func TestRateLimitStoreOutageFailsOpen(t *testing.T) {
	var up recordingUpstream
	store := &failingStore{}
	env := newGatewayEnv(t, rulesPolicy, up.start(t), func(o *proxy.Options) { o.RateLimits = store })
	for i := 0; i < 5; i++ {
		r := httptest.NewRequest("GET", "/limited/x", nil)
		r.Header.Set("X-API-Key", adminKey)
		if w := serve(env.gw, r); w.Code != 200 {
			t.Fatalf("request %d with the store down = %d, want 200", i, w.Code)
		}
	}
	if store.calls.Load() != 5 {
		t.Errorf("store calls = %d, want 5", store.calls.Load())
	}
	if got := rateLimitCount(t, env, "limited", "store_error"); got != 5 {
		t.Errorf(`authgate_rate_limit_total{result="store_error"} = %v, want 5`, got)
	}
	if n := env.logs.FilterMessageSnippet("rate-limit store unavailable").Len(); n != 1 {
		t.Errorf("outage logged %d times, want once per interval", n)
	}
	// A denied request never reaches the store.
	r := httptest.NewRequest("GET", "/limited/x", nil)
	if w := serve(env.gw, r); w.Code != 401 || store.calls.Load() != 5 {
		t.Errorf("anonymous = %d with %d store calls, want 401 and no call", w.Code, store.calls.Load())
	}
}

func TestCORS(t *testing.T) {
	var up recordingUpstream
	// forward_authorization on: a forwarded preflight still goes without
	// the Authorization a client added.
	env := newGatewayEnv(t, rulesPolicy, up.start(t), func(o *proxy.Options) { o.ForwardAuthorization = true })
	preflight := func(path, origin, method, headers string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("OPTIONS", path, nil)
		r.Header.Set("Origin", origin)
		r.Header.Set("Access-Control-Request-Method", method)
		if headers != "" {
			r.Header.Set("Access-Control-Request-Headers", headers)
		}
		return serve(env.gw, r)
	}
	t.Run("preflight answered without credentials", func(t *testing.T) {
		w := preflight("/api/x", "https://app.example.com", "POST", "Content-Type, X-API-Key")
		h := w.Header()
		if w.Code != 204 || h.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
			h.Get("Access-Control-Allow-Methods") != "GET, POST, DELETE" || h.Get("Access-Control-Allow-Headers") != "Content-Type, X-API-Key" ||
			h.Get("Access-Control-Allow-Credentials") != "true" || h.Get("Access-Control-Max-Age") != "600" {
			t.Fatalf("preflight = %d %v, want 204 with the policy's CORS headers", w.Code, h)
		}
		if up.hits.Load() != 0 {
			t.Error("a preflight reached the upstream")
		}
	})
	t.Run("wildcard origin, one label", func(t *testing.T) {
		if w := preflight("/api/x", "https://a.tools.example.com", "GET", ""); w.Code != 204 {
			t.Errorf("preflight = %d, want 204", w.Code)
		}
		if w := preflight("/api/x", "https://a.b.tools.example.com", "GET", ""); w.Code != 403 {
			t.Errorf("preflight from two labels deep = %d, want 403", w.Code)
		}
	})
	for _, tt := range []struct{ name, origin, method, headers string }{
		{"other origin", "https://evil.example", "GET", ""},
		{"null origin", "null", "GET", ""},
		{"origin prefix trick", "https://app.example.com.evil.test", "GET", ""},
		{"method not allowed", "https://app.example.com", "PUT", ""},
		{"header not allowed", "https://app.example.com", "GET", "authorization"},
	} {
		t.Run("refused: "+tt.name, func(t *testing.T) {
			w := preflight("/api/x", tt.origin, tt.method, tt.headers)
			if w.Code != 403 || w.Header().Get("Access-Control-Allow-Origin") != "" {
				t.Errorf("preflight = %d, Allow-Origin %q; want 403 without CORS headers", w.Code, w.Header().Get("Access-Control-Allow-Origin"))
			}
		})
	}
	t.Run("actual request carries CORS headers, upstream's replaced", func(t *testing.T) {
		r := httptest.NewRequest("GET", "/api/x", nil)
		r.Header.Set("Origin", "https://app.example.com")
		r.Header.Set("X-API-Key", userKey)
		w := serve(env.gw, r)
		if w.Code != 200 || w.Header().Values("Access-Control-Allow-Origin")[0] != "https://app.example.com" ||
			len(w.Header().Values("Access-Control-Allow-Origin")) != 1 || w.Header().Get("Access-Control-Expose-Headers") != "x-request-id" {
			t.Fatalf("GET = %d %v, want one Allow-Origin of the policy", w.Code, w.Header())
		}
	})
	t.Run("a denied request carries CORS headers too", func(t *testing.T) {
		r := httptest.NewRequest("GET", "/api/x", nil)
		r.Header.Set("Origin", "https://app.example.com")
		w := serve(env.gw, r)
		if w.Code != 401 || w.Header().Get("Access-Control-Allow-Origin") != "https://app.example.com" {
			t.Fatalf("anonymous GET = %d %v, want 401 readable by the page", w.Code, w.Header())
		}
	})
	t.Run("disallowed origin gets no CORS headers", func(t *testing.T) {
		r := httptest.NewRequest("GET", "/api/x", nil)
		r.Header.Set("Origin", "https://evil.example")
		r.Header.Set("X-API-Key", userKey)
		w := serve(env.gw, r)
		if w.Code != 200 || w.Header().Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("GET = %d, Allow-Origin %q; want 200 without it (the upstream's * dropped)", w.Code, w.Header().Get("Access-Control-Allow-Origin"))
		}
	})
	t.Run("forward_preflight reaches the upstream without credentials", func(t *testing.T) {
		before := up.hits.Load()
		r := httptest.NewRequest("OPTIONS", "/fwd/x", nil)
		r.Header.Set("Origin", "https://app.example.com")
		r.Header.Set("Access-Control-Request-Method", "GET")
		r.Header.Set("X-Auth-Subject", "forged")
		r.Header.Set("Authorization", "Bearer forged")
		r.Header.Set("Cookie", "session=forged")
		w := serve(env.gw, r)
		if w.Code != 200 || up.hits.Load() != before+1 {
			t.Fatalf("forwarded preflight = %d, upstream hits +%d; want 200 from the upstream", w.Code, up.hits.Load()-before)
		}
		if h := up.last.Load().(http.Header); h.Get("X-Auth-Subject") != "" || h.Get("Authorization") != "" || h.Get("Cookie") != "" {
			t.Errorf("upstream saw credentials on a preflight: %v", h)
		}
		if w := preflight("/fwd/x", "https://evil.example", "GET", ""); w.Code != 403 {
			t.Errorf("forwarded preflight from another origin = %d, want 403", w.Code)
		}
	})
	t.Run("OPTIONS without CORS is decided as before", func(t *testing.T) {
		s := newGatewayEnv(t, "rules:\n  - {id: api, path: /**, authenticated: true}\n", "http://127.0.0.1:1", nil)
		r := httptest.NewRequest("OPTIONS", "/x", nil)
		r.Header.Set("Origin", "https://app.example.com")
		r.Header.Set("Access-Control-Request-Method", "GET")
		if w := serve(s.gw, r); w.Code != 401 {
			t.Errorf("preflight without a cors block = %d, want 401", w.Code)
		}
	})
}

// rateLimitCount returns authgate_rate_limit_total{rule_id, result}.
func rateLimitCount(t *testing.T, env *faEnv, rule, result string) float64 {
	t.Helper()
	mfs, err := env.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "authgate_rate_limit_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["rule_id"] == rule && labels["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
