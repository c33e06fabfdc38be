// Package config is the gateway's configuration: the YAML file schema, its
// defaults in one place, the AUTHGATE_* environment with its secrets, and
// validation that reports every problem at once, naming file and field.
package config

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/authgate/authgate/authn/issuer"
	"github.com/authgate/authgate/authn/jwks"
	"github.com/authgate/authgate/authn/token"
	"github.com/authgate/authgate/internal/clientip"
	"github.com/authgate/authgate/internal/yamlx"
	"github.com/authgate/authgate/policy"
	"github.com/authgate/authgate/proxy"
)

// Config is the YAML configuration file: everything but secrets. It holds
// raw settings only; the compiled policy, key sets and stores are separate
// values built from it.
type Config struct {
	Mode            string                `yaml:"mode"`
	ForwardAuth     ForwardAuthConfig     `yaml:"forward_auth"`
	Upstream        UpstreamConfig        `yaml:"upstream"`
	Listen          ListenConfig          `yaml:"listen"`
	PolicyFile      string                `yaml:"policy_file"`
	ShadowPolicy    string                `yaml:"shadow_policy_file"`
	APIKeysFile     string                `yaml:"api_keys_file"`
	UsersFile       string                `yaml:"users_file"`
	ReloadInterval  time.Duration         `yaml:"reload_interval"`
	TrustedProxies  []string              `yaml:"trusted_proxies"`
	JWT             JWTConfig             `yaml:"jwt"`
	IdentityHeaders proxy.IdentityHeaders `yaml:"identity_headers"`
	APIKeyHeader    string                `yaml:"api_key_header"`
	Logging         LoggingConfig         `yaml:"logging"`
	Auth            AuthConfig            `yaml:"auth"`
	Redis           RedisConfig           `yaml:"redis"`
	Issuers         []jwks.IssuerConfig   `yaml:"issuers"`
	JWKS            jwks.CacheConfig      `yaml:"jwks"`

	// Path is the file the config was read from; relative paths in it
	// are resolved against its directory. It is not part of the file.
	Path string `yaml:"-"`
}

// ForwardAuthConfig configures the decision endpoint for ingress
// controllers (mode forward-auth or both).
type ForwardAuthConfig struct {
	Path         string   `yaml:"path"`
	TrustedPeers []string `yaml:"trusted_peers"`
	EnvoyPrefix  string   `yaml:"envoy_prefix"`
}

// Modes of operation.
const (
	ModeProxy       = "proxy"
	ModeForwardAuth = "forward-auth"
	ModeBoth        = "both"
)

// UpstreamConfig is the one upstream.
type UpstreamConfig struct {
	URL                   string        `yaml:"url"`
	HostHeader            string        `yaml:"host_header"`
	ForwardAuthorization  bool          `yaml:"forward_authorization"`
	DialTimeout           time.Duration `yaml:"dial_timeout"`
	ResponseHeaderTimeout time.Duration `yaml:"response_header_timeout"`
	IdleConnTimeout       time.Duration `yaml:"idle_conn_timeout"`
	MaxIdleConns          int           `yaml:"max_idle_conns"`
	HealthPath            string        `yaml:"health_path"`
	AllowBodiesOn         []string      `yaml:"allow_bodies_on"`
	// Protocol is how the upstream is spoken to: http1, h2c or h2.
	Protocol string `yaml:"protocol"`
}

