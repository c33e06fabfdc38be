package state

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Defaults for RedisOptions.
const (
	// DefaultKeyPrefix prefixes every key the Redis store writes.
	DefaultKeyPrefix = "authgate:"
	// DefaultRedisTimeout bounds each Redis operation.
	DefaultRedisTimeout = 250 * time.Millisecond
	// redisPoolSize is the number of connections per replica. Every
	// operation is a single short round trip, so a small pool suffices and
	// keeps many replicas from exhausting the server's connection limit.
	redisPoolSize = 16
)

// RedisOptions configures NewRedis. URL is required.
type RedisOptions struct {
	// URL is redis://[user:password@]host:port/db or rediss:// for TLS.
	URL string
	// Password, if set, overrides the URL's password. It is meant to come
	// from a secret file rather than the URL.
	Password string
	// KeyPrefix prefixes every key. If empty, DefaultKeyPrefix.
	KeyPrefix string
	// Timeout bounds each operation (dial, write, read and pool wait). If
	// zero, DefaultRedisTimeout.
	Timeout time.Duration
	// RootCAs verifies a rediss:// server; nil means the system roots.
	RootCAs *x509.CertPool
	// Now is the clock used for limiter instants and token expiry. If nil,
	// the limiter uses the Redis server's clock (one clock for all
	// replicas) and expiries use time.Now. Setting it makes the limiter
	// deterministic in tests; in production every replica's clock must then
	// be synchronized, since a skew of d grants up to d/Every extra tokens.
	Now func() time.Time
}

// Redis is the Store shared by every replica. Create it with NewRedis; the
// zero value is not usable. It is safe for concurrent use.
//
// Every check-and-set is a single Lua script, so concurrent replicas never
// race, and every key it writes expires no later than the token or limiter
// window it serves.
type Redis struct {
	client  *redis.Client
	dialer  *redisDialer
	prefix  string
	timeout time.Duration
	now     func() time.Time // nil: server clock for the limiter

	scripts        redisScripts // the limiter's
	startScript    *redis.Script
	rotateScript   *redis.Script
	revokeScript   *redis.Script
	raiseScript    *redis.Script
	sessionScripts sessionScripts

	closeOnce sync.Once
	closeErr  error
}

var _ Store = (*Redis)(nil)

