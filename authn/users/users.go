// Package users holds the gateway's users file: usernames, bcrypt password
// hashes, roles and a disabled flag.
//
// The file is parsed strictly (an unknown field is an error), validated as a
// whole with file:line messages, and swapped atomically on reload. A Store
// also binds tokens to the standing of the user they were minted for (see
// Store.CheckBinding): the credential fingerprint (Ver) that changes with
// the password hash, the disabled flag, the roles, and a per-user "not
// before" instant recorded in the shared state store, so that a disable, a
// delete or a password change ends every older token for good, also after
// the edit is undone, after a restart and on every replica.
package users

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"golang.org/x/crypto/bcrypt"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/authn/token"
	"github.com/authgate/authgate/internal/yamlx"
	"github.com/authgate/authgate/policy"
)

// Bcrypt cost bounds for stored hashes and for HashPassword.
const (
	// MinCost is the lowest bcrypt cost accepted in the users file.
	MinCost = 10
	// DefaultCost is the cost HashPassword uses when given 0.
	DefaultCost = 12
	// MaxCost is the highest cost accepted. Every login attempt, even for an
	// unknown user, costs one compare at the highest cost in the file, so a
	// very high cost would turn a login flood into CPU exhaustion.
	MaxCost = 16
	// MaxPasswordBytes is the longest password bcrypt uses; it silently
	// ignores anything after it.
	MaxPasswordBytes = 72
	// MaxUsernameBytes bounds a username after normalization.
	MaxUsernameBytes = 128
)

// Errors returned by CheckBinding. Their text is for logs only.
var (
	// ErrUnknownUser is a token for a user who is not in the users file.
	ErrUnknownUser = errors.New("users: unknown user")
	// ErrDisabled is a token for a disabled user.
	ErrDisabled = errors.New("users: user disabled")
	// ErrStale is a token minted before the user's password changed.
	ErrStale = errors.New("users: credentials changed since the token was minted")
	// ErrNotService is a token without a credential version whose subject
	// is a user: a service token may not name an existing user.
	ErrNotService = errors.New("users: token without credential version names a user")
	// ErrRevoked is a token issued before the user's not-before instant:
	// before the user was disabled, deleted or changed password (even if
	// that was undone since), or before their tokens_valid_after.
	ErrRevoked = errors.New("users: token issued before the user's tokens were revoked")
	// ErrRoleRemoved is a token carrying a role the user no longer holds.
	ErrRoleRemoved = errors.New("users: token carries a role the user no longer holds")
	// ErrPending is a token of a user whose standing is not yet recorded
	// in (or read from) the shared state store. It wraps
	// authn.ErrUnavailable: the user is refused until the store answers.
	ErrPending = fmt.Errorf("users: user's token revocations not yet recorded in the state store: %w", authn.ErrUnavailable)
)

// User is one entry of the users file. A User is immutable once parsed and
// safe for concurrent use.
type User struct {
	// Username is the normalized username (see Normalize).
	Username string
	// Roles are the gateway roles the user holds, sorted and without
	// duplicates.
	Roles []string
	// Disabled users cannot log in and their tokens are rejected.
	Disabled bool
	// Line is the user's line in the file.
	Line int
	// TokensValidAfter, if set, refuses every token of the user issued
	// before it (the tokens_valid_after field): an operator's explicit
	// "log this user out everywhere", for edits the gateway cannot observe
	// (see Store).
	TokensValidAfter time.Time

	hash string
	cost int
	ver  string
}

// PasswordHash returns the user's bcrypt hash.
func (u *User) PasswordHash() string { return u.hash }

// Cost returns the bcrypt cost of the user's hash.
func (u *User) Cost() int { return u.cost }

// Ver returns the user's credential fingerprint: a short hex digest of the
// bcrypt hash. It changes whenever the password (and so the hash) changes.
func (u *User) Ver() string { return u.ver }

// Fingerprint returns the credential fingerprint of a bcrypt hash, as
// returned by User.Ver.
func Fingerprint(hash string) string {
	sum := sha256.Sum256([]byte(hash))
	return hex.EncodeToString(sum[:8])
}

// Normalize returns the canonical form of a username: trimmed and
// lower-cased. The users file and login both go through it, so "Alice " and
// "alice" are the same account and cannot be registered twice.
func Normalize(username string) string {
	return strings.ToLower(strings.TrimSpace(username))
}

// Set is an immutable, parsed users file. A nil *Set holds no users. It is
// safe for concurrent use.
type Set struct {
	byName   map[string]*User
	names    []string
	maxCost  int
	warnings []string
}

// Warnings returns what Parse accepted for now but will refuse in a later
// release, each as "file:line: user N (name): ...": today a role outside
// the role grammar (see policy.CheckRoleName), which the user does not get.
// The caller logs them at load and `authgate check` prints them.
func (s *Set) Warnings() []string {
	if s == nil {
		return nil
	}
	return s.warnings
}

