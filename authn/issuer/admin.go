package issuer

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/authgate/authgate/authn/token"
	"github.com/authgate/authgate/authn/users"
)

// DefaultAdminTokenTTL is the lifetime of a token minted by `authgate token`
// when --ttl is not given.
const DefaultAdminTokenTTL = time.Hour

// MaxAdminTokenTTL is the longest lifetime MintFor grants. A token of the
// admin tool is not part of a session and cannot be ended by a logout; a
// service token is not even bound to a user. Its lifetime is its only
// bound, so it is kept short (the Kubernetes TokenRequest default is one
// hour; Vault bounds every token by a max_ttl). Long-lived service
// credentials belong in the keys file, where removing a key ends it within
// the reload interval.
const MaxAdminTokenTTL = 24 * time.Hour

// MintFor mints an access token for subject, as the admin tool does, for at
// most MaxAdminTokenTTL.
//
// If subject names a user in set (after normalization), the token carries
// the user's credential version and the user's roles, or the subset of
// them given in roles, so it dies with a password change, a disable, a
// delete or the removal of a role it carries; a role the user does not hold
// is refused. Otherwise subject is a service name: roles are required and
// the token carries no credential version, which CheckBinding accepts only
// while no user of that name exists.
func MintFor(s *token.Signer, set *users.Set, subject string, roles []string, ttl time.Duration) (string, *token.Claims, error) {
	if s == nil {
		return "", nil, errors.New("issuer: mint: signer is required")
	}
	if ttl <= 0 || ttl > MaxAdminTokenTTL {
		return "", nil, fmt.Errorf("issuer: mint: ttl must be positive and at most %s, got %s (use an API key for a long-lived credential)", MaxAdminTokenTTL, ttl)
	}
	if u, ok := set.Lookup(subject); ok {
		if u.Disabled {
			return "", nil, fmt.Errorf("issuer: mint: user %q is disabled", u.Username)
		}
		granted := u.Roles
		if len(roles) > 0 {
			granted = token.NormalizeRoles(roles)
			for _, r := range granted {
				// The tool signs what it is given; it must not hand a
				// user a role the users file does not grant them.
				if !slices.Contains(u.Roles, r) {
					return "", nil, fmt.Errorf("issuer: mint: user %q does not hold role %q (roles [%s])", u.Username, r, strings.Join(u.Roles, " "))
				}
			}
		}
		return s.Mint(token.Grant{Subject: u.Username, Roles: granted, Type: token.TypeAccess, TTL: ttl, Ver: u.Ver()})
	}
	if strings.TrimSpace(subject) == "" || subject != strings.TrimSpace(subject) {
		return "", nil, fmt.Errorf("issuer: mint: subject %q must be non-empty without surrounding spaces", subject)
	}
	if len(token.NormalizeRoles(roles)) == 0 {
		return "", nil, fmt.Errorf("issuer: mint: service %q needs at least one --role", subject)
	}
	return s.Mint(token.Grant{Subject: subject, Roles: roles, Type: token.TypeAccess, TTL: ttl})
}
