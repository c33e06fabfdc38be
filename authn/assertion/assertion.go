// Package assertion verifies the identity assertion authgate sends to the
// app behind it, so that the app trusts a request only when it really
// passed the gateway.
//
// On every request it admits, the gateway adds a header (default
// X-Auth-Assertion) holding a short-lived JWT signed with the gateway's
// private key. The app fetches the gateway's public keys from its JWKS
// (GET /.well-known/jwks.json) and checks the signature, the issuer, the
// audience, the expiry, and the request binding: the method, the Host
// header and the path of the request the assertion was signed for must be
// those of the request that carries it. A request that bypassed the
// sidecar (a misrouted Service, a port-forward, a missing NetworkPolicy)
// has no valid assertion, whatever identity headers it carries; an
// assertion captured from one request proves nothing for another path,
// method or host.
//
// The package imports nothing of the gateway: only the standard library
// and github.com/golang-jwt/jwt/v5. Use Middleware around an http.Handler
// and read the caller with FromContext:
//
//	v, err := assertion.New(assertion.Config{
//		JWKSURL:  "http://127.0.0.1:8080/.well-known/jwks.json",
//		Issuer:   "https://login.example.com",
//		Audience: "http://127.0.0.1:8081",
//	})
//	...
//	http.ListenAndServe("127.0.0.1:8081", v.Middleware(app))
//
// # The assertion
//
// The JOSE header has "alg" EdDSA or ES256, the signing key's "kid" and
// "typ" Type. The claims are:
//
//	iss          the gateway's jwt.issuer
//	aud          assertion.audience (default: the gateway's upstream.url)
//	sub          the caller; absent for an anonymous caller
//	roles        the caller's gateway roles
//	auth_method  jwt, apikey, external, or none for an anonymous caller
//	orig_iss     the issuer of the caller's token (jwt, external)
//	claims       the configured token claims, as the claim headers carry them
//	iat nbf exp  at most 60 s apart
//	jti          the assertion's id
//	req          {"method", "host", "path"}: the request it was signed for
//
// req.method is the request method; req.host is the Host header the app
// receives, lower-cased; req.path is the path of the request line the app
// receives, exactly as sent (percent-encoding included, no query string).
// The query string is not bound, as in DPoP (RFC 9449 §4.2).
package assertion

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Header is the default header that carries the assertion.
const Header = "X-Auth-Assertion"

// Type is the JOSE "typ" of an assertion. Tokens of another type, such as
// the gateway's access tokens signed with the same key, are refused
// (RFC 8725 §3.11, explicit typing).
const Type = "authgate-assertion+jwt"

// MaxLifetime is the longest an assertion may be valid, from iat to exp.
const MaxLifetime = 60 * time.Second

// Method values of an assertion's auth_method for an anonymous caller.
const MethodNone = "none"

// Request is the request an assertion was signed for.
type Request struct {
	// Method is the request method, as sent.
	Method string `json:"method"`
	// Host is the Host header the app receives, lower-case.
	Host string `json:"host"`
	// Path is the request line's path as the app receives it: escaped,
	// without the query string.
	Path string `json:"path"`
}

// Claims are the claims of an assertion. The gateway signs this type and
// this package verifies it.
type Claims struct {
	jwt.RegisteredClaims
	// Roles are the caller's gateway roles, sorted.
	Roles []string `json:"roles,omitempty"`
	// AuthMethod says how the caller was authenticated; MethodNone for an
	// anonymous caller.
	AuthMethod string `json:"auth_method"`
	// OriginalIssuer is the issuer of the caller's token.
	OriginalIssuer string `json:"orig_iss,omitempty"`
	// Claims are the configured token claims, keyed by claim path.
	Claims map[string]string `json:"claims,omitempty"`
	// Request is the request the assertion was signed for.
	Request *Request `json:"req"`
}

// Principal is the caller an assertion vouches for. It is a value the
// middleware puts in the request context; do not modify its slices.
type Principal struct {
	// Subject is the caller; empty for an anonymous caller.
	Subject string
	// Roles are the caller's gateway roles, sorted.
	Roles []string
	// AuthMethod is jwt, apikey, external, or none.
	AuthMethod string
	// OriginalIssuer is the issuer of the caller's token, if any.
	OriginalIssuer string
	// Claims are the configured token claims, keyed by claim path.
	Claims map[string]string
	// ID is the assertion's jti.
	ID string
	// ExpiresAt is the assertion's expiry.
	ExpiresAt time.Time
}

// Anonymous reports whether the caller presented no credential (a public
// path).
func (p *Principal) Anonymous() bool { return p.Subject == "" || p.AuthMethod == MethodNone }

// HasRole reports whether the caller holds role.
func (p *Principal) HasRole(role string) bool {
	return slices.Contains(p.Roles, role)
}

type ctxKey struct{}

// FromContext returns the caller the middleware verified for the request
// whose context is ctx.
func FromContext(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(*Principal)
	return p, ok
}

// NewContext returns ctx carrying p, for tests of handlers that read the
// caller with FromContext.
func NewContext(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// RequestOf returns the binding of r as the gateway signs it: the method,
// the Host header lower-cased, and the path of the request line exactly as
// received (r.RequestURI up to "?", unaffected by http.StripPrefix).
func RequestOf(r *http.Request) Request {
	path := r.RequestURI
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if !strings.HasPrefix(path, "/") {
		// Not origin-form (a request built in process, or absolute-form).
		path = r.URL.EscapedPath()
	}
	return Request{Method: r.Method, Host: strings.ToLower(r.Host), Path: path}
}