// ListenConfig are the two listeners and the server limits.
type ListenConfig struct {
	Address           string        `yaml:"address"`
	AdminAddress      string        `yaml:"admin_address"`
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	BodyReadTimeout   time.Duration `yaml:"body_read_timeout"`
	IdleTimeout       time.Duration `yaml:"idle_timeout"`
	MaxHeaderBytes    int           `yaml:"max_header_bytes"`
	MaxInFlight       int           `yaml:"max_in_flight"`
	ShutdownDelay     time.Duration `yaml:"shutdown_delay"`
	ShutdownTimeout   time.Duration `yaml:"shutdown_timeout"`
	TLS               TLSConfig     `yaml:"tls"`
	// H2C accepts HTTP/2 with prior knowledge on a plain listener.
	H2C bool `yaml:"h2c"`
	// HTTP2 bounds HTTP/2 connections (TLS with ALPN, or h2c).
	HTTP2 HTTP2Config `yaml:"http2"`

	// Bounds on what clients hold: connections in total and per client,
	// tunnels, whole-request deadlines for what the gateway answers
	// itself, the minimum upload rate, the per-write deadline for
	// responses and the request bodies buffered before proxying.
	MaxConnections          int           `yaml:"max_connections"`
	MaxConnectionsPerClient int           `yaml:"max_connections_per_client"`
	MaxTunnels              int           `yaml:"max_tunnels"`
	EndpointTimeout         time.Duration `yaml:"endpoint_timeout"`
	BodyMinRate             int           `yaml:"body_min_rate"`
	BodyRateWindow          time.Duration `yaml:"body_rate_window"`
	WriteIdleTimeout        time.Duration `yaml:"write_idle_timeout"`
	WriteMinRate            int           `yaml:"write_min_rate"`
	RequestBufferBytes      int           `yaml:"request_buffer_bytes"`
}

// TLSConfig enables TLS on the main listener. Both files are reloaded on
// change; an unreadable or mismatched pair keeps the last good certificate.
type TLSConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// JWTConfig are the gateway's own token settings.
type JWTConfig struct {
	Issuer     string        `yaml:"issuer"`
	Audience   string        `yaml:"audience"`
	KeyID      string        `yaml:"key_id"`
	Leeway     time.Duration `yaml:"leeway"`
	AccessTTL  time.Duration `yaml:"access_ttl"`
	RefreshTTL time.Duration `yaml:"refresh_ttl"`
	CacheSize  int           `yaml:"cache_size"`
	// RefreshMaxAge is the absolute lifetime of a session since its login.
	RefreshMaxAge time.Duration `yaml:"refresh_max_age"`
}

// AuthConfig configures the login, refresh and logout endpoints, served
// when users_file is set.
type AuthConfig struct {
	Prefix            string           `yaml:"prefix"`
	MaxBodyBytes      int64            `yaml:"max_body_bytes"`
	BcryptConcurrency int              `yaml:"bcrypt_concurrency"`
	StateTimeout      time.Duration    `yaml:"state_timeout"`
	StateFile         string           `yaml:"state_file"`
	Limits            issuer.Limits    `yaml:"limits"`
	LimitedDelay      time.Duration    `yaml:"limited_delay"`
	AccessRevocation  RevocationConfig `yaml:"access_revocation"`
}

// RevocationConfig turns on the revocation check for access tokens.
type RevocationConfig struct {
	Enabled  bool `yaml:"enabled"`
	FailOpen bool `yaml:"fail_open"`
}

// RedisConfig tunes the Redis store selected by AUTHGATE_REDIS_URL.
type RedisConfig struct {
	KeyPrefix string        `yaml:"key_prefix"`
	Timeout   time.Duration `yaml:"timeout"`
}

// LoggingConfig selects the log level and format.
type LoggingConfig struct {
	Level             string  `yaml:"level"`
	Format            string  `yaml:"format"`
	AllowedSampleRate float64 `yaml:"allowed_sample_rate"`
}

// Env are the process settings and secrets read from AUTHGATE_*
// variables. Every secret has a _FILE variant for a mounted Secret.
type Env struct {
	Config                 string `env:"CONFIG"`
	JWTSecret              string `env:"JWT_SECRET,unset"`
	JWTSecretFile          string `env:"JWT_SECRET_FILE"`
	JWTPreviousSecrets     string `env:"JWT_PREVIOUS_SECRETS,unset"`
	JWTPreviousSecretsFile string `env:"JWT_PREVIOUS_SECRETS_FILE"`
	RedisURL               string `env:"REDIS_URL"`
	RedisPassword          string `env:"REDIS_PASSWORD,unset"`
	RedisPasswordFile      string `env:"REDIS_PASSWORD_FILE"`
}

// Secrets are the resolved secrets. They are never logged.
type Secrets struct {
	JWT         []byte
	PreviousJWT []token.Key
	RedisPass   string
	RedisURL    string
}

