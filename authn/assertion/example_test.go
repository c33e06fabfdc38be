package assertion_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/authn/assertion"
)

// An app behind authgate trusts a request only when its assertion
// verifies. Here a stand-in gateway publishes its key and signs one
// assertion; the app answers it, and refuses the same assertion on
// another path and a request without one.
func Example() {
	// The gateway's side (authgate does this for you).
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		x := base64.RawURLEncoding.EncodeToString(key.Public().(ed25519.PublicKey))
		fmt.Fprintf(w, `{"keys":[{"kty":"OKP","crv":"Ed25519","x":%q,"kid":"k1","alg":"EdDSA","use":"sig"}]}`, x)
	}))
	defer jwks.Close()

	// The app's side.
	v, err := assertion.New(assertion.Config{
		JWKSURL:  jwks.URL + "/.well-known/jwks.json",
		Issuer:   "https://login.example.com",
		Audience: "http://127.0.0.1:8081",
	})
	if err != nil {
		panic(err)
	}
	app := v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := assertion.FromContext(r.Context())
		fmt.Fprintf(w, "hello %s %v", p.Subject, p.Roles)
	}))
	srv := httptest.NewServer(app)
	defer srv.Close()

	// What the gateway adds to a request for GET /reports.
	now := time.Now()
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, &assertion.Claims{
		RegisteredClaims: jwt.RegisteredClaims{Issuer: "https://login.example.com", Subject: "alice",
			Audience: jwt.ClaimStrings{"http://127.0.0.1:8081"}, ID: "1",
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(30 * time.Second))},
		Roles: []string{"reader"}, AuthMethod: "jwt",
		Request: &assertion.Request{Method: "GET", Host: srv.Listener.Addr().String(), Path: "/reports"},
	})
	tok.Header["kid"], tok.Header["typ"] = "k1", assertion.Type
	signed, _ := tok.SignedString(key)

	for _, path := range []string{"/reports", "/admin"} {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Header.Set(assertion.Header, signed)
		resp, _ := http.DefaultClient.Do(req)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(path, resp.StatusCode, string(body))
	}
	resp, _ := http.Get(srv.URL + "/reports") // straight to the app
	resp.Body.Close()
	fmt.Println("no assertion", resp.StatusCode)
	// Output:
	// /reports 200 hello alice [reader]
	// /admin 401 {"error":"Unauthorized","message":"request did not come through the gateway"}
	//
	// no assertion 401
}
