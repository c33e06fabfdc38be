package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/authn/assertion"
	"github.com/authgate/authgate/authn/jose"
)

// MinSecretBytes is the shortest HMAC secret accepted. golang-jwt verifies
// tokens with an empty key, so a missing or short secret must stop startup.
const MinSecretBytes = 32

// Key is one HMAC key with its key id.
type Key struct {
	// ID is the "kid" header value.
	ID string
	// Secret is the HMAC secret, at least MinSecretBytes long.
	Secret []byte
}

// KeyRole is what a key of a KeySet is for.
type KeyRole string

// The key roles of a rotation: a next key is published (and verifies)
// before it signs, the current key signs, previous keys verify the tokens
// they signed until those expire.
const (
	RoleCurrent  KeyRole = "current"
	RoleNext     KeyRole = "next"
	RolePrevious KeyRole = "previous"
)

// verifyKey is one key accepted for verification. Its algorithm is bound
// to it: a token is checked with a key only when the token's alg is the
// key's, so no token can choose how its key is used.
type verifyKey struct {
	id   string
	alg  string
	key  any // []byte for HS256, ed25519.PublicKey, *ecdsa.PublicKey
	role KeyRole
}

// signKey is the key new tokens are signed with.
type signKey struct {
	id     string
	alg    string
	method jwt.SigningMethod
	key    any // []byte for HS256, ed25519.PrivateKey, *ecdsa.PrivateKey
	// assertHeader is the encoded JOSE header of its assertions.
	assertHeader string
}

// KeySet holds the signing key and the keys still accepted for verification
// (key rotation), and the public keys it publishes. The zero value has no
// keys, signs nothing and verifies nothing. A KeySet is immutable once built
// and safe for concurrent use.
type KeySet struct {
	signing *signKey
	byID    map[string]*verifyKey
	public  []JWK  // published: current, next, previous
	jwks    []byte // the JWK set document of public
}

// Keys returns ks itself: a fixed key set is its own KeySource.
func (ks *KeySet) Keys() *KeySet { return ks }

// Algorithm returns the algorithm new tokens are signed with, or "" when
// the set cannot sign.
func (ks *KeySet) Algorithm() string {
	if ks == nil || ks.signing == nil {
		return ""
	}
	return ks.signing.alg
}

// SigningKeyID returns the kid new tokens carry, or "" when the set cannot
// sign.
func (ks *KeySet) SigningKeyID() string {
	if ks == nil || ks.signing == nil {
		return ""
	}
	return ks.signing.id
}

// PublicKeys returns the published keys, current first, then next, then
// previous. The result must not be modified.
func (ks *KeySet) PublicKeys() []JWK {
	if ks == nil {
		return nil
	}
	return ks.public
}

// JWKS returns the JSON Web Key Set document of the published keys. The
// result must not be modified.
func (ks *KeySet) JWKS() []byte {
	if ks == nil || ks.jwks == nil {
		return jwksDocument(nil)
	}
	return ks.jwks
}

// KeyIDs returns the kids of the keys in role, sorted.
func (ks *KeySet) KeyIDs(role KeyRole) []string {
	var out []string
	if ks != nil {
		for id, k := range ks.byID {
			if k.role == role {
				out = append(out, id)
			}
		}
	}
	slices.Sort(out)
	return out
}

// verificationKey returns the key a parsed, unverified token names by kid,
// provided the token's alg is that key's algorithm (algorithm confusion:
// an HS256 token naming a published public key must never be checked
// with that key's bytes as an HMAC secret).
func (ks *KeySet) verificationKey(h jose.Header) (any, error) {
	kid := h.Kid
	var k *verifyKey
	if ks != nil {
		k = ks.byID[kid]
	}
	if k == nil {
		return nil, fmt.Errorf("token: unknown kid %q", kid)
	}
	if h.Alg != k.alg {
		return nil, fmt.Errorf("token: kid %q is a %s key, the token says another algorithm", kid, k.alg)
	}
	return k.key, nil
}

