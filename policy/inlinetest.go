package policy

import (
	"fmt"
	"maps"
	"net/netip"
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
		if t.expect != "allow" && t.expect != "deny" {
			c.err(t.lineOf("expect"), t.label(), fmt.Sprintf("expect must be allow or deny, not %q", t.expect))
		}
		if _, ok := ids[t.rule]; t.rule != "" && !ok {
			c.err(t.lineOf("rule"), t.label(), fmt.Sprintf("unknown rule id %q", t.rule))
		}
		who := t.caller()
		for _, r := range who.Roles {
			if declared != nil && !declared[r] {
				c.err(t.lineOf("roles"), t.label(), fmt.Sprintf("unknown role %q: not listed in roles", r))
			}
		}
		req, errs := who.request(method, t.path)
		for _, e := range errs {
			c.err(t.lineOf(e.key), t.label(), e.msg)
		}
		if len(c.errs) > n {
			continue
		}
		d := s.Decide(req)
		res := TestResult{Name: t.name, Line: t.line, Got: d}
		res.Pass = d.Allow == (t.expect == "allow") && (t.rule == "" || t.rule == d.RuleID)
		if !res.Pass {
			want := t.expect
			if t.rule != "" {
				want += " by rule " + t.rule
			}
			res.Msg = fmt.Sprintf("%s %s as %s: got %s, want %s", method, req.Path, who, formatDecision(d), want)
			c.err(t.line, t.label(), "failed: "+res.Msg)
		}
		out = append(out, res)
	}
	return out
}

func (t *testSpec) caller() Caller {
	return Caller{
		Anonymous: t.anonymous, Roles: t.roles, Subject: t.subject, Issuer: t.issuer,
		AuthMethod: t.authMethod, KeyName: t.keyName, Claims: t.claims, Scopes: t.scopes,
		Email: t.email, ClientIP: t.clientIP, Host: t.host,
	}
}

// Caller is a caller in the vocabulary of the policy file's inline tests,
// which `authgate explain`, `policy diff` and `policy matrix` share: who
// calls, with what credential, from where, for which host. The zero value
// is an authenticated caller with no roles; Anonymous excludes every
// identity field.
type Caller struct {
	Anonymous  bool
	Roles      []string
	Subject    string
	Issuer     string
	AuthMethod string // one of AuthMethods, or ""
	KeyName    string
	Claims     map[string]any
	Scopes     []string
	Email      string
	ClientIP   string // an IP address, or ""
	Host       string // a Host header value, or ""
}

// callerErr is a problem with one field of a Caller.
type callerErr struct{ key, msg string }

// Request builds the Request for method and path (canonicalized here) as
// c, or reports every problem with c at once.
func (c Caller) Request(method, path string) (Request, error) {
	r, errs := c.request(method, path)
	if len(errs) == 0 {
		return r, nil
	}
	var b strings.Builder
	for i, e := range errs {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(e.msg)
	}
	return Request{}, fmt.Errorf("policy: %s", b.String())
}

func (c Caller) request(method, path string) (Request, []callerErr) {
	var errs []callerErr
	bad := func(key, format string, args ...any) {
		errs = append(errs, callerErr{key, fmt.Sprintf(format, args...)})
	}
	if msg := checkMethod(method); msg != "" {
		bad("method", "%s", msg)
	}
	canon, err := Canonicalize(path)
	if err != nil {
		bad("path", "invalid path: %v", err)
	}
	if c.Anonymous && c.hasIdentity() {
		bad("anonymous", "anonymous: true with roles or credential fields (issuer, auth_method, key_name, claims, scopes, email, subject)")
	}
	if c.AuthMethod != "" && authBit(c.AuthMethod) == 0 {
		bad("auth_method", "auth_method must be one of %s, not %q", strings.Join(AuthMethods(), ", "), c.AuthMethod)
	}
	for _, r := range c.Roles {
		if msg := checkName(r); msg != "" {
			bad("roles", "role %q: %s", r, msg)
		}
	}
	r := Request{
		Method: method, Path: canon, Authenticated: !c.Anonymous,
		Roles:   slices.Compact(slices.Sorted(slices.Values(c.Roles))),
		Subject: c.Subject, Issuer: c.Issuer, AuthMethod: c.AuthMethod, KeyName: c.KeyName,
		Scopes: slices.Compact(slices.Sorted(slices.Values(c.Scopes))), Email: c.Email,
	}
	if c.Claims != nil {
		r.Claims = ClaimMap(c.Claims)
	}
	if c.ClientIP != "" {
		a, err := netip.ParseAddr(c.ClientIP)
		if err != nil {
			bad("client_ip", "client_ip %q is not an IP address", c.ClientIP)
		}
		r.ClientAddr = a.Unmap()
	}
	if c.Host != "" {
		if r.Host = CanonicalHost(c.Host); r.Host == "" {
			bad("host", "host %q is not a host name or address", c.Host)
		}
	}
	return r, errs
}

func (c Caller) hasIdentity() bool {
	return len(c.Roles) > 0 || c.Subject != "" || c.Issuer != "" || c.AuthMethod != "" || c.KeyName != "" ||
		c.Claims != nil || len(c.Scopes) > 0 || c.Email != ""
}

// String describes c as in test failures and explain: "anonymous",
// "authenticated (no roles)" or "roles [a,b]", then the other fields.
func (c Caller) String() string {
	var b strings.Builder
	switch {
	case c.Anonymous:
		b.WriteString("anonymous")
	case len(c.Roles) == 0:
		b.WriteString("authenticated (no roles)")
	default:
		b.WriteString("roles [" + strings.Join(slices.Compact(slices.Sorted(slices.Values(c.Roles))), ",") + "]")
	}
	var extra []string
	add := func(k, v string) {
		if v != "" {
			extra = append(extra, k+" "+v)
		}
	}
	add("auth_method", c.AuthMethod)
	add("issuer", c.Issuer)
	add("key_name", c.KeyName)
	add("subject", c.Subject)
	if len(c.Claims) > 0 {
		keys := slices.Sorted(maps.Keys(c.Claims))
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("%s=%v", k, c.Claims[k])
		}
		add("claims", "{"+strings.Join(parts, " ")+"}")
	}
	if len(c.Scopes) > 0 {
		add("scopes", "["+strings.Join(c.Scopes, ",")+"]")
	}
	add("email", c.Email)
	add("client_ip", c.ClientIP)
	add("host", c.Host)
	if len(extra) > 0 {
		b.WriteString(" (" + strings.Join(extra, ", ") + ")")
	}
	return b.String()
}

// callerOf describes the caller of r as Caller.String does.
func callerOf(r Request) string {
	c := Caller{Anonymous: !r.Authenticated, Roles: r.Roles, Issuer: r.Issuer, AuthMethod: r.AuthMethod,
		KeyName: r.KeyName, Subject: r.Subject, Scopes: r.Scopes, Email: r.Email, Host: r.Host}
	if m, ok := r.Claims.(ClaimMap); ok {
		c.Claims = m
	}
	if r.ClientAddr.IsValid() {
		c.ClientIP = r.ClientAddr.String()
	}
	return c.String()
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