// Default returns the configuration every unset key falls back to.
func Default() Config {
	return Config{
		Mode:        ModeProxy,
		ForwardAuth: ForwardAuthConfig{Path: "/_authgate/verify"},
		Upstream:    UpstreamConfig{HostHeader: "preserve", DialTimeout: 5 * time.Second, ResponseHeaderTimeout: 60 * time.Second, IdleConnTimeout: 90 * time.Second, MaxIdleConns: 256, Protocol: string(proxy.ProtocolHTTP1)},
		Listen: ListenConfig{Address: ":8080", AdminAddress: ":9090", ReadHeaderTimeout: 10 * time.Second, BodyReadTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second,
			MaxHeaderBytes: 64 << 10, MaxInFlight: 1024, ShutdownDelay: 5 * time.Second, ShutdownTimeout: 30 * time.Second,
			MaxConnections: 8192, MaxConnectionsPerClient: 256, MaxTunnels: 512, EndpointTimeout: 10 * time.Second,
			BodyMinRate: 1024, BodyRateWindow: 10 * time.Second, WriteIdleTimeout: 60 * time.Second, WriteMinRate: 1024, RequestBufferBytes: 64 << 10, HTTP2: DefaultHTTP2()},
		ReloadInterval: time.Second,
		JWT:            JWTConfig{Issuer: "authgate", Audience: "authgate", KeyID: "k1", Leeway: 30 * time.Second, AccessTTL: 15 * time.Minute, RefreshTTL: 7 * 24 * time.Hour, CacheSize: 10000, RefreshMaxAge: issuer.DefaultRefreshMaxAge},
		APIKeyHeader:   "X-API-Key",
		JWKS:           jwks.DefaultCacheConfig(),
		Auth: AuthConfig{Prefix: "/auth", MaxBodyBytes: issuer.DefaultMaxBodyBytes, StateTimeout: issuer.DefaultStateTimeout,
			Limits: issuer.DefaultLimits(), LimitedDelay: 500 * time.Millisecond},
		Redis:   RedisConfig{KeyPrefix: "authgate:", Timeout: 250 * time.Millisecond},
		Logging: LoggingConfig{Level: "info", Format: "json", AllowedSampleRate: 1},
	}
}

