package policy

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
	numReasons
)

var reasonNames = [numReasons]string{
	ReasonDenyNoRule:          "deny_no_rule",
	ReasonDenyUnauthenticated: "deny_unauthenticated",
	ReasonDenyMissingRole:     "deny_missing_role",
	ReasonAllowPublic:         "allow_public",
	ReasonAllowAuthenticated:  "allow_authenticated",
	ReasonAllowRole:           "allow_role",
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

// Request is what a Set decides on. The zero value is an anonymous request
// with no method and no path, which is denied.
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
}

// Decision is the outcome of Set.Decide. The zero value is a deny with
// ReasonDenyNoRule.
type Decision struct {
	Allow  bool
	RuleID string // "" when no rule matched
	Line   int    // line of the winning rule, 0 when none
	Reason Reason
	// OnUnauthenticated is the winning rule's on_unauthenticated; the
	// zero value (no rule, or a rule without it) leaves the choice to the
	// gateway's default.
	OnUnauthenticated OnUnauthenticated
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