// startSrc creates a family unless it exists.
// KEYS[1] family; ARGV[1] jti; ARGV[2] expiry in unix ms. Returns 0 or 1
// (exists).
const startSrc = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
redis.call('HSET', KEYS[1], 'cur', ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 0
`

// rotateSrc rotates a family's current token.
// KEYS[1] family; ARGV[1] old jti; ARGV[2] new jti; ARGV[3] expiry in unix
// ms. Returns 0 rotated, 1 reuse (family now revoked), 2 revoked/unknown.
const rotateSrc = `
if redis.call('HEXISTS', KEYS[1], 'rev') == 1 then return 2 end
local cur = redis.call('HGET', KEYS[1], 'cur')
if not cur then return 2 end
if cur ~= ARGV[1] then
  redis.call('HSET', KEYS[1], 'rev', '1')
  return 1
end
redis.call('HSET', KEYS[1], 'cur', ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return 0
`

// revokeFamilySrc marks a family revoked and extends (never shortens) its
// expiry to ARGV[1] (unix ms).
const revokeFamilySrc = `
redis.call('HSET', KEYS[1], 'rev', '1')
local exp = tonumber(ARGV[1])
local pttl = redis.call('PTTL', KEYS[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if pttl < 0 or now + pttl < exp then
  redis.call('PEXPIREAT', KEYS[1], ARGV[1])
end
return 0
`

// NewRedis connects to Redis and checks that it answers. The password never
// appears in errors.
func NewRedis(ctx context.Context, o RedisOptions) (*Redis, error) {
	if o.URL == "" {
		return nil, errors.New("state: redis url is required")
	}
	if o.Timeout < 0 {
		return nil, fmt.Errorf("state: redis timeout must not be negative, got %s", o.Timeout)
	}
	opt, err := redis.ParseURL(o.URL)
	if err != nil {
		// The parse error is not included: it may quote the URL, which
		// can carry a password.
		return nil, errors.New("state: redis url is invalid")
	}
	if o.Password != "" {
		opt.Password = o.Password
	}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = DefaultRedisTimeout
	}
	// The dialer bounds each dial by timeout and brings the pool back
	// within redisProbeInterval of Redis returning (see redisDialer).
	if opt.TLSConfig != nil && o.RootCAs != nil {
		opt.TLSConfig.RootCAs = o.RootCAs
	}
	dialer := newRedisDialer(timeout, opt.TLSConfig, redisPoolSize)
	opt.Dialer = dialer.dial
	opt.DialTimeout = redisDialBudget
	opt.ReadTimeout = timeout
	opt.WriteTimeout = timeout
	opt.PoolTimeout = timeout
	opt.ContextTimeoutEnabled = true
	opt.PoolSize = redisPoolSize
	opt.DialerRetries = 1
	// No automatic retries: a script whose reply was lost may have run, and
	// running Rotate twice would report a false reuse. A broken connection
	// is dropped from the pool, so the next operation dials afresh.
	opt.MaxRetries = -1
	opt.DisableIdentity = true
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}

	prefix := o.KeyPrefix
	if prefix == "" {
		prefix = DefaultKeyPrefix
	}
	if strings.ContainsAny(prefix, "{}") {
		// A brace in the prefix would become every key's Redis Cluster
		// hash tag, or break the tags that keep each script in one slot.
		return nil, errors.New("state: redis key prefix must not contain '{' or '}'")
	}
	r := &Redis{
		client:         redis.NewClient(opt),
		dialer:         dialer,
		prefix:         prefix,
		timeout:        timeout,
		now:            o.Now,
		scripts:        newRedisScripts(),
		startScript:    redis.NewScript(startSrc),
		rotateScript:   redis.NewScript(rotateSrc),
		revokeScript:   redis.NewScript(revokeFamilySrc),
		raiseScript:    redis.NewScript(raiseNotBeforeSrc),
		sessionScripts: newSessionScripts(),
	}
	// Each PING is bounded by the per-command timeout. A PING that timed
	// out is retried (a few times, within ctx) so a slow first answer on a
	// loaded host does not fail startup; refusals and auth errors fail at
	// once. PING changes nothing, so retrying is safe.
	for attempt := 1; ; attempt++ {
		err := r.Ping(ctx)
		if err == nil {
			return r, nil
		}
		if !errors.Is(err, context.DeadlineExceeded) && !isTimeout(err) || attempt >= 10 {
			_ = r.Close()
			return nil, err
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			_ = r.Close()
			return nil, err
		case <-t.C:
		}
	}
}

// clock returns the current time by the injected clock or time.Now.
func (r *Redis) clock() time.Time {
	if r.now != nil {
		return r.now()
	}
	return time.Now()
}

// op bounds ctx by the per-operation timeout.
func (r *Redis) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.timeout)
}

// StartFamily implements Store. Starting a family id that already exists is
// an error, so that a collision can never revive a revoked family.
func (r *Redis) StartFamily(ctx context.Context, fam, jti string, exp time.Time) error {
	if fam == "" || jti == "" {
		return errors.New("state: start family: empty id")
	}
	ctx, cancel := r.op(ctx)
	defer cancel()
	n, err := r.startScript.Run(ctx, r.client, []string{r.familyKey(fam)}, jti, exp.UnixMilli()).Int64()
	if err != nil {
		return unavailable("start family", err)
	}
	if n != 0 {
		return fmt.Errorf("state: start family %q: already exists", fam)
	}
	return nil
}

// Rotate implements Store.
func (r *Redis) Rotate(ctx context.Context, fam, oldJTI, newJTI string, exp time.Time) error {
	if fam == "" || oldJTI == "" || newJTI == "" {
		return errors.New("state: rotate: empty id")
	}
	ctx, cancel := r.op(ctx)
	defer cancel()
	n, err := r.rotateScript.Run(ctx, r.client, []string{r.familyKey(fam)},
		oldJTI, newJTI, exp.UnixMilli()).Int64()
	if err != nil {
		return unavailable("rotate", err)
	}
	switch n {
	case 0:
		return nil
	case 1:
		// Refresh-token replay: the script revoked the whole family in the
		// same step (OAuth 2.0 Security BCP, refresh token rotation).
		return ErrReuse
	default:
		return ErrRevoked
	}
}

// RevokeFamily implements Store. A revocation is never shortened: the family
// stays revoked until the later of its expiry and exp.
func (r *Redis) RevokeFamily(ctx context.Context, fam string, exp time.Time) error {
	if fam == "" {
		return errors.New("state: revoke family: empty id")
	}
	ctx, cancel := r.op(ctx)
	defer cancel()
	if err := r.revokeScript.Run(ctx, r.client, []string{r.familyKey(fam)}, exp.UnixMilli()).Err(); err != nil {
		return unavailable("revoke family", err)
	}
	return nil
}

// Revoke implements Store.
func (r *Redis) Revoke(ctx context.Context, jti string, exp time.Time) error {
	if jti == "" {
		return errors.New("state: revoke: empty id")
	}
	ttl := exp.Sub(r.clock())
	if ttl <= 0 {
		// The token has expired already; it is rejected without a list
		// entry.
		return nil
	}
	if ttl < time.Millisecond {
		ttl = time.Millisecond
	}
	ctx, cancel := r.op(ctx)
	defer cancel()
	if err := r.client.Set(ctx, r.prefix+"rev:"+boundKey(jti), "1", ttl).Err(); err != nil {
		return unavailable("revoke", err)
	}
	return nil
}

// IsRevoked implements Store.
func (r *Redis) IsRevoked(ctx context.Context, jti string) (bool, error) {
	ctx, cancel := r.op(ctx)
	defer cancel()
	n, err := r.client.Exists(ctx, r.prefix+"rev:"+boundKey(jti)).Result()
	if err != nil {
		return false, unavailable("is revoked", err)
	}
	return n > 0, nil
}

// Ping implements Store.
func (r *Redis) Ping(ctx context.Context) error {
	ctx, cancel := r.op(ctx)
	defer cancel()
	if err := r.client.Ping(ctx).Err(); err != nil {
		return unavailable("ping", err)
	}
	return nil
}

// Close implements Store. It is idempotent.
func (r *Redis) Close() error {
	r.closeOnce.Do(func() {
		r.dialer.close()
		if err := r.client.Close(); err != nil {
			r.closeErr = fmt.Errorf("state: close redis: %w", err)
		}
	})
	return r.closeErr
}

// familyKey is the key of a refresh-token family.
func (r *Redis) familyKey(fam string) string { return r.prefix + "fam:" + boundKey(fam) }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
