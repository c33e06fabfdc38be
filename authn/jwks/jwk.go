package jwks

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// minRSABits is the smallest RSA modulus accepted from a JWKS.
const minRSABits = 2048

// keyKind is the family of a public key.
type keyKind int

const (
	kindRSA keyKind = iota + 1
	kindEC
	kindEd25519
)

// publicKey is one usable verification key from a JWKS.
type publicKey struct {
	kid  string
	alg  string // the JWK "alg" member; empty means any algorithm of the family
	kind keyKind
	crv  string // for kindEC: P-256, P-384 or P-521
	pub  crypto.PublicKey
	// fingerprint identifies the key material, so that a cached token stays
	// valid only while the exact key that verified it is still published.
	fingerprint string
}

// usableFor reports whether k may verify a signature made with alg. The key
// family must match the algorithm family: an RSA key is never used for an
// HMAC or ECDSA signature (algorithm confusion).
func (k *publicKey) usableFor(alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		return k.kind == kindRSA
	case "ES256":
		return k.kind == kindEC && k.crv == "P-256"
	case "ES384":
		return k.kind == kindEC && k.crv == "P-384"
	case "ES512":
		return k.kind == kindEC && k.crv == "P-521"
	case "EdDSA":
		return k.kind == kindEd25519
	default:
		return false
	}
}

// keySet is an immutable parsed JWKS.
type keySet struct {
	byKid map[string][]*publicKey
	all   []*publicKey
}

// lookup returns the one key usable for alg with the given kid. A token
// without a kid is accepted only when exactly one key of the set is usable
// for its algorithm, so that the choice of key is never ambiguous.
func (s *keySet) lookup(kid, alg string) (*publicKey, bool, error) {
	cands := s.all
	if kid != "" {
		var ok bool
		cands, ok = s.byKid[kid]
		if !ok {
			return nil, false, nil
		}
	}
	var found *publicKey
	n := 0
	for _, k := range cands {
		if k.usableFor(alg) {
			found = k
			n++
		}
	}
	switch {
	case n == 1:
		return found, true, nil
	case n > 1:
		return nil, true, errors.New("jwks: more than one key matches the token")
	case kid == "":
		return nil, true, errors.New("jwks: token has no kid and no single key matches its algorithm")
	default:
		return nil, true, errors.New("jwks: key type does not match the token algorithm")
	}
}

type rawJWK struct {
	Kty string `json:"kty"`
	Use string `json:"use"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Crv string `json:"crv"`
	N   string `json:"n"`
	E   string `json:"e"`
	X   string `json:"x"`
	Y   string `json:"y"`
	D   string `json:"d"`
}

// parseJWKS parses a JWK set. Keys with "use" other than "sig", keys of an
// unsupported type or curve, and malformed keys are skipped (and counted in
// skipped) so that one odd key does not take the whole issuer down. A
// document that is not a JWK set is an error.
func parseJWKS(b []byte) (set *keySet, skipped int, err error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, 0, errors.New("jwks: key set is not valid JSON")
	}
	if doc.Keys == nil {
		return nil, 0, errors.New(`jwks: key set has no "keys" array`)
	}
	set = &keySet{byKid: make(map[string][]*publicKey)}
	for _, rk := range doc.Keys {
		var j rawJWK
		if err := json.Unmarshal(rk, &j); err != nil {
			skipped++
			continue
		}
		k, err := parseJWK(j)
		if err != nil {
			skipped++
			continue
		}
		set.all = append(set.all, k)
		if k.kid != "" {
			set.byKid[k.kid] = append(set.byKid[k.kid], k)
		}
	}
	return set, skipped, nil
}

func parseJWK(j rawJWK) (*publicKey, error) {
	if j.Use != "" && j.Use != "sig" {
		return nil, errors.New("jwks: key is not for signatures")
	}
	if j.D != "" {
		// A private key in a public JWKS is a provider misconfiguration;
		// refuse to use it rather than spread the mistake.
		return nil, errors.New("jwks: key set publishes private key material")
	}
	if j.Alg != "" && !isSupportedAlgorithm(j.Alg) {
		return nil, fmt.Errorf("jwks: unsupported key algorithm")
	}
	k := &publicKey{kid: j.Kid, alg: j.Alg}
	switch j.Kty {
	case "RSA":
		n, err := b64Int(j.N)
		if err != nil {
			return nil, err
		}
		e, err := b64Int(j.E)
		if err != nil {
			return nil, err
		}
		if n.BitLen() < minRSABits {
			return nil, errors.New("jwks: rsa modulus too small")
		}
		if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 || e.Bit(0) == 0 {
			return nil, errors.New("jwks: rsa exponent out of range")
		}
		k.kind = kindRSA
		k.pub = &rsa.PublicKey{N: n, E: int(e.Int64())}
		k.fingerprint = "RSA:" + j.N + ":" + j.E
	case "EC":
		var curve elliptic.Curve
		switch j.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return nil, errors.New("jwks: unsupported curve")
		}
		size := (curve.Params().BitSize + 7) / 8
		x, err := b64Fixed(j.X, size)
		if err != nil {
			return nil, err
		}
		y, err := b64Fixed(j.Y, size)
		if err != nil {
			return nil, err
		}
		// ParseUncompressedPublicKey rejects points that are not on the
		// curve (invalid-curve attack) and the point at infinity.
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, append(append([]byte{4}, x...), y...))
		if err != nil {
			return nil, errors.New("jwks: invalid ec point")
		}
		k.kind = kindEC
		k.crv = j.Crv
		k.pub = pub
		k.fingerprint = "EC:" + j.Crv + ":" + j.X + ":" + j.Y
	case "OKP":
		if j.Crv != "Ed25519" {
			return nil, errors.New("jwks: unsupported curve")
		}
		x, err := b64Decode(j.X)
		if err != nil {
			return nil, err
		}
		if len(x) != ed25519.PublicKeySize {
			return nil, errors.New("jwks: invalid ed25519 key length")
		}
		k.kind = kindEd25519
		k.crv = j.Crv
		k.pub = ed25519.PublicKey(x)
		k.fingerprint = "OKP:" + j.Crv + ":" + j.X
	default:
		// "oct" (symmetric) keys are never used: a shared secret cannot be
		// published, and accepting one invites HMAC algorithm confusion.
		return nil, errors.New("jwks: unsupported key type")
	}
	return k, nil
}

func b64Decode(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("jwks: missing key parameter")
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, errors.New("jwks: key parameter is not base64url")
	}
	return b, nil
}

func b64Int(s string) (*big.Int, error) {
	b, err := b64Decode(s)
	if err != nil {
		return nil, err
	}
	return new(big.Int).SetBytes(b), nil
}

// b64Fixed decodes a coordinate and left-pads it to size bytes.
func b64Fixed(s string, size int) ([]byte, error) {
	b, err := b64Decode(s)
	if err != nil {
		return nil, err
	}
	if len(b) > size {
		return nil, errors.New("jwks: ec coordinate too long")
	}
	out := make([]byte, size)
	copy(out[size-len(b):], b)
	return out, nil
}
