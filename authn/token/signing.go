package token

import (
	"errors"
	"time"

	"github.com/authgate/authgate/authn/jose"
	"github.com/golang-jwt/jwt/v5"
)

// validMethods are every algorithm a gateway token may carry. "none" and
// every other algorithm are refused by the parser; which of these a token
// may use is decided by its kid, since each key accepts only its own
// algorithm (see KeySet.verificationKey).
var validMethods = []string{AlgEdDSA, AlgES256, AlgHS256}

// newParser states every constraint of a gateway token once.
func newParser(s Settings, now func() time.Time, aud ...string) *jose.Parser {
	return jose.NewParser(jose.Options{
		// Only the gateway's algorithms: "none" is refused, and each key
		// accepts only its own algorithm (algorithm confusion).
		Algorithms: validMethods,
		// typ absent, JWT or at+jwt; the "type" claim tells access and
		// refresh tokens apart.
		Type: jose.TypeJWT,
		// Claims are read by their exact names: "ROLES" is refused, not
		// decoded into Roles.
		Claims: Claims{},
		Validation: []jwt.ParserOption{
			jwt.WithIssuer(s.Issuer),
			jwt.WithAudience(aud...),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(s.Leeway),
			jwt.WithTimeFunc(now),
		},
	})
}

// refreshAudience is the "aud" of refresh tokens. With published keys
// anyone can verify the gateway's signatures, and a service that trusts
// its access tokens checks iss, aud and exp, not the gateway's private
// "type" claim: a refresh token carrying the access audience would pass
// there as a week-long access token that no logout ends (token-type
// confusion, RFC 8725 §3.12). So refresh tokens are minted for an
// audience no such service lists.
func refreshAudience(s Settings) string { return s.Audience + ":refresh" }

// audienceFor is the audience minted for a token type.
func audienceFor(s Settings, typ string) string {
	if typ == TypeRefresh {
		return refreshAudience(s)
	}
	return s.Audience
}

// parserFor returns the parser of a token type. Refresh tokens minted
// before they had an audience of their own carry the access audience; the
// gateway still accepts those as refresh tokens (the "type" claim tells
// the two apart here), while access tokens must carry the access audience.
func (v *Verifier) parserFor(typ string) *jose.Parser {
	if typ == TypeRefresh {
		return v.refresh
	}
	return v.parser
}

// cachedClaims is a verified access token remembered with the key set that
// verified it: a hit counts only while that set is still in force, so a
// key removed by a rotation stops working for cached tokens at once.
type cachedClaims struct {
	c    *Claims
	keys *KeySet
}

// errNoSigningKey is returned instead of ever signing with no key.
var errNoSigningKey = errors.New("token: no signing key")

// sign signs claims with the set's signing key and its kid.
func (ks *KeySet) sign(c jwt.Claims) (string, error) {
	if ks == nil || ks.signing == nil {
		return "", errNoSigningKey
	}
	t := jwt.NewWithClaims(ks.signing.method, c)
	t.Header["kid"] = ks.signing.id
	return t.SignedString(ks.signing.key)
}
