package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"
)

// upstreamBody is what the benchmark upstream answers: small and fixed, so
// the figures measure the gateway rather than the app.
const upstreamBody = "hello, world\n"

// Names and values shared by the generated config and the minted
// credentials.
const (
	ownIssuer      = "authgate"
	ownAudience    = "authgate"
	ownKeyID       = "k1"
	extAudience    = "bench-api"
	extRSAKeyID    = "bench-rsa"
	extECKeyID     = "bench-ec"
	benchRole      = "user"
	benchUser      = "alice"
	benchPassword  = "correct horse battery staple"
	limiterUser    = "bench-limiter"
	loginPath      = "/auth/login"
	apiPath        = "/api/items"
	publicPath     = "/public/index.html"
	bcryptUserCost = 12
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

// upstreamHandler answers every request with the fixed body.
func upstreamHandler() http.Handler {
	body := []byte(upstreamBody)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		_, _ = w.Write(body)
	})
}

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
type credentials struct {
	JWTSecret  string
	APIKey     string
	HS256      string
	RS256      string
	ES256      string
	rsaKey     *rsa.PrivateKey
	ecKey      *ecdsa.PrivateKey
	jwksIssuer string
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
// key, and the external issuer's RSA and EC keys.
func newCredentials() (*credentials, error) {
	c := &credentials{JWTSecret: randomHex(32), APIKey: "bench-" + randomHex(24)}
	var err error
	if c.rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return nil, fmt.Errorf("bench: rsa key: %w", err)
	}
	if c.ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, fmt.Errorf("bench: ec key: %w", err)
	}
	now := time.Now()
	reg := func(iss, aud string) jwt.RegisteredClaims {
		return jwt.RegisteredClaims{Issuer: iss, Subject: "bench-user", Audience: jwt.ClaimStrings{aud}, ID: randomHex(16),
			IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(2 * time.Hour))}
	}
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, claims{RegisteredClaims: reg(ownIssuer, ownAudience), Roles: []string{benchRole}, Type: "access"})
	t.Header["kid"] = ownKeyID
	if c.HS256, err = t.SignedString([]byte(c.JWTSecret)); err != nil {
		return nil, fmt.Errorf("bench: sign hs256: %w", err)
	}
	return c, nil
}

// mintExternal signs the RS256 and ES256 tokens of the external issuer
// whose iss is issuer (the JWKS server's URL).
func (c *credentials) mintExternal(issuer string) error {
	c.jwksIssuer = issuer
	now := time.Now()
	reg := jwt.RegisteredClaims{Issuer: issuer, Subject: "bench-ext-user", Audience: jwt.ClaimStrings{extAudience}, ID: randomHex(16),
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(2 * time.Hour))}
	rt := jwt.NewWithClaims(jwt.SigningMethodRS256, claims{RegisteredClaims: reg, Roles: []string{benchRole}})
	rt.Header["kid"] = extRSAKeyID
	var err error
	if c.RS256, err = rt.SignedString(c.rsaKey); err != nil {
		return fmt.Errorf("bench: sign rs256: %w", err)
	}
	et := jwt.NewWithClaims(jwt.SigningMethodES256, claims{RegisteredClaims: reg, Roles: []string{benchRole}})
	et.Header["kid"] = extECKeyID
	if c.ES256, err = et.SignedString(c.ecKey); err != nil {
		return fmt.Errorf("bench: sign es256: %w", err)
	}
	return nil
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

// features are the optional parts of the generated config. A part the
// gateway does not support yet is turned off and its modes report na.
type features struct {
	Issuers bool // external JWKS issuers (rs256, es256)
	Users   bool // users file, for /auth/login (flood and limiter memory)
}

// gatewayFiles are the paths and ports of one generated gateway setup.
type gatewayFiles struct {
	Dir        string
	Config     string
	Addr       string // proxy listener, host:port
	AdminAddr  string // admin listener, host:port
	usersHash  string
	upstream   string
	jwksURI    string
	keysDigest string
}

// freePort returns a loopback address with a port that was free a moment
// ago.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("bench: free port: %w", err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr, nil
}

// newGatewayFiles writes the policy, API keys and users files into dir.
// The config itself is written by writeConfig, once per feature set.
func newGatewayFiles(dir, upstream, jwksURI string, c *credentials) (*gatewayFiles, error) {
	g := &gatewayFiles{Dir: dir, Config: filepath.Join(dir, "config.yaml"), upstream: upstream, jwksURI: jwksURI}
	var err error
	if g.Addr, err = freePort(); err != nil {
		return nil, err
	}
	if g.AdminAddr, err = freePort(); err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(c.APIKey))
	g.keysDigest = hex.EncodeToString(sum[:])
	hash, err := bcrypt.GenerateFromPassword([]byte(benchPassword), bcryptUserCost)
	if err != nil {
		return nil, fmt.Errorf("bench: bcrypt: %w", err)
	}
	g.usersHash = string(hash)
	policy := `roles: [` + benchRole + `]
rules:
  - id: public
    path: /public/**
    methods: [GET, HEAD]
    public: true
  - id: api
    path: /api/**
    methods: [GET, HEAD]
    authenticated: true
`
	keys := fmt.Sprintf("keys:\n  - name: bench-bot\n    sha256: %s\n    roles: [%s]\n", g.keysDigest, benchRole)
	users := fmt.Sprintf("users:\n  - username: %s\n    password_hash: %q\n    roles: [%s]\n", benchUser, g.usersHash, benchRole)
	for name, data := range map[string]string{"policy.yaml": policy, "keys.yaml": keys, "users.yaml": users} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			return nil, fmt.Errorf("bench: write %s: %w", name, err)
		}
	}
	return g, nil
}

// writeConfig writes the gateway config for the feature set f. Logging is
// at error level with no sampling of allowed requests, so log output does
// not dominate the figures.
func (g *gatewayFiles) writeConfig(f features) error {
	var b strings.Builder
	fmt.Fprintf(&b, "upstream:\n  url: %s\n  host_header: upstream\n", g.upstream)
	fmt.Fprintf(&b, "listen:\n  address: %q\n  admin_address: %q\n  shutdown_delay: 0s\n  shutdown_timeout: 5s\n", g.Addr, g.AdminAddr)
	b.WriteString("policy_file: policy.yaml\napi_keys_file: keys.yaml\n")
	if f.Users {
		b.WriteString("users_file: users.yaml\n")
	}
	// The harness is the trusted proxy, so it can give the login limiter
	// distinct client addresses through X-Forwarded-For.
	b.WriteString("trusted_proxies: [127.0.0.1/32]\n")
	fmt.Fprintf(&b, "jwt:\n  issuer: %s\n  audience: %s\n  key_id: %s\n", ownIssuer, ownAudience, ownKeyID)
	if f.Issuers {
		fmt.Fprintf(&b, "issuers:\n  - issuer: %q\n    jwks_uri: %q\n    audiences: [%s]\n    algorithms: [RS256, ES256]\n    roles_claim: roles\n",
			strings.TrimSuffix(g.jwksURI, "/jwks.json"), g.jwksURI, extAudience)
	}
	b.WriteString("logging:\n  level: error\n  format: json\n  allowed_sample_rate: 0\n")
	if err := os.WriteFile(g.Config, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("bench: write config: %w", err)
	}
	return nil
}
