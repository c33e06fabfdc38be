package jwks

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"testing"
)

func FuzzJWKSParse(f *testing.F) {
	enc := base64.RawURLEncoding.EncodeToString
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		f.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	eb, _ := ek.PublicKey.Bytes()
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	rsaJWK := map[string]string{"kty": "RSA", "kid": "r", "alg": "RS256", "use": "sig", "n": enc(rk.N.Bytes()), "e": enc(big.NewInt(int64(rk.E)).Bytes())}
	ecJWK := map[string]string{"kty": "EC", "kid": "e", "crv": "P-256", "x": enc(eb[1:33]), "y": enc(eb[33:])}
	edJWK := map[string]string{"kty": "OKP", "kid": "d", "crv": "Ed25519", "x": enc(edPub)}
	set := func(keys ...any) string {
		b, err := json.Marshal(map[string]any{"keys": keys})
		if err != nil {
			f.Fatal(err)
		}
		return string(b)
	}
	f.Add(set(rsaJWK, ecJWK, edJWK))
	f.Add(set(rsaJWK, rsaJWK))
	f.Add(set(map[string]string{"kty": "oct", "k": "c2VjcmV0"}))
	f.Add(set(map[string]string{"kty": "RSA", "n": "AQAB", "e": "AQAB"}))
	f.Add(set(map[string]string{"kty": "EC", "crv": "P-256", "x": enc(make([]byte, 32)), "y": enc(make([]byte, 32))}))
	f.Add(set(map[string]string{"kty": "EC", "crv": "P-384", "x": ecJWK["x"], "y": ecJWK["y"]}))
	f.Add(set(map[string]string{"kty": "OKP", "crv": "X25519", "x": edJWK["x"]}))
	f.Add(set(map[string]string{"kty": "RSA", "kid": "r", "alg": "HS256", "n": rsaJWK["n"], "e": "AQAB"}))
	f.Add(set(map[string]string{"kty": "RSA", "kid": "r", "use": "enc", "n": rsaJWK["n"], "e": "AQAB"}))
	f.Add(set(map[string]string{"kty": "RSA", "kid": "r", "n": rsaJWK["n"], "e": "AQAB", "d": "AQAB"}))
	f.Add(set(map[string]string{"kty": "RSA", "kid": "r", "n": rsaJWK["n"], "e": "Ag"}))
	f.Add(set(1, "x", nil, []int{1}))
	f.Add(`{"keys":null}`)
	f.Add(`{"keys":[]}`)
	f.Add(`{}`)
	f.Add(`[]`)
	f.Add(`{"keys":[{"kty":"RSA","KTY":"oct"}]}`)

	f.Fuzz(func(t *testing.T, doc string) {
		ks, skipped, err := parseJWKS([]byte(doc))
		if err != nil {
			if ks != nil || skipped != 0 {
				t.Fatalf("parseJWKS() = %v, %d skipped with error %v", ks, skipped, err)
			}
			return
		}
		var raw struct {
			Keys []json.RawMessage `json:"keys"`
		}
		if json.Unmarshal([]byte(doc), &raw) != nil {
			t.Fatalf("parseJWKS(%q) accepted a document that is not JSON", doc)
		}
		if len(ks.all)+skipped != len(raw.Keys) {
			t.Fatalf("parseJWKS() kept %d and skipped %d of %d keys", len(ks.all), skipped, len(raw.Keys))
		}
		byKid := 0
		for kid, keys := range ks.byKid {
			for _, k := range keys {
				if k.kid != kid || kid == "" {
					t.Fatalf("key with kid %q listed under %q", k.kid, kid)
				}
				byKid++
			}
		}
		withKid := 0
		for _, k := range ks.all {
			if k.kid != "" {
				withKid++
			}
			checkUsable(t, k)
		}
		if byKid != withKid {
			t.Fatalf("byKid lists %d keys, %d keys have a kid", byKid, withKid)
		}
	})
}

// checkUsable fails unless k is a public key of a supported type that can
// verify at least one supported algorithm, and no other family.
func checkUsable(t *testing.T, k *publicKey) {
	t.Helper()
	if k.fingerprint == "" {
		t.Fatalf("key %q has no fingerprint", k.kid)
	}
	if k.alg != "" && !isSupportedAlgorithm(k.alg) {
		t.Fatalf("key %q kept with unsupported alg %q", k.kid, k.alg)
	}
	for _, alg := range []string{"HS256", "HS384", "HS512", "none", ""} {
		if k.usableFor(alg) {
			t.Fatalf("key %q (kind %d) is usable for %q", k.kid, k.kind, alg)
		}
	}
	switch pub := k.pub.(type) {
	case *rsa.PublicKey:
		if k.kind != kindRSA || pub.N.BitLen() < minRSABits || pub.E < 3 || pub.E%2 == 0 {
			t.Fatalf("key %q: kind %d, RSA with %d bits and e=%d", k.kid, k.kind, pub.N.BitLen(), pub.E)
		}
		if k.usableFor("ES256") || k.usableFor("EdDSA") {
			t.Fatalf("RSA key %q usable for another family", k.kid)
		}
	case *ecdsa.PublicKey:
		if k.kind != kindEC || pub.Curve.Params().Name != k.crv {
			t.Fatalf("key %q: kind %d, curve %s named %q", k.kid, k.kind, pub.Curve.Params().Name, k.crv)
		}
		if _, err := pub.Bytes(); err != nil {
			t.Fatalf("EC key %q is not a valid point: %v", k.kid, err)
		}
		if k.usableFor("RS256") || k.usableFor("EdDSA") {
			t.Fatalf("EC key %q usable for another family", k.kid)
		}
	case ed25519.PublicKey:
		if k.kind != kindEd25519 || len(pub) != ed25519.PublicKeySize {
			t.Fatalf("key %q: kind %d, Ed25519 of %d bytes", k.kid, k.kind, len(pub))
		}
		if k.usableFor("RS256") || k.usableFor("ES256") {
			t.Fatalf("Ed25519 key %q usable for another family", k.kid)
		}
	default:
		t.Fatalf("key %q has unusable type %T", k.kid, k.pub)
	}
}
