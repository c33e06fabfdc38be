package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"cel.dev/cel-go/cel"
)

// Load parses and compiles a policy file.
func Load(filename string, data []byte) (*Set, error) {
	f, err := Parse(filename, data)
	if err != nil {
		return nil, err
	}
	return Compile(f)
}

// Compile validates f, builds the rule index, and runs the inline tests. It
// reports every problem at once as *Error values joined with errors.Join. The
// returned Set is immutable. Compile is safe for concurrent use.
func Compile(f *File) (*Set, error) {
	if f == nil {
		return nil, &Error{Msg: "policy: no policy file"}
	}
	c := &compiler{f: f}
	declared := c.declaredRoles()
	var global *CORS
	if f.cors != nil {
		global = c.cors(f.cors, "cors")
	}
	var enforced, shadow []*crule
	ids := map[string]*crule{}
	for i := range f.rules {
		r, ok := c.rule(&f.rules[i], declared)
		if prev, dup := ids[r.ID]; dup {
			c.errRule(&f.rules[i], "id", fmt.Sprintf("duplicate id %q: also used by rule %d (line %d)", r.ID, prev.index, prev.Line))
			continue
		}
		ids[r.ID] = r
		if !ok {
			continue
		}
		if r.Shadow {
			shadow = append(shadow, r)
		} else {
			enforced = append(enforced, r)
		}
	}
	if len(f.rules) == 0 {
		c.err(0, "", "no rules: a policy without rules denies everything")
	}
	set := c.build(enforced, "")
	if len(shadow) > 0 {
		var base []*crule
		for _, r := range enforced {
			if !slices.ContainsFunc(shadow, func(s *crule) bool {
				return s.pat.key == r.pat.key && slices.Equal(s.Methods, r.Methods) && s.Deny == r.Deny
			}) {
				base = append(base, r)
			}
		}
		all := append(base, shadow...)
		slices.SortFunc(all, func(a, b *crule) int { return a.index - b.index })
		set.shadow = c.build(all, "shadow set: ")
		set.shadow.cors = global
	}
	set.cors = global
	set.methods = map[string]bool{}
	for _, r := range append(slices.Clone(enforced), shadow...) {
		for _, m := range r.Methods {
			set.methods[m] = true
		}
	}
	if len(c.errs) == 0 {
		set.tests = c.tests(set, ids, declared)
	}
	if err := errors.Join(c.errs...); err != nil {
		return nil, err
	}
	return set, nil
}

type compiler struct {
	f    *File
	errs []error
	// cel is the CEL environment, built on the first `when`.
	cel    *cel.Env
	celErr string
}

func (c *compiler) err(line int, where, msg string) {
	c.errs = append(c.errs, &Error{File: c.f.name, Line: line, Where: where, Msg: msg})
}

func (c *compiler) errRule(r *ruleSpec, key, msg string) {
	c.err(r.lineOf(key), r.label(), msg)
}

func (c *compiler) declaredRoles() map[string]bool {
	if !c.f.rolesDeclared {
		return nil
	}
	m := make(map[string]bool, len(c.f.roles))
	for _, r := range c.f.roles {
		if msg := checkName(r); msg != "" {
			c.err(c.f.rolesLine, "roles", fmt.Sprintf("role %q: %s", r, msg))
		}
		if m[r] {
			c.err(c.f.rolesLine, "roles", fmt.Sprintf("duplicate role %q", r))
		}
		m[r] = true
	}
	return m
}

func (c *compiler) roleList(r *ruleSpec, key string, roles []string, declared map[string]bool) []string {
	out := slices.Clone(roles)
	slices.Sort(out)
	for i, role := range out {
		if msg := checkName(role); msg != "" {
			c.errRule(r, key, fmt.Sprintf("role %q: %s", role, msg))
		} else if declared != nil && !declared[role] {
			// A typo in a role name would otherwise deny silently or, in
			// all_roles, make a rule unsatisfiable.
			c.errRule(r, key, fmt.Sprintf("unknown role %q: not listed in roles", role))
		}
		if i > 0 && out[i-1] == role {
			c.errRule(r, key, fmt.Sprintf("duplicate role %q", role))
		}
	}
	return slices.Compact(out)
}

