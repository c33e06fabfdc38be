package policy

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Rule is a read-only view of one compiled rule, returned by Set.Rules. Its
// slices are copies owned by the caller. The zero value describes no rule.
type Rule struct {
	ID            string   // unique; "rule-N" when the file gives none
	Line          int      // line of the rule in the file
	Pattern       string   // canonical pattern, without trailing slash
	Methods       []string // sorted; empty means any method
	Public        bool     // no credentials needed
	Authenticated bool     // any valid identity
	Roles         []string // any-of, sorted
	AllRoles      []string // all-of, sorted
	Shadow        bool     // dry-run rule, only present in the shadow set
	// OnUnauthenticated is what an anonymous browser navigation that the
	// rule denies gets: the gateway's default, a redirect to the sign-in
	// page, or the 401.
	OnUnauthenticated OnUnauthenticated
}

type crule struct {
	Rule
	index int // 1-based position in the file
	pat   pattern
}

func (r *crule) view() Rule {
	v := r.Rule
	v.Methods = slices.Clone(r.Methods)
	v.Roles = slices.Clone(r.Roles)
	v.AllRoles = slices.Clone(r.AllRoles)
	return v
}

func (r *crule) allowsMethod(m string) bool {
	if len(r.Methods) == 0 {
		return true
	}
	for _, x := range r.Methods {
		if x == m {
			return true
		}
	}
	return false
}

// node is one segment of the trie. Rules in exact and rest are ordered with
// method-specific rules first, so a method list beats no method list.
type node struct {
	lit   map[string]*node
	star  *node
	exact []*crule // rules whose pattern ends here
	rest  []*crule // rules whose pattern ends with "**" here
}

func (n *node) insert(r *crule) {
	for _, s := range r.pat.segs {
		switch s.kind {
		case segDStar:
			n.rest = insertOrdered(n.rest, r)
			return
		case segStar:
			if n.star == nil {
				n.star = &node{}
			}
			n = n.star
		default:
			if n.lit == nil {
				n.lit = map[string]*node{}
			}
			c := n.lit[s.key]
			if c == nil {
				c = &node{}
				n.lit[s.key] = c
			}
			n = c
		}
	}
	n.exact = insertOrdered(n.exact, r)
}

func insertOrdered(list []*crule, r *crule) []*crule {
	list = append(list, r)
	slices.SortStableFunc(list, func(a, b *crule) int {
		am, bm := len(a.Methods) > 0, len(b.Methods) > 0
		switch {
		case am == bm:
			return a.index - b.index
		case am:
			return -1
		}
		return 1
	})
	return list
}

func pick(list []*crule, method string) *crule {
	for _, r := range list {
		if r.allowsMethod(method) {
			return r
		}
	}
	return nil
}

// lookup walks the trie depth first: literal child, then "*", then "**".
// rest is the folded path after the leading slash, without trailing slash.
// A trie node sits at one depth, so each node is visited at most once per
// lookup: backtracking is bounded by the size of the trie, not the path.
func (n *node) lookup(rest []byte, method string) *crule {
	if len(rest) == 0 {
		if r := pick(n.exact, method); r != nil {
			return r
		}
		return pick(n.rest, method)
	}
	seg, tail := rest, rest[len(rest):]
	if i := bytes.IndexByte(rest, '/'); i >= 0 {
		seg, tail = rest[:i], rest[i+1:]
	}
	if n.lit != nil {
		if c := n.lit[string(seg)]; c != nil {
			if r := c.lookup(tail, method); r != nil {
				return r
			}
		}
	}
	if n.star != nil && len(seg) > 0 {
		if r := n.star.lookup(tail, method); r != nil {
			return r
		}
	}
	return pick(n.rest, method)
}

// Set is a compiled, immutable policy. Obtain one from Compile or Load; a
// nil *Set denies every request. All methods are safe for concurrent use.
type Set struct {
	name   string
	hash   string
	ci     bool
	rules  []*crule // file order
	root   *node
	shadow *Set
	tests  []TestResult
	// methods are the methods some rule (enforced or shadow) lists.
	methods map[string]bool
}

