package e2e

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/authn/jwks"
	"github.com/authgate/authgate/authn/jwks/jwkstest"
	"github.com/authgate/authgate/authn/state/statetest"
	"github.com/authgate/authgate/internal/config"
)

// conditionsPolicy pins each area to one kind of credential and more.
func conditionsPolicy(idpIssuer string) string {
	return `roles: [admin, reader]
rules:
  - id: own-tokens
    path: /jwt/**
    authenticated: true
    auth_methods: [jwt]
    issuers: [authgate]
    claims: [{path: type, equals: access}]
  - id: admin-bot-only
    path: /keys/**
    roles: [admin]
    auth_methods: [apikey]
    key_names: [admin-bot]
  - id: staff-writers
    path: /idp/**
    roles: [admin]
    issuers: [` + idpIssuer + `]
    claims: [{path: groups, contains: /staff}, {path: org.tier, in: [gold, silver]}]
    scopes: {all_of: ["orders:write"]}
    email_domains: [example.com]
  - id: idp-cel
    path: /cel/**
    authenticated: true
    when: 'principal.auth_method == "external" && claims.realm_access.roles.exists(r, r == "admin")'
  - id: no-external-delete
    path: /**
    methods: [DELETE]
    deny: true
    auth_methods: [external]
  - id: office
    path: /office/**
    public: true
    source_cidrs: [10.0.0.0/8]
`
}

// TestE2EConditionsPerAuthMethod: rule conditions through the real gateway
// for each way of authenticating: the gateway's own tokens, API keys and an
// external issuer's tokens.
func TestE2EConditionsPerAuthMethod(t *testing.T) {
	idp := jwkstest.NewIdP(t)
	e := newEnv(t, conditionsPolicy(idp.Issuer()), nil, func(c *config.Config) {
		c.Issuers = []jwks.IssuerConfig{{
			Issuer: idp.Issuer(), JWKSURI: idp.JWKSURI(), Audiences: []string{"my-app"},
			Algorithms: []string{"RS256"}, RolesClaim: "realm_access.roles",
		}}
	})
	waitReady(t, e, http.StatusOK)
	own := "Bearer " + mint(t, jwt.SigningMethodHS256, []byte(testSecret), goodClaims("admin"), "")
	ext := func(mod func(jwt.MapClaims)) string {
		c := externalClaims(idp, "admin")
		c["scope"] = "orders:read orders:write"
		c["email"] = "ann@example.com"
		c["org"] = map[string]any{"tier": "gold"}
		if mod != nil {
			mod(c)
		}
		return "Bearer " + idp.Sign(c, "RS256")
	}
	for _, tt := range []struct {
		name, method, path string
		hdr                []string
		want               int
	}{
		{"own token on the jwt area", "GET", "/jwt/x", []string{"Authorization", own}, 200},
		{"api key on the jwt area", "GET", "/jwt/x", []string{"X-API-Key", testAPIKey}, 403},
		{"external token on the jwt area", "GET", "/jwt/x", []string{"Authorization", ext(nil)}, 403},
		{"admin-bot key", "GET", "/keys/x", []string{"X-API-Key", testAPIKey}, 200},
		{"reader key: role and key name fail", "GET", "/keys/x", []string{"X-API-Key", testReaderKey}, 403},
		{"own admin token on the keys area", "GET", "/keys/x", []string{"Authorization", own}, 403},
		{"external token with everything", "GET", "/idp/x", []string{"Authorization", ext(nil)}, 200},
		{"external without the scope", "GET", "/idp/x", []string{"Authorization", ext(func(c jwt.MapClaims) { c["scope"] = "orders:read" })}, 403},
		{"external with scp list", "GET", "/idp/x", []string{"Authorization", ext(func(c jwt.MapClaims) { delete(c, "scope"); c["scp"] = []string{"orders:write"} })}, 200},
		{"external with an unverified email", "GET", "/idp/x", []string{"Authorization", ext(func(c jwt.MapClaims) { c["email_verified"] = false })}, 403},
		{"external from another domain", "GET", "/idp/x", []string{"Authorization", ext(func(c jwt.MapClaims) { c["email"] = "ann@example.com.evil" })}, 403},
		{"external of another tier", "GET", "/idp/x", []string{"Authorization", ext(func(c jwt.MapClaims) { c["org"] = map[string]any{"tier": "free"} })}, 403},
		{"external, not staff", "GET", "/idp/x", []string{"Authorization", ext(func(c jwt.MapClaims) { c["groups"] = []string{"/guests"} })}, 403},
		{"own admin token on the idp area: other issuer", "GET", "/idp/x", []string{"Authorization", own}, 403},
		{"external DELETE: deny rule", "DELETE", "/idp/x", []string{"Authorization", ext(nil)}, 403},
		{"when: external admin", "GET", "/cel/x", []string{"Authorization", ext(nil)}, 200},
		{"when: external non-admin", "GET", "/cel/x", []string{"Authorization", "Bearer " + idp.Sign(externalClaims(idp, "user"), "RS256")}, 403},
		{"when: own admin token", "GET", "/cel/x", []string{"Authorization", own}, 403},
		{"source_cidrs: loopback is not 10/8", "GET", "/office/x", nil, 403},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := e.up.count()
			resp, body := e.do(tt.method, tt.path, tt.hdr...)
			if tt.want != 200 {
				assertJSONError(t, resp, body, tt.want)
			} else if resp.StatusCode != 200 {
				t.Fatalf("%s %s = %d %s, want 200", tt.method, tt.path, resp.StatusCode, body)
			}
			if reached := e.up.count() > before; reached != (tt.want == 200) {
				t.Errorf("upstream reached = %v, want %v", reached, tt.want == 200)
			}
		})
	}
	if got := e.metric("authgate_policy_rule_hits_total", `decision="deny",rule_id="no-external-delete"`); got < 1 {
		t.Errorf("deny_rule requests = %v, want the DELETE counted", got)
	}
}

