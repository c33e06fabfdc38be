package jwks

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/authn/jose"
	"github.com/authgate/authgate/authn/jose/josetest"
)

// headerJSON is a header for alg with the fixture's kid and extra members.
func (f *fixture) headerJSON(t *testing.T, alg string, extra map[string]any) string {
	t.Helper()
	h := map[string]any{"alg": alg, "kid": f.idp.Kid(alg)}
	for k, v := range extra {
		h[k] = v
	}
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// claimsText is the JSON of a valid claim set with extra text spliced in.
func (f *fixture) claimsText(t *testing.T, extra string) string {
	t.Helper()
	b, err := json.Marshal(f.claims(nil))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(string(b), "}") + extra + "}"
}

// TestVerifyRefusesNonStrictTokens covers forms the strict decoding step
// refuses although each token is signed by the issuer's published key.
func TestVerifyRefusesNonStrictTokens(t *testing.T) {
	f := newFixture(t, nil)
	good := f.claimsText(t, "")
	padded := good
	for n := 1; len(padded)%3 == 0; n++ {
		padded = f.claimsText(t, `,"x":"`+strings.Repeat("y", n)+`"`)
	}
	hdr := f.headerJSON(t, "ES256", nil)
	exp := f.clock.Now().Unix() + 3600
	tests := []struct {
		name string
		raw  string
		want error
	}{
		{"typ refresh+jwt", f.idp.SignWithHeader(f.claims(nil), "RS256", map[string]any{"typ": "refresh+jwt"}), jose.ErrType},
		{"typ logout+jwt", f.idp.SignWithHeader(f.claims(nil), "RS256", map[string]any{"typ": "logout+jwt"}), jose.ErrType},
		{"Okta org server typ", f.idp.SignWithHeader(f.claims(nil), "RS256", map[string]any{"typ": "application/okta-internal-at+jwt"}), jose.ErrType},
		{"b64 false", f.idp.SignWithHeader(f.claims(nil), "RS256", map[string]any{"b64": false, "crit": []string{"b64"}}), jose.ErrHeader},
		{"zip", f.idp.SignWithHeader(f.claims(nil), "RS256", map[string]any{"zip": "DEF"}), jose.ErrHeader},
		{"nested JWT", f.idp.SignWithHeader(f.claims(nil), "RS256", map[string]any{"cty": "JWT"}), jose.ErrHeader},
		{"empty kid", f.idp.SignWithHeader(f.claims(nil), "RS256", map[string]any{"kid": ""}), jose.ErrHeader},
		{"duplicate kid", f.idp.SignSegments(b64([]byte(`{"alg":"ES256","kid":"nope","kid":"`+f.idp.Kid("ES256")+`"}`)), b64([]byte(good)), "ES256"), jose.ErrDuplicate},
		{"case-variant alg", f.idp.SignSegments(b64([]byte(`{"alg":"ES256","ALG":"none","kid":"`+f.idp.Kid("ES256")+`"}`)), b64([]byte(good)), "ES256"), jose.ErrDuplicate},
		{"payload padding bits set", f.idp.SignSegments(b64([]byte(hdr)), josetest.SetPaddingBit(t, b64([]byte(padded))), "ES256"), jose.ErrMalformed},
		{"padded payload", f.idp.SignSegments(b64([]byte(hdr)), base64.URLEncoding.EncodeToString([]byte(padded)), "ES256"), jose.ErrMalformed},
		{"header padding bits set", func() string {
			h := hdr
			for n := 0; len(h)%3 == 0; n++ {
				h = f.headerJSON(t, "ES256", map[string]any{"p": strings.Repeat("q", n)})
			}
			return f.idp.SignSegments(josetest.SetPaddingBit(t, b64([]byte(h))), b64([]byte(good)), "ES256")
		}(), jose.ErrMalformed},
		{"exp as a numeric string", f.idp.Sign(f.claims(jwt.MapClaims{"exp": fmt.Sprint(exp)}), "RS256"), jose.ErrClaim},
		{"exp 1e400", f.idp.SignPayload([]byte(strings.Replace(good, fmt.Sprintf(`"exp":%d`, exp), `"exp":1e400`, 1)), "ES256"), jose.ErrClaim},
		{"aud with a number", f.idp.Sign(f.claims(jwt.MapClaims{"aud": []any{"api", 1}}), "RS256"), jose.ErrClaim},
		{"sub a number", f.idp.Sign(f.claims(jwt.MapClaims{"sub": 42}), "RS256"), jose.ErrClaim},
		{"escaped duplicate sub", f.idp.SignPayload([]byte(f.claimsText(t, `,"\u0073ub":"root"`)), "ES256"), jose.ErrDuplicate},
		{"nested duplicate on the roles path", f.idp.SignPayload([]byte(f.claimsText(t, `,"roles":["user"],"realm":{"a":1,"a":2}`)), "ES256"), jose.ErrDuplicate},
		{"lone EXP beside exp-less claims", f.idp.SignPayload([]byte(fmt.Sprintf(`{"iss":%q,"sub":"a","aud":"api","EXP":%d}`, f.idp.Issuer(), exp)), "ES256"), jose.ErrDuplicate},
		{"invalid UTF-8", f.idp.SignPayload([]byte(f.claimsText(t, ",\"n\":\"\xff\"")), "ES256"), jose.ErrMalformed},
		{"four segments", f.idp.Sign(f.claims(nil), "RS256") + ".x", jose.ErrMalformed},
		{"too large", f.idp.Sign(f.claims(jwt.MapClaims{"pad": strings.Repeat("x", jose.MaxTokenBytes)}), "RS256"), jose.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := f.v.Verify(context.Background(), tt.raw)
			if !errors.Is(err, authn.ErrInvalidToken) || !errors.Is(err, tt.want) || p.Authenticated() {
				t.Fatalf("Verify(%s) = %+v, %v; want ErrInvalidToken and %v", tt.name, p, err, tt.want)
			}
		})
	}
	// The controls: the same constructions, canonical and without the
	// refused form, verify.
	for name, raw := range map[string]string{
		"canonical padded-length payload": f.idp.SignSegments(b64([]byte(hdr)), b64([]byte(padded)), "ES256"),
		"typ JWT":                         f.idp.SignWithHeader(f.claims(nil), "RS256", map[string]any{"typ": "JWT"}),
		"typ at+jwt":                      f.idp.SignWithHeader(f.claims(nil), "RS256", map[string]any{"typ": "at+jwt"}),
		"no typ":                          f.idp.SignWithHeader(f.claims(nil), "RS256", map[string]any{"typ": nil}),
		"x5t key hint":                    f.idp.SignWithHeader(f.claims(nil), "RS256", map[string]any{"x5t": "abc"}),
	} {
		if _, err := f.v.Verify(context.Background(), raw); err != nil {
			t.Errorf("Verify(%s) error = %v, want nil", name, err)
		}
	}
}