// Load reads and validates the config file. Relative file paths in it
// are resolved against the file's directory.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c := Default()
	// Unknown keys and bad values are both reported: field errors do not
	// stop validation of the fields that decoded.
	fieldErrs, err := yamlx.DecodeAll(path, data, &c)
	if err != nil {
		return nil, err
	}
	c.Path = path
	dir := filepath.Dir(path)
	for _, p := range []*string{&c.PolicyFile, &c.ShadowPolicy, &c.APIKeysFile, &c.UsersFile, &c.Listen.TLS.CertFile, &c.Listen.TLS.KeyFile, &c.Auth.StateFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	if err := errors.Join(append(fieldErrs, c.Validate())...); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate reports every problem at once, each naming the file and field.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: field %s: %s", c.Path, field, fmt.Sprintf(format, a...)))
	}
	switch c.Mode {
	case ModeProxy, ModeBoth, ModeForwardAuth:
	default:
		bad("mode", "want proxy, forward-auth or both, got %q", c.Mode)
	}
	if c.Mode != ModeProxy {
		fa := c.ForwardAuth
		if canon, err := policy.Canonicalize(fa.Path); err != nil || canon != fa.Path || fa.Path == "/" {
			bad("forward_auth.path", "want a canonical path like /_authgate/verify")
		}
		if len(fa.TrustedPeers) == 0 {
			// Believing X-Original-URI from anyone lets a client choose the
			// path that is authorized (GHSA-7x63-xv5r-3p2x).
			bad("forward_auth.trusted_peers", "required: the ingress addresses whose X-Original-*/X-Forwarded-* headers are believed")
		} else if _, err := clientip.Parse(fa.TrustedPeers); err != nil {
			bad("forward_auth.trusted_peers", "%v", err)
		}
		if p := fa.EnvoyPrefix; p != "" {
			if canon, err := policy.Canonicalize(p); err != nil || canon != p || strings.HasSuffix(p, "/") {
				bad("forward_auth.envoy_prefix", "want a canonical path without a trailing slash, like /_authgate/envoy")
			} else if p == fa.Path || strings.HasPrefix(fa.Path, p+"/") {
				bad("forward_auth.envoy_prefix", "must not contain forward_auth.path")
			}
		}
	}
	if c.Upstream.URL == "" {
		if c.Mode != ModeForwardAuth {
			bad("upstream.url", "required")
		}
	} else if c.Mode == ModeForwardAuth {
		bad("upstream.url", "not used in mode forward-auth (use mode both to also proxy)")
	} else if u, err := url.Parse(c.Upstream.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		bad("upstream.url", "want an http:// or https:// URL with a host and no query")
	} else if u.User != nil {
		bad("upstream.url", "must not contain user:password: it is never sent upstream and would be logged")
	}
	if err := proxy.CheckAllowBodiesOn(c.Upstream.AllowBodiesOn); err != nil {
		bad("upstream.allow_bodies_on", "%v", err)
	}
	switch c.Upstream.HostHeader {
	case "preserve", "upstream":
	default:
		bad("upstream.host_header", "want preserve or upstream, got %q", c.Upstream.HostHeader)
	}
	positive := map[string]time.Duration{
		"upstream.dial_timeout": c.Upstream.DialTimeout, "upstream.response_header_timeout": c.Upstream.ResponseHeaderTimeout,
		"upstream.idle_conn_timeout": c.Upstream.IdleConnTimeout, "listen.read_header_timeout": c.Listen.ReadHeaderTimeout,
		"listen.idle_timeout": c.Listen.IdleTimeout, "listen.body_read_timeout": c.Listen.BodyReadTimeout, "listen.shutdown_timeout": c.Listen.ShutdownTimeout,
		"reload_interval": c.ReloadInterval, "jwt.access_ttl": c.JWT.AccessTTL, "jwt.refresh_ttl": c.JWT.RefreshTTL,
	}
	for _, f := range sortedKeys(positive) {
		if positive[f] <= 0 {
			bad(f, "must be positive")
		}
	}
	if c.Listen.ShutdownDelay < 0 {
		bad("listen.shutdown_delay", "must not be negative")
	}
	if c.JWT.Leeway < 0 || c.JWT.Leeway > time.Minute {
		bad("jwt.leeway", "must be between 0s and 60s")
	}
	if c.Listen.Address == "" {
		bad("listen.address", "required")
	}
	if c.Listen.AdminAddress == "" {
		bad("listen.admin_address", "required")
	}
	if c.Listen.MaxHeaderBytes < 4096 {
		bad("listen.max_header_bytes", "must be at least 4096")
	}
	for _, f := range []struct {
		name string
		v    int
	}{
		{"listen.max_in_flight", c.Listen.MaxInFlight}, {"listen.max_connections", c.Listen.MaxConnections},
		{"listen.max_connections_per_client", c.Listen.MaxConnectionsPerClient}, {"listen.max_tunnels", c.Listen.MaxTunnels},
		{"listen.body_min_rate", c.Listen.BodyMinRate}, {"listen.write_min_rate", c.Listen.WriteMinRate},
		{"listen.request_buffer_bytes", c.Listen.RequestBufferBytes},
	} {
		if f.v < 0 {
			bad(f.name, "must not be negative (0 means no bound)")
		}
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{
		{"listen.endpoint_timeout", c.Listen.EndpointTimeout}, {"listen.write_idle_timeout", c.Listen.WriteIdleTimeout},
	} {
		if f.v < 0 {
			bad(f.name, "must not be negative (0 means no deadline)")
		}
	}
	if w := c.Listen.BodyRateWindow; w < time.Second || w%time.Second != 0 {
		bad("listen.body_rate_window", "must be a whole number of seconds, at least 1s")
	}
	if c.Listen.RequestBufferBytes > 16<<20 {
		bad("listen.request_buffer_bytes", "must be at most 16777216 (bodies are buffered in memory)")
	}
	if m, p := c.Listen.MaxConnections, c.Listen.MaxConnectionsPerClient; m > 0 && p > m {
		bad("listen.max_connections_per_client", "must not exceed listen.max_connections (%d)", m)
	}
	if hp := c.Upstream.HealthPath; hp != "" && !strings.HasPrefix(hp, "/") {
		bad("upstream.health_path", "must start with /")
	}
	c.validateHTTP2(bad)
	if (c.Listen.TLS.CertFile == "") != (c.Listen.TLS.KeyFile == "") {
		bad("listen.tls", "set both cert_file and key_file, or neither")
	}
	if c.Upstream.MaxIdleConns < 1 {
		bad("upstream.max_idle_conns", "must be at least 1")
	}
	if c.PolicyFile == "" {
		bad("policy_file", "required: without a policy every request is denied")
	}
	if _, err := clientip.Parse(c.TrustedProxies); err != nil {
		bad("trusted_proxies", "%v", err)
	}
	if c.JWT.RefreshMaxAge <= 0 || c.JWT.RefreshMaxAge < c.JWT.RefreshTTL {
		bad("jwt.refresh_max_age", "must be positive and at least jwt.refresh_ttl (%s)", c.JWT.RefreshTTL)
	}
	if c.JWT.CacheSize < 0 {
		bad("jwt.cache_size", "must not be negative (0 disables the cache)")
	}
	if c.JWT.Issuer == "" {
		bad("jwt.issuer", "required")
	}
	if c.JWT.Audience == "" {
		bad("jwt.audience", "required")
	}
	if c.JWT.KeyID == "" {
		bad("jwt.key_id", "required")
	}
	switch c.Logging.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("logging.level", "want debug, info, warn or error, got %q", c.Logging.Level)
	}
	switch c.Logging.Format {
	case "json", "console":
	default:
		bad("logging.format", "want json or console, got %q", c.Logging.Format)
	}
	if c.Logging.AllowedSampleRate < 0 || c.Logging.AllowedSampleRate > 1 {
		bad("logging.allowed_sample_rate", "must be in [0,1]")
	}
	if p := c.Auth.Prefix; p == "" || p == "/" || !strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") {
		bad("auth.prefix", "want a path like /auth (leading slash, no trailing slash)")
	} else if canon, err := policy.Canonicalize(p); err != nil || canon != p {
		bad("auth.prefix", "must be a canonical path")
	}
	if c.Auth.MaxBodyBytes < 256 || c.Auth.MaxBodyBytes > 1<<20 {
		bad("auth.max_body_bytes", "must be between 256 and 1048576")
	}
	if c.Auth.BcryptConcurrency < 0 {
		bad("auth.bcrypt_concurrency", "must not be negative (0 means half the CPUs)")
	}
	if c.Auth.LimitedDelay < 0 || c.Auth.LimitedDelay > 10*time.Second {
		bad("auth.limited_delay", "must be between 0s and 10s")
	}
	if c.Auth.StateTimeout <= 0 {
		bad("auth.state_timeout", "must be positive")
	}
	if err := c.Auth.Limits.Validate(); err != nil {
		bad("auth.limits", "%v", err)
	}
	if c.Redis.Timeout <= 0 {
		bad("redis.timeout", "must be positive")
	}
	if c.Auth.AccessRevocation.FailOpen && !c.Auth.AccessRevocation.Enabled {
		bad("auth.access_revocation.fail_open", "has no effect unless enabled is true")
	}
	for i := range c.Issuers {
		if err := c.Issuers[i].Validate(); err != nil {
			bad(fmt.Sprintf("issuers[%d]", i), "%v", err)
		}
		if c.Issuers[i].Issuer == c.JWT.Issuer {
			bad(fmt.Sprintf("issuers[%d].issuer", i), "%q is the gateway's own jwt.issuer", c.JWT.Issuer)
		}
	}
	if err := c.JWKS.Validate(); err != nil {
		bad("jwks", "%v", err)
	}
	return errors.Join(errs...)
}