// rule validates rs; ok is false when it has errors.
func (c *compiler) rule(rs *ruleSpec, declared map[string]bool) (r *crule, ok bool) {
	n := len(c.errs)
	r = &crule{index: rs.index}
	r.Line = rs.line
	r.Shadow = rs.shadow
	r.ID = rs.id
	if _, ok := rs.keyLines["id"]; ok {
		if msg := checkName(rs.id); msg != "" {
			c.errRule(rs, "id", fmt.Sprintf("id %q: %s", rs.id, msg))
		}
	} else {
		r.ID = fmt.Sprintf("rule-%d", rs.index)
	}
	pat, err := parsePattern(rs.path, c.f.caseInsensitive)
	if err != nil {
		c.errRule(rs, "path", "invalid path: "+err.Error())
	}
	r.pat = pat
	r.Pattern = pat.canon
	seen := map[string]bool{}
	for _, m := range rs.methods {
		if msg := checkMethod(m); msg != "" {
			c.errRule(rs, "methods", msg)
		} else if seen[m] {
			c.errRule(rs, "methods", fmt.Sprintf("duplicate method %q", m))
		}
		seen[m] = true
	}
	r.Methods = slices.Compact(slices.Sorted(slices.Values(rs.methods)))
	if _, set := rs.keyLines["on_unauthenticated"]; set {
		switch rs.onUnauth {
		case "redirect":
			r.OnUnauthenticated = UnauthenticatedRedirect
		case "deny":
			r.OnUnauthenticated = UnauthenticatedDeny
		default:
			c.errRule(rs, "on_unauthenticated", fmt.Sprintf("on_unauthenticated: want redirect or deny, got %q", rs.onUnauth))
		}
	}
	r.Roles = c.roleList(rs, "roles", rs.roles, declared)
	r.AllRoles = c.roleList(rs, "all_roles", rs.allRoles, declared)
	r.cond = c.conditions(rs)
	if rs.deny != nil {
		if !*rs.deny {
			c.errRule(rs, "deny", "deny: false is not a rule; remove the key")
		}
		r.Deny = *rs.deny
	}
	if r.Deny {
		c.denyRule(rs, r)
		r.Conditions = r.cond.describe()
		return r, len(c.errs) == n
	}
	if r.cond != nil && r.cond.identity() && rs.public != nil && *rs.public {
		// A public rule admits callers without credentials, who have no
		// issuer, claims or roles: such a condition could only ever deny.
		c.errRule(rs, "public", "public: true with an identity condition (issuers, auth_methods, key_names, claims, scopes, email_domains); use authenticated: true")
	}
	r.Conditions = r.cond.describe()
	if rs.rateLimit != nil {
		r.rateLimit = c.rateLimit(rs, r)
	}
	if rs.cors != nil {
		r.cors = c.cors(rs.cors, r.ID)
	}

	levels := 0
	if rs.public != nil {
		if !*rs.public {
			c.errRule(rs, "public", "public: false is not an access level; use authenticated: true or roles")
		}
		r.Public = *rs.public
		levels++
	}
	if rs.authenticated != nil {
		if !*rs.authenticated {
			c.errRule(rs, "authenticated", "authenticated: false is not an access level; use public: true or roles")
		}
		r.Authenticated = *rs.authenticated
		levels++
	}
	if len(r.Roles) > 0 || len(r.AllRoles) > 0 {
		levels++
	}
	switch {
	case levels == 0:
		// A rule without an access level must not default to anything.
		c.errRule(rs, "", "no access level: set one of public: true, authenticated: true, roles or all_roles, or deny: true")
	case levels > 1:
		c.errRule(rs, "", "several access levels: set exactly one of public: true, authenticated: true, or roles/all_roles")
	}
	return r, len(c.errs) == n
}

// build indexes rules (file order) into a Set and reports rules with the
// same pattern and overlapping methods.
func (c *compiler) build(rules []*crule, prefix string) *Set {
	s := &Set{name: c.f.name, hash: c.f.hash, ci: c.f.caseInsensitive, rules: rules, root: &node{}}
	byKey := map[string][]*crule{}
	for _, r := range rules {
		s.needs |= r.cond.needs()
		if r.Deny {
			// Deny rules never conflict: any one that matches wins.
			if s.denyRoot == nil {
				s.denyRoot = &node{}
			}
			s.denyRoot.insert(r)
			continue
		}
		for _, o := range byKey[r.pat.key] {
			if prefix != "" && !o.Shadow && !r.Shadow {
				continue // already reported for the enforced set
			}
			if methodsConflict(o.Methods, r.Methods) {
				c.err(r.Line, fmt.Sprintf("rule %d (%s)", r.index, describe(r)),
					fmt.Sprintf("%sconflicts with rule %d (line %d): same path and overlapping methods", prefix, o.index, o.Line))
			}
		}
		byKey[r.pat.key] = append(byKey[r.pat.key], r)
		s.root.insert(r)
	}
	return s
}

func describe(r *crule) string {
	if r.Deny {
		return "deny " + strings.Join(append(slices.Clone(r.Methods), r.Pattern), " ")
	}
	if len(r.Methods) > 0 {
		return strings.Join(r.Methods, ",") + " " + r.Pattern
	}
	return r.Pattern
}

// methodsConflict reports whether two rules with the same pattern would
// compete for one request: both have no methods, or they share a method. A
// method-less rule next to method-specific ones is the documented fallback.
func methodsConflict(a, b []string) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	return methodsOverlap(a, b)
}

// methodsOverlap reports whether some method is accepted by both lists.
func methodsOverlap(a, b []string) bool {
	if len(a) == 0 || len(b) == 0 {
		return true
	}
	for _, m := range a {
		if slices.Contains(b, m) {
			return true
		}
	}
	return false
}
