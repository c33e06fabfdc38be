package policy

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// probeSegment stands for a "*" segment in the paths that the diff and
// the matrix decide; "**" stands for two of them, so "/a/*" and "/a/**"
// probe different paths.
const probeSegment = "x-any"

// Probe is one request the diff and the matrix decide: a caller in the
// inline tests' vocabulary, a method, and a concrete path standing for a
// rule's pattern.
type Probe struct {
	Caller  Caller
	Method  string
	Pattern string // the rule pattern the path stands for
	Path    string // canonical
}

// probePaths returns, for every pattern of the sets, a path it matches.
func probePaths(sets ...*Set) map[string]string {
	out := map[string]string{}
	for _, s := range sets {
		for _, r := range s.allRules() {
			if _, ok := out[r.Pattern]; ok {
				continue
			}
			var b strings.Builder
			for _, seg := range r.pat.segs {
				switch seg.kind {
				case segDStar:
					b.WriteString("/" + probeSegment + "/" + probeSegment)
				case segStar:
					b.WriteString("/" + probeSegment)
				default:
					b.WriteString("/" + seg.lit)
				}
			}
			if b.Len() == 0 {
				b.WriteString("/")
			}
			out[r.Pattern] = b.String()
		}
	}
	return out
}

// allRules returns the enforced rules of s (nil for a nil Set).
func (s *Set) allRules() []*crule {
	if s == nil {
		return nil
	}
	return s.rules
}

// probeMethods returns the standard methods and every method a rule of
// the sets names, sorted.
func probeMethods(sets ...*Set) []string {
	ms := slices.Clone(standardMethods)
	for _, s := range sets {
		for _, r := range s.allRules() {
			ms = append(ms, r.Methods...)
		}
	}
	slices.Sort(ms)
	return slices.Compact(ms)
}

// probeCallers returns the callers the diff and the matrix try: anonymous,
// authenticated without roles, each role alone, and for every rule with
// roles or conditions a caller that satisfies them (a rule's `when` is
// not synthesised). They are deduplicated by description and sorted.
func probeCallers(sets ...*Set) []Caller {
	var out []Caller
	seen := map[string]bool{}
	add := func(c Caller) {
		if k := c.String(); !seen[k] {
			seen[k] = true
			out = append(out, c)
		}
	}
	add(Caller{Anonymous: true})
	add(Caller{})
	for _, s := range sets {
		for _, r := range s.allRules() {
			for _, role := range slices.Concat(r.Roles, r.AllRoles) {
				add(Caller{Roles: []string{role}})
			}
		}
	}
	for _, s := range sets {
		for _, r := range s.allRules() {
			if c, ok := satisfying(r); ok {
				add(c)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b Caller) int {
		return cmp.Or(cmp.Compare(callerRank(a), callerRank(b)), strings.Compare(a.String(), b.String()))
	})
	return out
}

func callerRank(c Caller) int {
	switch {
	case c.Anonymous:
		return 0
	case !c.hasIdentity():
		return 1
	}
	return 2
}

// satisfying returns a caller that holds r's roles and conditions, or
// false when r needs nothing beyond an identity.
func satisfying(r *crule) (Caller, bool) {
	var c Caller
	cond := r.cond
	roles := slices.Clone(r.AllRoles)
	if len(r.Roles) > 0 {
		roles = append(roles, r.Roles[0])
	}
	if cond != nil {
		roles = append(roles, cond.allRoles...)
		if len(cond.anyRoles) > 0 {
			roles = append(roles, cond.anyRoles[0])
		}
	}
	c.Roles = slices.Compact(slices.Sorted(slices.Values(roles)))
	if r.Public && cond == nil {
		return c, false
	}
	if cond == nil {
		return c, len(r.AllRoles) > 1
	}
	if r.Public {
		c.Anonymous = true
	}
	if len(cond.issuers) > 0 {
		c.Issuer = cond.issuers[0]
	}
	for _, m := range AuthMethods() {
		if cond.authMethods&authBit(m) != 0 {
			c.AuthMethod = m
			break
		}
	}
	if len(cond.keyNames) > 0 {
		c.KeyName = cond.keyNames[0]
		if c.AuthMethod == "" {
			c.AuthMethod = AuthAPIKey
		}
	}
	for i := range cond.claims {
		m := &cond.claims[i]
		if c.Claims == nil {
			c.Claims = map[string]any{}
		}
		v := m.values[0]
		if m.op == claimContains {
			v = []any{v}
		}
		setClaim(c.Claims, m.path, v)
	}
	c.Scopes = slices.Concat(cond.allScopes)
	if len(cond.anyScopes) > 0 {
		c.Scopes = append(c.Scopes, cond.anyScopes[0])
	}
	if len(cond.emails) > 0 {
		c.Email = "user@" + cond.emails[0]
	}
	if len(cond.cidrs) > 0 {
		c.ClientIP = probeAddr(cond.cidrs[0]).String()
	}
	if len(cond.hosts) > 0 {
		h := cond.hosts[0]
		c.Host = h.exact
		if h.suffix != "" {
			c.Host = probeSegment + h.suffix
		}
	}
	return c, true
}

// probeAddr returns an address inside p that is not its network address
// when p has room.
func probeAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr()
	if n := a.Next(); n.IsValid() && p.Contains(n) {
		return n
	}
	return a
}

