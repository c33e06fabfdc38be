package jwks

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/authn/jose"
	"github.com/authgate/authgate/authn/jwks/jwkstest"
)

// fakeClock is an injectable clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fixture struct {
	idp   *jwkstest.IdP
	clock *fakeClock
	set   *Set
	v     authn.TokenVerifier
	reg   *prometheus.Registry
}

// newFixture builds a Set for one fake IdP. mod may adjust the issuer and
// cache configuration before New.
func newFixture(t testing.TB, mod func(*IssuerConfig, *CacheConfig)) *fixture {
	t.Helper()
	idp := jwkstest.NewIdP(t)
	clock := newClock()
	ic := IssuerConfig{
		Issuer:     idp.Issuer(),
		Discovery:  true,
		Audiences:  []string{"api", "other"},
		Algorithms: []string{"RS256", "PS256", "ES256", "EdDSA"},
		RolesClaim: "roles",
	}
	cc := DefaultCacheConfig()
	if mod != nil {
		mod(&ic, &cc)
	}
	reg := prometheus.NewRegistry()
	set, err := New([]IssuerConfig{ic}, cc, Options{Now: clock.Now, Registerer: reg})
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	t.Cleanup(set.Close)
	return &fixture{idp: idp, clock: clock, set: set, v: set.Verifiers()[0], reg: reg}
}

