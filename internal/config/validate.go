package config

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/authgate/authgate/internal/clientip"
	"github.com/authgate/authgate/internal/yamlx"
	"github.com/authgate/authgate/policy"
	"github.com/authgate/authgate/proxy"
)

// problems collects validation errors. Each names the file, the line of
// the key when the config came from a file, and the field.
type problems struct {
	path  string
	lines map[string]int // key path -> line; nil for a config built in code
	errs  []error
}

// add records a problem with field.
func (p *problems) add(field, format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	if l := yamlx.LineOf(p.lines, field); l > 0 {
		p.errs = append(p.errs, fmt.Errorf("%s:%d: field %s: %s", p.path, l, field, msg))
		return
	}
	p.errs = append(p.errs, fmt.Errorf("%s: field %s: %s", p.path, field, msg))
}

// addErr records err as a problem with field, one line per joined error.
func (p *problems) addErr(field string, err error) {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			p.addErr(field, e)
		}
		return
	}
	p.add(field, "%v", err)
}

// positive records a problem for each duration in fields that is not
// positive, in the order given.
func (p *problems) positive(fields ...field[time.Duration]) {
	for _, f := range fields {
		if f.v <= 0 {
			p.add(f.name, "must be positive")
		}
	}
}

// notNegative records a problem for each bound in fields that is negative.
func (p *problems) notNegative(meaning string, fields ...field[int]) {
	for _, f := range fields {
		if f.v < 0 {
			p.add(f.name, "must not be negative (%s)", meaning)
		}
	}
}

// field is a named value for the table checks.
type field[V any] struct {
	name string
	v    V
}

// Validate reports every problem at once, each naming the file, the line
// when known, and the field. Each section checks its own keys.
func (c *Config) Validate() error {
	p := &problems{path: c.Path, lines: c.lines}
	c.validateMode(p)
	c.Upstream.validate(p, c.Mode)
	c.Listen.validate(p)
	c.validateHTTP2(p.add)
	c.validateFiles(p)
	c.JWT.validate(p)
	c.Logging.validate(p)
	c.Auth.validate(p)
	c.Redis.validate(p.add)
	c.validateIssuers(p)
	c.validateTrust(p.add)
	c.validateSessions(p.add)
	return errors.Join(p.errs...)
}

func (c *Config) validateMode(p *problems) {
	switch c.Mode {
	case ModeProxy, ModeBoth, ModeForwardAuth:
	default:
		p.add("mode", "want proxy, forward-auth or both, got %q", c.Mode)
	}
	if c.Mode == ModeProxy {
		return
	}
	fa := c.ForwardAuth
	if canon, err := policy.Canonicalize(fa.Path); err != nil || canon != fa.Path || fa.Path == "/" {
		p.add("forward_auth.path", "want a canonical path like /_authgate/verify")
	}
	if len(fa.TrustedPeers) == 0 {
		// Believing X-Original-URI from anyone lets a client choose the
		// path that is authorized (GHSA-7x63-xv5r-3p2x).
		p.add("forward_auth.trusted_peers", "required: the ingress addresses whose X-Original-*/X-Forwarded-* headers are believed")
	} else if _, err := clientip.Parse(fa.TrustedPeers); err != nil {
		p.add("forward_auth.trusted_peers", "%v", err)
	}
	if pfx := fa.EnvoyPrefix; pfx != "" {
		if canon, err := policy.Canonicalize(pfx); err != nil || canon != pfx || strings.HasSuffix(pfx, "/") {
			p.add("forward_auth.envoy_prefix", "want a canonical path without a trailing slash, like /_authgate/envoy")
		} else if pfx == fa.Path || strings.HasPrefix(fa.Path, pfx+"/") {
			p.add("forward_auth.envoy_prefix", "must not contain forward_auth.path")
		}
	}
}

