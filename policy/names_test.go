package policy

import (
	"strings"
	"testing"
)

func TestCheckRoleName(t *testing.T) {
	for _, name := range []string{"admin", "team:ops", "a.b_c-d~e", "user@example.org", "org/team"} {
		if err := CheckRoleName(name); err != nil {
			t.Errorf("CheckRoleName(%q) = %v, want nil", name, err)
		}
	}
	for _, name := range []string{"", "ops team", "a,b", "tab\there", "é", strings.Repeat("r", 129)} {
		if err := CheckRoleName(name); err == nil {
			t.Errorf("CheckRoleName(%q) = nil, want an error", name)
		}
	}
}

// TestCheckRoleNameMatchesCompile keeps CheckRoleName the rule Compile
// applies: a name it refuses is refused in a policy file too.
func TestCheckRoleNameMatchesCompile(t *testing.T) {
	for _, name := range []string{"admin", "ops team", "a,b", "x:y"} {
		_, err := Load("p.yaml", []byte("rules:\n  - path: /x\n    roles: [\""+name+"\"]\n"))
		if (CheckRoleName(name) == nil) != (err == nil) {
			t.Errorf("role %q: CheckRoleName = %v, Load = %v; want both nil or both errors", name, CheckRoleName(name), err)
		}
	}
}
