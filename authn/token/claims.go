package token

import (
	"encoding/json"

	"github.com/authgate/authgate/authn"
)

// claimValues returns the configured claims of a verified token for the
// claim headers. The gateway's own claims are one flat object, so only
// one-segment paths can match.
func (v *Verifier) claimValues(c *Claims) map[string]string {
	if v.claims == nil {
		return nil
	}
	// Rendered from the verified, typed claims, not from the token's
	// bytes: what the headers say is exactly what was checked.
	b, err := json.Marshal(c)
	if err != nil {
		return nil
	}
	var members map[string]json.RawMessage
	if json.Unmarshal(b, &members) != nil {
		return nil
	}
	return v.claims.Extract(authn.TopLevel(members))
}
