package jwks

import (
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestIssuerConfigValidate(t *testing.T) {
	valid := func() IssuerConfig {
		return IssuerConfig{Issuer: "https://idp.example/realms/main", Discovery: true, Audiences: []string{"api"}}
	}
	tests := []struct {
		name    string
		mod     func(*IssuerConfig)
		wantErr []string // substrings; empty means valid
	}{
		{"valid discovery", func(*IssuerConfig) {}, nil},
		{"valid jwks_uri", func(c *IssuerConfig) {
			c.Discovery = false
			c.JWKSURI = "https://idp.example/keys"
			c.Issuer = "custom-issuer"
		}, nil},
		{"loopback http", func(c *IssuerConfig) { c.Issuer = "http://127.0.0.1:8080" }, nil},
		{"missing issuer", func(c *IssuerConfig) { c.Issuer = "" }, []string{"issuer: required"}},
		{"both sources", func(c *IssuerConfig) { c.JWKSURI = "https://idp.example/keys" }, []string{"not both"}},
		{"no source", func(c *IssuerConfig) { c.Discovery = false }, []string{"set exactly one"}},
		{"plain http jwks_uri", func(c *IssuerConfig) {
			c.Discovery = false
			c.JWKSURI = "http://idp.example/keys"
		}, []string{"jwks_uri", "plain http"}},
		{"plain http discovery issuer", func(c *IssuerConfig) { c.Issuer = "http://idp.example" }, []string{"issuer:", "plain http"}},
		{"no audiences", func(c *IssuerConfig) { c.Audiences = nil }, []string{"audiences: required"}},
		{"empty audience", func(c *IssuerConfig) { c.Audiences = []string{""} }, []string{"audiences[0]"}},
		{"HS256", func(c *IssuerConfig) { c.Algorithms = []string{"RS256", "HS256"} }, []string{`algorithms[1]: "HS256" is not allowed`}},
		{"none", func(c *IssuerConfig) { c.Algorithms = []string{"none"} }, []string{`"none" is not allowed`}},
		{"unknown alg", func(c *IssuerConfig) { c.Algorithms = []string{"RS1"} }, []string{`unsupported algorithm "RS1"`}},
		{"bad roles path", func(c *IssuerConfig) { c.RolesClaim = "realm_access..roles" }, []string{"roles_claim: empty path segment"}},
		{"bad escape", func(c *IssuerConfig) { c.RolesClaim = `a\b` }, []string{"roles_claim"}},
		{"empty mapped role", func(c *IssuerConfig) { c.RoleMap = map[string][]string{"g": {""}} }, []string{`role_map["g"][0]`}},
		{"all at once", func(c *IssuerConfig) {
			c.Discovery = false
			c.Audiences = nil
			c.Algorithms = []string{"HS512"}
		}, []string{"set exactly one", "audiences: required", "algorithms[0]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.mod(&c)
			err := c.Validate()
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors containing %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
			if !strings.HasPrefix(err.Error(), "jwks: ") {
				t.Errorf("Validate() = %q, want the jwks: prefix", err)
			}
		})
	}
}

func TestSplitClaimPath(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  bool
	}{
		{"roles", []string{"roles"}, false},
		{"realm_access.roles", []string{"realm_access", "roles"}, false},
		{`resource_access.my\.app.roles`, []string{"resource_access", "my.app", "roles"}, false},
		{`a\\.b`, []string{`a\`, "b"}, false},
		{"", nil, true},
		{".roles", nil, true},
		{"roles.", nil, true},
		{`roles\`, nil, true},
	}
	for _, tt := range tests {
		got, err := splitClaimPath(tt.in)
		if (err != nil) != tt.err || strings.Join(got, "|") != strings.Join(tt.want, "|") {
			t.Errorf("splitClaimPath(%q) = %q, %v; want %q, err=%v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

type fileConfig struct {
	Issuers []IssuerConfig `yaml:"issuers"`
	JWKS    CacheConfig    `yaml:"jwks"`
}

func decodeStrict(t *testing.T, src string) (fileConfig, error) {
	t.Helper()
	var fc fileConfig
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	err := dec.Decode(&fc)
	return fc, err
}

func TestYAMLDecoding(t *testing.T) {
	t.Run("defaults kept and durations parsed", func(t *testing.T) {
		fc, err := decodeStrict(t, `
issuers:
  - issuer: https://idp.example
    discovery: true
    audiences: [api]
    algorithms: [RS256, ES256]
    roles_claim: realm_access.roles
    role_map:
      /eng: [dev]
jwks:
  min_refresh: 10m
  leeway: 0s
  token_cache_size: 0
`)
		if err != nil {
			t.Fatalf("Decode() error = %v", err)
		}
		want := DefaultCacheConfig()
		want.MinRefresh = 10 * time.Minute
		want.Leeway = 0
		want.TokenCacheSize = 0
		if fc.JWKS != want {
			t.Errorf("jwks = %+v, want %+v", fc.JWKS, want)
		}
		if err := fc.Issuers[0].Validate(); err != nil {
			t.Errorf("Validate() = %v", err)
		}
		if got := fc.Issuers[0].RoleMap["/eng"]; len(got) != 1 || got[0] != "dev" {
			t.Errorf("role_map = %v", fc.Issuers[0].RoleMap)
		}
	})
	t.Run("unknown key in issuer rejected", func(t *testing.T) {
		if _, err := decodeStrict(t, "issuers:\n  - issuer: x\n    audience: [api]\n"); err == nil {
			t.Fatal("Decode(audience typo) error = nil, want unknown field error")
		}
	})
	t.Run("unknown key in jwks rejected", func(t *testing.T) {
		if _, err := decodeStrict(t, "jwks:\n  max_refersh: 1h\n"); err == nil {
			t.Fatal("Decode(max_refersh typo) error = nil, want unknown field error")
		}
	})
	t.Run("bad duration rejected", func(t *testing.T) {
		if _, err := decodeStrict(t, "jwks:\n  leeway: soon\n"); err == nil {
			t.Fatal("Decode(leeway: soon) error = nil, want error")
		}
	})
}

func TestCacheConfigValidate(t *testing.T) {
	c := CacheConfig{Leeway: -time.Second, TokenCacheSize: -1, MinRefresh: 2 * time.Hour, MaxRefresh: time.Hour}
	err := c.Validate()
	for _, w := range []string{"leeway", "token_cache_size", "min_refresh: must not exceed max_refresh"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("Validate() = %v, want it to mention %q", err, w)
		}
	}
	if err := (&CacheConfig{}).Validate(); err != nil {
		t.Errorf("zero CacheConfig Validate() = %v, want nil", err)
	}
	if got := (CacheConfig{}).withDefaults(); got.MaxStale != 24*time.Hour || got.Leeway != 0 || got.TokenCacheSize != 0 {
		t.Errorf("zero withDefaults() = %+v", got)
	}
}