// KeySource gives the key set in force. *KeySet (a fixed set) and
// *KeyStore (a set replaced on reload) implement it. Implementations must
// be safe for concurrent use.
type KeySource interface {
	Keys() *KeySet
}

// KeyStore holds the key set in force and swaps it atomically on reload:
// a request sees one whole set, never a mix of two. The zero value holds
// no set (nothing verifies, nothing signs). It is safe for concurrent use.
type KeyStore struct {
	p atomic.Pointer[KeySet]
}

// NewKeyStore returns a store holding ks.
func NewKeyStore(ks *KeySet) *KeyStore {
	s := &KeyStore{}
	s.p.Store(ks)
	return s
}

// Keys implements KeySource.
func (s *KeyStore) Keys() *KeySet { return s.p.Load() }

// Swap puts ks in force.
func (s *KeyStore) Swap(ks *KeySet) { s.p.Store(ks) }

// NewKeySet returns an HS256 key set that signs with current and verifies
// with current and every key in previous. Every key needs a distinct
// non-empty id and a secret of at least MinSecretBytes.
func NewKeySet(current Key, previous ...Key) (*KeySet, error) {
	return NewKeySetFrom(Material{Algorithm: AlgHS256, HMAC: &current, HMACPrevious: previous})
}

// Material is what a KeySet is built from: the private key or shared
// secret that signs, and the keys that only verify.
type Material struct {
	// Algorithm is what new tokens are signed with: AlgEdDSA or AlgES256
	// with Signing, AlgHS256 with HMAC. Empty means the algorithm of
	// Signing when it is set, else AlgHS256.
	Algorithm string
	// Signing is the private key that signs when the algorithm is
	// asymmetric (the current key). Its kid is its RFC 7638 thumbprint.
	Signing crypto.Signer
	// Next are keys published and accepted before they sign.
	Next []crypto.PublicKey
	// Previous are keys accepted (and published) until their tokens
	// expire.
	Previous []crypto.PublicKey
	// HMAC is the shared secret that signs when the algorithm is HS256.
	// With an asymmetric algorithm it only verifies, so that tokens minted
	// before a move to published keys stay valid until they expire.
	HMAC *Key
	// HMACPrevious are older shared secrets that only verify.
	HMACPrevious []Key
}

