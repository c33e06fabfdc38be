package issuer

import (
	"context"
	"time"

	"github.com/authgate/authgate/authn/token"
	"github.com/authgate/authgate/authn/users"
)

// A session is one login: its refresh-token family and every access token
// minted in it. It ends at the earliest of its absolute age (refreshMaxAge
// after the login, however often it is refreshed), a logout, a detected
// refresh-token reuse, and the end of the user's standing (disable, delete,
// password change; see users.Store).

// Audit reasons of the session lifetime (see the closed set in login.go).
const (
	reasonSessionExpired = "session_expired"
	reasonTokensRevoked  = "tokens_revoked"
)

// maxValidFromWait is the longest a login or refresh waits for the user's
// not-before instant to pass before minting.
const maxValidFromWait = time.Second

// mintPair mints an access and a refresh token for u in family, for the
// session that began at authTime. Neither outlives the session: both
// expire at the latest at authTime plus the refresh max age. The access
// token carries the family as "sid", so that revoking the family revokes
// it too.
func (is *Issuer) mintPair(u *users.User, family string, authTime time.Time) (tokenResponse, *token.Claims, error) {
	end := authTime.Add(is.refreshMaxAge)
	access, ac, err := is.signer.Mint(token.Grant{
		Subject: u.Username, Roles: u.Roles, Type: token.TypeAccess, TTL: is.accessTTL, Ver: u.Ver(),
		SessionID: family, AuthTime: authTime, NotAfter: end,
	})
	if err != nil {
		return tokenResponse{}, nil, err
	}
	refresh, rc, err := is.signer.Mint(token.Grant{
		Subject: u.Username, Type: token.TypeRefresh, TTL: is.refreshTTL, Ver: u.Ver(), Family: family,
		AuthTime: authTime, NotAfter: end,
	})
	if err != nil {
		return tokenResponse{}, nil, err
	}
	return tokenResponse{
		AccessToken:  access,
		TokenType:    "bearer",
		ExpiresIn:    int64(ac.ExpiresAt.Sub(ac.IssuedAt.Time) / time.Second),
		RefreshToken: refresh,
	}, rc, nil
}

// sessionStart returns when the session of refresh token c began. Tokens
// minted before sessions carried auth_time count from their own iat, which
// still bounds them by the max age.
func sessionStart(c *token.Claims) (time.Time, bool) {
	switch {
	case c.AuthTime != nil:
		return c.AuthTime.Time, true
	case c.IssuedAt != nil:
		return c.IssuedAt.Time, true
	}
	return time.Time{}, false
}

// awaitValidFrom holds a login or refresh until the user's not-before
// instant has passed, so that the tokens it mints are not refused the
// moment they are handed out. Instants are whole seconds after the edit
// that set them, so the wait is under a second; a tokens_valid_after that
// lies further ahead refuses the request with 503 and Retry-After.
func (is *Issuer) awaitValidFrom(ctx context.Context, u *users.User) *oauthError {
	wait := is.users.ValidFrom(u.Username).Sub(is.now())
	if wait <= 0 {
		return nil
	}
	if wait > maxValidFromWait {
		return unavailable(wait)
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return unavailable(wait)
	}
}
