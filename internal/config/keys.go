package config

import (
	"crypto"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/authn/token"
	"github.com/authgate/authgate/proxy"
)

// DefaultJWKSMaxAge is the default jwt.jwks_max_age: how long verifiers may
// cache the published keys. A rotation publishes the next key at least
// this long (plus their own refresh interval) before it signs.
const DefaultJWKSMaxAge = 5 * time.Minute

// MaxAssertionTTL is the longest assertion.ttl: an assertion proves one
// request and is checked on arrival, so it only has to outlive clock skew
// and the time to the upstream.
const MaxAssertionTTL = 60 * time.Second

// AssertionConfig configures the signed identity assertion the gateway
// sends upstream on every admitted request.
type AssertionConfig struct {
	// Enabled: nil (the default) sends the assertion when tokens are
	// signed with a private key and not under HS256; true requires it
	// (HS256 is then a startup error); false never sends it. The header
	// is stripped from client requests in every case.
	Enabled *bool `yaml:"enabled"`
	// Header carries the assertion.
	Header string `yaml:"header"`
	// Audience is the "aud" claim; empty means upstream.url.
	Audience string `yaml:"audience"`
	// TTL is the assertion's lifetime, at most MaxAssertionTTL.
	TTL time.Duration `yaml:"ttl"`
	// CacheSize is how many signed assertions are reused for identical
	// requests (same caller, method, host and path) while at least half
	// their lifetime is left; 0 signs every request.
	CacheSize int `yaml:"cache_size"`
}

// DefaultAssertion returns the assertion defaults.
func DefaultAssertion() AssertionConfig {
	return AssertionConfig{Header: "X-Auth-Assertion", TTL: 30 * time.Second, CacheSize: 10000}
}

// KeyFiles name the PEM files of the gateway's signing keys, from
// AUTHGATE_JWT_SIGNING_KEY_FILE, AUTHGATE_JWT_NEXT_KEY_FILE and
// AUTHGATE_JWT_PREVIOUS_KEYS_FILE. Empty fields are not used.
type KeyFiles struct {
	// Signing holds the one private key that signs (the current key).
	Signing string
	// Next holds keys published and accepted before they sign: public or
	// private PEM, none or more.
	Next string
	// Previous holds keys still accepted until their tokens expire:
	// public or private PEM, none or more.
	Previous string
}

// The environment variables of KeyFiles, for messages.
const (
	EnvSigningKeyFile   = "AUTHGATE_JWT_SIGNING_KEY_FILE"
	EnvNextKeyFile      = "AUTHGATE_JWT_NEXT_KEY_FILE"
	EnvPreviousKeysFile = "AUTHGATE_JWT_PREVIOUS_KEYS_FILE"
)

var errNoSigningKey = errors.New("env: no signing key: set " + EnvSigningKeyFile +
	" to a private key PEM (`authgate gen-signing-key` writes one), or AUTHGATE_JWT_SECRET (or AUTHGATE_JWT_SECRET_FILE) to sign with HS256")

// KeyContents are the contents of the key files, nil for a file not used.
type KeyContents struct {
	Signing, Next, Previous []byte
}

// ReadKeyFiles reads every key file that is set.
func (f KeyFiles) ReadKeyFiles() (KeyContents, error) {
	var c KeyContents
	var errs []error
	read := func(env, path string, dst *[]byte) {
		if path == "" {
			return
		}
		b, err := os.ReadFile(path)
		if err != nil {
			// The path is not secret; the content never appears in errors.
			errs = append(errs, fmt.Errorf("env: %s: %w", env, err))
			return
		}
		*dst = b
	}
	read(EnvSigningKeyFile, f.Signing, &c.Signing)
	read(EnvNextKeyFile, f.Next, &c.Next)
	read(EnvPreviousKeysFile, f.Previous, &c.Previous)
	return c, errors.Join(errs...)
}

// ParsedKeys are the keys of the key files.
type ParsedKeys struct {
	Signing  crypto.Signer
	Next     []crypto.PublicKey
	Previous []crypto.PublicKey
}

// ParseSigningKey parses the signing key file's content; path names it in
// errors.
func ParseSigningKey(path string, data []byte) (crypto.Signer, error) {
	k, err := token.ParsePrivateKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s (%s): %w", EnvSigningKeyFile, path, err)
	}
	return k, nil
}

// ParsePublicKeys parses a next or previous keys file; env and path name it
// in errors.
func ParsePublicKeys(env, path string, data []byte) ([]crypto.PublicKey, error) {
	k, err := token.ParsePublicKeysPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s (%s): %w", env, path, err)
	}
	return k, nil
}

