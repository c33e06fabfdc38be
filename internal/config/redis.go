package config

import (
	"errors"
	"fmt"
	"net"

	"github.com/authgate/authgate/authn/state"
)

// RedisSentinelConfig selects a primary managed by Redis Sentinel. Its
// password comes from AUTHGATE_REDIS_SENTINEL_PASSWORD(_FILE); the data
// nodes' from AUTHGATE_REDIS_PASSWORD(_FILE).
type RedisSentinelConfig struct {
	MasterName string   `yaml:"master_name"`
	Addresses  []string `yaml:"addresses"`
	Username   string   `yaml:"username"`
}

// RedisClusterConfig selects a Redis Cluster by seed addresses.
type RedisClusterConfig struct {
	Addresses []string `yaml:"addresses"`
}

// UsesRedis reports whether the shared state lives in Redis: a URL in the
// environment, or a Sentinel or Cluster in the file.
func (c *Config) UsesRedis(s Secrets) bool {
	return s.RedisURL != "" || c.Redis.sentinel() || c.Redis.cluster()
}

func (c RedisConfig) sentinel() bool {
	return c.Sentinel.MasterName != "" || len(c.Sentinel.Addresses) > 0
}

func (c RedisConfig) cluster() bool { return len(c.Cluster.Addresses) > 0 }

// validate reports the redis section's errors through bad.
func (c RedisConfig) validate(bad func(field, format string, a ...any)) {
	if c.Timeout <= 0 {
		bad("redis.timeout", "must be positive")
	}
	if c.sentinel() && c.cluster() {
		bad("redis.sentinel", "set redis.sentinel or redis.cluster, not both")
	}
	if c.sentinel() {
		if c.Sentinel.MasterName == "" {
			bad("redis.sentinel.master_name", "required with redis.sentinel.addresses")
		}
		if len(c.Sentinel.Addresses) == 0 {
			bad("redis.sentinel.addresses", "required with redis.sentinel.master_name: the sentinels' host:port")
		}
	}
	for i, a := range c.Sentinel.Addresses {
		if !hostPort(a) {
			bad(fmt.Sprintf("redis.sentinel.addresses[%d]", i), "want host:port, got %q", a)
		}
	}
	for i, a := range c.Cluster.Addresses {
		if !hostPort(a) {
			bad(fmt.Sprintf("redis.cluster.addresses[%d]", i), "want host:port, got %q", a)
		}
	}
	if !c.sentinel() && !c.cluster() {
		// One node takes these from AUTHGATE_REDIS_URL; silently ignoring
		// them would hide a half-done migration.
		for _, f := range []struct {
			field string
			set   bool
		}{{"redis.username", c.Username != ""}, {"redis.db", c.DB != 0}, {"redis.tls", c.TLS}} {
			if f.set {
				bad(f.field, "applies to redis.sentinel and redis.cluster only; for one node put it in AUTHGATE_REDIS_URL")
			}
		}
	}
	if c.Sentinel.Username != "" && !c.sentinel() {
		bad("redis.sentinel.username", "has no effect without redis.sentinel")
	}
	if c.cluster() && c.DB != 0 {
		bad("redis.db", "a cluster has only database 0")
	}
	if c.DB < 0 {
		bad("redis.db", "must not be negative")
	}
	if c.WaitReplicas < 0 || c.WaitReplicas > state.MaxWaitReplicas {
		bad("redis.wait_replicas", "must be between 0 and %d", state.MaxWaitReplicas)
	}
}

// hostPort reports whether a is host:port with both parts set.
func hostPort(a string) bool {
	host, port, err := net.SplitHostPort(a)
	return err == nil && host != "" && port != ""
}

// CheckRedis reports a Redis setup split between the environment and the
// file: AUTHGATE_REDIS_URL together with redis.sentinel or redis.cluster,
// or a sentinel password without a sentinel.
func (c *Config) CheckRedis(s Secrets) error {
	var errs []error
	if s.RedisURL != "" && (c.Redis.sentinel() || c.Redis.cluster()) {
		errs = append(errs, fmt.Errorf("%s: AUTHGATE_REDIS_URL is set and so is redis.sentinel or redis.cluster: choose one", c.Path))
	}
	if s.RedisSentinelPass != "" && !c.Redis.sentinel() {
		errs = append(errs, errors.New("env: AUTHGATE_REDIS_SENTINEL_PASSWORD is set but redis.sentinel is not"))
	}
	return errors.Join(errs...)
}
