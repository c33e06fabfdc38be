// Package apikey authenticates callers by the X-API-Key header.
//
// Keys are never stored: the keys file holds the SHA-256 digest of each key,
// and a presented key is hashed and looked up by digest. The file is parsed
// strictly (an unknown field is an error) and swapped atomically on reload.
package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sync/atomic"
	"time"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/authn/token"
	"github.com/authgate/authgate/internal/yamlx"
	"github.com/authgate/authgate/policy"
	"go.yaml.in/yaml/v3"
)

// Header is the request header that carries an API key.
const Header = "X-API-Key"

// Key is one entry of the keys file.
type Key struct {
	// Name identifies the key in logs, metrics and the identity headers.
	Name string
	// Roles are the gateway roles the key grants, sorted.
	Roles []string
	// Expires is when the key stops working; zero means never.
	Expires time.Time
	// Line is the key's line in the file.
	Line int

	digest [sha256.Size]byte
}

// Set is an immutable, parsed keys file. It is safe for concurrent use.
type Set struct {
	byDigest map[[sha256.Size]byte]*Key
	names    []string
	warnings []string
}

// Warnings returns what Parse accepted for now but will refuse in a later
// release, each as "file:line: key N (name): ...": today a role outside the
// role grammar (see policy.CheckRoleName), which the key does not grant.
// The caller logs them at load and `authgate check` prints them.
func (s *Set) Warnings() []string {
	if s == nil {
		return nil
	}
	return s.warnings
}

// Len returns the number of keys.
func (s *Set) Len() int { return len(s.byDigest) }

// Names returns the key names in file order.
func (s *Set) Names() []string { return s.names }

// Roles returns every role that some key grants.
func (s *Set) Roles() []string {
	var all []string
	for _, k := range s.byDigest {
		all = append(all, k.Roles...)
	}
	return token.NormalizeRoles(all)
}

type fileKey struct {
	Name    string   `yaml:"name"`
	SHA256  string   `yaml:"sha256"`
	Roles   []string `yaml:"roles"`
	Expires keyTime  `yaml:"expires"`
}

