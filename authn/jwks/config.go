package jwks

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/authgate/authgate/authn/jose"
	"github.com/authgate/authgate/policy"
)

// IssuerConfig describes one trusted external identity provider. It is
// plain data decoded from the gateway configuration file; New copies what it
// needs, so later changes have no effect. The zero value is not valid; call
// Validate.
type IssuerConfig struct {
	// Issuer is the exact "iss" value tokens from this provider carry.
	Issuer string `yaml:"issuer"`
	// Discovery makes the gateway fetch <Issuer>/.well-known/openid-configuration
	// to find the JWKS URI. The document's "issuer" must equal Issuer exactly.
	// Exactly one of Discovery and JWKSURI must be set.
	Discovery bool `yaml:"discovery"`
	// JWKSURI is the explicit JWKS URI.
	JWKSURI string `yaml:"jwks_uri"`
	// Audiences lists the accepted audiences; a token's "aud" must contain at
	// least one of them. Required.
	Audiences []string `yaml:"audiences"`
	// Algorithms is the signature algorithm allow-list, chosen from RS256,
	// RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512 and EdDSA.
	// Empty means [RS256].
	Algorithms []string `yaml:"algorithms"`
	// SubjectClaim names the top-level claim holding the caller's subject.
	// Empty means "sub".
	SubjectClaim string `yaml:"subject_claim"`
	// RolesClaim is the dotted path of the claim holding the caller's roles,
	// for example "realm_access.roles" or "scope". See the package
	// documentation for the path syntax. Empty means no roles are read.
	RolesClaim string `yaml:"roles_claim"`
	// RoleMap maps identity-provider roles or groups to gateway roles. When
	// it is non-empty only mapped roles are granted: a provider role with no
	// entry grants nothing.
	RoleMap map[string][]string `yaml:"role_map"`
	// RequireTyp, when "at+jwt", accepts only tokens whose "typ" header is
	// "at+jwt" or "application/at+jwt" in any case (RFC 9068 §4): the
	// provider's ID tokens, JWT refresh tokens and other JWTs are refused
	// even when they carry the same issuer and audience. Empty, the
	// default, accepts a token without "typ" or with "JWT" or "at+jwt",
	// because most providers (Keycloak, Entra ID, Auth0's default
	// profile) type access tokens "JWT" and Okta's custom authorization
	// servers send no "typ" at all.
	RequireTyp string `yaml:"require_typ"`

	// Login, when set, lets browsers sign in through this provider (the
	// OpenID Connect authorization code flow with PKCE). It needs
	// discovery.
	Login *LoginConfig `yaml:"login"`
}

// typePolicy returns the "typ" rule of the issuer.
func (c *IssuerConfig) typePolicy() jose.TypePolicy {
	if c.RequireTyp != "" {
		return jose.TypeAccessToken
	}
	return jose.TypeJWT
}

// LoginConfig is the relying-party registration of the gateway at one
// provider. The client secret is never in the file: it comes from
// AUTHGATE_OIDC_<ID>_CLIENT_SECRET or its _FILE variant, or the client
// authenticates with private_key_jwt (private_key_file).
type LoginConfig struct {
	// ID names the provider in paths and variables: [a-z0-9-], unique.
	ID string `yaml:"id"`
	// Name is the button label; empty means the issuer's host.
	Name string `yaml:"name"`
	// ClientID is the gateway's client id at the provider. Required.
	ClientID string `yaml:"client_id"`
	// PrivateKeyFile, when set, authenticates the client with
	// private_key_jwt (RFC 7523) signed by this PEM key (RSA or EC)
	// instead of a client secret.
	PrivateKeyFile string `yaml:"private_key_file"`
	// PrivateKeyID is the kid of that key at the provider, if it wants one.
	PrivateKeyID string `yaml:"private_key_id"`
	// RedirectURL is the registered redirect URI; empty means
	// <sessions.external_url><auth.prefix>/callback.
	RedirectURL string `yaml:"redirect_url"`
	// PostLogoutRedirectURL is the registered post_logout_redirect_uri;
	// empty means <sessions.external_url><auth.prefix>/sign_out.
	PostLogoutRedirectURL string `yaml:"post_logout_redirect_url"`
	// Scopes are requested in addition to openid; empty means
	// [profile, email].
	Scopes []string `yaml:"scopes"`
	// Prompt and ACRValues are sent as prompt and acr_values when set.
	Prompt    string `yaml:"prompt"`
	ACRValues string `yaml:"acr_values"`
	// BackchannelLogout accepts the provider's logout tokens at
	// <auth.prefix>/backchannel_logout/<id>.
	BackchannelLogout bool `yaml:"backchannel_logout"`
}

// validLoginID reports whether id is a provider id.
func validLoginID(id string) bool {
	if id == "" || len(id) > 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// isSupportedAlgorithm reports whether alg is in the closed set of
// asymmetric algorithms accepted from external issuers.
func isSupportedAlgorithm(alg string) bool {
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA":
		return true
	}
	return false
}