func setClaim(m map[string]any, path []string, v any) {
	for _, seg := range path[:len(path)-1] {
		next, ok := m[seg].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[seg] = next
		}
		m = next
	}
	m[path[len(path)-1]] = v
}

// probes returns every probe over the sets: patterns × methods × callers.
func probes(sets ...*Set) []Probe {
	paths := probePaths(sets...)
	patterns := make([]string, 0, len(paths))
	for p := range paths {
		patterns = append(patterns, p)
	}
	slices.Sort(patterns)
	methods := probeMethods(sets...)
	callers := probeCallers(sets...)
	out := make([]Probe, 0, len(patterns)*len(methods)*len(callers))
	for _, pat := range patterns {
		for _, m := range methods {
			for _, c := range callers {
				out = append(out, Probe{Caller: c, Method: m, Pattern: pat, Path: paths[pat]})
			}
		}
	}
	return out
}

// decideProbe decides p on s.
func decideProbe(s *Set, p Probe) Decision {
	r, err := p.Caller.Request(p.Method, p.Path)
	if err != nil {
		return Decision{Reason: ReasonDenyNoRule}
	}
	return s.Decide(r)
}

// MatrixRow is one line of the access matrix: which callers a pattern
// admits for some methods.
type MatrixRow struct {
	Pattern string   `json:"pattern"`
	Methods []string `json:"methods"` // ["*"] when every probed method agrees
	Allowed []string `json:"allowed"` // caller descriptions (Caller.String)
	// Rules are the ids of the rules that decided, allow and deny.
	Rules []string `json:"rules"`
}

// Matrix returns who can do what under s: for every pattern of the
// policy, the callers (see probeCallers) each method admits, methods with
// the same callers merged. It decides with Decide, so deny rules and
// conditions count. It is for tooling and allocates freely.
func Matrix(s *Set) []MatrixRow {
	type key struct{ pattern, allowed string }
	var rows []MatrixRow
	methods := probeMethods(s)
	byKey := map[key]int{}
	ps := probes(s)
	for i := 0; i < len(ps); {
		pat, method := ps[i].Pattern, ps[i].Method
		var allowed, rules []string
		for ; i < len(ps) && ps[i].Pattern == pat && ps[i].Method == method; i++ {
			d := decideProbe(s, ps[i])
			if d.Allow {
				allowed = append(allowed, ps[i].Caller.String())
			}
			if d.RuleID != "" {
				rules = append(rules, d.RuleID)
			}
		}
		k := key{pat, strings.Join(allowed, "\x00")}
		if j, ok := byKey[k]; ok {
			rows[j].Methods = append(rows[j].Methods, method)
			rows[j].Rules = append(rows[j].Rules, rules...)
			continue
		}
		byKey[k] = len(rows)
		rows = append(rows, MatrixRow{Pattern: pat, Methods: []string{method}, Allowed: allowed, Rules: rules})
	}
	for i := range rows {
		if len(rows[i].Methods) == len(methods) {
			rows[i].Methods = []string{"*"}
		}
		rows[i].Rules = slices.Compact(slices.Sorted(slices.Values(rows[i].Rules)))
		if rows[i].Allowed == nil {
			rows[i].Allowed = []string{}
		}
		if rows[i].Rules == nil {
			rows[i].Rules = []string{}
		}
	}
	return rows
}

