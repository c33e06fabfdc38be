package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"unicode/utf8"
)

// Claims gives the policy read access to a credential's claims. Values are
// those of a decoded JSON document: string, float64, bool, nil, []any and
// map[string]any. Implementations must be safe for concurrent use and must
// not let a caller modify what they return.
type Claims interface {
	// Claim returns the value at path, each element one member name of
	// nested objects, and reports whether it is present. An empty path
	// returns the whole claim set as a map[string]any (used by `when`).
	Claim(path []string) (any, bool)
}

// The authentication methods a rule's auth_methods may name, the values
// of Request.AuthMethod.
const (
	AuthJWT      = "jwt"      // a token this gateway issued
	AuthAPIKey   = "apikey"   // an API key of the keys file
	AuthExternal = "external" // a token of an external issuer (JWKS)
	AuthSession  = "session"  // a browser session of the gateway's sign-in
)

// AuthMethods returns the values auth_methods accepts, in a stable order.
// The caller owns the returned slice.
func AuthMethods() []string { return []string{AuthJWT, AuthAPIKey, AuthExternal, AuthSession} }

// authBit maps an auth method to its bit in conditions.authMethods; 0 for
// anything else, which no auth_methods list admits.
func authBit(m string) uint8 {
	switch m {
	case AuthJWT:
		return 1
	case AuthAPIKey:
		return 2
	case AuthExternal:
		return 4
	case AuthSession:
		return 8
	}
	return 0
}

// conditions are the compiled conditions of one rule. Every non-empty
// field must hold (AND); a list holds when one entry does (any-of), except
// allScopes and allRoles (all-of). A nil *conditions always holds. It is
// immutable after compile.
type conditions struct {
	issuers     []string
	authMethods uint8 // bit set of authBit; 0 = any
	keyNames    []string
	claims      []claimMatch
	anyScopes   []string // sorted
	allScopes   []string // sorted
	emails      []string // lower-case domains
	cidrs       []netip.Prefix
	hosts       []hostPattern
	// anyRoles and allRoles are conditions of deny rules only (an allow
	// rule's roles are its access level).
	anyRoles, allRoles []string
	when               *celExpr
}

// identity reports whether c names something only an authenticated caller
// has.
func (c *conditions) identity() bool {
	return len(c.issuers) > 0 || c.authMethods != 0 || len(c.keyNames) > 0 || len(c.claims) > 0 ||
		len(c.anyScopes) > 0 || len(c.allScopes) > 0 || len(c.emails) > 0 || len(c.anyRoles) > 0 || len(c.allRoles) > 0
}

// failing returns the first condition of c that r does not satisfy, as the
// YAML key (with the entry for claims), or "" when all hold. deny selects
// how a `when` that fails to evaluate counts: false for an allow rule,
// true for a deny rule, so an evaluation error never opens access. It does
// not allocate unless a `when` runs.
func (c *conditions) failing(r *Request, deny bool) string {
	if c == nil {
		return ""
	}
	if len(c.issuers) > 0 && !slices.Contains(c.issuers, r.Issuer) {
		return "issuers"
	}
	if c.authMethods != 0 && c.authMethods&authBit(r.AuthMethod) == 0 {
		return "auth_methods"
	}
	if len(c.keyNames) > 0 && (r.KeyName == "" || !slices.Contains(c.keyNames, r.KeyName)) {
		return "key_names"
	}
	for i := range c.claims {
		if !c.claims[i].holds(r.Claims) {
			return "claims"
		}
	}
	if len(c.anyScopes) > 0 && !hasAny(r.Scopes, c.anyScopes) {
		return "scopes"
	}
	if !hasAll(r.Scopes, c.allScopes) {
		return "scopes"
	}
	if len(c.emails) > 0 && !emailIn(r.Email, c.emails) {
		return "email_domains"
	}
	if len(c.cidrs) > 0 && !inCIDRs(r.ClientAddr, c.cidrs) {
		return "source_cidrs"
	}
	if len(c.hosts) > 0 && !hostIn(r.Host, c.hosts) {
		return "hosts"
	}
	if len(c.anyRoles) > 0 && !hasAny(r.Roles, c.anyRoles) {
		return "roles"
	}
	if !hasAll(r.Roles, c.allRoles) {
		return "all_roles"
	}
	if c.when != nil && !c.when.holds(*r, deny) {
		return "when"
	}
	return ""
}

