package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// needs is what a Set's conditions read beyond method, path and identity,
// so the gateway computes it only when some rule uses it.
type needs uint8

const (
	needHost       needs = 1 << iota // Request.Host
	needClientAddr                   // Request.ClientAddr
)

func (c *conditions) needs() needs {
	if c == nil {
		return 0
	}
	var n needs
	if len(c.hosts) > 0 {
		n |= needHost
	}
	if len(c.cidrs) > 0 {
		n |= needClientAddr
	}
	if c.when != nil {
		// The expression may read either.
		n |= needHost | needClientAddr
	}
	return n
}

// conditions compiles the conditions of rs; nil when it has none.
func (c *compiler) conditions(rs *ruleSpec) *conditions {
	cond := &conditions{}
	cond.issuers = c.stringList(rs, "issuers", rs.issuers, func(s string) string {
		if strings.TrimSpace(s) != s || s == "" {
			return "must be non-empty without surrounding spaces"
		}
		return ""
	})
	for _, m := range c.stringList(rs, "auth_methods", rs.authMethods, func(s string) string {
		if authBit(s) == 0 {
			return "must be one of " + strings.Join(AuthMethods(), ", ")
		}
		return ""
	}) {
		cond.authMethods |= authBit(m)
	}
	cond.keyNames = c.stringList(rs, "key_names", rs.keyNames, func(s string) string {
		if !validKeyName(s) {
			return "is not a key name (letters, digits, . _ -)"
		}
		return ""
	})
	for _, cs := range rs.claims {
		path, err := SplitClaimPath(cs.path)
		if err != nil {
			c.err(cs.line, rs.label(), fmt.Sprintf("claims: path %q: %s", cs.path, strings.TrimPrefix(err.Error(), "policy: ")))
			continue
		}
		if len(cs.values) == 0 {
			c.err(cs.line, rs.label(), "claims: "+cs.path+": no value to compare")
			continue
		}
		cond.claims = append(cond.claims, claimMatch{raw: cs.path, path: path, op: cs.op, values: cs.values})
	}
	scope := func(s string) string {
		if s == "" || strings.ContainsAny(s, " \t\r\n\"\\") {
			return "is not a scope token (RFC 6749 §3.3)"
		}
		return ""
	}
	cond.anyScopes = c.stringList(rs, "scopes", rs.anyScopes, scope)
	cond.allScopes = c.stringList(rs, "scopes", rs.allScopes, scope)
	cond.emails = c.stringList(rs, "email_domains", rs.emailDomains, func(s string) string {
		if CanonicalHost(s) != s || strings.IndexByte(s, ':') >= 0 || strings.IndexByte(s, '.') < 0 {
			return "must be a lower-case domain such as example.com"
		}
		return ""
	})
	for _, raw := range c.stringList(rs, "source_cidrs", rs.sourceCIDRs, nil) {
		p, err := parseCIDR(raw)
		if err != nil {
			c.errRule(rs, "source_cidrs", fmt.Sprintf("%q is not an address or CIDR", raw))
			continue
		}
		cond.cidrs = append(cond.cidrs, p)
	}
	for _, raw := range c.stringList(rs, "hosts", rs.hosts, nil) {
		hp, msg := parseHostPattern(raw)
		if msg != "" {
			c.errRule(rs, "hosts", fmt.Sprintf("%q: %s", raw, msg))
			continue
		}
		cond.hosts = append(cond.hosts, hp)
	}
	if rs.when != nil {
		if c.cel == nil && c.celErr == "" {
			env, err := newCELEnv()
			if err != nil {
				c.celErr = err.Error()
			}
			c.cel = env
		}
		if c.celErr != "" {
			c.errRule(rs, "when", "when: "+c.celErr)
		} else if e, msg := compileCEL(c.cel, *rs.when); msg != "" {
			c.errRule(rs, "when", msg)
		} else {
			cond.when = e
		}
	}
	if cond.empty() {
		return nil
	}
	return cond
}

func (c *conditions) empty() bool {
	return !c.identity() && len(c.cidrs) == 0 && len(c.hosts) == 0 && c.when == nil
}

// stringList checks a list of strings: no duplicates, each passing check
// (when given). It returns the list sorted.
func (c *compiler) stringList(rs *ruleSpec, key string, list []string, check func(string) string) []string {
	if list == nil {
		return nil
	}
	if len(list) == 0 {
		// An empty list would hold for nobody; refusing it keeps a
		// half-edited condition from denying (or, in a deny rule,
		// meaning "always") by accident.
		c.errRule(rs, key, key+": empty list; remove the key or list at least one value")
		return nil
	}
	out := slices.Sorted(slices.Values(list))
	for i, s := range out {
		if check != nil {
			if msg := check(s); msg != "" {
				c.errRule(rs, key, fmt.Sprintf("%s: %q %s", key, s, msg))
			}
		}
		if i > 0 && out[i-1] == s {
			c.errRule(rs, key, fmt.Sprintf("%s: duplicate %q", key, s))
		}
	}
	return slices.Compact(out)
}

