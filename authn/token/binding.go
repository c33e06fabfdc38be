package token

import (
	"context"
	"fmt"

	"github.com/authgate/authgate/authn"
)

// Binding checks that a verified token still matches its subject's current
// standing: it returns an error when the user was deleted, disabled or
// re-enabled, changed their password, or lost a role the token carries
// since the token was minted. The claims have passed every other check and
// must not be modified. Implementations must be safe for concurrent use.
type Binding interface {
	CheckBinding(ctx context.Context, c *Claims) error
}

// checkBinding runs the verifier's binding, if any, on c.
func (v *Verifier) checkBinding(ctx context.Context, c *Claims) error {
	if v.binding == nil {
		return nil
	}
	if err := v.binding.CheckBinding(ctx, c); err != nil {
		return fmt.Errorf("%w: %w", authn.ErrInvalidToken, err)
	}
	return nil
}

// ParseUnbound verifies a token of the given type like Parse, signature,
// issuer, audience, expiry and type included, but skips the binding to the
// subject's current standing. It exists for revocation only: a logout must
// revoke the session of a user who was disabled, deleted or changed their
// password since, or a later re-enable would bring that session back. Never
// use it to admit a request. The returned claims must not be modified.
func (v *Verifier) ParseUnbound(raw, typ string) (*Claims, error) {
	return v.parseUnbound(raw, typ)
}