// emailIn reports whether the domain of email (after its last "@", with a
// non-empty local part) is one of domains, compared without ASCII case.
func emailIn(email string, domains []string) bool {
	at := strings.LastIndexByte(email, '@')
	if at <= 0 {
		return false
	}
	dom := email[at+1:]
	for _, d := range domains {
		if strings.EqualFold(dom, d) {
			return true
		}
	}
	return false
}

func inCIDRs(a netip.Addr, cidrs []netip.Prefix) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap()
	for _, p := range cidrs {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// claimOp is how a claim condition compares.
type claimOp uint8

const (
	claimEquals   claimOp = iota + 1 // the claim equals the value
	claimIn                          // the claim equals one of the values
	claimContains                    // the claim is an array holding the value
)

func (o claimOp) String() string {
	switch o {
	case claimEquals:
		return "equals"
	case claimIn:
		return "in"
	}
	return "contains"
}

// claimMatch is one entry of a rule's claims list.
type claimMatch struct {
	raw    string   // the path as written
	path   []string // split path
	op     claimOp
	values []any // string, float64 or bool; one unless op is claimIn
}

// holds reports whether the claims satisfy m. A missing claim, a nil
// Claims and a value of another type never match.
func (m *claimMatch) holds(cl Claims) bool {
	if cl == nil {
		return false
	}
	v, ok := cl.Claim(m.path)
	if !ok {
		return false
	}
	switch m.op {
	case claimContains:
		list, ok := v.([]any)
		if !ok {
			return false
		}
		for _, e := range list {
			if scalarEqual(e, m.values[0]) {
				return true
			}
		}
		return false
	default:
		for _, want := range m.values {
			if scalarEqual(v, want) {
				return true
			}
		}
		return false
	}
}

func (m *claimMatch) String() string {
	if m.op == claimIn {
		parts := make([]string, len(m.values))
		for i, v := range m.values {
			parts[i] = formatScalar(v)
		}
		return fmt.Sprintf("%s in [%s]", m.raw, strings.Join(parts, ", "))
	}
	return fmt.Sprintf("%s %s %s", m.raw, m.op, formatScalar(m.values[0]))
}

// scalarEqual compares a claim value with a policy value of the same JSON
// type. Numbers compare as float64; no value is converted to another type
// ("1" is not 1, "true" is not true), since a loose comparison is how a
// claim an attacker controls in one form passes a check meant for another.
func scalarEqual(have, want any) bool {
	switch w := want.(type) {
	case string:
		h, ok := have.(string)
		return ok && h == w
	case bool:
		h, ok := have.(bool)
		return ok && h == w
	case float64:
		switch h := have.(type) {
		case float64:
			return h == w
		case int64:
			return float64(h) == w
		case int:
			return float64(h) == w
		}
	}
	return false
}

func formatScalar(v any) string {
	if s, ok := v.(string); ok {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprint(v)
}

// SplitClaimPath splits a dotted claim path such as "realm_access.roles"
// into member names. A literal dot inside a name is written `\.` and a
// literal backslash `\\`. Empty segments and invalid UTF-8 are errors. It
// is the path grammar of the policy's claims conditions, offered so that
// the issuers' roles_claim reads paths the same way.
func SplitClaimPath(p string) ([]string, error) {
	if p == "" {
		return nil, errors.New("policy: empty path")
	}
	var (
		segs []string
		cur  strings.Builder
	)
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '\\':
			if i+1 >= len(p) || (p[i+1] != '.' && p[i+1] != '\\') {
				return nil, errors.New(`policy: "\" must be followed by "." or "\"`)
			}
			cur.WriteByte(p[i+1])
			i++
		case '.':
			if cur.Len() == 0 {
				return nil, errors.New("policy: empty path segment")
			}
			segs = append(segs, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	if cur.Len() == 0 {
		return nil, errors.New("policy: empty path segment")
	}
	if !utf8.ValidString(p) {
		return nil, errors.New("policy: path is not valid UTF-8")
	}
	return append(segs, cur.String()), nil
}

// ClaimMap is a Claims over a decoded JSON object (nested map[string]any).
// It is read-only once built and safe for concurrent use; the zero value
// holds no claims.
type ClaimMap map[string]any

// Claim implements Claims.
func (m ClaimMap) Claim(path []string) (any, bool) {
	if len(path) == 0 {
		return map[string]any(m), m != nil
	}
	var cur any = map[string]any(m)
	for _, seg := range path {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[seg]; !ok {
			return nil, false
		}
	}
	return cur, true
}
