package policy

import "net/netip"

// Reason says why a Decision was made. The set is closed (see AllReasons), so
// it is safe to use as a metric label. The zero value is ReasonDenyNoRule.
type Reason uint8

// The reasons, in a stable order.
const (
	// ReasonDenyNoRule: no rule matched the path and method (default deny).
	ReasonDenyNoRule Reason = iota
	// ReasonDenyUnauthenticated: the winning rule needs an identity and the
	// caller is anonymous.
	ReasonDenyUnauthenticated
	// ReasonDenyMissingRole: the caller lacks a role the winning rule needs.
	ReasonDenyMissingRole
	// ReasonAllowPublic: the winning rule is public.
	ReasonAllowPublic
	// ReasonAllowAuthenticated: the winning rule admits any identity.
	ReasonAllowAuthenticated
	// ReasonAllowRole: the caller has the roles the winning rule needs.
	ReasonAllowRole
	// ReasonDenyRule: a deny rule matched; it wins over every allow (see
	// the package documentation on precedence). Decision.RuleID names it.
	ReasonDenyRule
	// ReasonDenyCondition: the winning rule's access level admits the
	// caller, but one of its conditions (issuers, claims, source_cidrs,
	// when, ...) does not hold.
	ReasonDenyCondition
	numReasons
)

var reasonNames = [numReasons]string{
	ReasonDenyNoRule:          "deny_no_rule",
	ReasonDenyUnauthenticated: "deny_unauthenticated",
	ReasonDenyMissingRole:     "deny_missing_role",
	ReasonAllowPublic:         "allow_public",
	ReasonAllowAuthenticated:  "allow_authenticated",
	ReasonAllowRole:           "allow_role",
	ReasonDenyRule:            "deny_rule",
	ReasonDenyCondition:       "deny_condition",
}

// String returns the snake_case name of r, e.g. "allow_role", or
// "unknown" for a value outside the closed set.
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// AllReasons returns every Reason, for metric pre-registration. The caller
// owns the returned slice.
func AllReasons() []Reason {
	out := make([]Reason, 0, numReasons)
	for r := Reason(0); r < numReasons; r++ {
		out = append(out, r)
	}
	return out
}

// Request is what a Set decides on: the request and, for an authenticated
// caller, what the credential says. The zero value is an anonymous request
// with no method and no path, which is denied. Every field the caller does
// not know stays zero, and a zero field satisfies no condition that names
// it. A Request is read, never kept or modified, by Decide.
type Request struct {
	// Method is the HTTP method as received; it is compared exactly with the
	// upper-case methods of the rules.
	Method string
	// Path is the output of Canonicalize.
	Path string
	// Authenticated reports whether the caller presented a valid identity.
	Authenticated bool
	// Roles are the caller's roles, sorted and without duplicates. Unsorted
	// roles can only cause a false deny, never a false allow.
	Roles []string

	// Subject is the caller's subject (token sub or key name), for `when`.
	Subject string
	// Issuer is the token issuer ("iss") for the token methods, matched by
	// `issuers`.
	Issuer string
	// AuthMethod is how the caller authenticated: "jwt", "apikey",
	// "external" or "session" (see AuthMethods), matched by `auth_methods`.
	AuthMethod string
	// KeyName is the API key's name, matched by `key_names`.
	KeyName string
	// Claims gives access to the token's claims, for `claims` and `when`;
	// nil when the credential has none (an API key).
	Claims Claims
	// Scopes are the token's OAuth scopes, sorted and without duplicates,
	// matched by `scopes`.
	Scopes []string
	// Email is the caller's verified email address, matched by
	// `email_domains`; "" when unknown or not verified.
	Email string
	// ClientAddr is the client's address, behind trusted proxies, matched
	// by `source_cidrs`. The zero Addr matches no CIDR.
	ClientAddr netip.Addr
	// Host is the request's host from CanonicalHost, matched by `hosts`;
	// "" (a host that did not canonicalize) matches no host.
	Host string
}

// Decision is the outcome of Set.Decide. The zero value is a deny with
// ReasonDenyNoRule. It is a value; RateLimit and CORS point into the
// immutable Set and must not be modified.
type Decision struct {
	Allow  bool
	RuleID string // the winning allow rule or the deny rule; "" when no rule matched
	Line   int    // line of that rule, 0 when none
	Reason Reason
	// OnUnauthenticated is the winning rule's on_unauthenticated; the
	// zero value (no rule, or a rule without it) leaves the choice to the
	// gateway's default.
	OnUnauthenticated OnUnauthenticated
	// RateLimit is the winning rule's rate limit, which the caller must
	// enforce for an allowed request; nil when the rule has none or the
	// request is denied.
	RateLimit *RateLimit
	// CORS is the CORS policy for the request's path and method (the
	// winning rule's, else the policy's global one); nil when there is
	// none. It is set for denied requests too, so errors carry CORS
	// headers a browser can read.
	CORS *CORS
}

// OnUnauthenticated says what a rule answers an anonymous browser
// navigation it denies. The zero value is UnauthenticatedDefault.
type OnUnauthenticated uint8

// The values of a rule's on_unauthenticated key.
const (
	// UnauthenticatedDefault: the key is not set; the gateway's default
	// applies.
	UnauthenticatedDefault OnUnauthenticated = iota
	// UnauthenticatedRedirect: redirect browser navigations to the
	// sign-in page.
	UnauthenticatedRedirect
	// UnauthenticatedDeny: answer 401, browsers included (an API under a
	// path a browser may open).
	UnauthenticatedDeny
)