// Parse parses every key file's content.
func (f KeyFiles) Parse(c KeyContents) (ParsedKeys, error) {
	var p ParsedKeys
	var errs []error
	var err error
	if f.Signing != "" {
		if p.Signing, err = ParseSigningKey(f.Signing, c.Signing); err != nil {
			errs = append(errs, err)
		}
	}
	if f.Next != "" {
		if p.Next, err = ParsePublicKeys(EnvNextKeyFile, f.Next, c.Next); err != nil {
			errs = append(errs, err)
		}
	}
	if f.Previous != "" {
		if p.Previous, err = ParsePublicKeys(EnvPreviousKeysFile, f.Previous, c.Previous); err != nil {
			errs = append(errs, err)
		}
	}
	return p, errors.Join(errs...)
}

// BuildKeySet builds the gateway's key set from the parsed key files and
// the HMAC secrets, for jwt.algorithm:
//   - empty: the signing key's algorithm when a signing key file is set,
//     else HS256 with AUTHGATE_JWT_SECRET (deployments that predate
//     published keys keep working unchanged);
//   - EdDSA or ES256: the signing key must be of that type;
//   - HS256: AUTHGATE_JWT_SECRET signs; a signing or next key file is an
//     error, previous keys still verify.
//
// With a private key signing, a configured AUTHGATE_JWT_SECRET and its
// previous secrets only verify: tokens minted before the move stay valid
// until they expire. Nothing ever signs with an empty or missing key.
func (s Secrets) BuildKeySet(cfg *Config, p ParsedKeys) (*token.KeySet, error) {
	m := token.Material{Algorithm: cfg.JWT.Algorithm, Signing: p.Signing, Next: p.Next, Previous: p.Previous, HMACPrevious: s.PreviousJWT}
	if len(s.JWT) > 0 {
		m.HMAC = &token.Key{ID: cfg.JWT.KeyID, Secret: s.JWT}
	}
	alg := cfg.JWT.Algorithm
	if alg == "" && p.Signing == nil {
		alg = token.AlgHS256
	}
	var errs []error
	switch alg {
	case token.AlgHS256:
		if m.HMAC == nil {
			errs = append(errs, errors.New("env: jwt.algorithm is HS256: AUTHGATE_JWT_SECRET (or AUTHGATE_JWT_SECRET_FILE) is required"))
		}
		if s.KeyFiles.Signing != "" || s.KeyFiles.Next != "" {
			errs = append(errs, fmt.Errorf("env: jwt.algorithm is HS256: %s and %s are not used; set jwt.algorithm to EdDSA or ES256 (or leave it empty) to sign with the key", EnvSigningKeyFile, EnvNextKeyFile))
		}
	case token.AlgEdDSA, token.AlgES256:
		if s.KeyFiles.Signing == "" {
			errs = append(errs, fmt.Errorf("env: jwt.algorithm is %s: %s is required (`authgate gen-signing-key --algorithm %s` writes a key)", alg, EnvSigningKeyFile, alg))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	ks, err := token.NewKeySetFrom(m)
	if err != nil {
		return nil, fmt.Errorf("env: signing keys: %w", err)
	}
	return ks, nil
}

// KeySet reads the key files once and builds the key set (commands; the
// gateway reloads the files itself).
func (s Secrets) KeySet(cfg *Config) (*token.KeySet, error) {
	c, err := s.KeyFiles.ReadKeyFiles()
	if err != nil {
		return nil, err
	}
	p, err := s.KeyFiles.Parse(c)
	if err != nil {
		return nil, err
	}
	return s.BuildKeySet(cfg, p)
}

// MetadataBaseURL returns the external base URL the issuer metadata names
// (jwks_uri, token_endpoint): jwt.issuer_url, else jwt.issuer when it is an
// http(s) URL, else "" (no metadata document: it would have to be built
// from the request's Host header, which a client chooses).
func (c *Config) MetadataBaseURL() string {
	if c.JWT.IssuerURL != "" {
		return strings.TrimSuffix(c.JWT.IssuerURL, "/")
	}
	if u, err := url.Parse(c.JWT.Issuer); err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" && u.RawQuery == "" && u.Fragment == "" {
		return strings.TrimSuffix(c.JWT.Issuer, "/")
	}
	return ""
}

// AssertionAudience returns assertion.audience, else upstream.url.
func (c *Config) AssertionAudience() string {
	if c.Assertion.Audience != "" {
		return c.Assertion.Audience
	}
	return c.Upstream.URL
}

// AssertionWanted reports whether the assertion is sent for a key set
// signing with alg, and an error when it was required but cannot be.
func (c *Config) AssertionWanted(alg string) (bool, error) {
	e := c.Assertion.Enabled
	switch {
	case e != nil && !*e:
		return false, nil
	case c.Mode == ModeForwardAuth:
		// The ingress forwards the request, not the gateway.
		if e != nil {
			return false, errors.New("config: assertion.enabled: the assertion is sent in proxy mode only; in forward-auth mode the ingress forwards the request")
		}
		return false, nil
	case alg == token.AlgHS256:
		if e != nil {
			return false, errors.New("config: assertion.enabled is true but tokens are signed with HS256: an assertion needs a private signing key that apps verify through the published keys (set " + EnvSigningKeyFile + ")")
		}
		return false, nil
	}
	return true, nil
}

// validateTrust checks the keys of published keys, the assertion and the
// claim headers.
func (c *Config) validateTrust(bad func(field, format string, a ...any)) {
	switch c.JWT.Algorithm {
	case "", token.AlgEdDSA, token.AlgES256, token.AlgHS256:
	default:
		bad("jwt.algorithm", "want EdDSA, ES256 or HS256 (or empty: from the key), got %q", c.JWT.Algorithm)
	}
	if raw := c.JWT.IssuerURL; raw != "" {
		if u, err := url.Parse(raw); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			bad("jwt.issuer_url", "want the gateway's external http(s) base URL, like https://login.example.com")
		}
	}
	if d := c.JWT.JWKSMaxAge; d < time.Second || d > 24*time.Hour || d%time.Second != 0 {
		bad("jwt.jwks_max_age", "must be a whole number of seconds between 1s and 24h")
	}
	a := c.Assertion
	if !httpguts.ValidHeaderFieldName(a.Header) {
		bad("assertion.header", "want a header name like X-Auth-Assertion")
	}
	if a.TTL <= 0 || a.TTL > MaxAssertionTTL || a.TTL%time.Second != 0 {
		bad("assertion.ttl", "must be a whole number of seconds between 1s and %s", MaxAssertionTTL)
	}
	if a.CacheSize < 0 {
		bad("assertion.cache_size", "must not be negative (0 signs every request)")
	}
	if aud := c.AssertionAudience(); aud != "" && aud == c.JWT.Audience {
		// An assertion must never pass for an access token, nor the
		// reverse (RFC 8725 §3.12: distinct audiences).
		bad("assertion.audience", "must differ from jwt.audience (%q)", c.JWT.Audience)
	}
	c.validateClaimHeaders(bad)
}