func parseCIDR(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("bad address")
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// validKeyName is the keys file's name grammar.
func validKeyName(s string) bool {
	if s == "" || len(s) > 63 || !isAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if b := s[i]; !isAlnum(b) && b != '.' && b != '_' && b != '-' {
			return false
		}
	}
	return true
}

func isAlnum(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9'
}

// denyRule checks the keys a deny rule may carry: conditions, with roles
// and all_roles read as conditions on the caller; no access level, rate
// limit or CORS.
func (c *compiler) denyRule(rs *ruleSpec, r *crule) {
	if rs.public != nil || rs.authenticated != nil {
		c.errRule(rs, "deny", "deny: true takes no access level (public, authenticated); it refuses every request it matches")
	}
	if rs.rateLimit != nil {
		c.errRule(rs, "rate_limit", "rate_limit on a deny rule: denied requests are never forwarded")
	}
	if rs.cors != nil {
		c.errRule(rs, "cors", "cors on a deny rule: put it on the allow rule or at the top level")
	}
	if len(r.Roles) > 0 || len(r.AllRoles) > 0 {
		if r.cond == nil {
			r.cond = &conditions{}
		}
		r.cond.anyRoles, r.cond.allRoles = r.Roles, r.AllRoles
	}
}

// rateLimit compiles the rate_limit of an allow rule.
func (c *compiler) rateLimit(rs *ruleSpec, r *crule) *RateLimit {
	spec := rs.rateLimit
	where := rs.label()
	per, ok := parseRateKey(spec.per)
	if !ok {
		c.err(spec.line, where, fmt.Sprintf("rate_limit.per must be subject, key, client_ip or rule, not %q", spec.per))
	}
	if msg := checkRateLimit(spec.every, spec.burst); msg != "" {
		c.err(spec.line, where, msg)
	}
	public := rs.public != nil && *rs.public
	switch {
	case per == PerSubject && public:
		// An anonymous caller has no subject; a shared bucket would be
		// per: rule in disguise.
		c.err(spec.line, where, "rate_limit.per: subject on a public rule: anonymous callers have no subject; use client_ip or rule")
	case per == PerKey && (r.cond == nil || r.cond.authMethods != authBit(AuthAPIKey)):
		c.err(spec.line, where, "rate_limit.per: key needs auth_methods: [apikey], so every caller of the rule has a key")
	}
	rl := &RateLimit{RuleID: r.ID, Per: per, Every: spec.every, Burst: spec.burst}
	if spec.every > 0 && spec.burst > 0 {
		rl.fillHeader()
	}
	return rl
}

// cors compiles a cors block.
func (c *compiler) cors(spec *corsSpec, where string) *CORS {
	out := spec.c
	out.Origins = slices.Clone(out.Origins)
	out.Headers = slices.Clone(out.Headers)
	for _, msg := range compileCORS(&out) {
		c.err(spec.line, where, "cors: "+msg)
	}
	return &out
}

// describe returns the conditions of c as "key value" lines, for Rule,
// explain, diff and matrix.
func (c *conditions) describe() []string {
	if c == nil {
		return nil
	}
	var out []string
	list := func(key string, v []string) {
		if len(v) > 0 {
			out = append(out, key+" ["+strings.Join(v, " ")+"]")
		}
	}
	list("issuers", c.issuers)
	var am []string
	for _, m := range AuthMethods() {
		if c.authMethods&authBit(m) != 0 {
			am = append(am, m)
		}
	}
	list("auth_methods", am)
	list("key_names", c.keyNames)
	for i := range c.claims {
		out = append(out, "claims "+c.claims[i].String())
	}
	list("scopes any_of", c.anyScopes)
	list("scopes all_of", c.allScopes)
	list("email_domains", c.emails)
	var cidrs []string
	for _, p := range c.cidrs {
		cidrs = append(cidrs, p.String())
	}
	list("source_cidrs", cidrs)
	var hosts []string
	for _, h := range c.hosts {
		hosts = append(hosts, h.raw)
	}
	list("hosts", hosts)
	list("roles", c.anyRoles)
	list("all_roles", c.allRoles)
	if c.when != nil {
		out = append(out, "when "+c.when.src)
	}
	return out
}
