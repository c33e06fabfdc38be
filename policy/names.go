package policy

import (
	"fmt"
	"strings"
)

// MaxMethodBytes bounds a method token. Longer methods are refused by the
// gateway with 405 and by Compile, so a rule can always match what it names.
const MaxMethodBytes = 32

// standardMethods are the methods every gateway accepts without a rule
// naming them, sorted.
var standardMethods = []string{"DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"}

// StandardMethod reports whether m is one of GET, HEAD, POST, PUT, PATCH,
// DELETE and OPTIONS.
func StandardMethod(m string) bool {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS":
		return true
	}
	return false
}

// ValidMethod reports whether m is a method the gateway can forward and a
// rule can name: 1 to MaxMethodBytes bytes of upper-case ASCII letters,
// digits, "-" and "_", starting with a letter. It is the one method grammar:
// Compile applies it to `methods`, and the gateway answers any other method
// with 405 before authenticating. The set is narrower than an RFC 9110
// token on purpose: it is what nginx, the commonest upstream front, parses
// as a method, so a method we pass cannot be read as something else there.
// Methods are case-sensitive (RFC 9110 §9.1): "get" is not valid. It does
// not allocate.
func ValidMethod(m string) bool {
	if m == "" || len(m) > MaxMethodBytes || m[0] < 'A' || m[0] > 'Z' {
		return false
	}
	for i := 1; i < len(m); i++ {
		c := m[i]
		if !('A' <= c && c <= 'Z') && !('0' <= c && c <= '9') && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

// CheckMethod reports why m is not a valid method (see ValidMethod), or nil.
func CheckMethod(m string) error {
	if msg := checkMethod(m); msg != "" {
		return fmt.Errorf("policy: %s", msg)
	}
	return nil
}

// checkMethod returns why m is not a valid method, or "".
func checkMethod(m string) string {
	switch {
	case m == "":
		return "method must not be empty"
	case ValidMethod(m):
		return ""
	case ValidMethod(strings.ToUpper(m)):
		return fmt.Sprintf("method %q must be upper-case (%q); methods are case-sensitive", m, strings.ToUpper(m))
	case len(m) > MaxMethodBytes:
		return fmt.Sprintf("method %q is longer than %d bytes", m, MaxMethodBytes)
	}
	return fmt.Sprintf("method %q is not a valid method: upper-case letters, digits, - and _, starting with a letter", m)
}

// MaxRoleBytes bounds a role name (and a rule id).
const MaxRoleBytes = 128

// ValidRoleName reports whether name is a role name: 1 to MaxRoleBytes
// bytes of ASCII letters, digits and - . _ ~ : @ /. It is the one role
// grammar: the policy applies it to `roles`, `all_roles` and rule ids, and
// every loader of roles (users file, keys file, external issuers' role
// claims, token verification, the CLI) applies it too. The grammar leaves out
// ",", white space and control bytes on purpose: identity headers carry roles
// comma-separated, so "a,b" would arrive upstream as two roles (privilege
// escalation through a crafted name), and a name no rule can list would be
// granted to the upstream while the policy can never see it. It does not
// allocate.
func ValidRoleName(name string) bool {
	if name == "" || len(name) > MaxRoleBytes {
		return false
	}
	for i := 0; i < len(name); i++ {
		b := name[i]
		if !(isUnreserved(b) || b == ':' || b == '@' || b == '/') {
			return false
		}
	}
	return true
}

// CheckRoleName reports why name is not a role name the policy can list,
// or nil when it is one (see ValidRoleName).
func CheckRoleName(name string) error {
	if msg := checkName(name); msg != "" {
		return fmt.Errorf("policy: role %q: %s", name, msg)
	}
	return nil
}

// checkName returns why s is not a valid id or role name, or "".
func checkName(s string) string {
	switch {
	case s == "":
		return "must not be empty"
	case len(s) > MaxRoleBytes:
		return fmt.Sprintf("longer than %d bytes", MaxRoleBytes)
	case !ValidRoleName(s):
		return "may only contain letters, digits and - . _ ~ : @ /"
	}
	return ""
}
