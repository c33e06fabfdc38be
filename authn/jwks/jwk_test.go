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
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/authn"
)

var b64 = base64.RawURLEncoding.EncodeToString

func rsaJWK(t *testing.T, bits int) map[string]string {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{"kty": "RSA", "kid": "rsa", "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
}

func ecJWK(t *testing.T) map[string]string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := k.PublicKey.Bytes()
	return map[string]string{"kty": "EC", "kid": "ec", "crv": "P-256", "x": b64(b[1:33]), "y": b64(b[33:])}
}

func edJWK(t *testing.T) map[string]string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": b64(pub)}
}

func with(m map[string]string, kv ...string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			delete(out, kv[i])
			continue
		}
		out[kv[i]] = kv[i+1]
	}
	return out
}

func TestParseJWK(t *testing.T) {
	rsaKey := rsaJWK(t, 2048)
	ec := ecJWK(t)
	ed := edJWK(t)
	offCurve := with(ec, "y", b64(append(make([]byte, 31), 1)))
	tests := []struct {
		name   string
		key    map[string]string
		usable bool
	}{
		{"rsa", rsaKey, true},
		{"rsa use sig", with(rsaKey, "use", "sig"), true},
		{"rsa use enc skipped", with(rsaKey, "use", "enc"), false},
		{"rsa 1024 bits skipped", rsaJWK(t, 1024), false},
		{"rsa even exponent skipped", with(rsaKey, "e", b64([]byte{2})), false},
		{"rsa with private part skipped", with(rsaKey, "d", "AQAB"), false},
		{"rsa bad base64 skipped", with(rsaKey, "n", "!!!"), false},
		{"ec P-256", ec, true},
		{"ec point not on curve skipped", offCurve, false},
		{"ec unsupported curve skipped", with(ec, "crv", "secp256k1"), false},
		{"ec coordinate too long skipped", with(ec, "x", b64(make([]byte, 33))), false},
		{"ed25519", ed, true},
		{"ed448 skipped", with(ed, "crv", "Ed448"), false},
		{"ed25519 short key skipped", with(ed, "x", b64(make([]byte, 31))), false},
		{"oct skipped", map[string]string{"kty": "oct", "k": "c2VjcmV0"}, false},
		{"unknown kty skipped", map[string]string{"kty": "XYZ"}, false},
		{"HS256 alg skipped", with(rsaKey, "alg", "HS256"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, _ := json.Marshal(map[string]any{"keys": []any{tt.key}})
			set, skipped, err := parseJWKS(doc)
			if err != nil {
				t.Fatalf("parseJWKS() error = %v", err)
			}
			if got := len(set.all) == 1; got != tt.usable {
				t.Errorf("parseJWKS(%s): usable = %v (skipped %d), want %v", tt.name, got, skipped, tt.usable)
			}
		})
	}
}

func TestParseJWKSKeepsGoodKeys(t *testing.T) {
	doc, _ := json.Marshal(map[string]any{"keys": []any{
		map[string]string{"kty": "oct", "k": "c2VjcmV0"},
		ecJWK(t),
		"not an object",
		edJWK(t),
	}})
	set, skipped, err := parseJWKS(doc)
	if err != nil || len(set.all) != 2 || skipped != 2 {
		t.Fatalf("parseJWKS() = %d keys, %d skipped, %v; want 2, 2, nil", len(set.all), skipped, err)
	}
	for _, bad := range []string{`[]`, `{}`, `{"keys":{}}`, `nope`} {
		if _, _, err := parseJWKS([]byte(bad)); err == nil {
			t.Errorf("parseJWKS(%s) error = nil, want error", bad)
		}
	}
}

func TestDecodeStrictObject(t *testing.T) {
	tests := []struct {
		in      string
		wantErr bool
	}{
		{`{"a":1,"b":{"a":2,"A":3}}`, false}, // nested objects are checked on the roles path only
		{`{"roles":1,"ROLES":2}`, true},
		{`{"sub":1,"sub":2}`, true},
		{`{"kid":1,"\u212aid":2}`, true}, // KELVIN SIGN folds to k
		{`{"ß":1,"SS":2}`, false},        // not equal under simple folding
		{`[1]`, true},
		{`{"a":1} {}`, true},
		{`{"a":}`, true},
	}
	for _, tt := range tests {
		if _, err := decodeStrictObject([]byte(tt.in)); (err != nil) != tt.wantErr {
			t.Errorf("decodeStrictObject(%s) error = %v, want error %v", tt.in, err, tt.wantErr)
		}
	}
	// A large object is checked in one pass: many distinct members pass,
	// and a case-variant pair among them is still found.
	if _, err := decodeStrictObject([]byte("{" + manyKeys(2000) + "}")); err != nil {
		t.Errorf("decodeStrictObject(2000 distinct members) error = %v, want nil", err)
	}
	if _, err := decodeStrictObject([]byte("{" + manyKeys(2000) + `,"K1999":2}`)); err == nil {
		t.Error("decodeStrictObject(2000 members and a case variant) error = nil, want error")
	}
}

func manyKeys(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = `"k` + big.NewInt(int64(i)).String() + `":1`
	}
	return strings.Join(parts, ",")
}

func TestTokenCacheLRU(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := newTokenCache(2)
	entry := func(b byte, exp time.Duration) cacheEntry {
		return cacheEntry{key: [32]byte{b}, principal: authn.Principal{Subject: string(rune('a' + b)), ExpiresAt: now.Add(exp)}}
	}
	c.put(entry(1, time.Hour))
	c.put(entry(2, time.Hour))
	if _, r := c.get([32]byte{1}, now); r != cacheHit { // 1 becomes most recent
		t.Fatalf("get(1) = %v, want hit", r)
	}
	c.put(entry(3, time.Hour)) // evicts 2
	if _, r := c.get([32]byte{2}, now); r != cacheMiss {
		t.Errorf("get(2) after eviction = %v, want miss", r)
	}
	if c.len() != 2 {
		t.Errorf("len() = %d, want 2", c.len())
	}
	c.put(entry(4, time.Minute))
	if _, r := c.get([32]byte{4}, now.Add(time.Minute)); r != cacheExpired {
		t.Errorf("get(4) at exp = %v, want expired", r)
	}
	if _, r := c.get([32]byte{4}, now); r != cacheMiss {
		t.Errorf("get(4) after expiry removal = %v, want miss", r)
	}
	var disabled *tokenCache = newTokenCache(0)
	disabled.put(entry(1, time.Hour))
	if _, r := disabled.get([32]byte{1}, now); r != cacheMiss || disabled.len() != 0 {
		t.Errorf("disabled cache get = %v, want miss", r)
	}
}