func (u UpstreamConfig) validate(p *problems, mode string) {
	if u.URL == "" {
		if mode != ModeForwardAuth {
			p.add("upstream.url", "required")
		}
	} else if mode == ModeForwardAuth {
		p.add("upstream.url", "not used in mode forward-auth (use mode both to also proxy)")
	} else if pu, err := url.Parse(u.URL); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" || pu.RawQuery != "" || pu.Fragment != "" {
		p.add("upstream.url", "want an http:// or https:// URL with a host and no query")
	} else if pu.User != nil {
		p.add("upstream.url", "must not contain user:password: it is never sent upstream and would be logged")
	}
	if err := proxy.CheckAllowBodiesOn(u.AllowBodiesOn); err != nil {
		p.add("upstream.allow_bodies_on", "%v", err)
	}
	switch u.HostHeader {
	case "preserve", "upstream":
	default:
		p.add("upstream.host_header", "want preserve or upstream, got %q", u.HostHeader)
	}
	p.positive(field[time.Duration]{"upstream.dial_timeout", u.DialTimeout}, field[time.Duration]{"upstream.response_header_timeout", u.ResponseHeaderTimeout},
		field[time.Duration]{"upstream.idle_conn_timeout", u.IdleConnTimeout})
	if hp := u.HealthPath; hp != "" && !strings.HasPrefix(hp, "/") {
		p.add("upstream.health_path", "must start with /")
	}
	if u.MaxIdleConns < 1 {
		p.add("upstream.max_idle_conns", "must be at least 1")
	}
	if d := u.RetryRefusedDelay; d < 0 || d > proxy.MaxRetryRefusedDelay {
		p.add("upstream.retry_refused_delay", "must be between 0s (no retry) and %s", proxy.MaxRetryRefusedDelay)
	}
}

func (l ListenConfig) validate(p *problems) {
	if l.Address == "" {
		p.add("listen.address", "required")
	}
	if l.AdminAddress == "" {
		p.add("listen.admin_address", "required")
	}
	p.positive(field[time.Duration]{"listen.read_header_timeout", l.ReadHeaderTimeout}, field[time.Duration]{"listen.idle_timeout", l.IdleTimeout},
		field[time.Duration]{"listen.body_read_timeout", l.BodyReadTimeout}, field[time.Duration]{"listen.shutdown_timeout", l.ShutdownTimeout})
	if l.ShutdownDelay < 0 {
		p.add("listen.shutdown_delay", "must not be negative")
	}
	if l.MaxHeaderBytes < 4096 {
		p.add("listen.max_header_bytes", "must be at least 4096")
	}
	p.notNegative("0 means no bound",
		field[int]{"listen.max_in_flight", l.MaxInFlight}, field[int]{"listen.max_connections", l.MaxConnections},
		field[int]{"listen.max_connections_per_client", l.MaxConnectionsPerClient}, field[int]{"listen.max_tunnels", l.MaxTunnels},
		field[int]{"listen.body_min_rate", l.BodyMinRate}, field[int]{"listen.write_min_rate", l.WriteMinRate},
		field[int]{"listen.request_buffer_bytes", l.RequestBufferBytes})
	for _, f := range []field[time.Duration]{{"listen.endpoint_timeout", l.EndpointTimeout}, {"listen.write_idle_timeout", l.WriteIdleTimeout}} {
		if f.v < 0 {
			p.add(f.name, "must not be negative (0 means no deadline)")
		}
	}
	if w := l.BodyRateWindow; w < time.Second || w%time.Second != 0 {
		p.add("listen.body_rate_window", "must be a whole number of seconds, at least 1s")
	}
	if l.RequestBufferBytes > 16<<20 {
		p.add("listen.request_buffer_bytes", "must be at most 16777216 (bodies are buffered in memory)")
	}
	if m, pc := l.MaxConnections, l.MaxConnectionsPerClient; m > 0 && pc > m {
		p.add("listen.max_connections_per_client", "must not exceed listen.max_connections (%d)", m)
	}
	if (l.TLS.CertFile == "") != (l.TLS.KeyFile == "") {
		p.add("listen.tls", "set both cert_file and key_file, or neither")
	}
}

