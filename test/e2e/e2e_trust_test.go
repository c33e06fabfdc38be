package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/authn/assertion"
	"github.com/authgate/authgate/authn/jwks"
	"github.com/authgate/authgate/authn/token"
	"github.com/authgate/authgate/internal/app"
	"github.com/authgate/authgate/internal/apptest"
	"github.com/authgate/authgate/internal/config"
)

// keyPair is a signing key written as PEM files.
type keyPair struct {
	priv, pub string // PEM contents
	kid       string
	key       any // the public key
}

func newKeyPair(t *testing.T, alg string) keyPair {
	t.Helper()
	k, err := token.GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	priv, _ := token.MarshalPrivateKeyPEM(k)
	pub, _ := token.MarshalPublicKeyPEM(k.Public())
	kid, _ := token.Thumbprint(k.Public())
	registerSecret(strings.TrimSpace(string(priv)))
	return keyPair{priv: string(priv), pub: string(pub), kid: kid, key: k.Public()}
}

// replaceFile writes content next to path and renames it over path, as a
// Secret update or an editor's save does: a reader sees the old or the
// new file, never half of one.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	writeFile(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// verifyingApp is the app behind a gateway: it checks every request's
// assertion with package assertion and records what it verified.
type verifyingApp struct {
	srv     *httptest.Server
	mu      sync.Mutex
	seen    []appSaw
	refused []error
	v       atomic.Pointer[assertion.Verifier]
}

// appSaw is one request the app accepted.
type appSaw struct {
	Principal *assertion.Principal
	Header    http.Header
	Assertion string
	Method    string
	Path      string
	Host      string
}

// newVerifyingApp starts the app unconfigured (its address is needed to
// configure the gateway); trust configures it.
func newVerifyingApp(t *testing.T) *verifyingApp {
	a := &verifyingApp{}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := a.v.Load()
		if v == nil {
			http.Error(w, "not configured", 500)
			return
		}
		v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, _ := assertion.FromContext(r.Context())
			raw, _, _ := strings.Cut(r.RequestURI, "?")
			a.mu.Lock()
			a.seen = append(a.seen, appSaw{Principal: p, Header: r.Header.Clone(), Assertion: r.Header.Get(assertion.Header), Method: r.Method, Path: raw, Host: r.Host})
			a.mu.Unlock()
			_ = json.NewEncoder(w).Encode(map[string]any{"subject": p.Subject, "roles": p.Roles})
		})).ServeHTTP(w, r)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

// trust makes the app verify the assertions of the gateway at gatewayURL.
func (a *verifyingApp) trust(t *testing.T, gatewayURL string) {
	v, err := assertion.New(assertion.Config{JWKSURL: gatewayURL + "/.well-known/jwks.json", Issuer: gatewayURL, Audience: a.srv.URL,
		AllowAnonymous: true, OnError: func(_ *http.Request, err error) { a.mu.Lock(); a.refused = append(a.refused, err); a.mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	a.v.Store(v)
}

func (a *verifyingApp) last(t *testing.T) appSaw {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.seen) == 0 {
		t.Fatalf("the app accepted no request (refused: %v)", a.refused)
	}
	return a.seen[len(a.seen)-1]
}

func (a *verifyingApp) refusals() []error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]error(nil), a.refused...)
}

// trustGateway is a gateway signing with key files, whose jwt.issuer is
// its own URL (so that discovery finds it).
type trustGateway struct {
	*gwEnv
	signing, next, previous string // key file paths
}

type trustOption func(*config.Config)

