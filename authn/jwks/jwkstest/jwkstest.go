// Package jwkstest runs a fake OpenID Connect identity provider for tests:
// an httptest server publishing a discovery document and a JWKS, and
// signing tokens with the matching private keys.
package jwkstest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// Algorithms returns the algorithms an IdP signs with, one key each.
func Algorithms() []string { return []string{"RS256", "PS256", "ES256", "EdDSA"} }

// IdP is a fake identity provider. Its issuer is its server URL. It serves
// GET /.well-known/openid-configuration and GET /jwks. The zero value is not
// usable; use NewIdP. An IdP is safe for concurrent use.
type IdP struct {
	t   testing.TB
	srv *httptest.Server

	fetches atomic.Int64
	down    atomic.Bool

	mu           sync.Mutex
	keys         map[string]*key // by algorithm
	generation   int
	cacheControl string
	padding      int
}

type key struct {
	kid    string
	alg    string
	signer crypto.Signer
}

// NewIdP starts a fake identity provider on a loopback port and stops it
// when the test ends.
func NewIdP(t testing.TB) *IdP {
	t.Helper()
	p := &IdP{t: t}
	p.Rotate()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", p.serveDiscovery)
	mux.HandleFunc("GET /jwks", p.serveJWKS)
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

// URL returns the server's base URL.
func (p *IdP) URL() string { return p.srv.URL }

// Issuer returns the issuer, which is the server URL.
func (p *IdP) Issuer() string { return p.srv.URL }

// JWKSURI returns the URL of the key set.
func (p *IdP) JWKSURI() string { return p.srv.URL + "/jwks" }

// FetchCount returns how many times the key set was requested, failed
// requests included.
func (p *IdP) FetchCount() int { return int(p.fetches.Load()) }

// SetDown makes every endpoint answer 503 while down is true.
func (p *IdP) SetDown(down bool) { p.down.Store(down) }

// SetCacheControl sets the Cache-Control header of the key set response.
func (p *IdP) SetCacheControl(v string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cacheControl = v
}

// SetJWKSPadding adds an extra member of n bytes to the key set document,
// to make it larger without changing its keys.
func (p *IdP) SetJWKSPadding(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.padding = n
}

// Rotate replaces every signing key with a new one under a new kid. The
// old keys are no longer published.
func (p *IdP) Rotate() {
	p.t.Helper()
	keys := make(map[string]*key, len(Algorithms()))
	p.mu.Lock()
	p.generation++
	gen := p.generation
	p.mu.Unlock()
	for _, alg := range Algorithms() {
		var (
			s   crypto.Signer
			err error
		)
		switch alg {
		case "RS256", "PS256":
			s, err = rsa.GenerateKey(rand.Reader, 2048)
		case "ES256":
			s, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		case "EdDSA":
			_, s, err = ed25519.GenerateKey(rand.Reader)
		}
		if err != nil {
			p.t.Fatalf("jwkstest: generate %s key: %v", alg, err)
		}
		keys[alg] = &key{kid: strings.ToLower(alg) + "-" + strconv.Itoa(gen) + "-" + randomID(), alg: alg, signer: s}
	}
	p.mu.Lock()
	p.keys = keys
	p.mu.Unlock()
}

// Kid returns the current key id for alg.
func (p *IdP) Kid(alg string) string { return p.key(alg).kid }

// PublicKey returns the current public key for alg.
func (p *IdP) PublicKey(alg string) crypto.PublicKey { return p.key(alg).signer.Public() }

// Sign returns a token with claims signed by the current key for alg (one
// of Algorithms()), with the key's kid in the header. Claims are used as
// given: nothing is added.
func (p *IdP) Sign(claims jwt.MapClaims, alg string) string {
	p.t.Helper()
	return p.SignWithHeader(claims, alg, nil)
}

// SignWithHeader is Sign with extra header members; a nil value for "kid"
// removes the kid.
func (p *IdP) SignWithHeader(claims jwt.MapClaims, alg string, header map[string]any) string {
	p.t.Helper()
	k := p.key(alg)
	m := jwt.GetSigningMethod(alg)
	if m == nil {
		p.t.Fatalf("jwkstest: unknown algorithm %q", alg)
	}
	tok := jwt.NewWithClaims(m, claims)
	tok.Header["kid"] = k.kid
	for name, v := range header {
		if v == nil {
			delete(tok.Header, name)
			continue
		}
		tok.Header[name] = v
	}
	s, err := tok.SignedString(k.signer)
	if err != nil {
		p.t.Fatalf("jwkstest: sign: %v", err)
	}
	return s
}

// SignPayload signs payload, used verbatim as the claims segment, with the
// current key for alg. It lets tests build claim sets that a map cannot
// express, such as duplicate member names.
func (p *IdP) SignPayload(payload []byte, alg string) string {
	p.t.Helper()
	k := p.key(alg)
	m := jwt.GetSigningMethod(alg)
	if m == nil {
		p.t.Fatalf("jwkstest: unknown algorithm %q", alg)
	}
	hdr, err := json.Marshal(map[string]string{"alg": alg, "typ": "JWT", "kid": k.kid})
	if err != nil {
		p.t.Fatalf("jwkstest: header: %v", err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	return p.SignSegments(enc(hdr), enc(payload), alg)
}

// SignSegments signs the header and claims segments exactly as given
// (already base64url encoded, in whatever spelling) with the current key
// for alg, and appends the signature. It lets tests build tokens that a
// well-behaved encoder never produces: non-canonical base64url, or any
// header at all (the caller names the kid, for example with Kid).
func (p *IdP) SignSegments(header, payload, alg string) string {
	p.t.Helper()
	k := p.key(alg)
	m := jwt.GetSigningMethod(alg)
	if m == nil {
		p.t.Fatalf("jwkstest: unknown algorithm %q", alg)
	}
	signing := header + "." + payload
	sig, err := m.Sign(signing, k.signer)
	if err != nil {
		p.t.Fatalf("jwkstest: sign: %v", err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func (p *IdP) key(alg string) *key {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	k, ok := p.keys[alg]
	if !ok {
		p.t.Fatalf("jwkstest: no key for algorithm %q", alg)
	}
	return k
}

func (p *IdP) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	if p.down.Load() {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	writeJSON(w, map[string]any{"issuer": p.Issuer(), "jwks_uri": p.JWKSURI()})
}

func (p *IdP) serveJWKS(w http.ResponseWriter, r *http.Request) {
	p.fetches.Add(1)
	if p.down.Load() {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	p.mu.Lock()
	var list []map[string]string
	for _, alg := range Algorithms() {
		list = append(list, publicJWK(p.keys[alg]))
	}
	doc := map[string]any{"keys": list}
	if p.padding > 0 {
		doc["padding"] = strings.Repeat("x", p.padding)
	}
	cc := p.cacheControl
	p.mu.Unlock()
	if cc != "" {
		w.Header().Set("Cache-Control", cc)
	}
	writeJSON(w, doc)
}

func publicJWK(k *key) map[string]string {
	b64 := base64.RawURLEncoding.EncodeToString
	j := map[string]string{"kid": k.kid, "alg": k.alg, "use": "sig"}
	switch pub := k.signer.Public().(type) {
	case *rsa.PublicKey:
		j["kty"] = "RSA"
		j["n"] = b64(pub.N.Bytes())
		j["e"] = b64(big.NewInt(int64(pub.E)).Bytes())
	case *ecdsa.PublicKey:
		b, _ := pub.Bytes() // 0x04 || X || Y
		size := (len(b) - 1) / 2
		j["kty"] = "EC"
		j["crv"] = pub.Curve.Params().Name
		j["x"] = b64(b[1 : 1+size])
		j["y"] = b64(b[1+size:])
	case ed25519.PublicKey:
		j["kty"] = "OKP"
		j["crv"] = "Ed25519"
		j["x"] = b64(pub)
	}
	return j
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func randomID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
