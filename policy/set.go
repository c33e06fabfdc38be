package policy

import (
	"slices"
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
	d := Decision{RuleID: cr.ID, Line: cr.Line}
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
