package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/authgate/authgate/authn/jwks"
)

func sessionsConfig() Config {
	c := Default()
	c.Path = "config.yaml"
	c.Upstream.URL = "http://127.0.0.1:8081"
	c.PolicyFile = "policy.yaml"
	c.UsersFile = "users.yaml"
	c.Sessions.Enabled = true
	return c
}

func TestValidateSessions(t *testing.T) {
	login := jwks.IssuerConfig{Issuer: "https://idp.example", Discovery: true, Audiences: []string{"gw"},
		Login: &jwks.LoginConfig{ID: "idp", ClientID: "gw"}}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string // "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"no users and no login", func(c *Config) { c.UsersFile = "" }, "sessions.enabled: browser sign-in needs users_file"},
		{"bad on_unauthenticated", func(c *Config) { c.Sessions.OnUnauthenticated = "login" }, "sessions.on_unauthenticated"},
		{"idle past absolute", func(c *Config) { c.Sessions.IdleTimeout = 11 * 60 * 60 * 1e9 }, "sessions.idle_timeout"},
		{"__Host- without secure", func(c *Config) { c.Sessions.Secure = false; c.Sessions.CookieName = "__Host-x" }, "sessions.cookie_name"},
		{"insecure default name", func(c *Config) { c.Sessions.Secure = false }, ""},
		{"external url with a query", func(c *Config) { c.Sessions.ExternalURL = "https://app.example/?x" }, "sessions.external_url"},
		{"external url with a path", func(c *Config) { c.Sessions.ExternalURL = "https://app.example/app" }, "sessions.external_url"},
		{"plain http external url off loopback", func(c *Config) { c.Sessions.ExternalURL = "http://app.example" }, "sessions.external_url"},
		{"login needs sessions", func(c *Config) {
			c.Sessions.Enabled = false
			c.Sessions.ExternalURL = "https://app.example"
			c.Issuers = []jwks.IssuerConfig{login}
		}, "needs sessions.enabled"},
		{"login needs a redirect URL", func(c *Config) { c.Issuers = []jwks.IssuerConfig{login} }, "redirect_url: required unless sessions.external_url"},
		{"login", func(c *Config) {
			c.Sessions.ExternalURL = "https://app.example"
			c.Issuers = []jwks.IssuerConfig{login}
		}, ""},
		{"login only", func(c *Config) {
			c.UsersFile = ""
			c.Sessions.ExternalURL = "https://app.example"
			c.Issuers = []jwks.IssuerConfig{login}
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := sessionsConfig()
			tc.edit(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestResolveClientSecrets(t *testing.T) {
	c := sessionsConfig()
	c.Issuers = []jwks.IssuerConfig{
		{Issuer: "https://a.example", Login: &jwks.LoginConfig{ID: "key-cloak"}},
		{Issuer: "https://b.example", Login: &jwks.LoginConfig{ID: "jwt", PrivateKeyFile: "/k.pem"}},
	}
	if _, err := ResolveClientSecrets(&c, nil); err == nil || !strings.Contains(err.Error(), "AUTHGATE_OIDC_KEY_CLOAK_CLIENT_SECRET") {
		t.Fatalf("missing secret: %v, want an error naming the variable", err)
	}
	got, err := ResolveClientSecrets(&c, []string{"AUTHGATE_OIDC_KEY_CLOAK_CLIENT_SECRET=s3cret"})
	if err != nil || got["key-cloak"] != "s3cret" || len(got) != 1 {
		t.Fatalf("ResolveClientSecrets() = %v, %v", got, err)
	}
	f := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(f, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := ResolveClientSecrets(&c, []string{"AUTHGATE_OIDC_KEY_CLOAK_CLIENT_SECRET_FILE=" + f}); err != nil || got["key-cloak"] != "from-file" {
		t.Fatalf("from _FILE: %v, %v", got, err)
	}
	if _, err := ResolveClientSecrets(&c, []string{"AUTHGATE_OIDC_KEY_CLOAK_CLIENT_SECRET=x", "AUTHGATE_OIDC_KEY_CLOAK_CLIENT_SECRET_FILE=" + f}); err == nil {
		t.Fatal("both the variable and _FILE: no error")
	}
}
