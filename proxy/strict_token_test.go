package proxy_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/authn/jose"
	"github.com/authgate/authgate/authn/jose/josetest"
	"github.com/authgate/authgate/authn/jwks"
	"github.com/authgate/authgate/authn/jwks/jwkstest"
	"github.com/authgate/authgate/authn/token"
	"github.com/authgate/authgate/policy"
	"github.com/authgate/authgate/proxy"
)

const strictPolicy = `rules:
  - id: api
    path: /api/**
    authenticated: true
`

const strictSecret = "strict-token-secret-0123456789abcdefghij"

// strictEnv is a gateway on a real listener that accepts its own tokens
// and those of two external issuers, the second requiring typ at+jwt.
type strictEnv struct {
	gw       *httptest.Server
	up       *upRecorder
	signer   *token.Signer
	idp, at  *jwkstest.IdP
	settings token.Settings
}

func newStrictEnv(t *testing.T) *strictEnv {
	t.Helper()
	e := &strictEnv{up: &upRecorder{}, settings: token.Settings{Issuer: "authgate", Audience: "authgate", Leeway: 30 * time.Second}}
	upstream := httptest.NewServer(e.up)
	t.Cleanup(upstream.Close)
	ks, err := token.NewKeySet(token.Key{ID: "k1", Secret: []byte(strictSecret)})
	if err != nil {
		t.Fatal(err)
	}
	e.signer = token.NewSigner(ks, e.settings, token.Options{})
	own := token.NewVerifier(ks, e.settings, token.Options{CacheSize: 100})
	e.idp, e.at = jwkstest.NewIdP(t), jwkstest.NewIdP(t)
	set, err := jwks.New([]jwks.IssuerConfig{
		{Issuer: e.idp.Issuer(), Discovery: true, Audiences: []string{"api"}},
		{Issuer: e.at.Issuer(), Discovery: true, Audiences: []string{"api"}, RequireTyp: "at+jwt"},
	}, jwks.DefaultCacheConfig(), jwks.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(set.Close)
	bearer, err := authn.NewBearer(append([]authn.TokenVerifier{own}, set.Verifiers()...)...)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := policy.Load("policy.yaml", []byte(strictPolicy))
	if err != nil {
		t.Fatal(err)
	}
	up, _ := url.Parse(upstream.URL)
	gw, err := proxy.New(proxy.Options{Upstream: up, Policy: policy.NewStore(ps), Authenticator: authn.Chain{Bearer: bearer}})
	if err != nil {
		t.Fatal(err)
	}
	e.gw = httptest.NewServer(gw)
	t.Cleanup(e.gw.Close)
	return e
}

// own signs a gateway token from JSON text, spelled exactly as given.
func (e *strictEnv) own(t *testing.T, header, claims string) string {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	input := enc([]byte(header)) + "." + enc([]byte(claims))
	sig, err := jwt.SigningMethodHS256.Sign(input, []byte(strictSecret))
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + enc(sig)
}

// ownClaims is a valid gateway access-token claim set with extra members.
func (e *strictEnv) ownClaims(extra string) string {
	now := time.Now().Unix()
	return fmt.Sprintf(`{"iss":"authgate","sub":"alice","aud":["authgate"],"exp":%d,"iat":%d,"jti":"j1","roles":["user"],"type":"access"%s}`,
		now+600, now, extra)
}

// extClaims is a valid external claim set for idp.
func extClaims(idp *jwkstest.IdP) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{"iss": idp.Issuer(), "sub": "bob", "aud": "api", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}
}

