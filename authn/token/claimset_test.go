package token

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestClaimsForThePolicy(t *testing.T) {
	c := &Claims{
		RegisteredClaims: jwt.RegisteredClaims{Issuer: "authgate", Subject: "alice", Audience: jwt.ClaimStrings{"app"},
			ExpiresAt: jwt.NewNumericDate(time.Unix(2000, 0)), ID: "j1"},
		Roles: []string{"admin"}, Type: TypeAccess, SessionID: "s1",
	}
	for path, want := range map[string]any{"iss": "authgate", "sub": "alice", "exp": 2000.0, "type": "access", "sid": "s1"} {
		if got, ok := c.Claim([]string{path}); !ok || got != want {
			t.Errorf("Claim(%s) = %v, %v; want %v", path, got, ok, want)
		}
	}
	if got, ok := c.Claim([]string{"roles"}); !ok || len(got.([]any)) != 1 || got.([]any)[0] != "admin" {
		t.Errorf("Claim(roles) = %v, %v", got, ok)
	}
	for _, path := range [][]string{{"ver"}, {"nbf"}, {"sub", "x"}, {"nope"}} {
		if v, ok := c.Claim(path); ok {
			t.Errorf("Claim(%q) = %v, want absent", path, v)
		}
	}
	all, _ := c.Claim(nil)
	if m := all.(map[string]any); m["sub"] != "alice" || m["jti"] != "j1" || len(m) != 8 {
		t.Errorf("Claim(nil) = %v", m)
	}
}
