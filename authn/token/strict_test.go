package token_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/authn/jose"
	"github.com/authgate/authgate/authn/jose/josetest"
	"github.com/authgate/authgate/authn/token"
)

var b64 = base64.RawURLEncoding.EncodeToString

// signSegments signs already encoded header and payload segments with
// keyA, however they are spelled.
func signSegments(t *testing.T, header, payload string) string {
	t.Helper()
	input := header + "." + payload
	sig, err := jwt.SigningMethodHS256.Sign(input, keyA.Secret)
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + b64(sig)
}

// signJSON signs a header and a claims set given as JSON text with keyA.
func signJSON(t *testing.T, header, payload string) string {
	t.Helper()
	return signSegments(t, b64([]byte(header)), b64([]byte(payload)))
}

// claimsJSON is the JSON of claims() with extra members spliced in.
func claimsJSON(t *testing.T, extra string) string {
	t.Helper()
	b, err := json.Marshal(claims())
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(string(b), "}") + extra + "}"
}

// TestStrictDecoding covers the forms the gateway's own verifier refuses
// although each token carries a valid HS256 signature by the gateway's key.
func TestStrictDecoding(t *testing.T) {
	const hdr = `{"alg":"HS256","kid":"a","typ":"JWT"}`
	good := claimsJSON(t, "")
	// A claims set whose length leaves unused bits in its last character.
	padded := good
	for n := 1; len(padded)%3 == 0; n++ {
		padded = claimsJSON(t, `,"x":"`+strings.Repeat("y", n)+`"`)
	}
	exp := t0.Add(time.Hour).Unix()
	tests := []struct {
		name string
		raw  string
		want error
	}{
		{"crit header", signJSON(t, `{"alg":"HS256","kid":"a","crit":["exp"]}`, good), jose.ErrHeader},
		{"b64 false", signJSON(t, `{"alg":"HS256","kid":"a","b64":false,"crit":["b64"]}`, good), jose.ErrHeader},
		{"jku header", signJSON(t, `{"alg":"HS256","kid":"a","jku":"https://evil.example/k"}`, good), jose.ErrHeader},
		{"jwk header", signJSON(t, `{"alg":"HS256","kid":"a","jwk":{"kty":"oct","k":"QUFB"}}`, good), jose.ErrHeader},
		{"x5u header", signJSON(t, `{"alg":"HS256","kid":"a","x5u":"https://evil.example/c"}`, good), jose.ErrHeader},
		{"x5c header", signJSON(t, `{"alg":"HS256","kid":"a","x5c":["MIIB"]}`, good), jose.ErrHeader},
		{"zip header", signJSON(t, `{"alg":"HS256","kid":"a","zip":"DEF"}`, good), jose.ErrHeader},
		{"nested JWT", signJSON(t, `{"alg":"HS256","kid":"a","cty":"JWT"}`, good), jose.ErrHeader},
		{"typ refresh+jwt", signJSON(t, `{"alg":"HS256","kid":"a","typ":"refresh+jwt"}`, good), jose.ErrType},
		{"typ id_token+jwt", signJSON(t, `{"alg":"HS256","kid":"a","typ":"id_token+jwt"}`, good), jose.ErrType},
		{"duplicate sub", signJSON(t, hdr, claimsJSON(t, `,"sub":"root"`)), jose.ErrDuplicate},
		{"case-variant roles", signJSON(t, hdr, claimsJSON(t, `,"ROLES":["admin"]`)), jose.ErrDuplicate},
		{"escaped duplicate roles", signJSON(t, hdr, claimsJSON(t, `,"\u0072oles":["admin"]`)), jose.ErrDuplicate},
		{"case-variant type", signJSON(t, hdr, claimsJSON(t, `,"Type":"refresh"`)), jose.ErrDuplicate},
		{"duplicate kid", signJSON(t, `{"alg":"HS256","kid":"b","kid":"a"}`, good), jose.ErrDuplicate},
		{"lone upper-case ROLES", signJSON(t, hdr, fmt.Sprintf(`{"iss":"authgate","sub":"alice","aud":"gateway","exp":%d,"jti":"j","type":"access","ROLES":["admin"]}`, exp)), jose.ErrDuplicate},
		{"payload padding bits set", signSegments(t, b64([]byte(hdr)), josetest.SetPaddingBit(t, b64([]byte(padded)))), jose.ErrMalformed},
		{"signature padding bits set", func() string {
			raw := signJSON(t, hdr, good)
			return raw[:strings.LastIndexByte(raw, '.')+1] + josetest.SetPaddingBit(t, raw[strings.LastIndexByte(raw, '.')+1:])
		}(), jose.ErrMalformed},
		{"padded payload", signSegments(t, b64([]byte(hdr)), base64.URLEncoding.EncodeToString([]byte(padded))), jose.ErrMalformed},
		{"exp as a string", signJSON(t, hdr, strings.Replace(good, fmt.Sprintf(`"exp":%d`, exp), fmt.Sprintf(`"exp":"%d"`, exp), 1)), jose.ErrClaim},
		{"exp 1e400", signJSON(t, hdr, strings.Replace(good, fmt.Sprintf(`"exp":%d`, exp), `"exp":1e400`, 1)), jose.ErrClaim},
		{"five segments", signJSON(t, hdr, good) + ".x.y", jose.ErrMalformed},
		{"too large", signJSON(t, hdr, claimsJSON(t, `,"pad":"`+strings.Repeat("x", jose.MaxTokenBytes)+`"`)), jose.ErrTooLarge},
	}
	v := token.NewVerifier(mustKeySet(t, keyA), settings, token.Options{Now: at(t0), CacheSize: 16})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, typ := range []string{token.TypeAccess, token.TypeRefresh} {
				c, err := v.Parse(context.Background(), tt.raw, typ)
				if c != nil || !errors.Is(err, authn.ErrInvalidToken) || !errors.Is(err, tt.want) {
					t.Fatalf("Parse(%s, %s) = %+v, %v; want ErrInvalidToken and %v", tt.name, typ, c, err, tt.want)
				}
			}
		})
	}
	// The control cases: the same construction, spelled canonically and
	// without the refused form, verifies.
	for _, raw := range []string{
		signJSON(t, hdr, good),
		signJSON(t, `{"alg":"HS256","kid":"a"}`, good),
		signJSON(t, `{"alg":"HS256","kid":"a","typ":"at+jwt"}`, good),
		signSegments(t, b64([]byte(hdr)), b64([]byte(padded))),
	} {
		if _, err := v.Parse(context.Background(), raw, token.TypeAccess); err != nil {
			t.Errorf("Parse(control token) error = %v, want nil", err)
		}
	}
}

// TestMintedTokensPassStrictDecoding checks that every token the Signer
// mints is accepted by the strict step, for both types.
func TestMintedTokensPassStrictDecoding(t *testing.T) {
	ks := mustKeySet(t, keyA)
	for _, g := range []token.Grant{
		{Subject: "alice", Roles: []string{"b", "a"}, Type: token.TypeAccess, TTL: time.Hour, Ver: "v1"},
		{Subject: "svc", Type: token.TypeAccess, TTL: 720 * time.Hour},
		{Subject: "alice", Type: token.TypeRefresh, TTL: time.Hour, Family: "fam"},
	} {
		raw, _ := mint(t, ks, t0, g)
		if _, err := jose.Decode(raw); err != nil {
			t.Errorf("jose.Decode(minted %s token) error = %v", g.Type, err)
		}
	}
}
