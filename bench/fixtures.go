package main

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/authgate/authgate/internal/testkit"
	"github.com/golang-jwt/jwt/v5"
)

// upstreamBody is what the benchmark upstream answers: small and fixed, so
// the figures measure the gateway rather than the app.
const upstreamBody = "hello, world\n"

// Names and values shared by the generated config and the minted
// credentials.
const (
	ownIssuer     = "authgate"
	ownAudience   = "authgate"
	ownKeyID      = "k1"
	extAudience   = "bench-api"
	extRSAKeyID   = "bench-rsa"
	extECKeyID    = "bench-ec"
	extEdKeyID    = "bench-ed"
	benchRole     = "user"
	benchUser     = "alice"
	benchPassword = "correct horse battery staple"
	limiterUser   = "bench-limiter"
	loginPath     = "/auth/login"
	apiPath       = "/api/items"
	publicPath    = "/public/index.html"
)

// server is an in-process HTTP server on a loopback port.
type server struct {
	URL string
	srv *http.Server
}

// startServer serves h on a fresh loopback port.
func startServer(h http.Handler) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: listen: %w", err)
	}
	s := &server{URL: "http://" + ln.Addr().String(), srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Close stops the server at once.
func (s *server) Close() { _ = s.srv.Close() }

// upstreamHandler answers every request with the fixed body and records
// the identity assertions it receives.
func upstreamHandler() *upstreamRecorder { return &upstreamRecorder{body: []byte(upstreamBody)} }

// bareProxy is the reference: a ReverseProxy and nothing else. With a nil
// transport it is the untuned reference on http.DefaultTransport, which
// keeps only two idle connections per host, and allocates a copy buffer per
// response; otherwise it uses tr and a buffer pool.
func bareProxy(upstream string, tr http.RoundTripper) (http.Handler, error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return nil, fmt.Errorf("bench: upstream url: %w", err)
	}
	rp := &httputil.ReverseProxy{
		Transport: tr,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.SetXForwarded()
		},
		// Requests cancelled when a load run ends are expected; the load
		// generator counts real failures.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	if tr != nil {
		rp.BufferPool = newBufferPool()
	}
	return rp, nil
}

// bufferPool lends 32 KiB copy buffers to a ReverseProxy, which otherwise
// allocates one per response. It is safe for concurrent use.
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
}

// Get returns a buffer.
func (b *bufferPool) Get() []byte { return *(b.p.Get().(*[]byte)) }

// Put returns a buffer to the pool.
func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }

// tunedTransport is the default transport's settings with an idle pool as
// large as the gateway's default (upstream.max_idle_conns: 256). With a
// buffer pool, as the gateway has, the "tuned" reference differs from the
// gateway only in what the gateway adds: authentication and policy.
func tunedTransport() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 256
	tr.MaxIdleConnsPerHost = 256
	return tr
}

// credentials are the generated secrets and the tokens minted with them.
// It is safe for concurrent use once built.
type credentials struct {
	JWTSecret string
	APIKey    string
	HS256     string
	// External holds one external-issuer token per algorithm (RS256,
	// ES256, EdDSA), each sent over and over (a verified-token cache hit).
	External map[string]string
	rsaKey   *rsa.PrivateKey
	ecKey    *ecdsa.PrivateKey
	edKey    ed25519.PrivateKey
	issuer   string // the external issuer: the JWKS server's URL
}

// claims are the claims of every minted token.
type claims struct {
	jwt.RegisteredClaims
	Roles []string `json:"roles"`
	Type  string   `json:"type,omitempty"`
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newCredentials generates the keys for the gateway's own tokens, an API
// key, and the external issuer's RSA, EC and Ed25519 keys.
func newCredentials() (*credentials, error) {
	c := &credentials{JWTSecret: randomHex(32), APIKey: "bench-" + randomHex(24), External: map[string]string{}}
	var err error
	if c.rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return nil, fmt.Errorf("bench: rsa key: %w", err)
	}
	if c.ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, fmt.Errorf("bench: ec key: %w", err)
	}
	if _, c.edKey, err = ed25519.GenerateKey(rand.Reader); err != nil {
		return nil, fmt.Errorf("bench: ed25519 key: %w", err)
	}
	now := time.Now()
	reg := jwt.RegisteredClaims{Issuer: ownIssuer, Subject: benchSubject, Audience: jwt.ClaimStrings{ownAudience}, ID: randomHex(16),
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(2 * time.Hour))}
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, claims{RegisteredClaims: reg, Roles: []string{benchRole}, Type: "access"})
	t.Header["kid"] = ownKeyID
	if c.HS256, err = t.SignedString([]byte(c.JWTSecret)); err != nil {
		return nil, fmt.Errorf("bench: sign hs256: %w", err)
	}
	return c, nil
}