// ReadEnv reads the AUTHGATE_* variables.
func ReadEnv(environ []string) (Env, error) {
	var e Env
	m := map[string]string{}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	err := env.ParseWithOptions(&e, env.Options{Prefix: "AUTHGATE_", Environment: m})
	return e, err
}

// ResolveSecrets reads the secrets from their variables or _FILE variants
// and checks them. A missing or short signing secret stops startup:
// golang-jwt verifies HMAC tokens even with an empty key.
func (e Env) ResolveSecrets(keyID string) (Secrets, error) {
	var s Secrets
	var errs []error
	jwtSecret, err := secret("AUTHGATE_JWT_SECRET", e.JWTSecret, e.JWTSecretFile)
	switch {
	case err != nil:
		errs = append(errs, err)
	case jwtSecret == "":
		errs = append(errs, errors.New("env: AUTHGATE_JWT_SECRET (or AUTHGATE_JWT_SECRET_FILE) is required"))
	case len(jwtSecret) < token.MinSecretBytes:
		errs = append(errs, fmt.Errorf("env: AUTHGATE_JWT_SECRET is %d bytes, need at least %d", len(jwtSecret), token.MinSecretBytes))
	}
	s.JWT = []byte(jwtSecret)
	prev, err := secret("AUTHGATE_JWT_PREVIOUS_SECRETS", e.JWTPreviousSecrets, e.JWTPreviousSecretsFile)
	if err != nil {
		errs = append(errs, err)
	}
	for i, item := range strings.FieldsFunc(prev, func(r rune) bool { return r == ',' || r == '\n' }) {
		kid, sec, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok || kid == "" || sec == "" {
			errs = append(errs, fmt.Errorf("env: AUTHGATE_JWT_PREVIOUS_SECRETS item %d: want kid=secret", i+1))
			continue
		}
		if kid == keyID {
			errs = append(errs, fmt.Errorf("env: AUTHGATE_JWT_PREVIOUS_SECRETS item %d: kid %q is the current jwt.key_id", i+1, kid))
		}
		s.PreviousJWT = append(s.PreviousJWT, token.Key{ID: kid, Secret: []byte(sec)})
	}
	s.RedisURL = e.RedisURL
	s.RedisPass, err = secret("AUTHGATE_REDIS_PASSWORD", e.RedisPassword, e.RedisPasswordFile)
	if err != nil {
		errs = append(errs, err)
	}
	return s, errors.Join(errs...)
}