// NewKeySetFrom builds a key set. A key listed in two roles (the current
// key also in previous, a next key already current) counts once, in the
// role that signs or, failing that, the one listed first of current, next,
// previous: a rotation written file by file passes through such states and
// none of them may drop a key. Every problem is reported at once; errors
// never contain key material.
func NewKeySetFrom(m Material) (*KeySet, error) {
	ks := &KeySet{byID: make(map[string]*verifyKey)}
	var errs []error
	alg := m.Algorithm
	if alg == "" {
		alg = AlgHS256
		if m.Signing != nil {
			var err error
			if alg, err = AlgorithmOf(m.Signing); err != nil {
				return nil, fmt.Errorf("token: signing key: %w", err)
			}
		}
	}
	switch alg {
	case AlgEdDSA, AlgES256:
		if err := ks.addSigning(alg, m.Signing); err != nil {
			errs = append(errs, err)
		}
	case AlgHS256:
		if m.Signing != nil {
			errs = append(errs, errors.New("token: a private signing key is set but the algorithm is HS256"))
		}
		if m.HMAC == nil {
			errs = append(errs, errors.New("token: HS256 needs a signing secret"))
		}
	default:
		errs = append(errs, fmt.Errorf("token: unknown algorithm %q; want %s, %s or %s", alg, AlgEdDSA, AlgES256, AlgHS256))
	}
	if alg == AlgHS256 && len(m.Next) > 0 {
		errs = append(errs, errors.New("token: next keys are set but the algorithm is HS256: a next key would never sign"))
	}
	for i, pub := range m.Next {
		if err := ks.addPublic(pub, RoleNext); err != nil {
			errs = append(errs, fmt.Errorf("token: next key %d: %w", i+1, err))
		}
	}
	for i, pub := range m.Previous {
		if err := ks.addPublic(pub, RolePrevious); err != nil {
			errs = append(errs, fmt.Errorf("token: previous key %d: %w", i+1, err))
		}
	}
	if m.HMAC != nil {
		errs = append(errs, ks.addHMAC(*m.HMAC, "signing key", alg == AlgHS256)...)
	}
	for i, k := range m.HMACPrevious {
		errs = append(errs, ks.addHMAC(k, fmt.Sprintf("previous key %d", i+1), false)...)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	ks.jwks = jwksDocument(ks.public)
	return ks, nil
}

func (ks *KeySet) addSigning(alg string, priv crypto.Signer) error {
	if priv == nil {
		return fmt.Errorf("token: %s needs a private signing key", alg)
	}
	keyAlg, err := AlgorithmOf(priv)
	if err != nil {
		return fmt.Errorf("token: signing key: %w", err)
	}
	if keyAlg != alg {
		return fmt.Errorf("token: the signing key is a %s key, the algorithm is %s", keyAlg, alg)
	}
	j, err := PublicJWK(priv.Public())
	if err != nil {
		return fmt.Errorf("token: signing key: %w", err)
	}
	var method jwt.SigningMethod = jwt.SigningMethodEdDSA
	var key any = priv
	if alg == AlgES256 {
		method = jwt.SigningMethodES256
		key = priv.(*ecdsa.PrivateKey) // AlgorithmOf said so
	} else {
		key = priv.(ed25519.PrivateKey)
	}
	h, _ := json.Marshal(map[string]string{"alg": alg, "kid": j.Kid, "typ": assertion.Type}) // strings: cannot fail
	ks.signing = &signKey{id: j.Kid, alg: alg, method: method, key: key, assertHeader: base64.RawURLEncoding.EncodeToString(h)}
	ks.byID[j.Kid] = &verifyKey{id: j.Kid, alg: alg, key: priv.Public(), role: RoleCurrent}
	ks.public = append(ks.public, j)
	return nil
}

func (ks *KeySet) addPublic(pub crypto.PublicKey, role KeyRole) error {
	j, err := PublicJWK(pub)
	if err != nil {
		return err
	}
	if _, dup := ks.byID[j.Kid]; dup {
		return nil // listed in a role that counts already
	}
	ks.byID[j.Kid] = &verifyKey{id: j.Kid, alg: j.Alg, key: pub, role: role}
	ks.public = append(ks.public, j)
	return nil
}

func (ks *KeySet) addHMAC(k Key, name string, signs bool) []error {
	var errs []error
	switch {
	case k.ID == "":
		errs = append(errs, fmt.Errorf("token: %s: empty kid", name))
	case len(k.Secret) < MinSecretBytes:
		// The length is safe to report; the secret is not.
		errs = append(errs, fmt.Errorf("token: %s (kid %q): secret is %d bytes, need at least %d", name, k.ID, len(k.Secret), MinSecretBytes))
	}
	if _, dup := ks.byID[k.ID]; dup && k.ID != "" {
		errs = append(errs, fmt.Errorf("token: %s: duplicate kid %q", name, k.ID))
	}
	role := RolePrevious
	if signs {
		role = RoleCurrent
		ks.signing = &signKey{id: k.ID, alg: AlgHS256, method: jwt.SigningMethodHS256, key: k.Secret}
	}
	// Recorded even when invalid, so a later duplicate is reported too;
	// a set with errors is never returned. A shared secret is never
	// published.
	ks.byID[k.ID] = &verifyKey{id: k.ID, alg: AlgHS256, key: k.Secret, role: role}
	return errs
}
