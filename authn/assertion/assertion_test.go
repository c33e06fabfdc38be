package assertion_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/authn/assertion"
	"github.com/authgate/authgate/authn/token"
)

const (
	issuer   = "https://login.example.com"
	audience = "http://app.internal:8081"
)

// fakeGateway publishes keys and signs assertions the way authgate does,
// with golang-jwt only.
type fakeGateway struct {
	t       *testing.T
	ed      ed25519.PrivateKey
	ec      *ecdsa.PrivateKey
	srv     *httptest.Server
	fetches atomic.Int32
	extra   []map[string]string // more published keys
}

func newFakeGateway(t *testing.T) *fakeGateway {
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	g := &fakeGateway{t: t, ed: ed, ec: ec}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.fetches.Add(1)
		b64 := base64.RawURLEncoding.EncodeToString
		raw, _ := ec.PublicKey.Bytes()
		keys := []map[string]string{
			{"kty": "OKP", "crv": "Ed25519", "x": b64(ed.Public().(ed25519.PublicKey)), "kid": "ed", "alg": "EdDSA", "use": "sig"},
			{"kty": "EC", "crv": "P-256", "x": b64(raw[1:33]), "y": b64(raw[33:]), "kid": "ec", "alg": "ES256", "use": "sig"},
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": append(keys, g.extra...)})
	}))
	t.Cleanup(g.srv.Close)
	return g
}

func (g *fakeGateway) jwksURL() string { return g.srv.URL + "/.well-known/jwks.json" }

func (g *fakeGateway) claims(req assertion.Request) *assertion.Claims {
	now := time.Now().Truncate(time.Second)
	return &assertion.Claims{
		RegisteredClaims: jwt.RegisteredClaims{Issuer: issuer, Audience: jwt.ClaimStrings{audience}, Subject: "alice",
			IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(30 * time.Second)), ID: "j1"},
		Roles: []string{"admin", "user"}, AuthMethod: "jwt", OriginalIssuer: issuer, Request: &req,
	}
}

func (g *fakeGateway) sign(c jwt.Claims, alg string, hdr map[string]any) string {
	m, key, kid := jwt.SigningMethod(jwt.SigningMethodEdDSA), any(g.ed), "ed"
	if alg == "ES256" {
		m, key, kid = jwt.SigningMethodES256, g.ec, "ec"
	}
	tok := jwt.NewWithClaims(m, c)
	tok.Header["kid"], tok.Header["typ"] = kid, assertion.Type
	for k, v := range hdr {
		if v == nil {
			delete(tok.Header, k)
		} else {
			tok.Header[k] = v
		}
	}
	s, err := tok.SignedString(key)
	if err != nil {
		g.t.Fatal(err)
	}
	return s
}

