package jwks

import (
	"slices"
	"strings"
	"testing"

	"github.com/authgate/authgate/authn"
)

func TestFillClaims(t *testing.T) {
	for _, tt := range []struct {
		name    string
		json    string
		scopes  []string
		email   string
		wantErr string
	}{
		{"scope string", `{"scope":"b a b","email":"a@example.com"}`, []string{"a", "b"}, "a@example.com", ""},
		{"scp list", `{"scp":["x","y z",3],"email":"a@example.com","email_verified":true}`, []string{"x"}, "a@example.com", ""},
		{"unverified email is dropped", `{"email":"a@example.com","email_verified":false}`, nil, "", ""},
		{"unverified email as a string", `{"email":"a@example.com","email_verified":"false"}`, nil, "", ""},
		{"nested case-variant members", `{"org":{"tier":"free","TIER":"gold"}}`, nil, "", "case-variant"},
		{"nested in an array", `{"l":[{"a":1,"A":2}]}`, nil, "", "case-variant"},
		{"too deep", `{"a":` + strings.Repeat("[", 20) + strings.Repeat("]", 20) + `}`, nil, "", "too deeply"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := decodeStrictObject([]byte(tt.json))
			if err != nil {
				t.Fatal(err)
			}
			var p authn.Principal
			err = fillClaims(&p, raw)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("fillClaims(%s) = %v, want an error containing %q", tt.json, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("fillClaims(%s) = %v", tt.json, err)
			}
			if !slices.Equal(p.Scopes, tt.scopes) || p.Email != tt.email {
				t.Errorf("fillClaims(%s): scopes %q email %q, want %q %q", tt.json, p.Scopes, p.Email, tt.scopes, tt.email)
			}
		})
	}
	raw, _ := decodeStrictObject([]byte(`{"org":{"tier":"gold"},"groups":["ops"]}`))
	var p authn.Principal
	if err := fillClaims(&p, raw); err != nil {
		t.Fatal(err)
	}
	if v, ok := p.Claims.Claim([]string{"org", "tier"}); !ok || v != "gold" {
		t.Errorf(`Claim(org.tier) = %v, %v; want "gold"`, v, ok)
	}
}