// headerKey is a header name compared as the strip rules do: case-blind,
// "_" as "-".
func headerKey(s string) string {
	return strings.ReplaceAll(strings.ToLower(s), "_", "-")
}

// notClaimHeaders may never carry a claim: framing, routing and credential
// headers the upstream reads as something else.
var notClaimHeaders = []string{"Host", "Authorization", "Cookie", "Set-Cookie", "Connection", "Content-Length", "Content-Type",
	"Transfer-Encoding", "Te", "Trailer", "Upgrade", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection", "Forwarded",
	"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Expect"}

func (c *Config) validateClaimHeaders(bad func(field, format string, a ...any)) {
	ih := c.IdentityHeaders
	taken := map[string]string{}
	for _, n := range []struct{ name, field string }{
		{proxy.DefaultIdentityHeaders.Subject, "subject"}, {proxy.DefaultIdentityHeaders.Roles, "roles"},
		{proxy.DefaultIdentityHeaders.Method, "method"}, {proxy.DefaultIdentityHeaders.KeyName, "key_name"},
		{proxy.DefaultIdentityHeaders.Issuer, "issuer"},
		{ih.Subject, "subject"}, {ih.Roles, "roles"}, {ih.Method, "method"}, {ih.KeyName, "key_name"}, {ih.Issuer, "issuer"},
		{c.Assertion.Header, "assertion.header"}, {c.APIKeyHeader, "api_key_header"}, {"X-Request-Id", "the request id"},
	} {
		if n.name != "" {
			taken[headerKey(n.name)] = n.field
		}
	}
	for _, n := range notClaimHeaders {
		taken[headerKey(n)] = "a standard header"
	}
	seen := map[string]string{}
	for _, h := range sortedKeys(ih.Claims) {
		field := fmt.Sprintf("identity_headers.claims[%q]", h)
		if !httpguts.ValidHeaderFieldName(h) {
			bad(field, "not a valid header name")
			continue
		}
		k := headerKey(h)
		if what, ok := taken[k]; ok {
			bad(field, "is %s; pick another header", what)
		}
		if prev, ok := seen[k]; ok {
			bad(field, "is the same header as %q (case and _/- do not matter)", prev)
		}
		seen[k] = h
		if _, err := authn.SplitClaimPath(ih.Claims[h]); err != nil {
			bad(field, "claim path %q: %v", ih.Claims[h], err)
		}
	}
}

// ClaimPaths returns the compiled claim paths of identity_headers.claims,
// nil when none is configured.
func (c *Config) ClaimPaths() (*authn.ClaimPaths, error) {
	if len(c.IdentityHeaders.Claims) == 0 {
		return nil, nil
	}
	paths := make([]string, 0, len(c.IdentityHeaders.Claims))
	for _, h := range sortedKeys(c.IdentityHeaders.Claims) {
		paths = append(paths, c.IdentityHeaders.Claims[h])
	}
	return authn.NewClaimPaths(paths)
}