type file struct {
	Keys []fileKey `yaml:"keys"`
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// Parse reads a keys file. All problems are reported together, each with
// the file name and line. An empty file is an error; a file with `keys: []`
// is a valid set with no keys.
func Parse(filename string, data []byte) (*Set, error) {
	var f file
	errs, err := yamlx.DecodeAll(filename, data, &f)
	if err != nil {
		return nil, err
	}
	lines := yamlx.SeqLines(data, "keys")
	s := &Set{byDigest: make(map[[sha256.Size]byte]*Key)}
	seen := map[string]int{}
	for i, fk := range f.Keys {
		line := yamlx.Line(lines, i)
		at := fmt.Sprintf("%s:%d: key %d (%s)", filename, line, i+1, fk.Name)
		if !nameRE.MatchString(fk.Name) {
			errs = append(errs, fmt.Errorf("%s: field name: must match %s", at, nameRE))
		}
		if prev, dup := seen[fk.Name]; dup {
			errs = append(errs, fmt.Errorf("%s: field name: duplicate of the key on line %d", at, prev))
		}
		seen[fk.Name] = line
		valid := token.NormalizeRoles(fk.Roles)
		nonEmpty := false
		for _, r := range fk.Roles {
			if r == "" {
				continue
			}
			nonEmpty = true
			if err := policy.CheckRoleName(r); err != nil {
				// Loadable for one release so an upgrade still starts, but
				// never granted: no rule can list it, and "a,b" would be
				// two roles upstream.
				s.warnings = append(s.warnings, fmt.Sprintf("%s: field roles: %v: the role is not granted; rename it (a later release refuses it)", at, err))
			}
		}
		switch {
		case !nonEmpty:
			errs = append(errs, fmt.Errorf("%s: field roles: a key needs at least one role", at))
		case len(valid) == 0:
			s.warnings = append(s.warnings, fmt.Sprintf("%s: field roles: the key grants no valid role, so no role-gated rule admits it", at))
		}
		raw, err := hex.DecodeString(fk.SHA256)
		if err != nil || len(raw) != sha256.Size {
			errs = append(errs, fmt.Errorf("%s: field sha256: want 64 hex characters (the SHA-256 digest of the key)", at))
			continue
		}
		k := &Key{Name: fk.Name, Roles: valid, Expires: fk.Expires.Time, Line: line}
		copy(k.digest[:], raw)
		if _, dup := s.byDigest[k.digest]; dup {
			errs = append(errs, fmt.Errorf("%s: field sha256: same digest as another key", at))
		}
		s.byDigest[k.digest] = k
		s.names = append(s.names, k.Name)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// Digest returns the hex SHA-256 digest of a key, as stored in the keys file.
func Digest(key string) string {
	d := sha256.Sum256([]byte(key))
	return hex.EncodeToString(d[:])
}

// Generate returns a new random key with 256 bits of entropy.
func Generate() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return "agk_" + base64.RawURLEncoding.EncodeToString(b[:])
}

// Store holds the current Set and swaps it atomically on reload. The zero
// value holds no set and rejects every key. It is safe for concurrent use.
type Store struct {
	p atomic.Pointer[Set]
}

// Load returns the current set, or nil.
func (st *Store) Load() *Set { return st.p.Load() }

// Swap replaces the current set.
func (st *Store) Swap(s *Set) { st.p.Store(s) }

// Authenticator authenticates X-API-Key. It implements authn.Authenticator
// and is safe for concurrent use.
type Authenticator struct {
	store  *Store
	now    func() time.Time
	header string
}

// NewAuthenticator returns an authenticator over store. now may be nil.
func NewAuthenticator(store *Store, now func() time.Time) *Authenticator {
	if now == nil {
		now = time.Now
	}
	return &Authenticator{store: store, now: now, header: http.CanonicalHeaderKey(Header)}
}

// WithHeader returns a copy of a that reads keys from header instead of
// X-API-Key.
func (a *Authenticator) WithHeader(header string) *Authenticator {
	c := *a
	c.header = http.CanonicalHeaderKey(header)
	return &c
}

// Authenticate implements authn.Authenticator.
func (a *Authenticator) Authenticate(r *http.Request) (authn.Principal, bool, error) {
	vals := r.Header[a.header]
	switch len(vals) {
	case 0:
		return authn.Principal{}, false, nil
	case 1:
	default:
		return authn.Principal{}, false, fmt.Errorf("%w: %d %s headers", authn.ErrMalformed, len(vals), Header)
	}
	k, err := a.Lookup(vals[0])
	if err != nil {
		return authn.Principal{}, false, err
	}
	p := authn.Principal{Subject: k.Name, Roles: k.Roles, Method: authn.MethodAPIKey, KeyName: k.Name, ExpiresAt: k.Expires}
	return p, true, nil
}

// Lookup returns the key whose digest matches presented, if it exists and
// has not expired.
func (a *Authenticator) Lookup(presented string) (*Key, error) {
	s := a.store.Load()
	if s == nil || presented == "" {
		return nil, authn.ErrInvalidAPIKey
	}
	d := sha256.Sum256([]byte(presented))
	k, ok := s.byDigest[d]
	// The map lookup is on a digest the caller cannot steer, so its timing
	// reveals nothing useful; the constant-time compare states the intent.
	if !ok || subtle.ConstantTimeCompare(k.digest[:], d[:]) != 1 {
		return nil, authn.ErrInvalidAPIKey
	}
	if !k.Expires.IsZero() && !a.now().Before(k.Expires) {
		return nil, fmt.Errorf("%w: key %q expired", authn.ErrInvalidAPIKey, k.Name)
	}
	return k, nil
}

// keyTime is a time in the keys file whose parse errors name their line.
type keyTime struct{ time.Time }

// UnmarshalYAML implements yaml.Unmarshaler.
func (t *keyTime) UnmarshalYAML(n *yaml.Node) error {
	if err := n.Decode(&t.Time); err != nil {
		// A TypeError is collected with the other field errors instead of
		// ending the decode.
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: field expires: %v", n.Line, err)}}
	}
	return nil
}
