package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// minimal is the smallest valid config; cases append to it.
const minimal = "upstream:\n  url: http://127.0.0.1:8081\npolicy_file: policy.yaml\n"

func load(t *testing.T, yaml string) (*Config, error) {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return Load(p)
}

func TestLoadMinimalTakesDefaults(t *testing.T) {
	c, err := load(t, minimal)
	if err != nil {
		t.Fatalf("Load(minimal) = %v", err)
	}
	d := Default()
	if c.Listen.Address != d.Listen.Address || c.Listen.MaxConnections != d.Listen.MaxConnections || c.JWT.AccessTTL != d.JWT.AccessTTL {
		t.Errorf("defaults not applied: %+v", c.Listen)
	}
	if !filepath.IsAbs(c.PolicyFile) || filepath.Dir(c.PolicyFile) != filepath.Dir(c.Path) {
		t.Errorf("policy_file %q not resolved against the config's directory", c.PolicyFile)
	}
}

func TestExampleConfigLoads(t *testing.T) {
	if _, err := Load(filepath.Join("..", "..", "config.example.yaml")); err != nil {
		t.Fatalf("config.example.yaml: %v", err)
	}
}

// Every rule names the file, the line of the key and the field.
func TestValidateNamesFileLineAndField(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string // each must appear in the error
	}{
		{"unknown mode", minimal + "mode: sideways\n", []string{"config.yaml:4: field mode: want proxy, forward-auth or both"}},
		{"forward-auth without trusted peers", "mode: forward-auth\npolicy_file: p.yaml\n", []string{"field forward_auth.trusted_peers: required"}},
		{"forward-auth path not canonical", "mode: forward-auth\npolicy_file: p.yaml\nforward_auth:\n  trusted_peers: [10.0.0.0/8]\n  path: /a/../b\n",
			[]string{"config.yaml:5: field forward_auth.path: want a canonical path"}},
		{"envoy prefix contains the path", "mode: forward-auth\npolicy_file: p.yaml\nforward_auth:\n  trusted_peers: [10.0.0.0/8]\n  path: /x/verify\n  envoy_prefix: /x\n",
			[]string{"field forward_auth.envoy_prefix: must not contain forward_auth.path"}},
		{"upstream in forward-auth mode", "mode: forward-auth\nforward_auth:\n  trusted_peers: [10.0.0.0/8]\n" + minimal, []string{"field upstream.url: not used in mode forward-auth"}},
		{"no upstream", "policy_file: p.yaml\n", []string{"field upstream.url: required"}},
		{"upstream scheme", "upstream:\n  url: ftp://x\npolicy_file: p.yaml\n", []string{"config.yaml:2: field upstream.url: want an http:// or https://"}},
		{"upstream with credentials", "upstream:\n  url: http://u:p@x\npolicy_file: p.yaml\n", []string{"field upstream.url: must not contain user:password"}},
		{"upstream host header", minimal + "upstream:\n  url: http://x\n  host_header: maybe\n", nil}, // duplicate key: a YAML error
		{"upstream timeouts", "upstream:\n  url: http://x\n  dial_timeout: 0s\n  max_idle_conns: 0\n  health_path: ready\npolicy_file: p.yaml\n",
			[]string{"config.yaml:3: field upstream.dial_timeout: must be positive", "config.yaml:4: field upstream.max_idle_conns: must be at least 1", "config.yaml:5: field upstream.health_path: must start with /"}},
		{"bodies on an unknown method", "upstream:\n  url: http://x\n  allow_bodies_on: [POST]\npolicy_file: p.yaml\n", []string{"config.yaml:3: field upstream.allow_bodies_on:"}},
		{"listen bounds", minimal + "listen:\n  max_connections: -1\n  max_tunnels: -2\n  body_rate_window: 1500ms\n  max_header_bytes: 100\n  endpoint_timeout: -1s\n",
			[]string{"config.yaml:5: field listen.max_connections: must not be negative", "config.yaml:6: field listen.max_tunnels", "config.yaml:7: field listen.body_rate_window: must be a whole number of seconds",
				"config.yaml:8: field listen.max_header_bytes: must be at least 4096", "config.yaml:9: field listen.endpoint_timeout: must not be negative"}},
		{"per-client bound above the total", minimal + "listen:\n  max_connections: 10\n  max_connections_per_client: 11\n", []string{"field listen.max_connections_per_client: must not exceed listen.max_connections (10)"}},
		{"request buffer too large", minimal + "listen:\n  request_buffer_bytes: 17000000\n", []string{"field listen.request_buffer_bytes: must be at most"}},
		{"half a TLS pair", minimal + "listen:\n  tls:\n    cert_file: c.pem\n", []string{"config.yaml:5: field listen.tls: set both cert_file and key_file"}},
		{"no policy", "upstream:\n  url: http://x\n", []string{"field policy_file: required"}},
		{"reload settle", minimal + "reload_settle: 2m\n", []string{"config.yaml:4: field reload_settle: must be at most 1m"}},
		{"trusted proxies", minimal + "trusted_proxies: [not-an-address]\n", []string{"config.yaml:4: field trusted_proxies:"}},
		{"jwt", minimal + "jwt:\n  leeway: 2m\n  issuer: \"\"\n  refresh_ttl: 10h\n  refresh_max_age: 1h\n  cache_size: -1\n",
			[]string{"field jwt.leeway: must be between 0s and 60s", "config.yaml:6: field jwt.issuer: required", "field jwt.refresh_max_age: must be positive and at least jwt.refresh_ttl", "field jwt.cache_size"}},
		{"logging", minimal + "logging:\n  level: loud\n  format: xml\n  allowed_sample_rate: 2\n",
			[]string{"config.yaml:5: field logging.level", "config.yaml:6: field logging.format", "config.yaml:7: field logging.allowed_sample_rate"}},
		{"auth", minimal + "auth:\n  prefix: /auth/\n  max_body_bytes: 10\n  limited_delay: 11s\n  state_timeout: 0s\n  access_revocation:\n    fail_open: true\n",
			[]string{"config.yaml:5: field auth.prefix", "field auth.max_body_bytes", "field auth.limited_delay", "field auth.state_timeout", "field auth.access_revocation.fail_open: has no effect"}},
		{"redis timeout", minimal + "redis:\n  timeout: 0s\n", []string{"config.yaml:5: field redis.timeout: must be positive"}},
		{"issuer equal to our own", minimal + "issuers:\n  - issuer: authgate\n    jwks_uri: https://idp/keys\n    audiences: [x]\n", []string{"config.yaml:5: field issuers[0].issuer: \"authgate\" is the gateway's own jwt.issuer"}},
		{"every issuer problem on its own line", minimal + "issuers:\n  - issuer: https://a\n    jwks_uri: nope\n", []string{"config.yaml:5: field issuers[0]: jwks: issuer \"https://a\": jwks_uri", "config.yaml:5: field issuers[0]: jwks: issuer \"https://a\": audiences"}},
		{"unknown key and bad value together", minimal + "listen:\n  adress: x\n  max_in_flight: -1\n", []string{"config.yaml:5: unknown key \"adress\"", "config.yaml:6: field listen.max_in_flight"}},
		{"wrong type", minimal + "listen:\n  max_in_flight: many\n", []string{"config.yaml:5:"}},
		{"indentation slip reported where it is", "policy_file: p.yaml\nupstream:\n  url: http://x\n listen:\n  address: x\n", []string{"config.yaml:4: did not find expected key"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, tc.yaml)
			if err == nil {
				t.Fatalf("Load accepted:\n%s", tc.yaml)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Load error\n%v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

func TestResolveSecrets(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte(strings.Repeat("s", 40)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("k", 40)
	tests := []struct {
		name    string
		environ []string
		want    string // error substring; empty for success
	}{
		{"missing", nil, "no signing key: set AUTHGATE_JWT_SIGNING_KEY_FILE"},
		{"short", []string{"AUTHGATE_JWT_SECRET=short"}, "is 5 bytes, need at least 32"},
		{"both forms", []string{"AUTHGATE_JWT_SECRET=" + long, "AUTHGATE_JWT_SECRET_FILE=" + secretFile}, "set AUTHGATE_JWT_SECRET or AUTHGATE_JWT_SECRET_FILE, not both"},
		{"unreadable file", []string{"AUTHGATE_JWT_SECRET_FILE=" + filepath.Join(dir, "none")}, "AUTHGATE_JWT_SECRET_FILE"},
		{"file, trailing newline trimmed", []string{"AUTHGATE_JWT_SECRET_FILE=" + secretFile}, ""},
		{"previous secrets malformed", []string{"AUTHGATE_JWT_SECRET=" + long, "AUTHGATE_JWT_PREVIOUS_SECRETS=nokid"}, "item 1: want kid=secret"},
		{"previous secret reuses the current kid", []string{"AUTHGATE_JWT_SECRET=" + long, "AUTHGATE_JWT_PREVIOUS_SECRETS=k1=" + long}, "is the current jwt.key_id"},
		{"previous secrets", []string{"AUTHGATE_JWT_SECRET=" + long, "AUTHGATE_JWT_PREVIOUS_SECRETS=k0=" + long + ",k00=" + long}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := ReadEnv(tc.environ)
			if err != nil {
				t.Fatal(err)
			}
			s, err := e.ResolveSecrets("k1")
			if tc.want == "" {
				if err != nil {
					t.Fatalf("ResolveSecrets = %v", err)
				}
				if len(s.JWT) != 40 {
					t.Errorf("secret of %d bytes, want 40 (file newline trimmed)", len(s.JWT))
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ResolveSecrets error = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), long) || strings.Contains(err.Error(), "short") && tc.name != "short" {
				t.Errorf("error %q shows secret material", err)
			}
		})
	}
}

func TestResolvePath(t *testing.T) {
	if p, err := ResolvePath("flag.yaml", Env{Config: "env.yaml"}); err != nil || p != "flag.yaml" {
		t.Errorf("ResolvePath(flag, env) = %q, %v; want the flag", p, err)
	}
	if p, err := ResolvePath("", Env{Config: "env.yaml"}); err != nil || p != "env.yaml" {
		t.Errorf("ResolvePath(\"\", env) = %q, %v; want the environment's", p, err)
	}
	if _, err := ResolvePath("", Env{}); err != ErrNoConfig {
		t.Errorf("ResolvePath(\"\", none) error = %v, want ErrNoConfig", err)
	}
}