func TestRequireTypAccessToken(t *testing.T) {
	f := newFixture(t, func(ic *IssuerConfig, _ *CacheConfig) { ic.RequireTyp = "at+jwt" })
	tests := []struct {
		typ  any // nil: no typ header
		want bool
	}{
		{"at+jwt", true},
		{"AT+JWT", true},
		{"application/at+jwt", true},
		{"Application/At+JWT", true},
		{nil, false},
		{"JWT", false},
		{"jwt", false},
		{"application/jwt", false},
		{"id_token+jwt", false},
		{"refresh+jwt", false},
		{"application/okta-internal-at+jwt", false},
		{"", false},
	}
	for _, tt := range tests {
		raw := f.idp.SignWithHeader(f.claims(nil), "RS256", map[string]any{"typ": tt.typ})
		_, err := f.v.Verify(context.Background(), raw)
		if ok := err == nil; ok != tt.want {
			t.Errorf("Verify(typ %v) with require_typ at+jwt error = %v, want accepted %v", tt.typ, err, tt.want)
		}
		if err != nil && !errors.Is(err, jose.ErrType) {
			t.Errorf("Verify(typ %v) error = %v, want jose.ErrType", tt.typ, err)
		}
	}
}

func TestRequireTypValidation(t *testing.T) {
	base := IssuerConfig{Issuer: "https://idp.example", JWKSURI: "https://idp.example/jwks", Audiences: []string{"api"}}
	for _, v := range []string{"", "at+jwt", "AT+JWT", "application/at+jwt"} {
		c := base
		c.RequireTyp = v
		if err := c.Validate(); err != nil {
			t.Errorf("Validate(require_typ %q) error = %v, want nil", v, err)
		}
	}
	for _, v := range []string{"JWT", "jwt", "id_token+jwt", "at+jwt ", "true"} {
		c := base
		c.RequireTyp = v
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "require_typ") {
			t.Errorf("Validate(require_typ %q) error = %v, want a require_typ error", v, err)
		}
	}
}