func newVerifier(t *testing.T, g *fakeGateway, mod ...func(*assertion.Config)) *assertion.Verifier {
	t.Helper()
	c := assertion.Config{JWKSURL: g.jwksURL(), Issuer: issuer, Audience: audience}
	for _, m := range mod {
		m(&c)
	}
	v, err := assertion.New(c)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// request builds a request as the app receives it from the gateway.
func request(method, host, target, header string) *http.Request {
	r := httptest.NewRequest(method, "http://"+host+target, nil)
	r.Host = host
	r.RequestURI = target
	if header != "" {
		r.Header.Set(assertion.Header, header)
	}
	return r
}

var bound = assertion.Request{Method: "GET", Host: "app.example.com", Path: "/api/items/a%2Fb"}

func TestVerify(t *testing.T) {
	g := newFakeGateway(t)
	v := newVerifier(t, g)
	for _, alg := range []string{"EdDSA", "ES256"} {
		p, err := v.Verify(request("GET", "App.Example.com", "/api/items/a%2Fb?page=2", g.sign(g.claims(bound), alg, nil)))
		if err != nil || p.Subject != "alice" || !p.HasRole("admin") || p.Anonymous() || p.AuthMethod != "jwt" {
			t.Fatalf("%s: Verify() = %+v, %v", alg, p, err)
		}
	}
}

// Every promise has its attack: each case is refused, with the error class
// an app logs.
func TestVerifyRefuses(t *testing.T) {
	g := newFakeGateway(t)
	v := newVerifier(t, g)
	good := func(mod func(*assertion.Claims)) string {
		c := g.claims(bound)
		if mod != nil {
			mod(c)
		}
		return g.sign(c, "EdDSA", nil)
	}
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	forged := jwt.NewWithClaims(jwt.SigningMethodEdDSA, g.claims(bound))
	forged.Header["kid"], forged.Header["typ"] = "ed", assertion.Type
	forgedRaw, _ := forged.SignedString(otherKey)
	hsTok := jwt.NewWithClaims(jwt.SigningMethodHS256, g.claims(bound))
	hsTok.Header["kid"], hsTok.Header["typ"] = "ed", assertion.Type
	hs, _ := hsTok.SignedString([]byte(g.ed.Public().(ed25519.PublicKey)))
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, g.claims(bound)).SignedString(jwt.UnsafeAllowNoneSignatureType)

	tests := []struct {
		name string
		r    *http.Request
		want error
	}{
		{"no header (sidecar bypassed)", request("GET", "app.example.com", bound.Path, ""), assertion.ErrMissing},
		{"replayed on another path", request("GET", "app.example.com", "/api/items/other", good(nil)), assertion.ErrBinding},
		{"replayed on a decoded form of the path", request("GET", "app.example.com", "/api/items/a/b", good(nil)), assertion.ErrBinding},
		{"replayed with another method", request("DELETE", "app.example.com", bound.Path, good(nil)), assertion.ErrBinding},
		{"replayed to another host", request("GET", "evil.example.com", bound.Path, good(nil)), assertion.ErrBinding},
		{"forged with another key", request("GET", "app.example.com", bound.Path, forgedRaw), assertion.ErrInvalid},
		{"HS256 keyed with the public key", request("GET", "app.example.com", bound.Path, hs), assertion.ErrInvalid},
		{"alg none", request("GET", "app.example.com", bound.Path, none), assertion.ErrInvalid},
		{"wrong audience", request("GET", "app.example.com", bound.Path, good(func(c *assertion.Claims) { c.Audience = jwt.ClaimStrings{"other"} })), assertion.ErrInvalid},
		{"wrong issuer", request("GET", "app.example.com", bound.Path, good(func(c *assertion.Claims) { c.Issuer = "https://evil" })), assertion.ErrInvalid},
		{"expired", request("GET", "app.example.com", bound.Path, good(func(c *assertion.Claims) {
			c.IssuedAt = jwt.NewNumericDate(time.Now().Add(-2 * time.Minute))
			c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-90 * time.Second))
		})), assertion.ErrInvalid},
		{"lives over 60s", request("GET", "app.example.com", bound.Path, good(func(c *assertion.Claims) { c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(15 * time.Minute)) })), assertion.ErrInvalid},
		{"no binding", request("GET", "app.example.com", bound.Path, good(func(c *assertion.Claims) { c.Request = nil })), assertion.ErrInvalid},
		{"not typed as an assertion (an access token)", request("GET", "app.example.com", bound.Path, g.sign(g.claims(bound), "EdDSA", map[string]any{"typ": "JWT"})), assertion.ErrInvalid},
		{"key injected in the header", request("GET", "app.example.com", bound.Path, g.sign(g.claims(bound), "EdDSA", map[string]any{"jwk": map[string]string{"kty": "OKP"}})), assertion.ErrInvalid},
		{"kid of the other algorithm's key", request("GET", "app.example.com", bound.Path, g.sign(g.claims(bound), "EdDSA", map[string]any{"kid": "ec"})), assertion.ErrInvalid},
		{"anonymous where not allowed", request("GET", "app.example.com", bound.Path, good(func(c *assertion.Claims) { c.Subject, c.AuthMethod, c.Roles = "", "none", nil })), assertion.ErrAnonymous},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if p, err := v.Verify(tt.r); !errors.Is(err, tt.want) {
				t.Errorf("Verify() = %+v, %v; want %v", p, err, tt.want)
			}
		})
	}
	two := request("GET", "app.example.com", bound.Path, good(nil))
	two.Header.Add(assertion.Header, good(nil))
	if _, err := v.Verify(two); !errors.Is(err, assertion.ErrInvalid) {
		t.Errorf("two assertion headers: %v", err)
	}
}

func TestAnonymousAllowed(t *testing.T) {
	g := newFakeGateway(t)
	v := newVerifier(t, g, func(c *assertion.Config) { c.AllowAnonymous = true })
	c := g.claims(bound)
	c.Subject, c.AuthMethod, c.Roles = "", assertion.MethodNone, nil
	p, err := v.Verify(request("GET", "app.example.com", bound.Path, g.sign(c, "EdDSA", nil)))
	if err != nil || !p.Anonymous() || p.Subject != "" {
		t.Fatalf("Verify(anonymous) = %+v, %v", p, err)
	}
}

