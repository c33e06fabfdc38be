package policy

import (
	"fmt"
	"slices"
	"strings"
)

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