// startTrustGateway runs a gateway whose tokens are signed with key (the
// current key file), with empty next and previous files, in front of
// upstreamURL. Without users the gateway serves no login.
func startTrustGateway(t *testing.T, key keyPair, upstreamURL string, users bool, opts ...trustOption) *trustGateway {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	e := &gwEnv{t: t, dir: t.TempDir(), up: &recorder{}}
	g := &trustGateway{gwEnv: e, signing: filepath.Join(e.dir, "signing.pem"), next: filepath.Join(e.dir, "next.pem"), previous: filepath.Join(e.dir, "previous.pem")}
	writeFile(t, g.signing, key.priv)
	writeFile(t, g.next, "")
	writeFile(t, g.previous, "")
	writeFile(t, filepath.Join(e.dir, "policy.yaml"), testPolicy)
	writeFile(t, filepath.Join(e.dir, "keys.yaml"), testKeys())
	cfg := config.Default()
	cfg.Path = filepath.Join(e.dir, "config.yaml")
	cfg.Upstream.URL = upstreamURL
	cfg.Upstream.ResponseHeaderTimeout = 5 * time.Second
	cfg.PolicyFile = filepath.Join(e.dir, "policy.yaml")
	cfg.APIKeysFile = filepath.Join(e.dir, "keys.yaml")
	if users {
		writeFile(t, filepath.Join(e.dir, "users.yaml"), testUsers(t, "alice-password-1"))
		cfg.UsersFile = filepath.Join(e.dir, "users.yaml")
	}
	cfg.ReloadInterval = 50 * time.Millisecond
	cfg.Listen.ShutdownDelay = 0
	cfg.Listen.ShutdownTimeout = 5 * time.Second
	cfg.JWT.Issuer = url
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test config invalid: %v", err)
	}
	sec := config.Secrets{KeyFiles: config.KeyFiles{Signing: g.signing, Next: g.next, Previous: g.previous}}
	core, logs := observer.New(zapcore.DebugLevel)
	e.logs = logs
	registerSink(logs)
	a, err := app.New(&cfg, sec, app.Deps{Logger: zap.New(core), Version: "test"})
	if err != nil {
		ln.Close()
		t.Fatalf("app.New: %v", err)
	}
	e.gw = apptest.RunOn(t, a, ln)
	e.app = a
	e.client = &http.Client{Timeout: 10 * time.Second}
	return g
}

// jwksKids fetches the gateway's published kids.
func jwksKids(t *testing.T, baseURL string) []string {
	t.Helper()
	resp, err := http.Get(baseURL + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct{ Keys []struct{ Kid string } }
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range doc.Keys {
		out = append(out, k.Kid)
	}
	return out
}

func headerOf(t *testing.T, tok string) map[string]any {
	t.Helper()
	parsed, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	return parsed.Header
}

// Login tokens signed with EdDSA and ES256 verify through the gateway's
// published keys alone, at the gateway and at anyone who fetches them; the
// metadata names the issuer and the key set; the app behind verifies the
// assertion of every request.
func TestE2ETrustLoginTokensVerifyThroughJWKS(t *testing.T) {
	for _, alg := range []string{token.AlgEdDSA, token.AlgES256} {
		t.Run(alg, func(t *testing.T) {
			key := newKeyPair(t, alg)
			appSrv := newVerifyingApp(t)
			g := startTrustGateway(t, key, appSrv.srv.URL, true)
			appSrv.trust(t, g.gw.URL)
			tr := g.login("alice", "alice-password-1")
			if h := headerOf(t, tr.AccessToken); h["alg"] != alg || h["kid"] != key.kid {
				t.Fatalf("access token header %v, want alg %s kid %s", h, alg, key.kid)
			}
			resp, body := g.do("GET", "/admin/x", "Authorization", "Bearer "+tr.AccessToken)
			if resp.StatusCode != 200 {
				t.Fatalf("GET /admin/x = %d %s (app refused %v)", resp.StatusCode, body, appSrv.refusals())
			}
			saw := appSrv.last(t)
			if saw.Principal.Subject != "alice" || !saw.Principal.HasRole("admin") || saw.Principal.AuthMethod != "jwt" || saw.Header.Get("X-Auth-Subject") != "alice" {
				t.Errorf("app saw %+v, headers %v", saw.Principal, saw.Header)
			}

			// A third party holding only the JWKS verifies the token.
			resp, err := http.Get(g.gw.URL + "/.well-known/jwks.json")
			if err != nil {
				t.Fatal(err)
			}
			jwksBody, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if cc := resp.Header.Get("Cache-Control"); cc != "public, max-age=300" || resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("jwks Cache-Control %q Content-Type %q", cc, resp.Header.Get("Content-Type"))
			}
			if strings.Contains(string(jwksBody), `"d"`) || strings.Contains(string(jwksBody), `"k"`) {
				t.Fatalf("jwks publishes private material: %s", jwksBody)
			}
			var doc struct {
				Keys []token.JWK `json:"keys"`
			}
			_ = json.Unmarshal(jwksBody, &doc)
			if len(doc.Keys) != 1 || doc.Keys[0].Kid != key.kid {
				t.Fatalf("jwks = %s", jwksBody)
			}
			if _, err := jwt.Parse(tr.AccessToken, func(*jwt.Token) (any, error) { return key.key, nil },
				jwt.WithValidMethods([]string{alg}), jwt.WithIssuer(g.gw.URL), jwt.WithAudience("authgate")); err != nil {
				t.Errorf("token does not verify with the published key: %v", err)
			}

			var md map[string]any
			resp, err = http.Get(g.gw.URL + "/.well-known/openid-configuration")
			if err != nil {
				t.Fatal(err)
			}
			_ = json.NewDecoder(resp.Body).Decode(&md)
			resp.Body.Close()
			if md["issuer"] != g.gw.URL || md["jwks_uri"] != g.gw.URL+"/.well-known/jwks.json" || md["token_endpoint"] != g.gw.URL+"/auth/login" {
				t.Errorf("metadata = %v", md)
			}
			// Never proxied: the app never sees these paths, and only GET
			// and HEAD are served.
			n := len(appSrv.seen)
			if resp, _ := g.do("POST", "/.well-known/jwks.json"); resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("POST jwks = %d, want 405", resp.StatusCode)
			}
			if len(appSrv.seen) != n || g.up.count() != 0 {
				t.Error("a /.well-known request reached the app")
			}
		})
	}
}