// Lookup returns the user named username (normalized first).
func (s *Set) Lookup(username string) (*User, bool) {
	if s == nil {
		return nil, false
	}
	u, ok := s.byName[Normalize(username)]
	return u, ok
}

// Len returns the number of users.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.names)
}

// Usernames returns the normalized usernames in file order.
func (s *Set) Usernames() []string {
	if s == nil {
		return nil
	}
	return s.names
}

// Roles returns every role that some user holds, sorted.
func (s *Set) Roles() []string {
	if s == nil {
		return nil
	}
	var all []string
	for _, u := range s.byName {
		all = append(all, u.Roles...)
	}
	return token.NormalizeRoles(all)
}

// MaxCost returns the highest bcrypt cost in the set, or 0 when it is
// empty.
func (s *Set) MaxCost() int {
	if s == nil {
		return 0
	}
	return s.maxCost
}

type fileUser struct {
	Username     string   `yaml:"username"`
	PasswordHash string   `yaml:"password_hash"`
	Roles        []string `yaml:"roles"`
	Disabled     bool     `yaml:"disabled"`
	// TokensValidAfter is an RFC 3339 time; decoded as text so a bad
	// value is reported with its line like every other field error.
	TokensValidAfter string `yaml:"tokens_valid_after"`
}

type file struct {
	Users []fileUser `yaml:"users"`
}

// Parse reads a users file. All problems are reported together, each with
// the file name and line. An empty file is an error; `users: []` is a valid
// set with no users.
func Parse(filename string, data []byte) (*Set, error) {
	var f file
	errs, err := yamlx.DecodeAll(filename, data, &f)
	if err != nil {
		return nil, err
	}
	lines := yamlx.SeqLines(data, "users")
	s := &Set{byName: make(map[string]*User)}
	seen := map[string]int{}
	for i, fu := range f.Users {
		line := yamlx.Line(lines, i)
		name := Normalize(fu.Username)
		at := fmt.Sprintf("%s:%d: user %d (%s)", filename, line, i+1, name)
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s: "+format, append([]any{at}, args...)...))
		}
		if err := checkUsername(name); err != nil {
			bad("field username: %v", err)
		}
		if prev, dup := seen[name]; dup && name != "" {
			// Usernames are compared after normalization, as at login, so
			// "Alice" and "alice" cannot name two accounts (account
			// confusion).
			bad("field username: duplicate of the user on line %d (usernames are compared lower-cased and trimmed)", prev)
		}
		seen[name] = line
		for _, r := range fu.Roles {
			if strings.TrimSpace(r) == "" || r != strings.TrimSpace(r) {
				bad("field roles: role %q must be non-empty without surrounding spaces", r)
			} else if err := policy.CheckRoleName(r); err != nil {
				// Loadable for one release so an upgrade still starts, but
				// never granted: no rule can list it, and "a,b" would be
				// two roles upstream.
				s.warnings = append(s.warnings, fmt.Sprintf("%s: field roles: %v: the role is not granted; rename it (a later release refuses it)", at, err))
			}
		}
		cost, err := bcrypt.Cost([]byte(fu.PasswordHash))
		switch {
		case err != nil:
			bad("field password_hash: not a bcrypt hash (create one with `authgate hash-password`)")
		case cost < MinCost:
			bad("field password_hash: bcrypt cost %d is below the minimum %d", cost, MinCost)
		case cost > MaxCost:
			bad("field password_hash: bcrypt cost %d is above the maximum %d", cost, MaxCost)
		case s.maxCost != 0 && cost != s.maxCost:
			// An unknown user is checked against a dummy hash of one cost;
			// a known user of another cost would answer faster or slower
			// and so reveal that the name exists.
			bad("field password_hash: bcrypt cost %d differs from the cost %d of the users above; give every user the same cost (re-hash with `authgate hash-password --cost N`)", cost, s.maxCost)
		}
		var validAfter time.Time
		if fu.TokensValidAfter != "" {
			if validAfter, err = time.Parse(time.RFC3339, fu.TokensValidAfter); err != nil {
				bad("field tokens_valid_after: want an RFC 3339 time such as 2026-01-02T15:04:05Z, got %q", fu.TokensValidAfter)
			}
		}
		u := &User{
			Username:         name,
			Roles:            token.NormalizeRoles(fu.Roles),
			Disabled:         fu.Disabled,
			Line:             line,
			TokensValidAfter: validAfter,
			hash:             fu.PasswordHash,
			cost:             cost,
			ver:              Fingerprint(fu.PasswordHash),
		}
		s.byName[name] = u
		s.names = append(s.names, name)
		s.maxCost = max(s.maxCost, cost)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

func checkUsername(name string) error {
	switch {
	case name == "":
		return errors.New("must not be empty")
	case len(name) > MaxUsernameBytes:
		return fmt.Errorf("is %d bytes, at most %d allowed", len(name), MaxUsernameBytes)
	}
	for _, r := range name {
		// The username becomes a token subject, a log field and an
		// identity header: control characters would allow header or log
		// injection.
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return errors.New("must not contain control characters or invalid UTF-8")
		}
	}
	return nil
}
