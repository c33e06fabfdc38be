// Package config is the gateway's configuration: the YAML file schema, its
// defaults in one place, the AUTHGATE_* environment with its secrets, and
// validation that reports every problem at once, naming file and field.
package config

import (
	"time"

	"github.com/authgate/authgate/authn/issuer"
	"github.com/authgate/authgate/authn/jwks"
	"github.com/authgate/authgate/internal/filewatch"
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
	ReloadSettle    time.Duration         `yaml:"reload_settle"`
	TrustedProxies  []string              `yaml:"trusted_proxies"`
	JWT             JWTConfig             `yaml:"jwt"`
	IdentityHeaders proxy.IdentityHeaders `yaml:"identity_headers"`
	APIKeyHeader    string                `yaml:"api_key_header"`
	Logging         LoggingConfig         `yaml:"logging"`
	Auth            AuthConfig            `yaml:"auth"`
	Redis           RedisConfig           `yaml:"redis"`
	Issuers         []jwks.IssuerConfig   `yaml:"issuers"`
	JWKS            jwks.CacheConfig      `yaml:"jwks"`
	TLS             TrustConfig           `yaml:"tls"`
	Assertion       AssertionConfig       `yaml:"assertion"`
	Sessions        SessionsConfig        `yaml:"sessions"`

	// Path is the file the config was read from; relative paths in it
	// are resolved against its directory. It is not part of the file.
	Path string `yaml:"-"`
	// lines maps the file's key paths to their lines, for errors.
	lines map[string]int
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
	RetryRefusedDelay     time.Duration `yaml:"retry_refused_delay"`
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

	// AdminExplain serves /explain on the admin listener; off by default
	// because it shows the whole policy to whoever reaches the port.
	AdminExplain bool `yaml:"admin_explain"`

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

// SessionsConfig configures browser sign-in: the sign-in page under
// auth.prefix and server-side sessions in the state store.
type SessionsConfig struct {
	Enabled           bool          `yaml:"enabled"`
	CookieName        string        `yaml:"cookie_name"`
	Secure            bool          `yaml:"secure"`
	IdleTimeout       time.Duration `yaml:"idle_timeout"`
	AbsoluteTimeout   time.Duration `yaml:"absolute_timeout"`
	OnUnauthenticated string        `yaml:"on_unauthenticated"`
	CheckOrigin       bool          `yaml:"check_origin"`
	ExternalURL       string        `yaml:"external_url"`
	CacheTTL          time.Duration `yaml:"cache_ttl"`
	Page              issuer.Page   `yaml:"page"`
}

// TrustConfig names the certificate authorities the gateway trusts as a
// client: for an https upstream, the identity providers' discovery and key
// endpoints, and a rediss:// state store.
type TrustConfig struct {
	// CAFile is a PEM bundle added to the system roots (a private CA);
	// empty means the system roots alone.
	CAFile string `yaml:"ca_file"`
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
	// Algorithm, IssuerURL and JWKSMaxAge: see keys.go.
	Algorithm  string        `yaml:"algorithm"`
	IssuerURL  string        `yaml:"issuer_url"`
	JWKSMaxAge time.Duration `yaml:"jwks_max_age"`
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

// RedisConfig tunes the Redis store selected by AUTHGATE_REDIS_URL (one
// node), Sentinel or Cluster.
type RedisConfig struct {
	KeyPrefix    string              `yaml:"key_prefix"`
	Timeout      time.Duration       `yaml:"timeout"`
	Sentinel     RedisSentinelConfig `yaml:"sentinel"`
	Cluster      RedisClusterConfig  `yaml:"cluster"`
	Username     string              `yaml:"username"`
	DB           int                 `yaml:"db"`
	TLS          bool                `yaml:"tls"`
	WaitReplicas int                 `yaml:"wait_replicas"`
}

// LoggingConfig selects the log level and format.
type LoggingConfig struct {
	Level             string  `yaml:"level"`
	Format            string  `yaml:"format"`
	AllowedSampleRate float64 `yaml:"allowed_sample_rate"`
}

// Default returns the configuration every unset key falls back to.
func Default() Config {
	return Config{
		Mode:        ModeProxy,
		ForwardAuth: ForwardAuthConfig{Path: "/_authgate/verify"},
		Upstream:    UpstreamConfig{HostHeader: "preserve", DialTimeout: 5 * time.Second, ResponseHeaderTimeout: 60 * time.Second, IdleConnTimeout: 90 * time.Second, MaxIdleConns: 256, RetryRefusedDelay: proxy.DefaultRetryRefusedDelay, Protocol: string(proxy.ProtocolHTTP1)},
		Listen: ListenConfig{Address: ":8080", AdminAddress: ":9090", ReadHeaderTimeout: 10 * time.Second, BodyReadTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second,
			MaxHeaderBytes: 64 << 10, MaxInFlight: 1024, ShutdownDelay: 5 * time.Second, ShutdownTimeout: 30 * time.Second,
			MaxConnections: 8192, MaxConnectionsPerClient: 256, MaxTunnels: 512, EndpointTimeout: 10 * time.Second,
			BodyMinRate: 1024, BodyRateWindow: 10 * time.Second, WriteIdleTimeout: 60 * time.Second, WriteMinRate: 1024, RequestBufferBytes: 64 << 10, HTTP2: DefaultHTTP2()},
		ReloadInterval: time.Second,
		ReloadSettle:   filewatch.DefaultSettle,
		JWT:            JWTConfig{Issuer: "authgate", Audience: "authgate", KeyID: "k1", Leeway: 30 * time.Second, AccessTTL: 15 * time.Minute, RefreshTTL: 7 * 24 * time.Hour, CacheSize: 10000, RefreshMaxAge: issuer.DefaultRefreshMaxAge, JWKSMaxAge: DefaultJWKSMaxAge},
		Assertion:      DefaultAssertion(),
		APIKeyHeader:   "X-API-Key",
		JWKS:           jwks.DefaultCacheConfig(),
		Auth: AuthConfig{Prefix: "/auth", MaxBodyBytes: issuer.DefaultMaxBodyBytes, StateTimeout: issuer.DefaultStateTimeout,
			Limits: issuer.DefaultLimits(), LimitedDelay: 500 * time.Millisecond},
		Redis: RedisConfig{KeyPrefix: "authgate:", Timeout: 250 * time.Millisecond},
		Sessions: SessionsConfig{Secure: true, IdleTimeout: 30 * time.Minute, AbsoluteTimeout: 10 * time.Hour,
			OnUnauthenticated: "redirect", CheckOrigin: true},
		Logging: LoggingConfig{Level: "info", Format: "json", AllowedSampleRate: 1},
	}
}
