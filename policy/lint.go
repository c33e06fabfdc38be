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

// Lint reports, sorted by line:
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
//
// Shadow rules are checked against the shadow set.
func (s *Set) Lint(knownRoles []string) []Warning {
	if s == nil {
		return nil
	}
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
	slices.SortStableFunc(out, func(a, b Warning) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), strings.Compare(a.Msg, b.Msg))
	})
	return out
}
