package proxy

import "github.com/authgate/authgate/policy"

// Decision is what became of a request, in logs (decision) and metrics
// (authgate_requests_total{decision}). The set is closed.
type Decision string

// The decisions.
const (
	// DecisionAllow: the request was admitted (or a gateway endpoint
	// answered it with success).
	DecisionAllow Decision = "allow"
	// DecisionDeny: the request was refused for something the client did
	// or lacks.
	DecisionDeny Decision = "deny"
	// DecisionError: the gateway or the upstream failed.
	DecisionError Decision = "error"
)

func decisionOf(allow bool) Decision {
	if allow {
		return DecisionAllow
	}
	return DecisionDeny
}

// Reason says why a request was decided as it was, in logs (reason) and
// metrics (authgate_requests_total{reason}). The proxy's own reasons are
// the constants below; a policy decision carries the policy's reason (a
// closed set of the policy package). Nothing else ever becomes a reason,
// so the label's values are bounded.
type Reason string

// The proxy's reasons.
const (
	ReasonBadRequest         Reason = "bad_request"                  // malformed request: method, target, framing
	ReasonBadPath            Reason = "bad_path"                     // a path that is not canonical or is ambiguous
	ReasonMethodNotAllowed   Reason = "method_not_allowed"           // a method the gateway or the policy does not name
	ReasonUnsupportedUpgrade Reason = "unsupported_upgrade"          // an upgrade other than WebSocket
	ReasonBodyNotAllowed     Reason = "body_not_allowed"             // a body on a method without body semantics
	ReasonBodyTooLarge       Reason = "body_too_large"               // a body over its limit
	ReasonBadBody            Reason = "bad_body"                     // a body that could not be read
	ReasonSlowBody           Reason = "slow_body"                    // an upload below the minimum rate
	ReasonClientLimit        Reason = "client_limit"                 // a client over its requests in flight
	ReasonOverloaded         Reason = "overloaded"                   // the gateway at max_in_flight
	ReasonTunnelsFull        Reason = "tunnels_full"                 // the gateway at max_tunnels
	ReasonNoUpstream         Reason = "no_upstream"                  // forward-auth mode: nothing to proxy to
	ReasonNoPolicy           Reason = "no_policy"                    // no policy loaded yet
	ReasonInvalidCredential  Reason = "invalid_credential"           // a credential present but not valid
	ReasonCredentialCheck    Reason = "credential_check_unavailable" // the credential could not be checked (store down)
	ReasonGatewayEndpoint    Reason = "gateway_endpoint"             // answered by a gateway endpoint (/auth/*)
	ReasonUntrustedPeer      Reason = "untrusted_peer"               // a forward-auth check from a peer not trusted
	ReasonBadForwardHeaders  Reason = "bad_forward_headers"          // forward-auth headers missing, repeated or conflicting
	ReasonReservedHeader     Reason = "reserved_header"              // a forward-auth check carrying an identity header
	ReasonCORSPreflight      Reason = "cors_preflight"               // a CORS preflight answered by the gateway
	ReasonCORSRefused        Reason = "cors_refused"                 // a cross-origin request the CORS policy does not allow
	ReasonRateLimited        Reason = "rate_limited"                 // a rule's rate limit refused the request
	ReasonSignInRedirect     Reason = "sign_in_redirect"             // a browser sent to the sign-in page instead of a 401
	ReasonCrossSite          Reason = "cross_site_request"           // a cookie-authenticated unsafe request from another origin
	ReasonAssertionFailed    Reason = "assertion_failed"             // the identity assertion could not be signed
	ReasonUpstreamRefused    Reason = "upstream_refused"             // the upstream refused the connection
	ReasonUpstreamTimeout    Reason = "upstream_timeout"             // the upstream did not answer in time
	ReasonUpstreamReset      Reason = "upstream_reset"               // the upstream closed the connection
	ReasonUpstreamOther      Reason = "upstream_other"               // any other upstream failure
)

// policyReason is the reason of a policy decision.
func policyReason(d policy.Decision) Reason { return Reason(d.Reason.String()) }

// upstreamReason is the reason of a failed upstream round trip of kind.
func upstreamReason(kind string) Reason {
	switch kind {
	case "refused":
		return ReasonUpstreamRefused
	case "timeout":
		return ReasonUpstreamTimeout
	case "reset":
		return ReasonUpstreamReset
	}
	return ReasonUpstreamOther
}