// externalAlgs are the external-issuer algorithms with a mode each.
var externalAlgs = []string{"RS256", "ES256", "EdDSA"}

// signer returns the signing method, key and key id for alg.
func (c *credentials) signer(alg string) (jwt.SigningMethod, any, string, error) {
	switch alg {
	case "RS256":
		return jwt.SigningMethodRS256, c.rsaKey, extRSAKeyID, nil
	case "ES256":
		return jwt.SigningMethodES256, c.ecKey, extECKeyID, nil
	case "EdDSA":
		return jwt.SigningMethodEdDSA, c.edKey, extEdKeyID, nil
	}
	return nil, nil, "", fmt.Errorf("bench: no key for %s", alg)
}

// mintExternalToken signs one external-issuer token with alg; jti makes it
// distinct from every other.
func (c *credentials) mintExternalToken(alg, jti string, now time.Time) (string, error) {
	m, key, kid, err := c.signer(alg)
	if err != nil {
		return "", err
	}
	reg := jwt.RegisteredClaims{Issuer: c.issuer, Subject: "bench-ext-user", Audience: jwt.ClaimStrings{extAudience}, ID: jti,
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(2 * time.Hour))}
	t := jwt.NewWithClaims(m, claims{RegisteredClaims: reg, Roles: []string{benchRole}})
	t.Header["kid"] = kid
	s, err := t.SignedString(key)
	if err != nil {
		return "", fmt.Errorf("bench: sign %s: %w", alg, err)
	}
	return s, nil
}

// mintExternal signs the repeated token of every external algorithm, for
// the issuer whose iss is issuer (the JWKS server's URL).
func (c *credentials) mintExternal(issuer string) error {
	c.issuer = issuer
	for _, alg := range externalAlgs {
		tok, err := c.mintExternalToken(alg, randomHex(16), time.Now())
		if err != nil {
			return err
		}
		c.External[alg] = tok
	}
	return nil
}

// mintPool signs n distinct external tokens with alg, on every core: RSA
// signing is about a millisecond each.
func (c *credentials) mintPool(alg string, n int) ([]string, error) {
	out := make([]string, n)
	errs := make([]error, runtime.GOMAXPROCS(0))
	now := time.Now()
	prefix := randomHex(8)
	var wg sync.WaitGroup
	for w := range errs {
		wg.Go(func() {
			for i := w; i < n; i += len(errs) {
				if out[i], errs[w] = c.mintExternalToken(alg, prefix+"-"+strconv.Itoa(i), now); errs[w] != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// jwksHandler serves the external issuer's public keys.
func (c *credentials) jwksHandler() (http.Handler, error) {
	b64 := base64.RawURLEncoding.EncodeToString
	ecPub, err := c.ecKey.PublicKey.ECDH()
	if err != nil {
		return nil, fmt.Errorf("bench: ec public key: %w", err)
	}
	pt := ecPub.Bytes() // 0x04 || X || Y
	doc := map[string]any{"keys": []map[string]string{
		{"kty": "RSA", "kid": extRSAKeyID, "use": "sig", "alg": "RS256",
			"n": b64(c.rsaKey.N.Bytes()), "e": b64(big.NewInt(int64(c.rsaKey.E)).Bytes())},
		{"kty": "EC", "kid": extECKeyID, "use": "sig", "alg": "ES256", "crv": "P-256",
			"x": b64(pt[1:33]), "y": b64(pt[33:65])},
		{"kty": "OKP", "kid": extEdKeyID, "use": "sig", "alg": "EdDSA", "crv": "Ed25519",
			"x": b64(c.edKey.Public().(ed25519.PublicKey))},
	}}
	body, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("bench: jwks: %w", err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "max-age=3600")
		_, _ = w.Write(body)
	}), nil
}

// freePort returns a loopback address with a port that was free a moment
// ago.
func freePort() (string, error) { return testkit.FreeAddr() }

// newAPIKeys returns n distinct random API keys.
func newAPIKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "bench-" + randomHex(24)
	}
	return keys
}

// keysFile returns a keys file holding keys by digest, named bench-key-N,
// each with the bench role.
func keysFile(keys []string) string {
	var b strings.Builder
	b.WriteString("keys:\n")
	for i, k := range keys {
		sum := sha256.Sum256([]byte(k))
		fmt.Fprintf(&b, "  - name: bench-key-%d\n    sha256: %s\n    roles: [%s]\n", i, hex.EncodeToString(sum[:]), benchRole)
	}
	return b.String()
}
