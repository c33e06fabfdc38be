package users

import (
	"slices"
	"strings"
	"testing"
)

// TestOddRoleNamesLoadWithAWarningAndGrantNothing: a role outside the
// policy's role grammar still loads (so an upgrade starts), is never
// granted, and is reported with its file and line.
func TestOddRoleNamesLoadWithAWarningAndGrantNothing(t *testing.T) {
	s := mustParse(t, `users:
  - username: alice
    password_hash: "`+hashAlice+`"
    roles: [admin, "ops team", "a,b", "rôle"]
  - username: bob
    password_hash: "`+hashBob+`"
    roles: [user]
`)
	u, _ := s.Lookup("alice")
	if !slices.Equal(u.Roles, []string{"admin"}) {
		t.Errorf("alice roles = %q, want [admin]: odd names must not be granted", u.Roles)
	}
	w := s.Warnings()
	if len(w) != 3 {
		t.Fatalf("Warnings() = %q, want 3", w)
	}
	for i, name := range []string{`"ops team"`, `"a,b"`, `"rôle"`} {
		if !strings.HasPrefix(w[i], "users.yaml:2: user 1 (alice): field roles: policy: role "+name) || !strings.Contains(w[i], "not granted") {
			t.Errorf("Warnings()[%d] = %q, want file:line, the name and that it is not granted", i, w[i])
		}
	}
	if got := s.Roles(); !slices.Equal(got, []string{"admin", "user"}) {
		t.Errorf("Roles() = %q, want [admin user]", got)
	}
	if w := mustParse(t, "users: []\n").Warnings(); w != nil {
		t.Errorf("Warnings() of a clean file = %q, want none", w)
	}
}