// NamesMethod reports whether some rule of the set lists method. The
// gateway accepts a method outside the standard set only then.
func (s *Set) NamesMethod(method string) bool {
	return s != nil && s.methods[method]
}

// Decide returns the decision for r: the most specific matching rule wins,
// and no match denies. r.Path must come from Canonicalize. Decide does not
// allocate for paths up to 512 bytes.
func (s *Set) Decide(r Request) Decision {
	if s == nil || s.root == nil {
		return Decision{Reason: ReasonDenyNoRule}
	}
	return s.decide(s.find(r.Path, r.Method), r)
}

func (s *Set) find(path, method string) *crule {
	if path == "" || path[0] != '/' {
		return nil
	}
	for i := 0; i < len(method); i++ {
		if 'a' <= method[i] && method[i] <= 'z' {
			// Methods are case-sensitive: "get" must not reach a
			// method-less rule that a "GET" rule was meant to override.
			return nil
		}
	}
	var buf [512]byte
	key := foldInto(buf[:0], path[1:], s.ci)
	if n := len(key); n > 0 && key[n-1] == '/' {
		key = key[:n-1]
	}
	return s.root.lookup(key, method)
}

func (s *Set) decide(cr *crule, r Request) Decision {
	if cr == nil {
		return Decision{Reason: ReasonDenyNoRule}
	}
	d := Decision{RuleID: cr.ID, Line: cr.Line, OnUnauthenticated: cr.OnUnauthenticated}
	switch {
	case cr.Public:
		d.Allow, d.Reason = true, ReasonAllowPublic
	case !r.Authenticated:
		d.Reason = ReasonDenyUnauthenticated
	case cr.Authenticated:
		d.Allow, d.Reason = true, ReasonAllowAuthenticated
	case (len(cr.Roles) == 0 || hasAny(r.Roles, cr.Roles)) && hasAll(r.Roles, cr.AllRoles):
		d.Allow, d.Reason = true, ReasonAllowRole
	default:
		d.Reason = ReasonDenyMissingRole
	}
	return d
}

// hasAny reports whether the sorted have contains one of want.
func hasAny(have, want []string) bool {
	for _, w := range want {
		if _, ok := slices.BinarySearch(have, w); ok {
			return true
		}
	}
	return false
}

// hasAll reports whether the sorted have contains every entry of want.
func hasAll(have, want []string) bool {
	for _, w := range want {
		if _, ok := slices.BinarySearch(have, w); !ok {
			return false
		}
	}
	return true
}

// Shadow returns nil when no rule is marked shadow, else the dry-run set: the
// enforced rules with the shadow rules added, a shadow rule replacing an
// enforced rule with the same pattern and methods.
func (s *Set) Shadow() *Set {
	if s == nil {
		return nil
	}
	return s.shadow
}

// Hash returns the hex SHA-256 of the policy file bytes.
func (s *Set) Hash() string {
	if s == nil {
		return ""
	}
	return s.hash
}

// Len returns the number of rules the set enforces.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.rules)
}

// Rules returns the rules of the set in file order.
func (s *Set) Rules() []Rule {
	if s == nil {
		return nil
	}
	out := make([]Rule, len(s.rules))
	for i, r := range s.rules {
		out[i] = r.view()
	}
	return out
}

// RuleIDs returns the ids of the rules of the set in file order, for metric
// pre-registration. Include Shadow().RuleIDs() for shadow metrics.
func (s *Set) RuleIDs() []string {
	if s == nil {
		return nil
	}
	out := make([]string, len(s.rules))
	for i, r := range s.rules {
		out[i] = r.ID
	}
	return out
}

// TestResult is the outcome of one inline test of the policy file, returned
// by Set.RunTests as a copy owned by the caller.
type TestResult struct {
	Name string
	Line int
	Pass bool
	Got  Decision
	Msg  string // why it failed; "" when it passed
}

