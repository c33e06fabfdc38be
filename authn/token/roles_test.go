package token

import (
	"slices"
	"testing"
)

func TestNormalizeRolesAppliesTheRoleGrammar(t *testing.T) {
	got := NormalizeRoles([]string{"b", "a", "", "ops team", "a,b", "b", "team:ops", "rôle"})
	if want := []string{"a", "b", "team:ops"}; !slices.Equal(got, want) {
		t.Errorf("NormalizeRoles() = %q, want %q: names outside policy.ValidRoleName grant nothing", got, want)
	}
}
