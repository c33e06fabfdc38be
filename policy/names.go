package policy

import (
	"fmt"
	"strings"
)

// CheckRoleName reports why name is not a role name the policy can list,
// or nil when it is one. It is the grammar Compile applies to `roles`,
// `all_roles` and rule ids, offered so that tools which write roles (key
// and token generators) refuse a name no rule could ever match.
func CheckRoleName(name string) error {
	if msg := checkName(name); msg != "" {
		return fmt.Errorf("policy: role %q: %s", name, msg)
	}
	return nil
}

var standardMethods = []string{"DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"}

// checkName returns why s is not a valid id or role name, or "".
func checkName(s string) string {
	if s == "" {
		return "must not be empty"
	}
	if len(s) > 128 {
		return "longer than 128 bytes"
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(isUnreserved(b) || b == ':' || b == '@' || b == '/') {
			return "may only contain letters, digits and - . _ ~ : @ /"
		}
	}
	return ""
}

// checkMethod returns why m is not an upper-case method token, or "".
func checkMethod(m string) string {
	if m == "" {
		return "method must not be empty"
	}
	lower := false
	for i := 0; i < len(m); i++ {
		b := m[i]
		switch {
		case 'a' <= b && b <= 'z':
			lower = true
		case 'A' <= b && b <= 'Z', '0' <= b && b <= '9', strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0:
		default:
			return fmt.Sprintf("method %q is not a valid token", m)
		}
	}
	if lower {
		return fmt.Sprintf("method %q must be upper-case (%q); methods are case-sensitive", m, strings.ToUpper(m))
	}
	return ""
}
