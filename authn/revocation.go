package authn

import (
	"context"
	"fmt"
	"time"
)

// Revoker holds the revocation list of access tokens.
type Revoker interface {
	// AccessRevoked reports, in one lookup, whether the token id jti is
	// revoked or the session sid it belongs to was ended (logout or
	// refresh-token reuse). An empty sid names no session.
	AccessRevoked(ctx context.Context, jti, sid string) (bool, error)
}

// RevocationChecked wraps a TokenVerifier with a revocation-list lookup of
// every verified token: its jti, and its session, so that a logout or a
// detected refresh-token reuse ends every access token of the login and not
// just the one presented (a thief's copy included). When the list cannot be
// read the token is refused (ErrUnavailable) unless FailOpen is set. It is
// safe for concurrent use.
type RevocationChecked struct {
	// Next verifies the token first.
	Next TokenVerifier
	// Revoker holds the revocation list.
	Revoker Revoker
	// Timeout bounds the lookup; zero means 500ms.
	Timeout time.Duration
	// FailOpen accepts tokens when the list cannot be read. Off by
	// default: a broken store must deny.
	FailOpen bool
	// OnError, if set, is told about lookup failures (for logs/metrics).
	OnError func(error)
}

// Issuer implements TokenVerifier.
func (c *RevocationChecked) Issuer() string { return c.Next.Issuer() }

// Verify implements TokenVerifier.
func (c *RevocationChecked) Verify(ctx context.Context, raw string) (Principal, error) {
	p, err := c.Next.Verify(ctx, raw)
	if err != nil {
		return Principal{}, err
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 500 * time.Millisecond
	}
	lctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	revoked, err := c.Revoker.AccessRevoked(lctx, p.TokenID, p.Session)
	switch {
	case err != nil:
		if c.OnError != nil {
			c.OnError(err)
		}
		if c.FailOpen {
			return p, nil
		}
		return Principal{}, fmt.Errorf("%w: revocation list: %w", ErrUnavailable, err)
	case revoked:
		return Principal{}, fmt.Errorf("%w: token revoked", ErrInvalidToken)
	}
	return p, nil
}
