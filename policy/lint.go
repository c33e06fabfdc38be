package policy

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Warning is a problem in a policy that compiles but is probably not what
// the author meant. It is a plain value returned by Set.Lint.
type Warning struct {
	Line   int
	RuleID string
	Msg    string
}

// String formats w as "line 5: rule admin-area: msg".
func (w Warning) String() string {
	return fmt.Sprintf("line %d: rule %s: %s", w.Line, w.RuleID, w.Msg)
}

// LintOptions tell Lint what the gateway around the policy holds. The zero
// value knows nothing and skips the checks that need it.
type LintOptions struct {
	// KnownRoles are the roles some user or key holds; nil skips the
	// check.
	KnownRoles []string
	// Issuers are the token issuers the gateway accepts: its own and
	// every external one.
	Issuers []string
}

// Lint is LintWith(LintOptions{KnownRoles: knownRoles}).
func (s *Set) Lint(knownRoles []string) []Warning {
	return s.LintWith(LintOptions{KnownRoles: knownRoles})
}

// LintWith reports, sorted by line:
//
//   - a method-less rule whose pattern has method-specific rules for every
//     standard method (GET HEAD POST PUT PATCH DELETE OPTIONS): it can only
//     match non-standard methods. Coverage by other patterns is not analysed.
//   - a public rule whose pattern overlaps a protected rule's pattern for a
//     shared method, unless the public pattern lies entirely inside the
//     protected one (a deliberate carve-out such as /healthz under /**).
//   - a role, in roles or all_roles, that is not in knownRoles (only when
//     knownRoles is not nil).
//   - a method outside the standard set.
//   - a rule granting roles that pins neither issuers nor auth_methods
//     while several issuers are configured: a role from any of them
//     passes, so one misconfigured role_map grants it everywhere.
//   - a deny rule that no allow rule overlaps (for a shared method): the
//     requests it matches are denied anyway, so it never decides; or one
//     whose conditions can never hold.
//   - conditions that can never hold together (key_names without apikey,
//     token conditions on API keys only, one claim that must equal two
//     values).
//
// Shadow rules are checked against the shadow set.
func (s *Set) LintWith(o LintOptions) []Warning {
	if s == nil {
		return nil
	}
	knownRoles := o.KnownRoles
	var out []Warning
	add := func(r *crule, format string, args ...any) {
		w := Warning{Line: r.Line, RuleID: r.ID, Msg: fmt.Sprintf(format, args...)}
		if !slices.Contains(out, w) {
			out = append(out, w)
		}
	}
	sets := []*Set{s}
	all := slices.Clone(s.rules)
	if s.shadow != nil {
		sets = append(sets, s.shadow)
		for _, r := range s.shadow.rules {
			if r.Shadow {
				all = append(all, r)
			}
		}
	}
	for _, set := range sets {
		byKey := map[string][]*crule{}
		for _, r := range set.rules {
			byKey[r.pat.key] = append(byKey[r.pat.key], r)
		}
		for _, r := range set.rules {
			if len(r.Methods) > 0 {
				continue
			}
			var ids []string
			covered := map[string]bool{}
			for _, o := range byKey[r.pat.key] {
				if o != r {
					ids = append(ids, o.ID)
					for _, m := range o.Methods {
						covered[m] = true
					}
				}
			}
			if !slices.ContainsFunc(standardMethods, func(m string) bool { return !covered[m] }) {
				add(r, "only reachable by non-standard methods: rules %s take every standard method on %s", strings.Join(ids, ", "), r.Pattern)
			}
		}
		for _, p := range set.rules {
			if !p.Public {
				continue
			}
			for _, q := range set.rules {
				if q.Public || !methodsOverlap(p.Methods, q.Methods) || (set != s && !p.Shadow && !q.Shadow) {
					continue
				}
				if overlaps(p.pat.segs, q.pat.segs) && !within(p.pat.segs, q.pat.segs) {
					// Overlapping public and protected rules are where an
					// edit silently opens access (cf. unanchored skip-auth
					// regexes).
					add(p, "public pattern %s overlaps protected rule %s (line %d) %s", p.Pattern, q.ID, q.Line, q.Pattern)
				}
			}
		}
	}
	for _, r := range all {
		if knownRoles != nil {
			for _, role := range slices.Concat(r.Roles, r.AllRoles) {
				if !slices.Contains(knownRoles, role) {
					add(r, "role %q is held by no user or API key", role)
				}
			}
		}
		for _, m := range r.Methods {
			if !slices.Contains(standardMethods, m) {
				add(r, "method %q is not a standard method", m)
			}
		}
	}
	for _, r := range all {
		if msg := r.cond.contradiction(); msg != "" {
			add(r, "conditions can never hold together: %s", msg)
			continue
		}
		if r.Deny && !slices.ContainsFunc(all, func(q *crule) bool {
			return !q.Deny && overlaps(q.pat.segs, r.pat.segs) && methodsOverlap(q.Methods, r.Methods)
		}) {
			add(r, "deny rule never decides: no allow rule matches %s for its methods, so those requests are denied anyway", r.Pattern)
		}
		if !r.Deny && len(o.Issuers) > 1 && len(r.Roles)+len(r.AllRoles) > 0 &&
			(r.cond == nil || (len(r.cond.issuers) == 0 && r.cond.authMethods == 0)) {
			add(r, "grants roles [%s] to callers of any of %d issuers (%s); pin issuers or auth_methods so one misconfigured role_map cannot grant it",
				strings.Join(slices.Concat(r.Roles, r.AllRoles), " "), len(o.Issuers), strings.Join(o.Issuers, ", "))
		}
	}
	slices.SortStableFunc(out, func(a, b Warning) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), strings.Compare(a.Msg, b.Msg))
	})
	return out
}

// contradiction returns why c can never hold for any caller, or "".
func (c *conditions) contradiction() string {
	if c == nil {
		return ""
	}
	apikeyOnly := c.authMethods == authBit(AuthAPIKey)
	switch {
	case len(c.keyNames) > 0 && c.authMethods != 0 && c.authMethods&authBit(AuthAPIKey) == 0:
		return "key_names only match API keys, which auth_methods excludes"
	case apikeyOnly && len(c.issuers) > 0:
		return "issuers with auth_methods [apikey]: API keys have no issuer"
	case apikeyOnly && (len(c.claims) > 0 || len(c.anyScopes)+len(c.allScopes) > 0 || len(c.emails) > 0):
		return "claims, scopes or email_domains with auth_methods [apikey]: API keys carry no token"
	}
	for i := range c.claims {
		for j := i + 1; j < len(c.claims); j++ {
			a, b := &c.claims[i], &c.claims[j]
			if a.raw == b.raw && a.op != claimContains && b.op != claimContains && !slices.ContainsFunc(a.values, func(v any) bool {
				return slices.ContainsFunc(b.values, func(w any) bool { return scalarEqual(v, w) })
			}) {
				return "claim " + a.raw + " must equal values that have none in common"
			}
		}
	}
	return ""
}