// One login gateway, one verifying gateway: B lists A under issuers: with
// discovery and takes A's access tokens with no secret shared, never A's
// refresh tokens.
func TestE2ETwoGatewaysDiscovery(t *testing.T) {
	appA, appB := newVerifyingApp(t), newVerifyingApp(t)
	a := startTrustGateway(t, newKeyPair(t, token.AlgEdDSA), appA.srv.URL, true)
	appA.trust(t, a.gw.URL)
	b := startTrustGateway(t, newKeyPair(t, token.AlgES256), appB.srv.URL, false, func(c *config.Config) {
		c.Issuers = []jwks.IssuerConfig{{Issuer: a.gw.URL, Discovery: true, Audiences: []string{"authgate"},
			Algorithms: []string{"EdDSA", "ES256"}, RolesClaim: "roles"}}
	})
	appB.trust(t, b.gw.URL)
	waitReady(t, b.gwEnv, 200)

	tr := a.login("alice", "alice-password-1")
	resp, body := b.do("GET", "/admin/x", "Authorization", "Bearer "+tr.AccessToken)
	if resp.StatusCode != 200 {
		t.Fatalf("B: GET /admin/x with A's token = %d %s (app refused %v)", resp.StatusCode, body, appB.refusals())
	}
	saw := appB.last(t)
	if saw.Header.Get("X-Auth-Method") != "external" || saw.Header.Get("X-Auth-Issuer") != a.gw.URL || saw.Header.Get("X-Auth-Roles") != "admin,user" {
		t.Errorf("B's upstream got %v", saw.Header)
	}
	if saw.Principal.Subject != "alice" || saw.Principal.OriginalIssuer != a.gw.URL || saw.Principal.AuthMethod != "external" {
		t.Errorf("B's assertion vouches for %+v", saw.Principal)
	}
	for name, tok := range map[string]string{
		"A's refresh token":            tr.RefreshToken,
		"A's token, signature changed": tr.AccessToken[:len(tr.AccessToken)-4] + "AAAA",
	} {
		if resp, body := b.do("GET", "/api/x", "Authorization", "Bearer "+tok); resp.StatusCode != 401 {
			t.Errorf("B: %s = %d %s, want 401", name, resp.StatusCode, body)
		}
	}
}