// secret returns the value of a secret given directly or through a file.
// Setting both is an error rather than a silent preference.
func secret(name, direct, file string) (string, error) {
	if direct != "" && file != "" {
		return "", fmt.Errorf("env: set %s or %s_FILE, not both", name, name)
	}
	if file == "" {
		return direct, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		// The path is not secret; the content never appears in errors.
		return "", fmt.Errorf("env: %s_FILE: %w", name, err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// LoadWithSecrets reads the environment, the config file it or the flag
// names, and the secrets.
func LoadWithSecrets(cfgFlag string, environ []string) (*Config, Secrets, error) {
	e, err := ReadEnv(environ)
	if err != nil {
		return nil, Secrets{}, err
	}
	path, err := ResolvePath(cfgFlag, e)
	if err != nil {
		return nil, Secrets{}, err
	}
	cfg, err := Load(path)
	if err != nil {
		return nil, Secrets{}, err
	}
	sec, err := e.ResolveSecrets(cfg.JWT.KeyID)
	if err != nil {
		return nil, Secrets{}, err
	}
	return cfg, sec, nil
}

// KeySet returns the gateway's HMAC keys: the signing key and the previous
// keys still accepted.
func (s Secrets) KeySet(cfg *Config) (*token.KeySet, error) {
	return token.NewKeySet(token.Key{ID: cfg.JWT.KeyID, Secret: s.JWT}, s.PreviousJWT...)
}

// ErrNoConfig reports that neither --config nor AUTHGATE_CONFIG names a
// config file; commands treat it as a usage error.
var ErrNoConfig = errors.New("no config file: pass --config or set AUTHGATE_CONFIG")

// ResolvePath returns the config file named by the flag, else by
// AUTHGATE_CONFIG.
func ResolvePath(flagValue string, e Env) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if e.Config != "" {
		return e.Config, nil
	}
	return "", ErrNoConfig
}