// validateFiles checks the files and their reloading.
func (c *Config) validateFiles(p *problems) {
	if c.PolicyFile == "" {
		p.add("policy_file", "required: without a policy every request is denied")
	}
	p.positive(field[time.Duration]{"reload_interval", c.ReloadInterval}, field[time.Duration]{"reload_settle", c.ReloadSettle})
	if c.ReloadSettle > time.Minute {
		p.add("reload_settle", "must be at most 1m")
	}
	if _, err := clientip.Parse(c.TrustedProxies); err != nil {
		p.add("trusted_proxies", "%v", err)
	}
}

func (j JWTConfig) validate(p *problems) {
	p.positive(field[time.Duration]{"jwt.access_ttl", j.AccessTTL}, field[time.Duration]{"jwt.refresh_ttl", j.RefreshTTL})
	if j.Leeway < 0 || j.Leeway > time.Minute {
		p.add("jwt.leeway", "must be between 0s and 60s")
	}
	if j.RefreshMaxAge <= 0 || j.RefreshMaxAge < j.RefreshTTL {
		p.add("jwt.refresh_max_age", "must be positive and at least jwt.refresh_ttl (%s)", j.RefreshTTL)
	}
	if j.CacheSize < 0 {
		p.add("jwt.cache_size", "must not be negative (0 disables the cache)")
	}
	for _, f := range []field[string]{{"jwt.issuer", j.Issuer}, {"jwt.audience", j.Audience}, {"jwt.key_id", j.KeyID}} {
		if f.v == "" {
			p.add(f.name, "required")
		}
	}
}

func (lg LoggingConfig) validate(p *problems) {
	switch lg.Level {
	case "debug", "info", "warn", "error":
	default:
		p.add("logging.level", "want debug, info, warn or error, got %q", lg.Level)
	}
	switch lg.Format {
	case "json", "console":
	default:
		p.add("logging.format", "want json or console, got %q", lg.Format)
	}
	if lg.AllowedSampleRate < 0 || lg.AllowedSampleRate > 1 {
		p.add("logging.allowed_sample_rate", "must be in [0,1]")
	}
}

func (a AuthConfig) validate(p *problems) {
	if pfx := a.Prefix; pfx == "" || pfx == "/" || !strings.HasPrefix(pfx, "/") || strings.HasSuffix(pfx, "/") {
		p.add("auth.prefix", "want a path like /auth (leading slash, no trailing slash)")
	} else if canon, err := policy.Canonicalize(pfx); err != nil || canon != pfx {
		p.add("auth.prefix", "must be a canonical path")
	}
	if a.MaxBodyBytes < 256 || a.MaxBodyBytes > 1<<20 {
		p.add("auth.max_body_bytes", "must be between 256 and 1048576")
	}
	if a.BcryptConcurrency < 0 {
		p.add("auth.bcrypt_concurrency", "must not be negative (0 means half the CPUs)")
	}
	if a.LimitedDelay < 0 || a.LimitedDelay > 10*time.Second {
		p.add("auth.limited_delay", "must be between 0s and 10s")
	}
	if a.StateTimeout <= 0 {
		p.add("auth.state_timeout", "must be positive")
	}
	if err := a.Limits.Validate(); err != nil {
		p.addErr("auth.limits", err)
	}
	if a.AccessRevocation.FailOpen && !a.AccessRevocation.Enabled {
		p.add("auth.access_revocation.fail_open", "has no effect unless enabled is true")
	}
}

func (c *Config) validateIssuers(p *problems) {
	for i := range c.Issuers {
		if err := c.Issuers[i].Validate(); err != nil {
			p.addErr(fmt.Sprintf("issuers[%d]", i), err)
		}
		if c.Issuers[i].Issuer == c.JWT.Issuer {
			p.add(fmt.Sprintf("issuers[%d].issuer", i), "%q is the gateway's own jwt.issuer", c.JWT.Issuer)
		}
	}
	if err := c.JWKS.Validate(); err != nil {
		p.addErr("jwks", err)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
