package issuer

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/authgate/authgate/authn/token"
	"github.com/authgate/authgate/authn/users"
)

// DefaultAdminTokenTTL is the lifetime of a token minted by `authgate token`
// when --ttl is not given.
const DefaultAdminTokenTTL = time.Hour

// MintFor mints an access token for subject, as the admin tool does.
//
// If subject names a user in set (after normalization), the token carries
// the user's roles and credential version, so it dies with a password
// change, a disable or a delete; roles must then be empty, because a user's
// roles come from the users file only. Otherwise subject is a service name:
// roles are required and the token carries no credential version, which
// CheckBinding accepts only while no user of that name exists.
func MintFor(s *token.Signer, set *users.Set, subject string, roles []string, ttl time.Duration) (string, *token.Claims, error) {
	if s == nil {
		return "", nil, errors.New("issuer: mint: signer is required")
	}
	if ttl <= 0 {
		return "", nil, fmt.Errorf("issuer: mint: ttl must be positive, got %s", ttl)
	}
	if u, ok := set.Lookup(subject); ok {
		if len(roles) > 0 {
			return "", nil, fmt.Errorf("issuer: mint: %q is a user; its roles come from the users file", u.Username)
		}
		if u.Disabled {
			return "", nil, fmt.Errorf("issuer: mint: user %q is disabled", u.Username)
		}
		return s.Mint(token.Grant{Subject: u.Username, Roles: u.Roles, Type: token.TypeAccess, TTL: ttl, Ver: u.Ver()})
	}
	if strings.TrimSpace(subject) == "" || subject != strings.TrimSpace(subject) {
		return "", nil, fmt.Errorf("issuer: mint: subject %q must be non-empty without surrounding spaces", subject)
	}
	if len(token.NormalizeRoles(roles)) == 0 {
		return "", nil, fmt.Errorf("issuer: mint: service %q needs at least one --role", subject)
	}
	return s.Mint(token.Grant{Subject: subject, Roles: roles, Type: token.TypeAccess, TTL: ttl})
}
