package config

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// SessionCookieName returns the session cookie's name: the configured
// one, or __Host-authgate_session (authgate_session when secure is off,
// since the __Host- prefix needs Secure).
func (s SessionsConfig) SessionCookieName() string {
	switch {
	case s.CookieName != "":
		return s.CookieName
	case s.Secure:
		return "__Host-authgate_session"
	}
	return "authgate_session"
}

// ExternalOrigin returns scheme://host[:port] of external_url, or "".
func (s SessionsConfig) ExternalOrigin() string {
	if s.ExternalURL == "" {
		return ""
	}
	u, err := url.Parse(s.ExternalURL)
	if err != nil {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// validateSessions checks the sessions section.
func (c *Config) validateSessions(bad func(field, format string, a ...any)) {
	c.validateLogins(bad)
	s := c.Sessions
	if !s.Enabled {
		return
	}
	if c.UsersFile == "" && !c.hasLogin() {
		bad("sessions.enabled", "browser sign-in needs users_file or an issuers entry with a login block")
	}
	if s.IdleTimeout <= 0 || s.AbsoluteTimeout <= 0 {
		bad("sessions.idle_timeout", "idle_timeout and absolute_timeout must be positive")
	} else if s.IdleTimeout > s.AbsoluteTimeout {
		bad("sessions.idle_timeout", "must not exceed sessions.absolute_timeout (%s)", s.AbsoluteTimeout)
	}
	switch s.OnUnauthenticated {
	case "redirect", "deny":
	default:
		bad("sessions.on_unauthenticated", "want redirect or deny, got %q", s.OnUnauthenticated)
	}
	if n := s.SessionCookieName(); !s.Secure && (strings.HasPrefix(n, "__Host-") || strings.HasPrefix(n, "__Secure-")) {
		bad("sessions.cookie_name", "%q needs the Secure attribute; pick a name without the prefix when secure is false", n)
	}
	if s.CacheTTL < 0 || s.CacheTTL > time.Minute {
		bad("sessions.cache_ttl", "must be between 0s and 1m (a session ended on another replica ends here within it)")
	}
	if s.ExternalURL != "" {
		u, err := url.Parse(s.ExternalURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
			bad("sessions.external_url", "want the gateway's public origin, like https://app.example.com (no path: the gateway's endpoints are at auth.prefix)")
		} else if u.Scheme == "http" && s.Secure && !loopbackHost(u.Hostname()) {
			bad("sessions.external_url", "plain http with secure cookies works only on localhost; use https")
		}
	}
	if err := s.Page.Validate(); err != nil {
		bad("sessions.page", "%v", err)
	}
}

// hasLogin reports whether some external issuer has a login block.
func (c *Config) hasLogin() bool {
	for _, is := range c.Issuers {
		if is.Login != nil {
			return true
		}
	}
	return false
}

// validateLogins checks the issuers' login blocks against the sessions
// section.
func (c *Config) validateLogins(bad func(field, format string, a ...any)) {
	ids := map[string]int{}
	for i, is := range c.Issuers {
		l := is.Login
		if l == nil {
			continue
		}
		field := fmt.Sprintf("issuers[%d].login", i)
		if !c.Sessions.Enabled {
			bad(field, "needs sessions.enabled: true (the provider's sign-in makes a browser session)")
		}
		if l.RedirectURL == "" && c.Sessions.ExternalURL == "" {
			bad(field+".redirect_url", "required unless sessions.external_url is set (the provider needs the exact URL)")
		}
		if prev, dup := ids[l.ID]; dup {
			bad(field+".id", "%q is also the id of issuers[%d]", l.ID, prev)
		}
		ids[l.ID] = i
	}
}

// ClientSecretVar returns the variable holding the client secret of the
// provider with login id: AUTHGATE_OIDC_<ID>_CLIENT_SECRET, with the id
// upper-cased and "-" as "_".
func ClientSecretVar(id string) string {
	return "AUTHGATE_OIDC_" + strings.ToUpper(strings.ReplaceAll(id, "-", "_")) + "_CLIENT_SECRET"
}

// ResolveClientSecrets reads the client secret of every login block that
// does not use private_key_jwt, from its variable or the _FILE variant.
// A missing secret is an error naming the variable.
func ResolveClientSecrets(c *Config, environ []string) (map[string]string, error) {
	env := map[string]string{}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	out := map[string]string{}
	var errs []error
	for _, is := range c.Issuers {
		l := is.Login
		if l == nil || l.PrivateKeyFile != "" {
			continue
		}
		name := ClientSecretVar(l.ID)
		v, err := secret(name, env[name], env[name+"_FILE"])
		switch {
		case err != nil:
			errs = append(errs, err)
		case v == "":
			errs = append(errs, fmt.Errorf("env: %s (or %s_FILE) is required for the login of %s, or set private_key_file", name, name, is.Issuer))
		default:
			out[l.ID] = v
		}
	}
	return out, errors.Join(errs...)
}

func loopbackHost(h string) bool {
	return h == "localhost" || h == "127.0.0.1" || h == "::1"
}