// RunTests returns the results of the inline tests, run at compile time.
// Compile fails when any test fails, so every result of a compiled Set
// passes.
func (s *Set) RunTests() []TestResult {
	if s == nil {
		return nil
	}
	return slices.Clone(s.tests)
}

// Load parses and compiles a policy file.
func Load(filename string, data []byte) (*Set, error) {
	f, err := Parse(filename, data)
	if err != nil {
		return nil, err
	}
	return Compile(f)
}

var standardMethods = []string{"DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"}

// Compile validates f, builds the rule index, and runs the inline tests. It
// reports every problem at once as *Error values joined with errors.Join. The
// returned Set is immutable. Compile is safe for concurrent use.
func Compile(f *File) (*Set, error) {
	if f == nil {
		return nil, &Error{Msg: "policy: no policy file"}
	}
	c := &compiler{f: f}
	declared := c.declaredRoles()
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
				return s.pat.key == r.pat.key && slices.Equal(s.Methods, r.Methods)
			}) {
				base = append(base, r)
			}
		}
		all := append(base, shadow...)
		slices.SortFunc(all, func(a, b *crule) int { return a.index - b.index })
		set.shadow = c.build(all, "shadow set: ")
	}
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
		c.errRule(rs, "", "no access level: set one of public: true, authenticated: true, roles or all_roles")
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

func (c *compiler) tests(s *Set, ids map[string]*crule, declared map[string]bool) []TestResult {
	var out []TestResult
	for i := range c.f.tests {
		t := &c.f.tests[i]
		n := len(c.errs)
		method := t.method
		if method == "" {
			method = "GET"
		} else if msg := checkMethod(method); msg != "" {
			c.err(t.lineOf("method"), t.label(), msg)
		}
		canon, err := Canonicalize(t.path)
		if err != nil {
			c.err(t.lineOf("path"), t.label(), "invalid path: "+err.Error())
		}
		if t.expect != "allow" && t.expect != "deny" {
			c.err(t.lineOf("expect"), t.label(), fmt.Sprintf("expect must be allow or deny, not %q", t.expect))
		}
		if t.anonymous && len(t.roles) > 0 {
			c.err(t.lineOf("anonymous"), t.label(), "anonymous: true with roles")
		}
		if _, ok := ids[t.rule]; t.rule != "" && !ok {
			c.err(t.lineOf("rule"), t.label(), fmt.Sprintf("unknown rule id %q", t.rule))
		}
		roles := slices.Compact(slices.Sorted(slices.Values(t.roles)))
		for _, r := range roles {
			if declared != nil && !declared[r] {
				c.err(t.lineOf("roles"), t.label(), fmt.Sprintf("unknown role %q: not listed in roles", r))
			}
		}
		if len(c.errs) > n {
			continue
		}
		req := Request{Method: method, Path: canon, Authenticated: !t.anonymous, Roles: roles}
		d := s.Decide(req)
		res := TestResult{Name: t.name, Line: t.line, Got: d}
		res.Pass = d.Allow == (t.expect == "allow") && (t.rule == "" || t.rule == d.RuleID)
		if !res.Pass {
			want := t.expect
			if t.rule != "" {
				want += " by rule " + t.rule
			}
			res.Msg = fmt.Sprintf("%s %s as %s: got %s, want %s", method, canon, caller(req), formatDecision(d), want)
			c.err(t.line, t.label(), "failed: "+res.Msg)
		}
		out = append(out, res)
	}
	return out
}

func caller(r Request) string {
	switch {
	case !r.Authenticated:
		return "anonymous"
	case len(r.Roles) == 0:
		return "authenticated (no roles)"
	}
	return "roles [" + strings.Join(r.Roles, ",") + "]"
}

func formatDecision(d Decision) string {
	verb := "deny"
	if d.Allow {
		verb = "allow"
	}
	if d.RuleID == "" {
		return fmt.Sprintf("%s (%s)", verb, d.Reason)
	}
	return fmt.Sprintf("%s (%s) by rule %s (line %d)", verb, d.Reason, d.RuleID, d.Line)
}