// Rotation by file changes only: publish the next key, promote it (the
// current key becomes previous), retire the previous key. Tokens and
// assertions of both keys keep working at the gateway, at a second
// gateway that trusts it by discovery, and at the app, with no failed
// request; after retirement the old key's tokens stop.
func TestE2ERotationWithoutAFlagDay(t *testing.T) {
	if testing.Short() {
		t.Skip("rotation runs load across three reloads; skipped under -short")
	}
	k1, k2 := newKeyPair(t, token.AlgEdDSA), newKeyPair(t, token.AlgEdDSA)
	appA, appB := newVerifyingApp(t), newVerifyingApp(t)
	a := startTrustGateway(t, k1, appA.srv.URL, true, func(c *config.Config) { c.JWT.JWKSMaxAge = time.Second })
	appA.trust(t, a.gw.URL)
	b := startTrustGateway(t, newKeyPair(t, token.AlgEdDSA), appB.srv.URL, false, func(c *config.Config) {
		c.Issuers = []jwks.IssuerConfig{{Issuer: a.gw.URL, Discovery: true, Audiences: []string{"authgate"}, Algorithms: []string{"EdDSA"}, RolesClaim: "roles"}}
		c.JWKS.MinRefresh = time.Second
	})
	appB.trust(t, b.gw.URL)
	waitReady(t, b.gwEnv, 200)
	old := a.login("alice", "alice-password-1").AccessToken

	var (
		tokens   atomic.Pointer[[]string]
		failures atomic.Int64
		requests atomic.Int64
		failMu   sync.Mutex
		failed   []string
	)
	tokens.Store(&[]string{old})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	wg.Go(func() {
		for ctx.Err() == nil {
			for _, tok := range *tokens.Load() {
				for _, gw := range []string{a.gw.URL, b.gw.URL} {
					req, _ := http.NewRequest("GET", gw+"/api/rotation", nil)
					req.Header.Set("Authorization", "Bearer "+tok)
					resp, err := client.Do(req)
					requests.Add(1)
					if err != nil || resp.StatusCode != 200 {
						failures.Add(1)
						failMu.Lock()
						if err != nil {
							failed = append(failed, err.Error())
						} else {
							failed = append(failed, gw+" "+resp.Status+" kid "+headerOf(t, tok)["kid"].(string))
						}
						failMu.Unlock()
					}
					if resp != nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
	})
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				cancel()
				wg.Wait()
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	published := func(kids ...string) func() bool {
		return func() bool {
			got := strings.Join(jwksKids(t, a.gw.URL), ",")
			for _, k := range kids {
				if !strings.Contains(got, k) {
					return false
				}
			}
			return true
		}
	}
	settle := func() { time.Sleep(1500 * time.Millisecond) } // > jwks_max_age and B's min_refresh

	// 1. Publish k2 as next: it verifies, it does not sign.
	replaceFile(t, a.next, k2.pub)
	waitFor("k2 published", published(k1.kid, k2.kid))
	if kid := headerOf(t, a.login("alice", "alice-password-1").AccessToken)["kid"]; kid != k1.kid {
		t.Fatalf("a next key signs: kid %v", kid)
	}
	settle()

	// 2. Promote: previous <- k1, current <- k2, next <- empty, in that
	// order, one file at a time.
	replaceFile(t, a.previous, k1.pub)
	replaceFile(t, a.signing, k2.priv)
	replaceFile(t, a.next, "")
	var fresh string
	waitFor("k2 signs", func() bool {
		fresh = a.login("alice", "alice-password-1").AccessToken
		return headerOf(t, fresh)["kid"] == k2.kid
	})
	tokens.Store(&[]string{old, fresh})
	settle()

	// 3. Retire k1 once its tokens are no longer used (here: stop sending
	// them; in production: after jwt.access_ttl).
	tokens.Store(&[]string{fresh})
	time.Sleep(100 * time.Millisecond)
	replaceFile(t, a.previous, "")
	waitFor("k1 retired", func() bool { return !strings.Contains(strings.Join(jwksKids(t, a.gw.URL), ","), k1.kid) })
	settle()
	cancel()
	wg.Wait()

	if n := failures.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed during the rotation: %v", n, requests.Load(), failed)
	}
	if requests.Load() < 50 {
		t.Fatalf("only %d requests ran across the rotation", requests.Load())
	}
	if r := append(appA.refusals(), appB.refusals()...); len(r) != 0 {
		t.Fatalf("the apps refused assertions during the rotation: %v", r)
	}
	if got := a.bearerStatus("/api/x", old); got != 401 {
		t.Errorf("A: token of the retired key = %d, want 401", got)
	}
	waitFor("B refuses the retired key", func() bool { return b.bearerStatus("/api/x", old) == 401 })
	t.Logf("%d requests across publish, promote and retire, none failed", requests.Load())
}

// A captured assertion proves nothing for another path, method or host,
// and a request straight to the app, with no assertion or a forged one,
// is refused whatever identity headers it carries.
func TestE2EAssertionReplayAndBypassGo(t *testing.T) {
	appSrv := newVerifyingApp(t)
	g := startTrustGateway(t, newKeyPair(t, token.AlgEdDSA), appSrv.srv.URL, false)
	appSrv.trust(t, g.gw.URL)
	if resp, body := g.do("GET", "/api/orders", "X-API-Key", testAPIKey); resp.StatusCode != 200 {
		t.Fatalf("through the gateway: %d %s", resp.StatusCode, body)
	}
	captured := appSrv.last(t)
	checkReplayAndBypass(t, appSrv.srv.URL, g.gw.URL, captured.Assertion, captured.Host)
	for _, err := range appSrv.refusals() {
		if !errors.Is(err, assertion.ErrBinding) && !errors.Is(err, assertion.ErrMissing) && !errors.Is(err, assertion.ErrInvalid) {
			t.Errorf("refusal of an unexpected kind: %v", err)
		}
	}
}

// checkReplayAndBypass sends the captured assertion of GET /api/orders
// (Host host) straight to the app at appURL on other requests, and
// requests with no or a forged assertion; every one must get 401.
func checkReplayAndBypass(t *testing.T, appURL, issuer, captured, host string) {
	t.Helper()
	forgedKey, _ := token.GenerateKey(token.AlgEdDSA)
	ks, _ := token.NewKeySetFrom(token.Material{Signing: forgedKey})
	as, _ := token.NewAsserter(ks, token.AssertionSettings{Issuer: issuer, Audience: appURL, TTL: 30 * time.Second})
	cases := []struct {
		name, method, path, host, assertion string
	}{
		{"replayed on another path", "GET", "/api/orders/1", host, captured},
		{"replayed with another method", "DELETE", "/api/orders", host, captured},
		{"replayed to another host", "GET", "/api/orders", "other.example.com", captured},
		{"bypass: no assertion, forged identity headers", "GET", "/api/orders", host, ""},
		{"bypass: assertion forged with another key", "GET", "/api/orders", host, forgeAssertion(t, as, host)},
	}
	for _, tc := range cases {
		req, _ := http.NewRequest(tc.method, appURL+tc.path, nil)
		req.Host = tc.host
		req.Header.Set("X-Auth-Subject", "admin")
		req.Header.Set("X-Auth-Roles", "admin")
		if tc.assertion != "" {
			req.Header.Set("X-Auth-Assertion", tc.assertion)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Errorf("%s: app answered %d %s, want 401", tc.name, resp.StatusCode, body)
		}
	}
}

// forgeAssertion signs a perfect assertion for an admin with a key the
// gateway never published.
func forgeAssertion(t *testing.T, as *token.Asserter, host string) string {
	t.Helper()
	raw, err := as.Assert(authn.Principal{Subject: "admin", Roles: []string{"admin"}, Method: authn.MethodJWT}, "GET", strings.ToLower(host), "/api/orders")
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