// Keys are fetched once and reused; an unknown kid (a rotation) fetches
// again at once, but a flood of unknown kids fetches at most once per
// cooldown.
func TestKeyFetching(t *testing.T) {
	g := newFakeGateway(t)
	v := newVerifier(t, g)
	for range 5 {
		if _, err := v.Verify(request("GET", "app.example.com", bound.Path, g.sign(g.claims(bound), "EdDSA", nil))); err != nil {
			t.Fatal(err)
		}
	}
	if n := g.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches for 5 requests, want 1", n)
	}
	// The gateway rotates: a new key appears.
	_, k2, _ := ed25519.GenerateKey(rand.Reader)
	g.extra = []map[string]string{{"kty": "OKP", "crv": "Ed25519", "x": base64.RawURLEncoding.EncodeToString(k2.Public().(ed25519.PublicKey)), "kid": "k2", "alg": "EdDSA"}}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, g.claims(bound))
	tok.Header["kid"], tok.Header["typ"] = "k2", assertion.Type
	raw, _ := tok.SignedString(k2)
	if _, err := v.Verify(request("GET", "app.example.com", bound.Path, raw)); err != nil {
		t.Fatalf("assertion of a freshly published key: %v", err)
	}
	before := g.fetches.Load()
	for i := range 20 {
		r := request("GET", "app.example.com", bound.Path, g.sign(g.claims(bound), "EdDSA", map[string]any{"kid": "random-" + string(rune('a'+i))}))
		_, _ = v.Verify(r)
	}
	if n := g.fetches.Load() - before; n > 1 {
		t.Errorf("20 unknown kids caused %d fetches, want at most 1", n)
	}
}

func TestMiddleware(t *testing.T) {
	g := newFakeGateway(t)
	var refused []error
	v := newVerifier(t, g, func(c *assertion.Config) {
		c.OnError = func(_ *http.Request, err error) { refused = append(refused, err) }
	})
	h := v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := assertion.FromContext(r.Context())
		_, _ = w.Write([]byte(p.Subject))
	}))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, request("GET", "app.example.com", bound.Path, g.sign(g.claims(bound), "EdDSA", nil)))
	if w.Code != 200 || w.Body.String() != "alice" {
		t.Fatalf("admitted request: %d %q", w.Code, w.Body)
	}
	w = httptest.NewRecorder()
	r := request("GET", "app.example.com", bound.Path, "")
	r.Header.Set("X-Auth-Subject", "admin") // a bypassing client's identity header
	h.ServeHTTP(w, r)
	if w.Code != 401 || !strings.Contains(w.Body.String(), "did not come through the gateway") || len(refused) != 1 {
		t.Fatalf("bypassing request: %d %q, refusals %v", w.Code, w.Body, refused)
	}
}

func TestNewValidates(t *testing.T) {
	for _, c := range []assertion.Config{
		{Issuer: issuer, Audience: audience},
		{JWKSURL: "http://gateway.example.com/.well-known/jwks.json", Issuer: issuer, Audience: audience},
		{JWKSURL: "https://x/jwks", Audience: audience},
		{JWKSURL: "https://x/jwks", Issuer: issuer},
	} {
		if _, err := assertion.New(c); err == nil {
			t.Errorf("New(%+v) succeeded", c)
		}
	}
}

// The gateway's own signer and this package agree: what token.Asserter
// signs, Verify accepts, bound exactly as the proxy binds it.
func TestGatewaySignerInterop(t *testing.T) {
	for _, alg := range []string{token.AlgEdDSA, token.AlgES256} {
		priv, _ := token.GenerateKey(alg)
		ks, err := token.NewKeySetFrom(token.Material{Signing: priv})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(ks.JWKS()) }))
		defer srv.Close()
		a, err := token.NewAsserter(ks, token.AssertionSettings{Issuer: issuer, Audience: audience, TTL: 30 * time.Second, CacheSize: 10})
		if err != nil {
			t.Fatal(err)
		}
		p := authn.Principal{Subject: "alice", Roles: []string{"admin"}, Method: authn.MethodJWT, Issuer: issuer, ClaimValues: map[string]string{"email": "a@example.com"}}
		raw, err := a.Assert(p, "POST", "app.example.com", "/api/x")
		if err != nil {
			t.Fatal(err)
		}
		v, _ := assertion.New(assertion.Config{JWKSURL: srv.URL, Issuer: issuer, Audience: audience})
		got, err := v.Verify(request("POST", "app.example.com", "/api/x", raw))
		if err != nil || got.Subject != "alice" || got.Claims["email"] != "a@example.com" || got.OriginalIssuer != issuer {
			t.Fatalf("%s: Verify(gateway assertion) = %+v, %v", alg, got, err)
		}
		if _, err := v.Verify(request("POST", "app.example.com", "/api/y", raw)); !errors.Is(err, assertion.ErrBinding) {
			t.Fatalf("%s: replay on another path: %v", alg, err)
		}
	}
}
