package policy

import "fmt"

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
