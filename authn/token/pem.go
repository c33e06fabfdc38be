package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
)

// The signing algorithms of the gateway's own tokens. EdDSA is Ed25519
// (RFC 8037); ES256 is ECDSA on P-256 with SHA-256; HS256 is HMAC-SHA256
// with a shared secret, kept for deployments that predate published keys.
const (
	AlgEdDSA = "EdDSA"
	AlgES256 = "ES256"
	AlgHS256 = "HS256"
)

// AlgorithmOf returns the JWS algorithm a public or private key signs
// with: EdDSA for Ed25519 and ES256 for ECDSA P-256. Every other key type
// or curve is an error: the gateway publishes and accepts only these two.
func AlgorithmOf(key any) (string, error) {
	switch k := key.(type) {
	case ed25519.PublicKey, ed25519.PrivateKey:
		return AlgEdDSA, nil
	case *ecdsa.PrivateKey:
		return AlgorithmOf(&k.PublicKey)
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return AlgES256, nil
		}
		return "", fmt.Errorf("token: ECDSA curve %s is not supported; use P-256 (ES256) or Ed25519 (EdDSA)", k.Curve.Params().Name)
	}
	return "", fmt.Errorf("token: key type %T is not supported; use Ed25519 (EdDSA) or ECDSA P-256 (ES256)", key)
}

// GenerateKey returns a new private key for alg (AlgEdDSA or AlgES256).
func GenerateKey(alg string) (crypto.Signer, error) {
	switch alg {
	case AlgEdDSA:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	case AlgES256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	return nil, fmt.Errorf("token: cannot generate a key for %q; want %s or %s", alg, AlgEdDSA, AlgES256)
}

// MarshalPrivateKeyPEM encodes a private key as a PKCS #8 "PRIVATE KEY"
// PEM block.
func MarshalPrivateKeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("token: encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// MarshalPublicKeyPEM encodes a public key as a PKIX "PUBLIC KEY" PEM
// block.
func MarshalPublicKeyPEM(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("token: encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePrivateKeyPEM parses exactly one private key, PKCS #8 ("PRIVATE
// KEY") or SEC 1 ("EC PRIVATE KEY", as openssl writes it), Ed25519 or
// P-256. Errors never contain key material.
func ParsePrivateKeyPEM(data []byte) (crypto.Signer, error) {
	blocks, err := pemBlocks(data)
	if err != nil {
		return nil, err
	}
	if len(blocks) != 1 {
		return nil, fmt.Errorf("token: want exactly one private key PEM block, found %d", len(blocks))
	}
	k, err := parseKeyBlock(blocks[0])
	if err != nil {
		return nil, fmt.Errorf("token: PEM block 1: %w", err)
	}
	priv, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New(`token: PEM block 1: a public key; the signing key must be a private key ("PRIVATE KEY")`)
	}
	return priv, nil
}

// ParsePublicKeysPEM parses zero or more keys and returns their public
// halves. Each block may be a public key ("PUBLIC KEY") or a private key,
// of whose only the public half is kept. An empty input is no keys.
func ParsePublicKeysPEM(data []byte) ([]crypto.PublicKey, error) {
	blocks, err := pemBlocks(data)
	if err != nil {
		return nil, err
	}
	out := make([]crypto.PublicKey, 0, len(blocks))
	for i, b := range blocks {
		k, err := parseKeyBlock(b)
		if err != nil {
			return nil, fmt.Errorf("token: PEM block %d: %w", i+1, err)
		}
		if s, ok := k.(crypto.Signer); ok {
			k = s.Public()
		}
		out = append(out, k)
	}
	return out, nil
}

// maxPEMBlocks bounds the keys one file may hold.
const maxPEMBlocks = 32

// pemBlocks splits data into PEM blocks. Anything but white space outside
// the blocks is an error: a truncated or corrupted file must not load as a
// shorter list of keys.
func pemBlocks(data []byte) ([]*pem.Block, error) {
	var out []*pem.Block
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if len(out) == maxPEMBlocks {
			return nil, fmt.Errorf("token: more than %d PEM blocks", maxPEMBlocks)
		}
		out = append(out, b)
	}
	for _, c := range rest {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return nil, fmt.Errorf("token: PEM block %d: not a complete PEM block (truncated or corrupted file)", len(out)+1)
		}
	}
	return out, nil
}

// parseKeyBlock parses one key block and checks its type is supported.
func parseKeyBlock(b *pem.Block) (any, error) {
	if len(b.Headers) > 0 {
		// Encrypted PEM (Proc-Type/DEK-Info) cannot be read unattended.
		return nil, errors.New("encrypted or annotated PEM blocks are not supported")
	}
	var (
		k   any
		err error
	)
	switch b.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(b.Bytes)
	case "PUBLIC KEY":
		k, err = x509.ParsePKIXPublicKey(b.Bytes)
	default:
		return nil, fmt.Errorf("PEM type %q is not a key; want PRIVATE KEY, EC PRIVATE KEY or PUBLIC KEY", b.Type)
	}
	if err != nil {
		// The x509 error names the structure that failed, not its bytes.
		return nil, fmt.Errorf("malformed %s: %w", b.Type, err)
	}
	if _, err := AlgorithmOf(k); err != nil {
		return nil, err
	}
	return k, nil
}

// JWK is a public key in JSON Web Key form (RFC 7517), as published in the
// gateway's JWKS.
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y,omitempty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
}

// PublicJWK returns the JWK of a public key, with its RFC 7638 thumbprint
// as kid.
func PublicJWK(pub crypto.PublicKey) (JWK, error) {
	alg, err := AlgorithmOf(pub)
	if err != nil {
		return JWK{}, err
	}
	b64 := base64.RawURLEncoding.EncodeToString
	var j JWK
	switch k := pub.(type) {
	case ed25519.PublicKey:
		j = JWK{Kty: "OKP", Crv: "Ed25519", X: b64(k)}
	case *ecdsa.PublicKey:
		raw, err := k.Bytes() // 0x04 || X || Y, fixed size
		if err != nil {
			return JWK{}, fmt.Errorf("token: encode public key: %w", err)
		}
		j = JWK{Kty: "EC", Crv: "P-256", X: b64(raw[1:33]), Y: b64(raw[33:65])}
	}
	j.Use, j.Alg = "sig", alg
	j.Kid = thumbprint(j)
	return j, nil
}

// Thumbprint returns the RFC 7638 JWK SHA-256 thumbprint of a public key,
// base64url encoded: the key's kid.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	j, err := PublicJWK(pub)
	if err != nil {
		return "", err
	}
	return j.Kid, nil
}

// thumbprint hashes the required members of j in lexicographic order with
// no white space (RFC 7638 §3.2). The member values are base64url and
// fixed names, so they need no JSON escaping.
func thumbprint(j JWK) string {
	var doc []byte
	switch j.Kty {
	case "OKP":
		doc = fmt.Appendf(nil, `{"crv":%q,"kty":"OKP","x":%q}`, j.Crv, j.X)
	default:
		doc = fmt.Appendf(nil, `{"crv":%q,"kty":"EC","x":%q,"y":%q}`, j.Crv, j.X, j.Y)
	}
	sum := sha256.Sum256(doc)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// jwksDocument renders a JWK set.
func jwksDocument(keys []JWK) []byte {
	if keys == nil {
		keys = []JWK{}
	}
	b, _ := json.Marshal(struct {
		Keys []JWK `json:"keys"`
	}{keys}) // plain strings: cannot fail
	return b
}
