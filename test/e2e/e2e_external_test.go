package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/authn/jwks"
	"github.com/authgate/authgate/authn/jwks/jwkstest"
	"github.com/authgate/authgate/internal/config"
)

func externalClaims(idp *jwkstest.IdP, realmRoles ...string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss": idp.Issuer(), "aud": "my-app", "sub": "kc-user-1",
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		"realm_access": map[string]any{"roles": realmRoles},
		"groups":       []string{"/staff"},
	}
}

func waitReady(t *testing.T, e *gwEnv, want int) {
	t.Helper()
	waitReadyWithin(t, e, want, 5*time.Second)
}

// waitReadyWithin waits up to d for /readyz to answer want.
func waitReadyWithin(t *testing.T, e *gwEnv, want int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		resp, err := http.Get(e.gw.AdminURL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never returned %d", want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestE2EExternalIssuer(t *testing.T) {
	idp := jwkstest.NewIdP(t)
	e := newEnv(t, "", nil, func(c *config.Config) {
		c.Issuers = []jwks.IssuerConfig{{
			Issuer: idp.Issuer(), JWKSURI: idp.JWKSURI(), Audiences: []string{"my-app"},
			Algorithms: []string{"RS256", "ES256", "PS256", "EdDSA"}, RolesClaim: "realm_access.roles",
		}}
	})
	waitReady(t, e, 200)
	for _, alg := range jwkstest.Algorithms() {
		t.Run(alg, func(t *testing.T) {
			resp, body := e.do("GET", "/admin/x", "Authorization", "Bearer "+idp.Sign(externalClaims(idp, "admin", "offline_access"), alg))
			if resp.StatusCode != 200 {
				t.Fatalf("status %d %s", resp.StatusCode, body)
			}
			got := e.up.last(t)
			if got.Header.Get("X-Auth-Method") != "external" || got.Header.Get("X-Auth-Subject") != "kc-user-1" || got.Header.Get("X-Auth-Roles") != "admin,offline_access" {
				t.Errorf("identity = %q %q %q", got.Header.Get("X-Auth-Method"), got.Header.Get("X-Auth-Subject"), got.Header.Get("X-Auth-Roles"))
			}
		})
	}
	t.Run("no admin role is 403", func(t *testing.T) {
		resp, body := e.do("GET", "/admin/x", "Authorization", "Bearer "+idp.Sign(externalClaims(idp, "user"), "RS256"))
		assertJSONError(t, resp, body, http.StatusForbidden)
	})
	t.Run("wrong audience is 401", func(t *testing.T) {
		c := externalClaims(idp, "admin")
		c["aud"] = "other"
		resp, body := e.do("GET", "/admin/x", "Authorization", "Bearer "+idp.Sign(c, "RS256"))
		assertJSONError(t, resp, body, http.StatusUnauthorized)
	})
	t.Run("HS256 with the gateway secret but the external iss is 401", func(t *testing.T) {
		tok := mint(t, jwt.SigningMethodHS256, []byte(testSecret), with(with(externalClaims(idp, "admin"), "type", "access"), "jti", "x"), "")
		resp, body := e.do("GET", "/admin/x", "Authorization", "Bearer "+tok)
		assertJSONError(t, resp, body, http.StatusUnauthorized)
	})
}

func TestE2EExternalIssuerDownAtStartupIsNotReady(t *testing.T) {
	idp := jwkstest.NewIdP(t)
	idp.SetDown(true)
	e := newEnv(t, "", nil, func(c *config.Config) {
		c.Issuers = []jwks.IssuerConfig{{Issuer: idp.Issuer(), JWKSURI: idp.JWKSURI(), Audiences: []string{"my-app"}, RolesClaim: "realm_access.roles"}}
	})
	waitReady(t, e, 503)
	resp, body := e.do("GET", "/admin/x", "Authorization", "Bearer "+idp.Sign(externalClaims(idp, "admin"), "RS256"))
	if resp.StatusCode == 200 {
		t.Fatalf("token accepted while the IdP was never reached: %s", body)
	}
}