// corsPolicy answers preflights for /api/** from one origin.
const corsPolicy = `rules:
  - id: api
    path: /api/**
    authenticated: true
    cors:
      origins: ["https://app.example.com"]
      methods: [GET, POST]
      headers: [content-type, authorization]
      credentials: true
      max_age: 1h
  - id: public
    path: /public/**
    public: true
`

func TestE2ECORSPreflight(t *testing.T) {
	e := newEnv(t, corsPolicy, nil)
	preflight := func(origin, method string) *http.Response {
		resp, _ := e.do("OPTIONS", "/api/orders", "Origin", origin, "Access-Control-Request-Method", method,
			"Access-Control-Request-Headers", "content-type,authorization")
		return resp
	}
	resp := preflight("https://app.example.com", "POST")
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		resp.Header.Get("Access-Control-Allow-Credentials") != "true" || resp.Header.Get("Access-Control-Max-Age") != "3600" ||
		resp.Header.Get("Access-Control-Allow-Headers") != "content-type,authorization" {
		t.Fatalf("preflight = %d %v, want 204 with the rule's CORS headers", resp.StatusCode, resp.Header)
	}
	if e.up.count() != 0 {
		t.Fatal("the preflight reached the upstream")
	}
	if resp := preflight("https://evil.example", "POST"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("preflight from another origin = %d, want 403", resp.StatusCode)
	}
	if resp := preflight("https://app.example.com", "DELETE"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("preflight for DELETE = %d, want 403", resp.StatusCode)
	}
	// The real request still needs its credential.
	resp, body := e.do("POST", "/api/orders", "Origin", "https://app.example.com")
	assertJSONError(t, resp, body, http.StatusUnauthorized)
	if resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Errorf("401 to an allowed origin lacks Access-Control-Allow-Origin: %v", resp.Header)
	}
	resp, _ = e.do("GET", "/api/orders", "Origin", "https://app.example.com", "X-API-Key", testAPIKey)
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Errorf("GET = %d %v, want 200 with CORS headers", resp.StatusCode, resp.Header)
	}
	// A path without a cors block decides OPTIONS as before.
	resp, _ = e.do("OPTIONS", "/public/x", "Origin", "https://app.example.com", "Access-Control-Request-Method", "GET")
	if resp.StatusCode != 200 || e.up.count() != 2 {
		t.Errorf("OPTIONS on a public path without cors = %d (upstream saw %d), want 200 from the upstream", resp.StatusCode, e.up.count())
	}
}

// rateLimitPolicy limits every API key to 3 requests an hour on /api/**
// and every client address to 2 on /public/**.
const rateLimitPolicy = `roles: [admin, reader]
rules:
  - id: api
    path: /api/**
    authenticated: true
    auth_methods: [apikey]
    rate_limit: {per: key, every: 1h, burst: 3}
  - id: public
    path: /public/**
    public: true
    rate_limit: {per: client_ip, every: 1h, burst: 2}
  - id: free
    path: /free/**
    public: true
`

// withPolicyFile points the gateway at a policy file of its own.
func withPolicyFile(t *testing.T, text string) envOption {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, text)
	return func(c *config.Config) { c.PolicyFile = path }
}

