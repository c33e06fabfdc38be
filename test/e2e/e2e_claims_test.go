package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/authn/jwks"
	"github.com/authgate/authgate/authn/jwks/jwkstest"
	"github.com/authgate/authgate/authn/token"
	"github.com/authgate/authgate/internal/config"
)

// Claim headers: set from the gateway's own tokens and an external
// issuer's (nested paths, lists), sanitised, carried in the assertion too,
// and a client's copies removed in every spelling, public paths included.
func TestE2EClaimHeaders(t *testing.T) {
	idp := jwkstest.NewIdP(t)
	appSrv := newVerifyingApp(t)
	g := startTrustGateway(t, newKeyPair(t, token.AlgEdDSA), appSrv.srv.URL, true, func(c *config.Config) {
		c.IdentityHeaders.Claims = map[string]string{
			"X-Auth-Email": "email", "X-Auth-Groups": "groups", "X-Auth-Country": "address.country",
			"X-Auth-Session": "sid", "X-Auth-Name": "name",
		}
		c.Issuers = []jwks.IssuerConfig{{Issuer: idp.Issuer(), JWKSURI: idp.JWKSURI(), Audiences: []string{"my-app"}, Algorithms: []string{"RS256"}, RolesClaim: "realm_access.roles"}}
	})
	appSrv.trust(t, g.gw.URL)
	waitReady(t, g.gwEnv, 200)
	forged := []string{"X-Auth-Email", "x_auth_email", "X-AUTH-GROUPS", "X-Auth_Country", "X-Auth-Session", "x-auth-assertion"}
	send := func(path string, hdr ...string) appSaw {
		t.Helper()
		for _, f := range forged {
			hdr = append(hdr, f, "forged")
		}
		req, _ := http.NewRequest("GET", g.gw.URL+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header[hdr[i]] = append(req.Header[hdr[i]], hdr[i+1])
		}
		resp, err := g.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s = %d (app refused %v)", path, resp.StatusCode, appSrv.refusals())
		}
		saw := appSrv.last(t)
		for k, v := range saw.Header {
			for _, x := range v {
				if strings.Contains(x, "forged") {
					t.Errorf("GET %s: the app got the client's %s: %q", path, k, x)
				}
			}
		}
		return saw
	}

	now := time.Now()
	ext := jwt.MapClaims{"iss": idp.Issuer(), "aud": "my-app", "sub": "kc-1", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
		"realm_access": map[string]any{"roles": []string{"admin"}},
		"email":        "kc@example.com", "name": "Zoë\r\nX-Auth-Roles: admin",
		"groups":  []string{"staff", "CN=ops,DC=corp", "evil\nX-Injected: 1"},
		"address": map[string]any{"country": "FR"},
	}
	saw := send("/api/x", "Authorization", "Bearer "+idp.Sign(ext, "RS256"))
	want := map[string]string{
		"X-Auth-Email": "kc@example.com", "X-Auth-Country": "FR",
		"X-Auth-Groups": "staff,CN=ops%2CDC=corp,evil%0AX-Injected: 1", "X-Auth-Name": "Zoë%0D%0AX-Auth-Roles: admin",
	}
	for h, v := range want {
		if got := saw.Header.Get(h); got != v {
			t.Errorf("external token: %s = %q, want %q", h, got, v)
		}
	}
	if saw.Header.Get("X-Injected") != "" || saw.Header.Get("X-Auth-Roles") != "admin" || saw.Header.Get("X-Auth-Session") != "" {
		t.Errorf("external token: headers %v", saw.Header)
	}
	if saw.Principal.Claims["email"] != "kc@example.com" || saw.Principal.Claims["address.country"] != "FR" {
		t.Errorf("the assertion carries claims %v", saw.Principal.Claims)
	}

	tr := g.login("alice", "alice-password-1")
	saw = send("/api/x", "Authorization", "Bearer "+tr.AccessToken)
	if sid := saw.Header.Get("X-Auth-Session"); sid == "" || saw.Header.Get("X-Auth-Email") != "" {
		t.Errorf("own token: session %q, email %q", sid, saw.Header.Get("X-Auth-Email"))
	}

	saw = send("/public/x")
	for h := range want {
		if saw.Header.Get(h) != "" {
			t.Errorf("public path: %s = %q", h, saw.Header.Get(h))
		}
	}
	if !saw.Principal.Anonymous() {
		t.Errorf("public path: assertion for %+v", saw.Principal)
	}
}
