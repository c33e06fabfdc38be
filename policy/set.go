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
	AllRoles      []string // all-of, sorted; of a deny rule: conditions
	Shadow        bool     // dry-run rule, only present in the shadow set
	// OnUnauthenticated is what an anonymous browser navigation that the
	// rule denies gets: the gateway's default, a redirect to the sign-in
	// page, or the 401.
	OnUnauthenticated OnUnauthenticated
	Deny              bool // a deny rule: refuses every request it matches
	// Conditions are the rule's conditions as "key value" lines, in the
	// order of the README table; empty when it has none.
	Conditions []string
}

type crule struct {
	Rule
	index     int // 1-based position in the file
	pat       pattern
	cond      *conditions // nil when the rule has none
	rateLimit *RateLimit
	cors      *CORS
}

func (r *crule) view() Rule {
	v := r.Rule
	v.Methods = slices.Clone(r.Methods)
	v.Roles = slices.Clone(r.Roles)
	v.AllRoles = slices.Clone(r.AllRoles)
	v.Conditions = slices.Clone(r.Conditions)
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
	name     string
	hash     string
	ci       bool
	rules    []*crule // file order, allow and deny rules
	root     *node    // allow rules
	denyRoot *node    // deny rules; nil when there are none
	cors     *CORS    // the top-level cors block; nil when none
	needs    needs
	shadow   *Set
	tests    []TestResult
	// methods are the methods some rule (enforced or shadow) lists.
	methods map[string]bool
}

// NamesMethod reports whether some rule of the set lists method. The
// gateway accepts a method outside the standard set only then.
func (s *Set) NamesMethod(method string) bool {
	return s != nil && s.methods[method]
}

// NeedsHost reports whether some rule (enforced or shadow) reads
// Request.Host, so the caller computes CanonicalHost only then.
func (s *Set) NeedsHost() bool { return s != nil && (s.needs|s.shadow.needsOrZero())&needHost != 0 }

// NeedsClientAddr reports whether some rule (enforced or shadow) reads
// Request.ClientAddr.
func (s *Set) NeedsClientAddr() bool {
	return s != nil && (s.needs|s.shadow.needsOrZero())&needClientAddr != 0
}

func (s *Set) needsOrZero() needs {
	if s == nil {
		return 0
	}
	return s.needs
}

// Decide returns the decision for r. A deny rule that matches (path,
// method and conditions) wins over every allow rule; otherwise the most
// specific matching allow rule decides, its conditions included, and no
// match denies. r.Path must come from Canonicalize. Decide does not
// allocate for paths up to 512 bytes unless a `when` expression runs.
func (s *Set) Decide(r Request) Decision {
	if s == nil || s.root == nil {
		return Decision{Reason: ReasonDenyNoRule}
	}
	allow, deny := s.find(&r)
	if deny != nil {
		return Decision{RuleID: deny.ID, Line: deny.Line, Reason: ReasonDenyRule, CORS: s.corsOf(allow)}
	}
	return s.decide(allow, &r)
}

// find returns the most specific allow rule for r's path and method, and
// the most specific deny rule whose conditions r satisfies.
func (s *Set) find(r *Request) (allow, deny *crule) {
	path, method := r.Path, r.Method
	if path == "" || path[0] != '/' {
		return nil, nil
	}
	for i := 0; i < len(method); i++ {
		if 'a' <= method[i] && method[i] <= 'z' {
			// Methods are case-sensitive: "get" must not reach a
			// method-less rule that a "GET" rule was meant to override.
			return nil, nil
		}
	}
	var buf [512]byte
	key := foldInto(buf[:0], path[1:], s.ci)
	if n := len(key); n > 0 && key[n-1] == '/' {
		key = key[:n-1]
	}
	allow = s.root.lookup(key, method, nil)
	if s.denyRoot != nil {
		deny = s.denyRoot.lookup(key, method, r)
	}
	return allow, deny
}

// corsOf returns the CORS policy of a request decided by cr.
func (s *Set) corsOf(cr *crule) *CORS {
	if cr != nil && cr.cors != nil {
		return cr.cors
	}
	return s.cors
}

func (s *Set) decide(cr *crule, r *Request) Decision {
	if cr == nil {
		return Decision{Reason: ReasonDenyNoRule, CORS: s.cors}
	}
	d := Decision{RuleID: cr.ID, Line: cr.Line, CORS: s.corsOf(cr), OnUnauthenticated: cr.OnUnauthenticated}
	switch {
	case cr.Public:
		d.Reason = ReasonAllowPublic
	case !r.Authenticated:
		d.Reason = ReasonDenyUnauthenticated
		return d
	case cr.Authenticated:
		d.Reason = ReasonAllowAuthenticated
	case (len(cr.Roles) == 0 || hasAny(r.Roles, cr.Roles)) && hasAll(r.Roles, cr.AllRoles):
		d.Reason = ReasonAllowRole
	default:
		d.Reason = ReasonDenyMissingRole
		return d
	}
	if cr.cond != nil && cr.cond.failing(r, false) != "" {
		d.Reason = ReasonDenyCondition
		return d
	}
	d.Allow, d.RateLimit = true, cr.rateLimit
	return d
}

// CORSFor returns the CORS policy of requests with path (from
// Canonicalize) and method: that of the allow rule that would decide them,
// else the top-level one; nil when there is none. The gateway uses it to
// answer a preflight, which carries no credentials, for the method it
// announces.
func (s *Set) CORSFor(path, method string) *CORS {
	if s == nil || s.root == nil {
		return nil
	}
	allow, _ := s.find(&Request{Path: path, Method: method})
	return s.corsOf(allow)
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