// TestE2ERateLimitReplicas runs two gateways on one Redis: a rule's rate
// limit is one budget whichever replica a request reaches.
func TestE2ERateLimitReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server and two gateways")
	}
	srv := statetest.StartServer(t)
	const prefix = "rl-replicas:"
	usersFile := filepath.Join(t.TempDir(), "users.yaml")
	writeFile(t, usersFile, "users: []\n")
	reps := newReplicas(t, 2, srv.URL(2), prefix, usersFile, withPolicyFile(t, rateLimitPolicy), func(c *config.Config) {
		c.Redis.Timeout = 2 * time.Second
	})
	for i := range 5 {
		resp, body := reps[i%2].do("GET", "/api/x", "X-API-Key", testAPIKey)
		want := http.StatusOK
		if i >= 3 {
			want = http.StatusTooManyRequests
		}
		if resp.StatusCode != want {
			t.Fatalf("request %d on replica %d = %d %s, want %d", i+1, i%2, resp.StatusCode, body, want)
		}
		if got := resp.Header.Get("RateLimit-Policy"); got != `"api";q=3;w=10800` {
			t.Errorf("RateLimit-Policy = %q", got)
		}
		if want == http.StatusTooManyRequests {
			assertJSONError(t, resp, body, want)
			if ra := resp.Header.Get("Retry-After"); ra == "" || ra == "0" {
				t.Errorf("429 Retry-After = %q, want the wait", ra)
			}
			if !strings.HasPrefix(resp.Header.Get("RateLimit"), `"api";r=0;t=`) {
				t.Errorf("429 RateLimit = %q", resp.Header.Get("RateLimit"))
			}
		}
	}
	// Another key has its own bucket.
	if resp, body := reps[1].do("GET", "/api/x", "X-API-Key", testReaderKey); resp.StatusCode != 200 {
		t.Fatalf("another key = %d %s, want 200", resp.StatusCode, body)
	}
	for i := range 3 {
		want := http.StatusOK
		if i == 2 {
			want = http.StatusTooManyRequests
		}
		if resp, _ := reps[i%2].do("GET", "/public/x"); resp.StatusCode != want {
			t.Fatalf("public request %d = %d, want %d", i+1, resp.StatusCode, want)
		}
	}
	c := rawRedis(t, srv.URL(2))
	keys, err := c.Keys(context.Background(), prefix+"rl:route:*").Result()
	if err != nil || len(keys) != 3 {
		t.Errorf("Redis rate-limit keys = %q, %v; want one per bucket (2 keys, 1 client)", keys, err)
	}
	for _, k := range keys {
		if ttl, err := c.PTTL(context.Background(), k).Result(); err != nil || ttl <= 0 {
			t.Errorf("key %s TTL = %v, %v; want a bounded TTL", k, ttl, err)
		}
	}
	limited := reps[0].metric("authgate_rate_limit_total", `result="limited",rule_id="api"`) +
		reps[1].metric("authgate_rate_limit_total", `result="limited",rule_id="api"`)
	if limited != 2 {
		t.Errorf("limited api requests counted = %v, want 2", limited)
	}
}

// TestE2ERateLimitStoreOutage stops Redis under a gateway: requests of a
// rate-limited rule keep flowing (they were authorized; limits fail open),
// counted as store_error, and the limit applies again once Redis is back.
func TestE2ERateLimitStoreOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and stops redis-server")
	}
	srv := statetest.StartServer(t)
	usersFile := filepath.Join(t.TempDir(), "users.yaml")
	writeFile(t, usersFile, "users: []\n")
	e := newReplicas(t, 1, srv.URL(3), "rl-outage:", usersFile, withPolicyFile(t, rateLimitPolicy), func(c *config.Config) {
		c.Redis.Timeout = 200 * time.Millisecond
	})[0]
	if resp, _ := e.do("GET", "/api/x", "X-API-Key", testAPIKey); resp.StatusCode != 200 {
		t.Fatalf("first request = %d, want 200", resp.StatusCode)
	}
	srv.Stop()
	for i := range 5 {
		start := time.Now()
		resp, body := e.do("GET", "/api/x", "X-API-Key", testAPIKey)
		if resp.StatusCode != 200 {
			t.Fatalf("request %d with Redis down = %d %s, want 200 (limits fail open)", i+1, resp.StatusCode, body)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("request with Redis down took %v", took)
		}
	}
	if got := e.metric("authgate_rate_limit_total", `result="store_error",rule_id="api"`); got != 5 {
		t.Errorf("store_error count = %v, want 5", got)
	}
	if e.logs.FilterMessageSnippet("rate-limit store unavailable").Len() == 0 {
		t.Error("the outage was not logged")
	}
	srv.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for {
		// The bucket from before the outage (1 of 3 spent) is still in
		// Redis; two more pass, then the limit holds again.
		resp, _ := e.do("GET", "/api/x", "X-API-Key", testAPIKey)
		if resp.StatusCode == http.StatusTooManyRequests {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the limit never applied again after Redis came back")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
