package jwks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/authgate/authgate/authn/jose"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/authn"
)

// IDToken is a verified OpenID Connect ID token (or back-channel logout
// token) of one issuer. It is a value owned by the caller.
type IDToken struct {
	// Subject is the "sub" claim.
	Subject string
	// Roles are the gateway roles from roles_claim and role_map, as for
	// the issuer's API tokens.
	Roles []string
	// Audience is the "aud" claim.
	Audience []string
	// AuthorizedParty is the "azp" claim, or empty.
	AuthorizedParty string
	// Nonce is the "nonce" claim, or empty.
	Nonce string
	// SessionID is the provider's "sid" claim, or empty.
	SessionID string
	// IssuedAt and ExpiresAt are "iat" and "exp" (ExpiresAt is zero for
	// a logout token without one).
	IssuedAt, ExpiresAt time.Time
	// Claims are every member of the payload.
	Claims map[string]json.RawMessage
}

// Token kinds VerifyIDToken checks.
const (
	// KindID is an ID token: exp is required.
	KindID = "id"
	// KindLogout is a back-channel logout token: exp is optional (OpenID
	// Connect Back-Channel Logout 1.0 §2.4 made it required late; older
	// providers leave it out), iat is required and must be recent.
	KindLogout = "logout"
)

// maxLogoutTokenAge is how old a logout token without exp may be.
const maxLogoutTokenAge = 5 * time.Minute

// VerifyIDToken verifies raw as a token of kind from issuer for clientID,
// with the issuer's own keys and algorithm allow-list: the signature, iss
// (exact), aud containing clientID, exp (ID tokens), iat (required, not in
// the future), nbf, and the key-injection and crit header refusals of
// Verify. The caller checks nonce, azp and the rest of OpenID Connect Core
// §3.1.3.7. Errors wrap authn.ErrInvalidToken or authn.ErrUnavailable and
// never contain the token.
func (s *Set) VerifyIDToken(ctx context.Context, issuer, clientID, kind, raw string) (IDToken, error) {
	var v *verifier
	for _, c := range s.verifiers {
		if c.issuer == issuer {
			v = c
		}
	}
	if v == nil {
		return IDToken{}, fmt.Errorf("jwks: %w: unknown issuer", authn.ErrInvalidToken)
	}
	typ := jose.TypeIDToken
	opts := []jwt.ParserOption{
		jwt.WithIssuer(issuer), jwt.WithAudience(clientID),
		jwt.WithIssuedAt(), jwt.WithLeeway(v.leeway), jwt.WithTimeFunc(v.now),
	}
	if kind == KindID {
		opts = append(opts, jwt.WithExpirationRequired())
	} else {
		typ = jose.TypeLogoutToken
	}
	// The same strict step as every other token: one spelling, no crit,
	// no duplicate or case-variant claims, the size cap, no key injection.
	parser := jose.NewParser(jose.Options{Algorithms: v.algs, Type: typ, Claims: tokenClaims{}, Validation: opts})
	claims := &tokenClaims{}
	if _, err := parser.Parse(raw, claims, func(h jose.Header) (any, error) {
		k, err := v.keyFor(ctx, h)
		return k.pubOrNil(), err
	}); err != nil {
		return IDToken{}, v.fail(err)
	}
	if claims.Issuer != issuer || claims.Subject == "" && kind == KindID {
		return IDToken{}, v.invalid(errors.New("issuer mismatch or no subject"))
	}
	if claims.IssuedAt == nil {
		return IDToken{}, v.invalid(errors.New("token has no iat"))
	}
	now := v.now()
	if kind == KindLogout && claims.ExpiresAt == nil && now.Sub(claims.IssuedAt.Time) > maxLogoutTokenAge+v.leeway {
		return IDToken{}, v.invalid(errors.New("logout token too old"))
	}
	t := IDToken{Subject: claims.Subject, Audience: claims.Audience, IssuedAt: claims.IssuedAt.Time, Claims: claims.raw}
	if claims.ExpiresAt != nil {
		t.ExpiresAt = claims.ExpiresAt.Time
	}
	for name, dst := range map[string]*string{"azp": &t.AuthorizedParty, "nonce": &t.Nonce, "sid": &t.SessionID} {
		if rv, ok := claims.raw[name]; ok {
			if err := json.Unmarshal(rv, dst); err != nil {
				return IDToken{}, v.invalid(fmt.Errorf("claim %q is not a string", name))
			}
		}
	}
	roles, err := v.roles(claims)
	if err != nil {
		return IDToken{}, v.invalid(err)
	}
	t.Roles = roles
	return t, nil
}
