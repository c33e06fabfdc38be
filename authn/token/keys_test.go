package token_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/authn/token"
)

func genKey(t *testing.T, alg string) crypto.Signer {
	t.Helper()
	k, err := token.GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustSet(t *testing.T, m token.Material) *token.KeySet {
	t.Helper()
	ks, err := token.NewKeySetFrom(m)
	if err != nil {
		t.Fatalf("NewKeySetFrom() error = %v", err)
	}
	return ks
}

func kidOf(t *testing.T, pub crypto.PublicKey) string {
	t.Helper()
	kid, err := token.Thumbprint(pub)
	if err != nil {
		t.Fatal(err)
	}
	return kid
}

func mintWith(t *testing.T, ks token.KeySource, g token.Grant) string {
	t.Helper()
	raw, _, err := token.NewSigner(ks, settings, token.Options{Now: at(t0)}).Mint(g)
	if err != nil {
		t.Fatalf("Mint() error = %v", err)
	}
	return raw
}

var access = token.Grant{Subject: "alice", Roles: []string{"user"}, Type: token.TypeAccess, TTL: time.Hour}

// RFC 8037 appendix A.3: the thumbprint of the example Ed25519 key.
func TestThumbprintRFC8037(t *testing.T) {
	x, _ := base64.RawURLEncoding.DecodeString("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
	if got, want := kidOf(t, ed25519.PublicKey(x)), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"; got != want {
		t.Errorf("Thumbprint() = %q, want %q", got, want)
	}
}

func TestAsymmetricSignAndVerify(t *testing.T) {
	for _, alg := range []string{token.AlgEdDSA, token.AlgES256} {
		t.Run(alg, func(t *testing.T) {
			priv := genKey(t, alg)
			ks := mustSet(t, token.Material{Signing: priv})
			if ks.Algorithm() != alg || ks.SigningKeyID() != kidOf(t, priv.Public()) {
				t.Fatalf("set signs with %s kid %s", ks.Algorithm(), ks.SigningKeyID())
			}
			raw := mintWith(t, ks, access)
			tok, _, err := jwt.NewParser().ParseUnverified(raw, &token.Claims{})
			if err != nil || tok.Method.Alg() != alg || tok.Header["kid"] != ks.SigningKeyID() {
				t.Fatalf("minted header %v (%v), want alg %s and the thumbprint kid", tok.Header, err, alg)
			}
			p, err := token.NewVerifier(ks, settings, token.Options{Now: at(t0)}).Verify(context.Background(), raw)
			if err != nil || p.Subject != "alice" {
				t.Fatalf("Verify() = %+v, %v", p, err)
			}
			// Anyone holding only the published key verifies it too.
			var doc struct{ Keys []map[string]string }
			if err := json.Unmarshal(ks.JWKS(), &doc); err != nil || len(doc.Keys) != 1 || doc.Keys[0]["kid"] != ks.SigningKeyID() || doc.Keys[0]["alg"] != alg {
				t.Fatalf("JWKS() = %s", ks.JWKS())
			}
			if strings.Contains(string(ks.JWKS()), `"d"`) {
				t.Fatalf("JWKS() publishes private material: %s", ks.JWKS())
			}
		})
	}
}

func TestMaterialErrors(t *testing.T) {
	ed, ec := genKey(t, token.AlgEdDSA), genKey(t, token.AlgES256)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	tests := []struct {
		name string
		m    token.Material
		want string
	}{
		{"asymmetric without a key", token.Material{Algorithm: token.AlgEdDSA}, "EdDSA needs a private signing key"},
		{"key of another algorithm", token.Material{Algorithm: token.AlgES256, Signing: ed}, "signing key is a EdDSA key, the algorithm is ES256"},
		{"unsupported curve", token.Material{Signing: p384}, "P-384 is not supported"},
		{"HS256 with a private key", token.Material{Algorithm: token.AlgHS256, Signing: ec, HMAC: &keyA}, "algorithm is HS256"},
		{"HS256 with next keys", token.Material{HMAC: &keyA, Next: []crypto.PublicKey{ec.Public()}}, "never sign"},
		{"HS256 without a secret", token.Material{Algorithm: token.AlgHS256}, "HS256 needs a signing secret"},
		{"unknown algorithm", token.Material{Algorithm: "RS256", Signing: ec}, `unknown algorithm "RS256"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ks, err := token.NewKeySetFrom(tt.m)
			if err == nil || ks != nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewKeySetFrom() = %v, %v; want error containing %q", ks, err, tt.want)
			}
		})
	}
}

// A token may be checked only with a key of its own algorithm: an HS256
// token signed with a published public key's bytes as the secret, naming
// that key's kid, is the classic algorithm-confusion forgery.
func TestAlgorithmConfusionRefused(t *testing.T) {
	ed := genKey(t, token.AlgEdDSA)
	ks := mustSet(t, token.Material{Signing: ed, HMAC: &keyA})
	v := token.NewVerifier(ks, settings, token.Options{Now: at(t0)})
	pubBytes := []byte(ed.Public().(ed25519.PublicKey))
	der, _ := x509.MarshalPKIXPublicKey(ed.Public())
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	for name, secret := range map[string][]byte{"raw key": pubBytes, "PEM": pemBytes, "JWKS": ks.JWKS()} {
		raw := sign(t, jwt.SigningMethodHS256, secret, ks.SigningKeyID(), claims())
		if _, err := v.Verify(context.Background(), raw); !errors.Is(err, authn.ErrInvalidToken) {
			t.Errorf("HS256 token keyed by the %s of the EdDSA key: Verify() error = %v, want ErrInvalidToken", name, err)
		}
	}
	// An EdDSA token naming the HMAC kid is refused the same way.
	raw := sign(t, jwt.SigningMethodEdDSA, ed, keyA.ID, claims())
	if _, err := v.Verify(context.Background(), raw); !errors.Is(err, authn.ErrInvalidToken) {
		t.Errorf("EdDSA token naming the HMAC kid: Verify() error = %v, want ErrInvalidToken", err)
	}
	// The shared secret kept for verification still verifies its own
	// tokens, and signs nothing.
	old := sign(t, jwt.SigningMethodHS256, keyA.Secret, keyA.ID, claims())
	if _, err := v.Verify(context.Background(), old); err != nil {
		t.Errorf("HS256 token of the verify-only secret: Verify() error = %v", err)
	}
	if ks.SigningKeyID() == keyA.ID {
		t.Errorf("the verify-only secret signs")
	}
}

// Rotation: a next key verifies (other replicas may sign with it first)
// and is published; previous keys verify; a removed key stops at once,
// cached tokens included.
func TestRotationThroughKeyStore(t *testing.T) {
	k1, k2 := genKey(t, token.AlgEdDSA), genKey(t, token.AlgES256)
	store := token.NewKeyStore(mustSet(t, token.Material{Signing: k1}))
	v := token.NewVerifier(store, settings, token.Options{Now: at(t0), CacheSize: 100})
	ctx := context.Background()
	verify := func(raw string) error { _, err := v.Verify(ctx, raw); return err }

	tok1 := mintWith(t, store, access)
	if err := verify(tok1); err != nil {
		t.Fatal(err)
	}
	// Another replica already signs with k2.
	tok2 := mintWith(t, mustSet(t, token.Material{Signing: k2}), access)
	if verify(tok2) == nil {
		t.Fatal("a token of an unknown key verified")
	}
	store.Swap(mustSet(t, token.Material{Signing: k1, Next: []crypto.PublicKey{k2.Public()}}))
	if err := verify(tok2); err != nil {
		t.Errorf("token of the next key: %v", err)
	}
	if got := store.Keys().KeyIDs(token.RoleNext); len(got) != 1 || got[0] != kidOf(t, k2.Public()) {
		t.Errorf("next kids = %v", got)
	}
	// Promote: k2 signs, k1 is previous. Listing k2 as next as well (a
	// file not yet updated) changes nothing.
	store.Swap(mustSet(t, token.Material{Signing: k2, Next: []crypto.PublicKey{k2.Public()}, Previous: []crypto.PublicKey{k1.Public()}}))
	if tok := mintWith(t, store, access); !strings.Contains(tok, ".") || verify(tok) != nil {
		t.Error("a token of the promoted key does not verify")
	}
	if err := verify(tok1); err != nil {
		t.Errorf("token of the previous key: %v", err)
	}
	if len(store.Keys().PublicKeys()) != 2 || store.Keys().PublicKeys()[0].Kid != kidOf(t, k2.Public()) {
		t.Errorf("published keys = %+v, want the current key first, then the previous", store.Keys().PublicKeys())
	}
	// Retire k1: its token was cached, and must stop all the same.
	store.Swap(mustSet(t, token.Material{Signing: k2}))
	if err := verify(tok1); !errors.Is(err, authn.ErrInvalidToken) {
		t.Errorf("cached token of a removed key: Verify() error = %v, want ErrInvalidToken", err)
	}
}

// A refresh token carries an audience of its own, so a service that
// checks the access audience through the JWKS never takes it for an access
// token; the gateway still takes refresh tokens minted before that.
func TestRefreshTokenAudience(t *testing.T) {
	ks := mustSet(t, token.Material{Signing: genKey(t, token.AlgEdDSA)})
	rt := mintWith(t, ks, token.Grant{Subject: "alice", Type: token.TypeRefresh, TTL: time.Hour, Family: "f"})
	c := &token.Claims{}
	if _, _, err := jwt.NewParser().ParseUnverified(rt, c); err != nil {
		t.Fatal(err)
	}
	if len(c.Audience) != 1 || c.Audience[0] == settings.Audience {
		t.Fatalf("refresh token aud = %v, want one audience other than %q", c.Audience, settings.Audience)
	}
	pub := ks.PublicKeys()[0]
	_, err := jwt.NewParser(jwt.WithAudience(settings.Audience), jwt.WithValidMethods([]string{"EdDSA"})).Parse(rt, func(*jwt.Token) (any, error) {
		x, _ := base64.RawURLEncoding.DecodeString(pub.X)
		return ed25519.PublicKey(x), nil
	})
	if !errors.Is(err, jwt.ErrTokenInvalidAudience) {
		t.Errorf("a JWKS verifier of the access audience: refresh token error = %v, want invalid audience", err)
	}
	v := token.NewVerifier(ks, settings, token.Options{Now: at(t0)})
	if _, err := v.Parse(context.Background(), rt, token.TypeRefresh); err != nil {
		t.Errorf("Parse(refresh) error = %v", err)
	}
	legacy := claims()
	legacy.Type, legacy.Family = token.TypeRefresh, "f"
	old := sign(t, jwt.SigningMethodHS256, keyA.Secret, keyA.ID, legacy)
	if _, err := token.NewVerifier(mustKeySet(t, keyA), settings, token.Options{Now: at(t0)}).Parse(context.Background(), old, token.TypeRefresh); err != nil {
		t.Errorf("Parse(refresh token with the access audience) error = %v, want accepted", err)
	}
	at := claims()
	at.Audience = jwt.ClaimStrings{settings.Audience + ":refresh"}
	if _, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodHS256, keyA.Secret, keyA.ID, at)); err == nil {
		t.Error("an access token with the refresh audience verified")
	}
}

func TestParseKeysPEM(t *testing.T) {
	ed, ec := genKey(t, token.AlgEdDSA), genKey(t, token.AlgES256)
	edPEM, _ := token.MarshalPrivateKeyPEM(ed)
	ecPub, _ := token.MarshalPublicKeyPEM(ec.Public())
	ecDER, _ := x509.MarshalECPrivateKey(ec.(*ecdsa.PrivateKey))
	sec1 := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})

	if k, err := token.ParsePrivateKeyPEM(edPEM); err != nil || kidOf(t, k.Public()) != kidOf(t, ed.Public()) {
		t.Errorf("ParsePrivateKeyPEM(PKCS#8 Ed25519) = %v", err)
	}
	if _, err := token.ParsePrivateKeyPEM(sec1); err != nil {
		t.Errorf("ParsePrivateKeyPEM(SEC 1 P-256) = %v", err)
	}
	pubs, err := token.ParsePublicKeysPEM(append(append(append([]byte{}, ecPub...), edPEM...), '\n'))
	if err != nil || len(pubs) != 2 {
		t.Fatalf("ParsePublicKeysPEM(public + private) = %d keys, %v", len(pubs), err)
	}
	if pubs, err := token.ParsePublicKeysPEM(nil); err != nil || len(pubs) != 0 {
		t.Errorf("ParsePublicKeysPEM(empty) = %v, %v", pubs, err)
	}
	bad := []struct {
		name string
		data []byte
		want string
	}{
		{"public key as the signing key", ecPub, "a public key"},
		{"two private keys", append(append([]byte{}, edPEM...), sec1...), "exactly one"},
		{"truncated", edPEM[:len(edPEM)-20], "not a complete PEM block"},
		{"certificate", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), `"CERTIFICATE" is not a key`},
		{"encrypted", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: []byte{1}}), "encrypted"},
		{"garbage", []byte("not a key"), "not a complete PEM block"},
	}
	for _, b := range bad {
		_, err := token.ParsePrivateKeyPEM(b.data)
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%s: ParsePrivateKeyPEM() error = %v, want %q", b.name, err, b.want)
		}
		if err != nil && strings.Contains(err.Error(), "MII") {
			t.Errorf("%s: error leaks key material: %v", b.name, err)
		}
	}
}

func TestSignerNeverSignsWithoutAKey(t *testing.T) {
	_, _, err := token.NewSigner(&token.KeyStore{}, settings, token.Options{Now: at(t0)}).Mint(access)
	if err == nil {
		t.Fatal("Mint() with an empty key store succeeded")
	}
	if _, err := token.NewVerifier(&token.KeyStore{}, settings, token.Options{Now: at(t0)}).Verify(context.Background(), sign(t, jwt.SigningMethodHS256, keyA.Secret, keyA.ID, claims())); err == nil {
		t.Fatal("Verify() with an empty key store succeeded")
	}
}