// claims returns a valid claim set at the fixture's current time.
func (f *fixture) claims(extra jwt.MapClaims) jwt.MapClaims {
	now := f.clock.Now()
	c := jwt.MapClaims{
		"iss": f.idp.Issuer(),
		"sub": "alice",
		"aud": "api",
		"exp": now.Add(time.Hour).Unix(),
		"iat": now.Unix(),
		"jti": "token-1",
	}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

// counter returns the value of a counter in the fixture's registry.
func (f *fixture) counter(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatalf("Gather() error = %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue metric
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

func TestVerifyAcceptsAlgorithms(t *testing.T) {
	f := newFixture(t, nil)
	for _, alg := range []string{"RS256", "PS256", "ES256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			tok := f.idp.Sign(f.claims(jwt.MapClaims{"roles": []string{"user", "admin", "user"}}), alg)
			p, err := f.v.Verify(context.Background(), tok)
			if err != nil {
				t.Fatalf("Verify(%s token) error = %v", alg, err)
			}
			want := authn.Principal{
				Subject:   "alice",
				Roles:     []string{"admin", "user"},
				Method:    authn.MethodExternal,
				Issuer:    f.idp.Issuer(),
				TokenID:   "token-1",
				ExpiresAt: f.clock.Now().Add(time.Hour),
			}
			if p.Subject != want.Subject || !slices.Equal(p.Roles, want.Roles) || p.Method != want.Method ||
				p.Issuer != want.Issuer || p.TokenID != want.TokenID || !p.ExpiresAt.Equal(want.ExpiresAt) {
				t.Errorf("Verify(%s token) = %+v, want %+v", alg, p, want)
			}
		})
	}
	if got := f.idp.FetchCount(); got != 1 {
		t.Errorf("FetchCount() = %d, want 1", got)
	}
}

func TestVerifyExplicitJWKSURI(t *testing.T) {
	idp := jwkstest.NewIdP(t)
	set, err := New([]IssuerConfig{{Issuer: "https://idp.example", JWKSURI: idp.JWKSURI(), Audiences: []string{"api"}}},
		DefaultCacheConfig(), Options{})
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	defer set.Close()
	now := time.Now()
	tok := idp.Sign(jwt.MapClaims{"iss": "https://idp.example", "sub": "bob", "aud": []string{"x", "api"}, "exp": now.Add(time.Minute).Unix()}, "RS256")
	p, err := set.Verifiers()[0].Verify(context.Background(), tok)
	if err != nil || p.Subject != "bob" {
		t.Fatalf("Verify() = %+v, %v; want subject bob", p, err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	_, err := New([]IssuerConfig{{Issuer: "https://a"}}, DefaultCacheConfig(), Options{})
	if err == nil {
		t.Fatal("New(issuer without audiences or key source) error = nil, want error")
	}
}

// noneToken builds an unsigned token with the given header alg.
func unsignedToken(t *testing.T, header map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding.EncodeToString
	return enc(h) + "." + enc(c) + "."
}

func TestVerifyRejects(t *testing.T) {
	f := newFixture(t, nil)
	other := jwkstest.NewIdP(t)
	now := f.clock.Now()

	rsaPub, err := x509.MarshalPKIXPublicKey(f.idp.PublicKey("RS256"))
	if err != nil {
		t.Fatal(err)
	}
	pemPub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsaPub})
	hsToken := func(secret []byte) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, f.claims(nil))
		tok.Header["kid"] = f.idp.Kid("RS256")
		s, err := tok.SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	dupPayload := fmt.Sprintf(`{"iss":%q,"sub":"alice","aud":"api","exp":%d,"roles":["user"],"ROLES":["admin"]}`,
		f.idp.Issuer(), now.Add(time.Hour).Unix())
	exactDup := fmt.Sprintf(`{"iss":%q,"sub":"alice","aud":"api","exp":%d,"sub":"root"}`,
		f.idp.Issuer(), now.Add(time.Hour).Unix())
	kelvinDup := fmt.Sprintf(`{"iss":%q,"sub":"alice","aud":"api","exp":%d,"kind":"a","\u212aind":"b"}`,
		f.idp.Issuer(), now.Add(time.Hour).Unix())
	upperExp := fmt.Sprintf(`{"iss":%q,"sub":"alice","aud":"api","EXP":%d}`,
		f.idp.Issuer(), now.Add(time.Hour).Unix())

	tests := []struct {
		name  string
		token string
	}{
		{"alg none", unsignedToken(t, map[string]any{"alg": "none", "kid": f.idp.Kid("RS256")}, f.claims(nil))},
		{"alg none without kid", unsignedToken(t, map[string]any{"alg": "none"}, f.claims(nil))},
		{"HS256 with RSA public key PEM as secret", hsToken(pemPub)},
		{"HS256 with RSA public key DER as secret", hsToken(rsaPub)},
		{"wrong iss", f.idp.Sign(f.claims(jwt.MapClaims{"iss": "https://evil.example"}), "RS256")},
		{"iss with trailing slash", f.idp.Sign(f.claims(jwt.MapClaims{"iss": f.idp.Issuer() + "/"}), "RS256")},
		{"missing iss", f.idp.Sign(f.claims(jwt.MapClaims{"iss": nil}), "RS256")},
		{"wrong aud", f.idp.Sign(f.claims(jwt.MapClaims{"aud": "somebody-else"}), "RS256")},
		{"missing aud", f.idp.Sign(f.claims(jwt.MapClaims{"aud": nil}), "RS256")},
		{"missing exp", f.idp.Sign(f.claims(jwt.MapClaims{"exp": nil}), "RS256")},
		{"exp zero", f.idp.Sign(f.claims(jwt.MapClaims{"exp": 0}), "RS256")},
		{"exp as string", f.idp.Sign(f.claims(jwt.MapClaims{"exp": "tomorrow"}), "RS256")},
		{"upper-case EXP only", f.idp.SignPayload([]byte(upperExp), "ES256")},
		{"expired", f.idp.Sign(f.claims(jwt.MapClaims{"exp": now.Add(-time.Hour).Unix()}), "RS256")},
		{"expired beyond leeway", f.idp.Sign(f.claims(jwt.MapClaims{"exp": now.Add(-31 * time.Second).Unix()}), "ES256")},
		{"nbf in future", f.idp.Sign(f.claims(jwt.MapClaims{"nbf": now.Add(time.Hour).Unix()}), "RS256")},
		{"iat in future", f.idp.Sign(f.claims(jwt.MapClaims{"iat": now.Add(time.Hour).Unix()}), "RS256")},
		{"missing sub", f.idp.Sign(f.claims(jwt.MapClaims{"sub": nil}), "RS256")},
		{"jku header", f.idp.SignWithHeader(f.claims(nil), "RS256", map[string]any{"jku": "https://evil.example/jwks"})},
		{"x5u header", f.idp.SignWithHeader(f.claims(nil), "RS256", map[string]any{"x5u": "https://evil.example/cert"})},
		{"jwk header", f.idp.SignWithHeader(f.claims(nil), "EdDSA", map[string]any{"jwk": map[string]string{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}})},
		{"x5c header", f.idp.SignWithHeader(f.claims(nil), "RS256", map[string]any{"x5c": []string{"MIIB"}})},
		{"crit header", f.idp.SignWithHeader(f.claims(nil), "RS256", map[string]any{"crit": []string{"exp"}})},
		{"kid not a string", f.idp.SignWithHeader(f.claims(nil), "RS256", map[string]any{"kid": 7})},
		{"signed by another issuer's key", other.Sign(f.claims(nil), "RS256")},
		{"unknown kid", f.idp.SignWithHeader(f.claims(nil), "ES256", map[string]any{"kid": "nope"})},
		{"RS256 with the kid of the EC key", f.idp.SignWithHeader(f.claims(nil), "RS256", map[string]any{"kid": f.idp.Kid("ES256")})},
		{"PS256 with the kid of the RS256-only key", f.idp.SignWithHeader(f.claims(nil), "PS256", map[string]any{"kid": f.idp.Kid("RS256")})},
		{"case-variant duplicate claims", f.idp.SignPayload([]byte(dupPayload), "ES256")},
		{"exact duplicate claims", f.idp.SignPayload([]byte(exactDup), "ES256")},
		{"unicode case-fold duplicate claims", f.idp.SignPayload([]byte(kelvinDup), "ES256")},
		{"tampered signature", func() string {
			s := f.idp.Sign(f.claims(nil), "ES256")
			return s[:len(s)-4] + "AAAA"
		}()},
		{"tampered payload", func() string {
			parts := strings.Split(f.idp.Sign(f.claims(nil), "RS256"), ".")
			parts[1] = base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"root"}`))
			return strings.Join(parts, ".")
		}()},
		{"roles claim of wrong type", f.idp.Sign(f.claims(jwt.MapClaims{"roles": 42}), "RS256")},
		{"garbage", "not.a.token"},
		{"empty", ""},
		{"too large", strings.Repeat("a", jose.MaxTokenBytes+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := f.v.Verify(context.Background(), tt.token)
			if err == nil {
				t.Fatalf("Verify(%s) = %+v, nil; want error", tt.name, p)
			}
			if !errors.Is(err, authn.ErrInvalidToken) {
				t.Errorf("Verify(%s) error = %v; want it to wrap authn.ErrInvalidToken", tt.name, err)
			}
			if tt.token != "" && strings.Contains(err.Error(), tt.token) {
				t.Errorf("Verify(%s) error contains the token", tt.name)
			}
			if p.Authenticated() {
				t.Errorf("Verify(%s) returned an authenticated principal with an error", tt.name)
			}
			// The same token, decoded beforehand as the bearer
			// authenticator hands it on, is refused the same way.
			if d, err := jose.Decode(tt.token); err == nil {
				p, err := f.v.(authn.DecodedVerifier).VerifyDecoded(context.Background(), tt.token, d)
				if !errors.Is(err, authn.ErrInvalidToken) || p.Authenticated() {
					t.Errorf("VerifyDecoded(%s) = %+v, %v; want ErrInvalidToken", tt.name, p, err)
				}
			}
		})
	}
}

// A decoded token verifies to the same principal as the raw one.
func TestVerifyDecodedMatchesVerify(t *testing.T) {
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		f := newFixture(t, func(ic *IssuerConfig, _ *CacheConfig) { ic.Algorithms = []string{alg} })
		tok := f.idp.Sign(f.claims(jwt.MapClaims{"roles": []string{"user"}}), alg)
		d, err := jose.Decode(tok)
		if err != nil {
			t.Fatal(err)
		}
		got, err := f.v.(authn.DecodedVerifier).VerifyDecoded(context.Background(), tok, d)
		if err != nil {
			t.Fatalf("%s: VerifyDecoded: %v", alg, err)
		}
		want, err := f.v.Verify(context.Background(), tok) // now a cache hit
		if err != nil {
			t.Fatalf("%s: Verify: %v", alg, err)
		}
		if got.Subject != want.Subject || !slices.Equal(got.Roles, want.Roles) || got.Issuer != want.Issuer || !got.ExpiresAt.Equal(want.ExpiresAt) || got.Subject == "" {
			t.Errorf("%s: VerifyDecoded = %+v, Verify = %+v; want the same caller", alg, got, want)
		}
	}
}

func TestVerifyAlgorithmAllowList(t *testing.T) {
	f := newFixture(t, func(ic *IssuerConfig, _ *CacheConfig) { ic.Algorithms = nil }) // default [RS256]
	if _, err := f.v.Verify(context.Background(), f.idp.Sign(f.claims(nil), "RS256")); err != nil {
		t.Fatalf("Verify(RS256) error = %v, want nil", err)
	}
	for _, alg := range []string{"PS256", "ES256", "EdDSA"} {
		if _, err := f.v.Verify(context.Background(), f.idp.Sign(f.claims(nil), alg)); !errors.Is(err, authn.ErrInvalidToken) {
			t.Errorf("Verify(%s) with default allow-list error = %v, want ErrInvalidToken", alg, err)
		}
	}
}

func TestVerifyWithinLeeway(t *testing.T) {
	f := newFixture(t, func(_ *IssuerConfig, cc *CacheConfig) { cc.TokenCacheSize = 0 })
	now := f.clock.Now()
	tok := f.idp.Sign(f.claims(jwt.MapClaims{"exp": now.Add(-10 * time.Second).Unix(), "nbf": now.Add(10 * time.Second).Unix()}), "ES256")
	if _, err := f.v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("Verify(token 10s past exp, leeway 30s) error = %v, want nil", err)
	}
}

func TestVerifyWithoutKid(t *testing.T) {
	f := newFixture(t, nil)
	tok := f.idp.SignWithHeader(f.claims(nil), "EdDSA", map[string]any{"kid": nil})
	if _, err := f.v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("Verify(token without kid, one Ed25519 key) error = %v, want nil", err)
	}
}

func TestKeySetLookupWithoutKidAmbiguous(t *testing.T) {
	a := &publicKey{kid: "a", kind: kindRSA, fingerprint: "a"}
	b := &publicKey{kid: "b", kind: kindRSA, fingerprint: "b"}
	e := &publicKey{kid: "e", kind: kindEC, crv: "P-256", fingerprint: "e"}
	set := &keySet{byKid: map[string][]*publicKey{"a": {a}, "b": {b}, "e": {e}}, all: []*publicKey{a, b, e}}
	tests := []struct {
		kid, alg  string
		want      *publicKey
		wantFound bool
	}{
		{"", "RS256", nil, true}, // two RSA keys: ambiguous
		{"", "ES256", e, true},
		{"", "ES384", nil, true},
		{"a", "RS256", a, true},
		{"a", "ES256", nil, true}, // family mismatch
		{"zzz", "RS256", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.kid+"/"+tt.alg, func(t *testing.T) {
			got, found, err := set.lookup(tt.kid, tt.alg)
			if got != tt.want || found != tt.wantFound || (tt.want == nil && found && err == nil) {
				t.Errorf("lookup(%q, %q) = %v, %v, %v; want %v, %v", tt.kid, tt.alg, got, found, err, tt.want, tt.wantFound)
			}
		})
	}
}

func TestRolesClaims(t *testing.T) {
	tests := []struct {
		name    string
		path    string
		roleMap map[string][]string
		claims  jwt.MapClaims
		want    []string
	}{
		{"keycloak realm roles", "realm_access.roles", nil,
			jwt.MapClaims{"realm_access": map[string]any{"roles": []string{"user", "admin"}}}, []string{"admin", "user"}},
		{"keycloak client roles", "resource_access.my-app.roles", nil,
			jwt.MapClaims{"resource_access": map[string]any{"my-app": map[string]any{"roles": []string{"editor"}}, "other": map[string]any{"roles": []string{"admin"}}}},
			[]string{"editor"}},
		{"client id with a dot, escaped", `resource_access.my\.app.roles`, nil,
			jwt.MapClaims{"resource_access": map[string]any{"my.app": map[string]any{"roles": []string{"viewer"}}}}, []string{"viewer"}},
		{"scope string", "scope", nil,
			jwt.MapClaims{"scope": "read:users  write:users read:users"}, []string{"read:users", "write:users"}},
		{"permissions array", "permissions", nil,
			jwt.MapClaims{"permissions": []string{"b", "a"}}, []string{"a", "b"}},
		{"groups with role map grants only mapped roles", "groups", map[string][]string{"/eng": {"dev"}, "/ops": {"dev", "oncall"}},
			jwt.MapClaims{"groups": []string{"/eng", "/ops", "admin"}}, []string{"dev", "oncall"}},
		{"missing claim gives no roles", "realm_access.roles", nil,
			jwt.MapClaims{}, nil},
		{"null intermediate gives no roles", "realm_access.roles", nil,
			jwt.MapClaims{"realm_access": nil}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(ic *IssuerConfig, _ *CacheConfig) {
				ic.RolesClaim = tt.path
				ic.RoleMap = tt.roleMap
			})
			p, err := f.v.Verify(context.Background(), f.idp.Sign(f.claims(tt.claims), "ES256"))
			if err != nil {
				t.Fatalf("Verify() error = %v", err)
			}
			if !slices.Equal(p.Roles, tt.want) {
				t.Errorf("Verify() roles = %q, want %q", p.Roles, tt.want)
			}
		})
	}
}

func TestNestedDuplicateRolesRejected(t *testing.T) {
	f := newFixture(t, func(ic *IssuerConfig, _ *CacheConfig) { ic.RolesClaim = "realm_access.roles" })
	payload := fmt.Sprintf(`{"iss":%q,"sub":"alice","aud":"api","exp":%d,"realm_access":{"roles":["user"],"Roles":["admin"]}}`,
		f.idp.Issuer(), f.clock.Now().Add(time.Hour).Unix())
	if _, err := f.v.Verify(context.Background(), f.idp.SignPayload([]byte(payload), "ES256")); !errors.Is(err, authn.ErrInvalidToken) {
		t.Fatalf("Verify(nested case-variant roles) error = %v, want ErrInvalidToken", err)
	}
}

func TestSubjectClaim(t *testing.T) {
	f := newFixture(t, func(ic *IssuerConfig, _ *CacheConfig) { ic.SubjectClaim = "preferred_username" })
	p, err := f.v.Verify(context.Background(), f.idp.Sign(f.claims(jwt.MapClaims{"preferred_username": "alice.smith"}), "RS256"))
	if err != nil || p.Subject != "alice.smith" {
		t.Fatalf("Verify() = %q, %v; want alice.smith", p.Subject, err)
	}
	if _, err := f.v.Verify(context.Background(), f.idp.Sign(f.claims(jwt.MapClaims{"jti": "2"}), "RS256")); err == nil {
		t.Fatal("Verify(token without the subject claim) error = nil, want error")
	}
}

func TestKeyRotationCoalescedRefetch(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	if _, err := f.v.Verify(ctx, f.idp.Sign(f.claims(nil), "RS256")); err != nil {
		t.Fatalf("Verify(before rotation) error = %v", err)
	}
	before := f.idp.FetchCount()
	f.idp.Rotate()
	tok := f.idp.Sign(f.claims(jwt.MapClaims{"jti": "new"}), "RS256")
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Go(func() {
			if _, err := f.v.Verify(ctx, tok); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Verify(token with the new kid) error = %v", err)
	}
	if got := f.idp.FetchCount() - before; got != 1 {
		t.Errorf("fetches after rotation = %d, want 1", got)
	}
}

func TestRemovedKeyRejectedAfterRefresh(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	old := f.idp.Sign(f.claims(jwt.MapClaims{"exp": f.clock.Now().Add(2 * time.Hour).Unix()}), "ES256")
	if _, err := f.v.Verify(ctx, old); err != nil {
		t.Fatalf("Verify(old key) error = %v", err)
	}
	f.idp.Rotate()
	if _, err := f.v.Verify(ctx, old); err != nil {
		t.Fatalf("Verify(old key, keys still fresh) error = %v, want nil", err)
	}
	f.clock.Advance(6 * time.Minute) // past MinRefresh (no Cache-Control)
	if _, err := f.v.Verify(ctx, old); !errors.Is(err, authn.ErrInvalidToken) {
		t.Fatalf("Verify(old key after refresh) error = %v, want ErrInvalidToken", err)
	}
	if _, err := f.v.Verify(ctx, f.idp.Sign(f.claims(nil), "ES256")); err != nil {
		t.Fatalf("Verify(new key) error = %v", err)
	}
}

func TestCacheControlMaxAge(t *testing.T) {
	f := newFixture(t, nil)
	f.idp.SetCacheControl("public, max-age=3600")
	ctx := context.Background()
	if _, err := f.v.Verify(ctx, f.idp.Sign(f.claims(nil), "EdDSA")); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(30 * time.Minute)
	if _, err := f.v.Verify(ctx, f.idp.Sign(f.claims(jwt.MapClaims{"jti": "b"}), "EdDSA")); err != nil {
		t.Fatal(err)
	}
	if got := f.idp.FetchCount(); got != 1 {
		t.Errorf("FetchCount() within max-age = %d, want 1", got)
	}
	f.clock.Advance(31 * time.Minute)
	if _, err := f.v.Verify(ctx, f.idp.Sign(f.claims(jwt.MapClaims{"jti": "c"}), "EdDSA")); err != nil {
		t.Fatal(err)
	}
	if got := f.idp.FetchCount(); got != 2 {
		t.Errorf("FetchCount() after max-age = %d, want 2", got)
	}
}

func TestRefreshInterval(t *testing.T) {
	s := &keySource{cfg: DefaultCacheConfig()}
	tests := []struct {
		cc   string
		want time.Duration
	}{
		{"", 5 * time.Minute},
		{"max-age=60", 5 * time.Minute},
		{"public, max-age=3600", time.Hour},
		{"max-age=999999999999", 24 * time.Hour},
		{"max-age=-5", 5 * time.Minute},
		{"no-store, max-age=3600", 5 * time.Minute},
		{"MAX-AGE=7200", 2 * time.Hour},
	}
	for _, tt := range tests {
		if got := s.refreshInterval(tt.cc); got != tt.want {
			t.Errorf("refreshInterval(%q) = %v, want %v", tt.cc, got, tt.want)
		}
	}
}

func TestUnknownKidFloodIsCoalesced(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	if _, err := f.v.Verify(ctx, f.idp.Sign(f.claims(nil), "EdDSA")); err != nil {
		t.Fatal(err)
	}
	claims := f.claims(nil)
	tokens := make([]string, 1000)
	for i := range tokens {
		tokens[i] = f.idp.SignWithHeader(claims, "EdDSA", map[string]any{"kid": fmt.Sprintf("random-%d-%d", i, rand.Int64())})
	}
	var wg sync.WaitGroup
	next := make(chan string)
	rejected := make(chan int, 1000)
	for range 32 {
		wg.Go(func() {
			for tok := range next {
				if _, err := f.v.Verify(ctx, tok); errors.Is(err, authn.ErrInvalidToken) {
					rejected <- 1
				}
			}
		})
	}
	for _, tok := range tokens {
		next <- tok
	}
	close(next)
	wg.Wait()
	if len(rejected) != 1000 {
		t.Errorf("rejected %d of 1000 unknown-kid tokens, want all", len(rejected))
	}
	if got := f.idp.FetchCount(); got > 3 {
		t.Errorf("FetchCount() after 1000 unknown kids = %d, want <= 3", got)
	}
	// After the cooldown one more refetch is allowed.
	f.clock.Advance(31 * time.Second)
	_, _ = f.v.Verify(ctx, tokens[0])
	if got := f.idp.FetchCount(); got > 3 {
		t.Errorf("FetchCount() after cooldown = %d, want <= 3", got)
	}
}

func TestStaleIfError(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	tok := f.idp.Sign(f.claims(jwt.MapClaims{"exp": f.clock.Now().Add(48 * time.Hour).Unix()}), "ES256")
	if _, err := f.v.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
	f.idp.SetDown(true)
	f.clock.Advance(time.Hour) // keys are due for refresh, IdP is down
	if _, err := f.v.Verify(ctx, f.idp.Sign(f.claims(jwt.MapClaims{"jti": "x"}), "ES256")); err != nil {
		t.Fatalf("Verify(IdP down, keys 1h old) error = %v, want cached keys served", err)
	}
	if _, err := f.v.Verify(ctx, tok); err != nil {
		t.Fatalf("Verify(cached token, IdP down) error = %v, want nil", err)
	}
	if got := f.idp.FetchCount(); got != 2 {
		t.Errorf("FetchCount() = %d, want 2 (one failed refresh, then cooldown)", got)
	}
	if !f.set.Ready() {
		t.Error("Ready() = false with stale-but-usable keys, want true")
	}
	f.clock.Advance(24 * time.Hour) // past MaxStale
	for _, tc := range []struct{ name, tok string }{
		{"fresh token", f.idp.Sign(f.claims(jwt.MapClaims{"jti": "y"}), "ES256")},
		{"cached token", tok},
	} {
		if _, err := f.v.Verify(ctx, tc.tok); !errors.Is(err, authn.ErrUnavailable) {
			t.Errorf("Verify(%s, keys past max_stale) error = %v, want ErrUnavailable", tc.name, err)
		}
	}
	if f.set.Ready() {
		t.Error("Ready() = true with keys past max_stale, want false")
	}
	f.idp.SetDown(false)
	f.clock.Advance(31 * time.Second) // past the retry cooldown of the failed attempt
	if _, err := f.v.Verify(ctx, f.idp.Sign(f.claims(jwt.MapClaims{"jti": "z"}), "ES256")); err != nil {
		t.Fatalf("Verify(IdP back) error = %v, want nil", err)
	}
}

func TestStartAndReady(t *testing.T) {
	f := newFixture(t, nil)
	leaks := goleak.IgnoreCurrent()
	if f.set.Ready() {
		t.Fatal("Ready() before Start = true, want false")
	}
	f.set.Start(context.Background())
	waitFor(t, "Ready()", f.set.Ready)
	if got := f.counter(t, "authgate_jwks_fetch_total", map[string]string{"result": "ok"}); got != 1 {
		t.Errorf("authgate_jwks_fetch_total{result=ok} = %v, want 1", got)
	}
	if got := f.counter(t, "authgate_jwks_keys", nil); got != 4 {
		t.Errorf("authgate_jwks_keys = %v, want 4", got)
	}
	f.clock.Advance(90 * time.Second)
	if got := f.counter(t, "authgate_jwks_age_seconds", nil); got != 90 {
		t.Errorf("authgate_jwks_age_seconds = %v, want 90", got)
	}
	f.set.Close()
	goleak.VerifyNone(t, leaks)
}

func TestIdPDownAtStartup(t *testing.T) {
	f := newFixture(t, nil)
	leaks := goleak.IgnoreCurrent()
	f.idp.SetDown(true)
	f.set.Start(context.Background())
	waitFor(t, "first failed fetch", func() bool {
		return f.counter(t, "authgate_jwks_fetch_total", map[string]string{"result": "error"}) >= 1
	})
	if f.set.Ready() {
		t.Fatal("Ready() with IdP down = true, want false")
	}
	if _, err := f.v.Verify(context.Background(), f.idp.Sign(f.claims(nil), "RS256")); !errors.Is(err, authn.ErrUnavailable) {
		t.Fatalf("Verify(IdP down at startup) error = %v, want ErrUnavailable", err)
	}
	f.idp.SetDown(false)
	waitFor(t, "Ready() after IdP recovers", f.set.Ready)
	f.set.Close()
	goleak.VerifyNone(t, leaks)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTokenCache(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	tok := f.idp.Sign(f.claims(jwt.MapClaims{"exp": f.clock.Now().Add(time.Minute).Unix()}), "RS256")
	for range 3 {
		if _, err := f.v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	if hit, miss := f.counter(t, "authgate_token_cache_total", map[string]string{"result": "hit"}),
		f.counter(t, "authgate_token_cache_total", map[string]string{"result": "miss"}); hit != 2 || miss != 1 {
		t.Errorf("token cache hit, miss = %v, %v; want 2, 1", hit, miss)
	}
	t.Run("hit on an expired token is rejected", func(t *testing.T) {
		f.clock.Advance(time.Minute)
		if _, err := f.v.Verify(ctx, tok); !errors.Is(err, authn.ErrInvalidToken) {
			t.Fatalf("Verify(cached token at exp) error = %v, want ErrInvalidToken", err)
		}
		if n := f.set.verifiers[0].cache.len(); n != 0 {
			t.Errorf("cache length after expired hit = %d, want 0", n)
		}
	})
	t.Run("cached token rejected once its key is rotated out", func(t *testing.T) {
		tok := f.idp.Sign(f.claims(jwt.MapClaims{"exp": f.clock.Now().Add(time.Hour).Unix()}), "ES256")
		if _, err := f.v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
		f.idp.Rotate()
		f.clock.Advance(6 * time.Minute)
		if _, err := f.v.Verify(ctx, tok); !errors.Is(err, authn.ErrInvalidToken) {
			t.Fatalf("Verify(cached token, key rotated out) error = %v, want ErrInvalidToken", err)
		}
	})
}

func TestTokenCacheIsolatedByIssuer(t *testing.T) {
	a := jwkstest.NewIdP(t)
	b := jwkstest.NewIdP(t)
	cfg := func(idp *jwkstest.IdP) IssuerConfig {
		return IssuerConfig{Issuer: idp.Issuer(), JWKSURI: idp.JWKSURI(), Audiences: []string{"api"}}
	}
	set, err := New([]IssuerConfig{cfg(a), cfg(b)}, DefaultCacheConfig(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	tok := a.Sign(jwt.MapClaims{"iss": a.Issuer(), "sub": "x", "aud": "api", "exp": time.Now().Add(time.Hour).Unix()}, "RS256")
	va, vb := set.Verifiers()[0], set.Verifiers()[1]
	if _, err := va.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	if _, err := vb.Verify(context.Background(), tok); !errors.Is(err, authn.ErrInvalidToken) {
		t.Fatalf("verifier B on a cached token of issuer A: error = %v, want ErrInvalidToken", err)
	}
}

func TestOversizedJWKSRejected(t *testing.T) {
	f := newFixture(t, func(_ *IssuerConfig, cc *CacheConfig) { cc.MaxJWKSBytes = 64 << 10 })
	f.idp.SetJWKSPadding(128 << 10)
	if _, err := f.v.Verify(context.Background(), f.idp.Sign(f.claims(nil), "RS256")); !errors.Is(err, authn.ErrUnavailable) {
		t.Fatalf("Verify(oversized JWKS) error = %v, want ErrUnavailable", err)
	}
	f.idp.SetJWKSPadding(1 << 10)
	f.clock.Advance(time.Minute) // past the retry cooldown
	if _, err := f.v.Verify(context.Background(), f.idp.Sign(f.claims(nil), "RS256")); err != nil {
		t.Fatalf("Verify(JWKS under the cap) error = %v", err)
	}
}

func TestDiscoveryIssuerMismatch(t *testing.T) {
	idp := jwkstest.NewIdP(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/.well-known/openid-configuration" {
			_ = json.NewEncoder(w).Encode(map[string]string{"issuer": idp.Issuer(), "jwks_uri": idp.JWKSURI()})
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	set, err := New([]IssuerConfig{{Issuer: srv.URL, Discovery: true, Audiences: []string{"api"}}}, DefaultCacheConfig(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	tok := idp.Sign(jwt.MapClaims{"iss": srv.URL, "sub": "x", "aud": "api", "exp": time.Now().Add(time.Hour).Unix()}, "RS256")
	if _, err := set.Verifiers()[0].Verify(context.Background(), tok); !errors.Is(err, authn.ErrUnavailable) {
		t.Fatalf("Verify(discovery issuer mismatch) error = %v, want ErrUnavailable", err)
	}
	if idp.FetchCount() != 0 {
		t.Errorf("JWKS fetched despite discovery issuer mismatch")
	}
}

func TestSetVerifierLookup(t *testing.T) {
	f := newFixture(t, nil)
	if v, ok := f.set.Verifier(f.idp.Issuer()); !ok || v.Issuer() != f.idp.Issuer() {
		t.Errorf("Verifier(%q) = %v, %v; want the issuer's verifier", f.idp.Issuer(), v, ok)
	}
	if _, ok := f.set.Verifier(f.idp.Issuer() + "/"); ok {
		t.Errorf("Verifier(issuer with trailing slash) ok = true, want false")
	}
}