// Validate reports every problem with c at once, joined with errors.Join.
// Each message names the issuer and the offending field.
func (c *IssuerConfig) Validate() error {
	name := c.Issuer
	if name == "" {
		name = "<empty>"
	}
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("jwks: issuer %q: "+format, append([]any{name}, args...)...))
	}
	if c.Issuer == "" {
		add("issuer: required")
	} else if err := checkFetchURL(c.Issuer); err != nil && c.Discovery {
		add("issuer: %v", err)
	}
	switch {
	case c.Discovery && c.JWKSURI != "":
		add("discovery and jwks_uri: set exactly one, not both")
	case !c.Discovery && c.JWKSURI == "":
		add("discovery and jwks_uri: set exactly one")
	case c.JWKSURI != "":
		if err := checkFetchURL(c.JWKSURI); err != nil {
			add("jwks_uri: %v", err)
		}
	}
	if len(c.Audiences) == 0 {
		add("audiences: required, at least one")
	}
	for i, a := range c.Audiences {
		if a == "" {
			add("audiences[%d]: empty", i)
		}
	}
	for i, alg := range c.Algorithms {
		switch {
		// Symmetric and unsigned algorithms are refused outright: with a
		// public JWKS, HS* lets anyone who knows the public key forge
		// tokens (algorithm confusion), and "none" needs no key at all.
		case strings.EqualFold(alg, "none") || strings.HasPrefix(strings.ToUpper(alg), "HS"):
			add("algorithms[%d]: %q is not allowed for external issuers", i, alg)
		case !isSupportedAlgorithm(alg):
			add("algorithms[%d]: unsupported algorithm %q", i, alg)
		}
	}
	switch strings.ToLower(c.RequireTyp) {
	case "", "at+jwt", "application/at+jwt":
	default:
		add("require_typ: %q is not supported; the only value is at+jwt (RFC 9068)", c.RequireTyp)
	}
	if c.RolesClaim != "" {
		if _, err := splitClaimPath(c.RolesClaim); err != nil {
			add("roles_claim: %v", err)
		}
	}
	if l := c.Login; l != nil {
		if !c.Discovery {
			add("login: needs discovery: true (the endpoints come from the discovery document)")
		}
		if !validLoginID(l.ID) {
			add("login.id: want 1 to 32 of a-z, 0-9 and -, got %q", l.ID)
		}
		if l.ClientID == "" {
			add("login.client_id: required")
		}
		for _, u := range []struct{ name, v string }{{"redirect_url", l.RedirectURL}, {"post_logout_redirect_url", l.PostLogoutRedirectURL}} {
			if u.v == "" {
				continue
			}
			if p, err := url.Parse(u.v); err != nil || (p.Scheme != "https" && !(p.Scheme == "http" && isLoopback(p.Hostname()))) || p.Host == "" || p.Fragment != "" {
				add("login.%s: want an absolute https URL (http only on loopback)", u.name)
			}
		}
		switch l.Prompt {
		case "", "none", "login", "consent", "select_account":
		default:
			add("login.prompt: want none, login, consent or select_account, got %q", l.Prompt)
		}
	}
	for k, v := range c.RoleMap {
		if k == "" {
			add("role_map: empty key")
		}
		for i, r := range v {
			if r == "" {
				add("role_map[%q][%d]: empty role", k, i)
			} else if err := policy.CheckRoleName(r); err != nil {
				// A target no rule can list would be dropped at every
				// verification; say so at load instead.
				add("role_map[%q][%d]: %v", k, i, err)
			}
		}
	}
	return errors.Join(errs...)
}

