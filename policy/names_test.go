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

func TestValidMethod(t *testing.T) {
	for _, m := range []string{"GET", "PURGE", "M2", "MKCOL", "VERSION-CONTROL", "X_Y", strings.Repeat("A", MaxMethodBytes)} {
		if !ValidMethod(m) || CheckMethod(m) != nil {
			t.Errorf("ValidMethod(%q) = false or CheckMethod = %v, want valid", m, CheckMethod(m))
		}
	}
	for _, m := range []string{"", "get", "Get", "2M", "-X", "M.X", "M!", "M X", "M\x00", "É", strings.Repeat("A", MaxMethodBytes+1)} {
		if ValidMethod(m) || CheckMethod(m) == nil {
			t.Errorf("ValidMethod(%q) = true or CheckMethod = nil, want invalid", m)
		}
	}
}

// TestMethodGrammarMatchesCompile keeps ValidMethod the rule Compile
// applies to methods: every method a rule can name is one the gateway
// forwards, so no rule is dead on arrival.
func TestMethodGrammarMatchesCompile(t *testing.T) {
	for _, m := range []string{"M2", "PURGE", "M.X", "get", "2M", strings.Repeat("A", 33)} {
		_, err := Load("p.yaml", []byte("rules:\n  - path: /x\n    authenticated: true\n    methods: [\""+m+"\"]\n"))
		if ValidMethod(m) != (err == nil) {
			t.Errorf("method %q: ValidMethod = %v, Load = %v; want valid exactly when it compiles", m, ValidMethod(m), err)
		}
	}
}

func TestStandardMethod(t *testing.T) {
	for _, m := range standardMethods {
		if !StandardMethod(m) {
			t.Errorf("StandardMethod(%q) = false", m)
		}
	}
	for _, m := range []string{"CONNECT", "TRACE", "PURGE", "get"} {
		if StandardMethod(m) {
			t.Errorf("StandardMethod(%q) = true", m)
		}
	}
}