// FormatMatrix renders rows as stable text: one line per pattern and
// method group, then the callers it admits.
func FormatMatrix(rows []MatrixRow) string {
	var b strings.Builder
	for _, r := range rows {
		who := "nobody"
		if len(r.Allowed) > 0 {
			who = strings.Join(r.Allowed, "; ")
		}
		rules := "no rule"
		if len(r.Rules) > 0 {
			rules = "rules " + strings.Join(r.Rules, ",")
		}
		fmt.Fprintf(&b, "%s %s (%s)\n    allows: %s\n", strings.Join(r.Methods, ","), r.Pattern, rules, who)
	}
	return b.String()
}

// Change is a set of probes whose decision differs between two policies
// the same way: one pattern, one caller, the methods merged.
type Change struct {
	// Kind is "widened" (deny to allow) or "narrowed" (allow to deny).
	Kind    string   `json:"kind"`
	Methods []string `json:"methods"` // ["*"] for every probed method
	Pattern string   `json:"pattern"`
	Path    string   `json:"path"` // the probed path standing for Pattern
	Caller  string   `json:"caller"`
	Old     string   `json:"old"` // formatted decision
	New     string   `json:"new"`
}

// The kinds of Change.
const (
	ChangeWidened  = "widened"
	ChangeNarrowed = "narrowed"
)

// Diff decides every probe of old and new (patterns of both × methods ×
// callers in the inline tests' vocabulary, see probeCallers) on both and
// returns those whose allow or deny differs, widenings first, sorted by
// pattern and caller, with the methods that change alike merged. A change
// of the deciding rule alone is not reported. It is for tooling and
// allocates freely.
func Diff(old, new *Set) []Change {
	var out []Change
	for _, p := range probes(old, new) {
		od, nd := decideProbe(old, p), decideProbe(new, p)
		if od.Allow == nd.Allow {
			continue
		}
		kind := ChangeNarrowed
		if nd.Allow {
			kind = ChangeWidened
		}
		out = append(out, Change{Kind: kind, Methods: []string{p.Method}, Pattern: p.Pattern, Path: p.Path,
			Caller: p.Caller.String(), Old: formatDecision(od), New: formatDecision(nd)})
	}
	slices.SortStableFunc(out, func(a, b Change) int {
		return cmp.Or(-strings.Compare(a.Kind, b.Kind), strings.Compare(a.Pattern, b.Pattern),
			strings.Compare(a.Caller, b.Caller), strings.Compare(a.Old, b.Old), strings.Compare(a.New, b.New),
			strings.Compare(a.Methods[0], b.Methods[0]))
	})
	all := len(probeMethods(old, new))
	var merged []Change
	for _, c := range out {
		if n := len(merged); n > 0 {
			last := &merged[n-1]
			if last.Kind == c.Kind && last.Pattern == c.Pattern && last.Caller == c.Caller && last.Old == c.Old && last.New == c.New {
				last.Methods = append(last.Methods, c.Methods...)
				continue
			}
		}
		merged = append(merged, c)
	}
	for i := range merged {
		if len(merged[i].Methods) == all {
			merged[i].Methods = []string{"*"}
		}
	}
	return merged
}

// Widens reports whether some change is a widening.
func Widens(changes []Change) bool {
	return slices.ContainsFunc(changes, func(c Change) bool { return c.Kind == ChangeWidened })
}

// FormatDiff renders changes as stable text, two lines per change.
func FormatDiff(changes []Change) string {
	if len(changes) == 0 {
		return "no decision changes\n"
	}
	var b strings.Builder
	for _, c := range changes {
		fmt.Fprintf(&b, "%-8s %s %s as %s\n         was %s\n         now %s\n", c.Kind, strings.Join(c.Methods, ","), c.Pattern, c.Caller, c.Old, c.New)
	}
	return b.String()
}