// get sends GET /api/x with the given Authorization header value.
func (e *strictEnv) get(t *testing.T, authorization string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.gw.URL+"/api/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", authorization)
	resp, err := e.gw.Client().Do(req)
	if err != nil {
		t.Fatalf("GET /api/x: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestStrictTokensThroughGateway sends every refused token form through a
// real gateway listener: each gets 401 with the JSON error body and the
// upstream sees nothing. The controls, built the same way but canonical,
// get through.
func TestStrictTokensThroughGateway(t *testing.T) {
	e := newStrictEnv(t)
	hdr := `{"alg":"HS256","kid":"k1","typ":"JWT"}`
	good := e.ownClaims("")
	padded := good
	for n := 1; len(padded)%3 == 0; n++ {
		padded = e.ownClaims(`,"x":"` + strings.Repeat("y", n) + `"`)
	}
	enc := base64.RawURLEncoding.EncodeToString
	signSegs := func(h, p string) string {
		sig, _ := jwt.SigningMethodHS256.Sign(h+"."+p, []byte(strictSecret))
		return h + "." + p + "." + enc(sig)
	}
	setBit := func(s string) string { return josetest.SetPaddingBit(t, s) }
	exp := time.Now().Unix() + 600
	refused := []struct{ name, auth string }{
		{"own: crit header", "Bearer " + e.own(t, `{"alg":"HS256","kid":"k1","crit":["exp"]}`, good)},
		{"own: duplicate sub", "Bearer " + e.own(t, hdr, e.ownClaims(`,"sub":"root"`))},
		{"own: case-variant roles", "Bearer " + e.own(t, hdr, e.ownClaims(`,"ROLES":["admin"]`))},
		{"own: escaped duplicate roles", "Bearer " + e.own(t, hdr, e.ownClaims(`,"\u0072oles":["admin"]`))},
		{"own: typ refresh+jwt", "Bearer " + e.own(t, `{"alg":"HS256","kid":"k1","typ":"refresh+jwt"}`, good)},
		{"own: jku header", "Bearer " + e.own(t, `{"alg":"HS256","kid":"k1","jku":"https://evil.example/k"}`, good)},
		{"own: jwk header", "Bearer " + e.own(t, `{"alg":"HS256","kid":"k1","jwk":{"kty":"oct","k":"QQ"}}`, good)},
		{"own: b64 false", "Bearer " + e.own(t, `{"alg":"HS256","kid":"k1","b64":false,"crit":["b64"]}`, good)},
		{"own: zip", "Bearer " + e.own(t, `{"alg":"HS256","kid":"k1","zip":"DEF"}`, good)},
		{"own: nested JWT", "Bearer " + e.own(t, `{"alg":"HS256","kid":"k1","cty":"JWT"}`, good)},
		{"own: exp as a string", "Bearer " + e.own(t, hdr, strings.Replace(good, fmt.Sprintf(`"exp":%d`, exp), fmt.Sprintf(`"exp":"%d"`, exp), 1))},
		{"own: exp 1e400", "Bearer " + e.own(t, hdr, strings.Replace(good, fmt.Sprintf(`"exp":%d`, exp), `"exp":1e400`, 1))},
		{"own: payload padding bits set", "Bearer " + signSegs(enc([]byte(hdr)), setBit(enc([]byte(padded))))},
		{"own: padded payload", "Bearer " + signSegs(enc([]byte(hdr)), base64.URLEncoding.EncodeToString([]byte(padded)))},
		{"own: five segments", "Bearer " + e.own(t, hdr, good) + ".x.y"},
		{"own: tab inside", "Bearer " + strings.Replace(e.own(t, hdr, good), ".", ".\t", 1)},
		{"own: space inside", "Bearer " + strings.Replace(e.own(t, hdr, good), ".", ". ", 1)},
		{"own: claims an array", "Bearer " + e.own(t, hdr, `[`+good+`]`)},
		{"own: too large", "Bearer " + e.own(t, hdr, e.ownClaims(`,"pad":"`+strings.Repeat("x", jose.MaxTokenBytes)+`"`))},
		{"external: crit header", "Bearer " + e.idp.SignWithHeader(extClaims(e.idp), "RS256", map[string]any{"crit": []string{"exp"}})},
		{"external: typ refresh+jwt", "Bearer " + e.idp.SignWithHeader(extClaims(e.idp), "RS256", map[string]any{"typ": "refresh+jwt"})},
		{"external: case-variant roles", "Bearer " + e.idp.SignPayload([]byte(strings.TrimSuffix(mustJSON(t, extClaims(e.idp)), "}")+`,"roles":["u"],"Roles":["admin"]}`), "RS256")},
		{"external: exp as a string", "Bearer " + e.idp.Sign(jwt.MapClaims{"iss": e.idp.Issuer(), "sub": "bob", "aud": "api", "exp": fmt.Sprint(exp)}, "RS256")},
		{"external: payload padding bits set", "Bearer " + func() string {
			c := mustJSON(t, extClaims(e.idp))
			for n := 1; len(c)%3 == 0; n++ {
				c = strings.TrimSuffix(mustJSON(t, extClaims(e.idp)), "}") + `,"x":"` + strings.Repeat("y", n) + `"}`
			}
			return e.idp.SignSegments(enc([]byte(`{"alg":"RS256","kid":"`+e.idp.Kid("RS256")+`"}`)), setBit(enc([]byte(c))), "RS256")
		}()},
		{"external: too large", "Bearer " + e.idp.Sign(jwt.MapClaims{"iss": e.idp.Issuer(), "sub": "bob", "aud": "api", "exp": exp, "pad": strings.Repeat("x", jose.MaxTokenBytes)}, "RS256")},
		{"require_typ at+jwt: typ JWT (an ID token)", "Bearer " + e.at.SignWithHeader(extClaims(e.at), "RS256", map[string]any{"typ": "JWT"})},
		{"require_typ at+jwt: no typ", "Bearer " + e.at.SignWithHeader(extClaims(e.at), "RS256", map[string]any{"typ": nil})},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			before := e.up.count()
			code, body := e.get(t, tt.auth)
			if code != http.StatusUnauthorized {
				t.Fatalf("GET /api/x with %s = %d %s, want 401", tt.name, code, body)
			}
			var eb struct {
				Error, Message string
			}
			if err := json.Unmarshal([]byte(body), &eb); err != nil || eb.Error == "" {
				t.Errorf("401 body = %q, want the gateway's JSON error", body)
			}
			if n := e.up.count() - before; n != 0 {
				t.Errorf("upstream saw %d requests for %s, want 0", n, tt.name)
			}
		})
	}

	minted, _, err := e.signer.Mint(token.Grant{Subject: "alice", Roles: []string{"user"}, Type: token.TypeAccess, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	controls := []struct{ name, auth string }{
		{"own: minted token", "Bearer " + minted},
		{"own: hand-built canonical token", "Bearer " + e.own(t, hdr, good)},
		{"own: canonical spelling of the padded claims", "Bearer " + signSegs(enc([]byte(hdr)), enc([]byte(padded)))},
		{"external: typ JWT", "Bearer " + e.idp.SignWithHeader(extClaims(e.idp), "RS256", map[string]any{"typ": "JWT"})},
		{"external: no typ", "Bearer " + e.idp.SignWithHeader(extClaims(e.idp), "RS256", map[string]any{"typ": nil})},
		{"require_typ at+jwt: typ at+jwt", "Bearer " + e.at.SignWithHeader(extClaims(e.at), "RS256", map[string]any{"typ": "at+jwt"})},
		{"require_typ at+jwt: typ application/at+jwt", "Bearer " + e.at.SignWithHeader(extClaims(e.at), "RS256", map[string]any{"typ": "application/at+jwt"})},
	}
	for _, tt := range controls {
		t.Run(tt.name, func(t *testing.T) {
			before := e.up.count()
			if code, body := e.get(t, tt.auth); code != http.StatusOK {
				t.Fatalf("GET /api/x with %s = %d %s, want 200", tt.name, code, body)
			}
			if n := e.up.count() - before; n != 1 {
				t.Errorf("upstream saw %d requests for %s, want 1", n, tt.name)
			}
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