// checkFetchURL reports whether raw is a URL the gateway may fetch keys from.
func checkFetchURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a valid URL")
	}
	if u.Host == "" {
		return errors.New("URL has no host")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		// Keys fetched over plain HTTP can be replaced by anyone on the
		// path (man-in-the-middle), which forges every token. Plain HTTP
		// is allowed only to a loopback address.
		if isLoopback(u.Hostname()) {
			return nil
		}
		return errors.New("plain http is allowed only for loopback hosts; use https")
	default:
		return fmt.Errorf("scheme %q is not https", u.Scheme)
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// algorithms returns the allow-list with the default applied.
func (c *IssuerConfig) algorithms() []string {
	if len(c.Algorithms) == 0 {
		return []string{"RS256"}
	}
	return slices.Clone(c.Algorithms)
}

// CacheConfig tunes key fetching and the verified-token cache for all
// issuers. It is plain data, copied by New.
//
// Defaults: decoding YAML into a CacheConfig starts from DefaultCacheConfig,
// so omitted keys take their defaults and an explicit 0 means 0. In a
// CacheConfig built in Go, zero MinRefresh, MaxRefresh, UnknownKidCooldown,
// MaxStale, FetchTimeout, StartupGrace and MaxJWKSBytes take their defaults
// (a zero value there is never useful and some would be unsafe), while a
// zero Leeway means no leeway and a zero TokenCacheSize disables the token
// cache.
type CacheConfig struct {
	// MinRefresh is the shortest time a fetched key set is used before it
	// is refreshed, whatever the provider's Cache-Control says. Default 5m.
	MinRefresh time.Duration `yaml:"min_refresh"`
	// MaxRefresh is the longest time a key set is used before it is
	// refreshed. Default 24h.
	MaxRefresh time.Duration `yaml:"max_refresh"`
	// UnknownKidCooldown is the shortest interval between two refetches
	// triggered by a token with an unknown key id, and between retries after
	// a failed fetch. Default 30s.
	UnknownKidCooldown time.Duration `yaml:"unknown_kid_cooldown"`
	// MaxStale is how long after the last successful fetch the keys are
	// still used while the provider cannot be reached. After it every token
	// of that issuer is denied. Default 24h.
	MaxStale time.Duration `yaml:"max_stale"`
	// FetchTimeout bounds one discovery or JWKS request. Default 5s.
	FetchTimeout time.Duration `yaml:"fetch_timeout"`
	// StartupGrace is how long after Start an issuer may fail before the
	// failure is logged as an error. Default 30s.
	StartupGrace time.Duration `yaml:"startup_grace"`
	// Leeway is the clock skew allowed when checking exp, nbf and iat.
	// Default 30s.
	Leeway time.Duration `yaml:"leeway"`
	// MaxJWKSBytes caps the size of a discovery or JWKS response; a larger
	// response is rejected. Default 1 MiB.
	MaxJWKSBytes int64 `yaml:"max_jwks_bytes"`
	// TokenCacheSize is the number of verified tokens remembered; 0
	// disables the cache. Default 10000.
	TokenCacheSize int `yaml:"token_cache_size"`
}

// DefaultCacheConfig returns the default cache settings.
func DefaultCacheConfig() CacheConfig {
	return CacheConfig{
		MinRefresh:         5 * time.Minute,
		MaxRefresh:         24 * time.Hour,
		UnknownKidCooldown: 30 * time.Second,
		MaxStale:           24 * time.Hour,
		FetchTimeout:       5 * time.Second,
		StartupGrace:       30 * time.Second,
		Leeway:             30 * time.Second,
		MaxJWKSBytes:       1 << 20,
		TokenCacheSize:     10000,
	}
}

// UnmarshalYAML decodes c starting from DefaultCacheConfig, so keys left out
// of the file keep their defaults. It keeps the decoder's strictness.
func (c *CacheConfig) UnmarshalYAML(unmarshal func(any) error) error {
	type plain CacheConfig
	p := plain(DefaultCacheConfig())
	if err := unmarshal(&p); err != nil {
		return err
	}
	*c = CacheConfig(p)
	return nil
}

// Validate reports every problem with c at once, joined with errors.Join.
func (c *CacheConfig) Validate() error {
	var errs []error
	neg := func(name string, d time.Duration) {
		if d < 0 {
			errs = append(errs, fmt.Errorf("jwks: %s: must not be negative", name))
		}
	}
	neg("min_refresh", c.MinRefresh)
	neg("max_refresh", c.MaxRefresh)
	neg("unknown_kid_cooldown", c.UnknownKidCooldown)
	neg("max_stale", c.MaxStale)
	neg("fetch_timeout", c.FetchTimeout)
	neg("startup_grace", c.StartupGrace)
	neg("leeway", c.Leeway)
	if c.MaxJWKSBytes < 0 {
		errs = append(errs, errors.New("jwks: max_jwks_bytes: must not be negative"))
	}
	if c.TokenCacheSize < 0 {
		errs = append(errs, errors.New("jwks: token_cache_size: must not be negative"))
	}
	d := c.withDefaults()
	if d.MinRefresh > d.MaxRefresh {
		errs = append(errs, errors.New("jwks: min_refresh: must not exceed max_refresh"))
	}
	return errors.Join(errs...)
}

// withDefaults fills the fields whose zero value is never useful.
func (c CacheConfig) withDefaults() CacheConfig {
	def := DefaultCacheConfig()
	setDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	setDur(&c.MinRefresh, def.MinRefresh)
	setDur(&c.MaxRefresh, def.MaxRefresh)
	setDur(&c.UnknownKidCooldown, def.UnknownKidCooldown)
	setDur(&c.MaxStale, def.MaxStale)
	setDur(&c.FetchTimeout, def.FetchTimeout)
	setDur(&c.StartupGrace, def.StartupGrace)
	if c.MaxJWKSBytes == 0 {
		c.MaxJWKSBytes = def.MaxJWKSBytes
	}
	return c
}
