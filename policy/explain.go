package policy

import (
	"fmt"
	"slices"
	"strings"
)

// Why a rule did or did not win, as reported in a Candidate.
const (
	WhyWinner       = "winner"
	WhyPathMismatch = "path does not match"
	WhyMethod       = "method not listed"
	WhyLessSpecific = "less specific than winner"
	WhyNotApplied   = "not applied: request rejected"
	// WhyDenied: the deny rule that decided.
	WhyDenied = "deny rule, decided"
	// WhyDenyAlso: a deny rule that matched too, less specific than the
	// one that decided.
	WhyDenyAlso = "deny rule, also matched"
	// WhyDenyNotHeld: a deny rule whose path and method match but whose
	// conditions do not hold.
	WhyDenyNotHeld = "deny rule, conditions fail"
	// WhyOverridden: the most specific allow rule, overridden by a deny.
	WhyOverridden = "overridden by deny rule"
)

// Candidate is one rule of the set as seen by Explain; a plain value owned by
// the caller.
type Candidate struct {
	RuleID  string
	Line    int
	Pattern string
	Methods []string
	Why     string // one of the Why* constants
}

// Explanation tells why a request gets its decision. It is a value built by
// Set.Explain; the zero value explains nothing.
type Explanation struct {
	Method string
	// Path is the canonical path that was matched, "" when PathError is set.
	Path string
	// PathError is the reason Canonicalize rejected the path, or "".
	PathError string
	Caller    string // "anonymous", "authenticated (no roles)" or "roles [a,b]", then credential fields
	Decision  Decision
	// Failed is the condition of the winning rule that does not hold
	// (its YAML key, such as "issuers" or "when") when Decision.Reason is
	// ReasonDenyCondition, else "".
	Failed     string
	Candidates []Candidate // every rule of the set, in file order
}

// Explain decides r like Decide, after canonicalizing r.Path, and reports
// every rule of the set with the reason it won or lost. It allocates and is
// meant for tooling, not for the request path.
func (s *Set) Explain(r Request) Explanation {
	e := Explanation{Method: r.Method, Caller: callerOf(r)}
	canon, err := Canonicalize(r.Path)
	if err != nil {
		e.PathError = err.Error()
	} else {
		e.Path = canon
		r.Path = canon
		e.Decision = s.Decide(r)
	}
	if s == nil {
		return e
	}
	var allow *crule
	if err == nil && s.root != nil {
		allow, _ = s.find(&r)
		if allow != nil && e.Decision.Reason == ReasonDenyCondition {
			e.Failed = allow.cond.failing(&r, false)
		}
	}
	keys := pathKeys(canon, s.ci)
	for _, cr := range s.rules {
		c := Candidate{RuleID: cr.ID, Line: cr.Line, Pattern: cr.Pattern, Methods: slices.Clone(cr.Methods)}
		switch {
		case err != nil:
			c.Why = WhyNotApplied
		case !cr.pat.matches(keys):
			c.Why = WhyPathMismatch
		case !cr.allowsMethod(r.Method):
			c.Why = WhyMethod
		case cr.Deny && cr.ID == e.Decision.RuleID:
			c.Why = WhyDenied
		case cr.Deny && cr.cond.failing(&r, true) != "":
			c.Why = WhyDenyNotHeld
		case cr.Deny:
			c.Why = WhyDenyAlso
		case cr == allow && e.Decision.Reason == ReasonDenyRule:
			c.Why = WhyOverridden
		case cr.ID == e.Decision.RuleID:
			c.Why = WhyWinner
		case e.Decision.RuleID == "":
			c.Why = WhyNotApplied
		default:
			c.Why = WhyLessSpecific
		}
		e.Candidates = append(e.Candidates, c)
	}
	return e
}

// String renders e as stable, human-readable text.
func (e Explanation) String() string {
	var b strings.Builder
	if e.PathError != "" {
		fmt.Fprintf(&b, "request: %s <rejected path> as %s\n", e.Method, e.Caller)
		fmt.Fprintf(&b, "path: %s\n", e.PathError)
	} else {
		fmt.Fprintf(&b, "request: %s %s as %s\n", e.Method, e.Path, e.Caller)
	}
	fmt.Fprintf(&b, "decision: %s\n", formatDecision(e.Decision))
	if e.Failed != "" {
		fmt.Fprintf(&b, "condition: %s does not hold\n", e.Failed)
	}
	if rl := e.Decision.RateLimit; rl != nil {
		fmt.Fprintf(&b, "rate limit: %s\n", rl)
	}
	b.WriteString("candidates:\n")
	for _, c := range e.Candidates {
		m := "*"
		if len(c.Methods) > 0 {
			m = strings.Join(c.Methods, ",")
		}
		fmt.Fprintf(&b, "  %-29s %s (line %d) %s %s\n", c.Why, c.RuleID, c.Line, m, c.Pattern)
	}
	return b.String()
}
