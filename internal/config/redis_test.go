package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// loadRedis loads a config whose redis section is section (YAML, indented
// under "redis:").
func loadRedis(t *testing.T, section string) (*Config, error) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte("rules: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "config.yaml")
	text := "policy_file: policy.yaml\nupstream:\n  url: http://127.0.0.1:1\nredis:\n" + section
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return Load(path)
}

func TestRedisConfig(t *testing.T) {
	tests := []struct {
		name    string
		section string
		wantErr []string // substrings of the error; none means valid
	}{
		{"defaults", "  timeout: 250ms\n", nil},
		{"sentinel", "  sentinel:\n    master_name: mymaster\n    addresses: [s0:26379, s1:26379, s2:26379]\n    username: watcher\n  db: 2\n  tls: true\n  username: gate\n  wait_replicas: 1\n", nil},
		{"cluster", "  cluster:\n    addresses: [n0:6379, n1:6379]\n  tls: true\n", nil},
		{"sentinel without addresses", "  sentinel:\n    master_name: mymaster\n", []string{"field redis.sentinel.addresses: required"}},
		{"sentinel without name", "  sentinel:\n    addresses: [s0:26379]\n", []string{"field redis.sentinel.master_name: required"}},
		{"both", "  sentinel:\n    master_name: m\n    addresses: [s0:26379]\n  cluster:\n    addresses: [n0:6379]\n", []string{"not both"}},
		{"bad address", "  cluster:\n    addresses: [n0]\n", []string{`field redis.cluster.addresses[0]: want host:port, got "n0"`}},
		{"cluster db", "  cluster:\n    addresses: [n0:6379]\n  db: 1\n", []string{"field redis.db: a cluster has only database 0"}},
		{"url settings in the file", "  username: u\n  db: 1\n  tls: true\n", []string{"field redis.username: applies to", "field redis.db: applies to", "field redis.tls: applies to"}},
		{"sentinel username alone", "  sentinel:\n    username: u\n", []string{"field redis.sentinel.username: has no effect without redis.sentinel"}},
		{"wait replicas", "  cluster:\n    addresses: [n0:6379]\n  wait_replicas: 99\n", []string{"field redis.wait_replicas"}},
		{"unknown key", "  sentinels:\n    master_name: m\n", []string{"sentinels"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadRedis(t, tt.section)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Load() error = %v", err)
				}
				if !cfg.UsesRedis(Secrets{}) && (cfg.Redis.sentinel() || cfg.Redis.cluster()) {
					t.Error("UsesRedis() = false with a sentinel or cluster")
				}
				return
			}
			if err == nil {
				t.Fatalf("Load() error = nil, want %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Load() error = %v, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestRedisSecrets(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "sentinel-password")
	if err := os.WriteFile(file, []byte("sentinel-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	jwt := "AUTHGATE_JWT_SECRET=" + strings.Repeat("k", 32)
	e, err := ReadEnv([]string{jwt, "AUTHGATE_REDIS_SENTINEL_PASSWORD_FILE=" + file, "AUTHGATE_REDIS_PASSWORD=data-secret"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := e.ResolveSecrets("k1")
	if err != nil || s.RedisSentinelPass != "sentinel-secret" || s.RedisPass != "data-secret" {
		t.Fatalf("ResolveSecrets() = %q, %q, %v; want the sentinel password from its file", s.RedisSentinelPass, s.RedisPass, err)
	}
	e, _ = ReadEnv([]string{jwt, "AUTHGATE_REDIS_SENTINEL_PASSWORD_FILE=" + file, "AUTHGATE_REDIS_SENTINEL_PASSWORD=x"})
	if _, err := e.ResolveSecrets("k1"); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("both sentinel password variables: error = %v, want not both", err)
	}

	sentinel, err := loadRedis(t, "  sentinel:\n    master_name: m\n    addresses: [s0:26379]\n")
	if err != nil {
		t.Fatal(err)
	}
	single, err := loadRedis(t, "  timeout: 1s\n")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     *Config
		sec     Secrets
		uses    bool
		wantErr string
	}{
		{"embedded", single, Secrets{}, false, ""},
		{"url", single, Secrets{RedisURL: "redis://r:6379"}, true, ""},
		{"sentinel", sentinel, Secrets{RedisSentinelPass: "p"}, true, ""},
		{"url and sentinel", sentinel, Secrets{RedisURL: "redis://r:6379"}, true, "choose one"},
		{"sentinel password without sentinel", single, Secrets{RedisURL: "redis://r:6379", RedisSentinelPass: "p"}, true, "AUTHGATE_REDIS_SENTINEL_PASSWORD is set but redis.sentinel is not"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.cfg.UsesRedis(tt.sec); got != tt.uses {
				t.Errorf("UsesRedis() = %v, want %v", got, tt.uses)
			}
			err := tt.cfg.CheckRedis(tt.sec)
			if (err == nil) != (tt.wantErr == "") || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("CheckRedis() = %v, want %q", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "redis://") {
				t.Errorf("CheckRedis() error %q quotes the URL, which may hold a password", err)
			}
		})
	}
}
