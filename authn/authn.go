// Package authn decides who is calling. It knows nothing about paths,
// policies or upstreams: it turns the credentials on a request into a
// Principal, or reports that there were none, or that they were bad.
package authn

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/authgate/authgate/authn/jose"
	"github.com/authgate/authgate/policy"
)

// Method names how a Principal was authenticated. It is a closed set so that
// it can be used as a metric label and a log field.
type Method string

// The authentication methods.
const (
	// MethodNone is the zero value: the caller presented no credential.
	MethodNone Method = "none"
	// MethodJWT is a bearer token issued and signed by this gateway.
	MethodJWT Method = "jwt"
	// MethodAPIKey is an X-API-Key looked up in the keys file.
	MethodAPIKey Method = "apikey"
	// MethodExternal is a bearer token from an external identity provider
	// verified through its JWKS.
	MethodExternal Method = "external"
	// MethodSession is a browser session cookie (the gateway's sign-in
	// page or an external provider's authorization code flow).
	MethodSession Method = "session"
)

// Principal is an authenticated caller. The zero value is the anonymous
// caller. A Principal is a value: callers may copy it freely, but must not
// modify the Roles slice they were given.
type Principal struct {
	// Subject identifies the caller: the token's subject or the key name.
	Subject string
	// Roles are the gateway roles the caller holds, sorted and without
	// duplicates.
	Roles []string
	// Method says how the caller was authenticated.
	Method Method
	// KeyName is the API key's name when Method is MethodAPIKey.
	KeyName string
	// Issuer is the token issuer for the JWT methods, and the external
	// provider for a session signed in there.
	Issuer string
	// TokenID is the token's jti, when it has one.
	TokenID string
	// Session identifies the login a gateway access token belongs to (its
	// "sid" claim, the refresh-token family), or the store key of a
	// browser session; empty when there is none.
	Session string
	// ExpiresAt is when the credential stops being valid; zero means never.
	ExpiresAt time.Time
	// ClaimValues are the configured claim headers' claims (see
	// ClaimPaths), keyed by claim path, as header-safe text (see
	// ClaimText). Nil for API keys and when no claim is configured or
	// found. Callers must not modify it.
	ClaimValues map[string]string
	// Claims gives the policy's claims and when conditions read access to
	// the token's claims; nil for an API key. Implementations are
	// immutable and safe for concurrent use.
	Claims policy.Claims
	// Scopes are the token's OAuth scopes (the "scope" string or the
	// "scp" list), sorted and without duplicates.
	Scopes []string
	// Email is the token's "email" claim, unless the token says
	// "email_verified": false; "" otherwise.
	Email string
}

// Authenticated reports whether p is a caller who presented a valid credential.
func (p Principal) Authenticated() bool { return p.Method != "" && p.Method != MethodNone }

// Authenticator turns the credentials on a request into a Principal.
//
// The contract separates three outcomes, because confusing them is how
// gateways fail open:
//   - no credential of this kind: ok=false, err=nil, and the next
//     authenticator is tried;
//   - a valid credential: ok=true, err=nil;
//   - a credential that is present but invalid: err != nil. The request is
//     rejected with 401 and never falls through to anonymous.
//
// Implementations must be safe for concurrent use.
type Authenticator interface {
	Authenticate(r *http.Request) (p Principal, ok bool, err error)
}

// TokenVerifier verifies bearer tokens of one issuer. The bearer
// authenticator picks the verifier by the token's unverified "iss" claim and
// then trusts only that verifier's keys and algorithms.
//
// Implementations must be safe for concurrent use.
type TokenVerifier interface {
	// Issuer is the exact "iss" value this verifier accepts.
	Issuer() string
	// Verify checks the token's signature and claims and returns the caller.
	// Every failure is an error; the error text is for logs only.
	Verify(ctx context.Context, token string) (Principal, error)
}

// DecodedVerifier is a TokenVerifier that can also take the token as
// jose.Decode returned it. The bearer authenticator has decoded a token
// it had not seen before to read its "iss"; handing the result on means
// the token is decoded once. decoded must come from jose.Decode(token);
// the verifier applies every other check as Verify does.
type DecodedVerifier interface {
	TokenVerifier
	VerifyDecoded(ctx context.Context, token string, decoded *jose.Token) (Principal, error)
}

// Errors shared by the authenticators. Their text goes to logs, never to
// clients; clients see only a generic reason.
var (
	// ErrInvalidToken is a bearer token that failed verification.
	ErrInvalidToken = errors.New("authn: invalid token")
	// ErrInvalidAPIKey is an API key that is unknown or expired.
	ErrInvalidAPIKey = errors.New("authn: invalid api key")
	// ErrAmbiguous is a request that carries more than one credential.
	ErrAmbiguous = errors.New("authn: more than one credential presented")
	// ErrMalformed is an Authorization header that is not a bearer token.
	ErrMalformed = errors.New("authn: malformed credential")
	// ErrCrossSite is a request authenticated by a browser's session
	// cookie whose unsafe method did not come from the gateway's own
	// origin (cross-site request forgery). It is answered 403.
	ErrCrossSite = errors.New("authn: cross-site request with a session cookie")
	// ErrUnavailable is a technical failure (a store or key source that
	// cannot be reached). It still denies.
	ErrUnavailable = errors.New("authn: credential check unavailable")
)
