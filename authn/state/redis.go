package state

import (
	"context"
	"crypto/tls"
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

// RedisOptions configures NewRedis. Exactly one of URL, Sentinel and
// Cluster selects the topology.
type RedisOptions struct {
	// URL is redis://[user:password@]host:port/db or rediss:// for TLS: one
	// node.
	URL string
	// Sentinel selects the primary that Redis Sentinel manages.
	Sentinel RedisSentinel
	// Cluster selects a Redis Cluster.
	Cluster RedisCluster
	// Password, if set, is the data nodes' password; for a URL it
	// overrides the URL's. It is meant to come from a secret file rather
	// than the URL.
	Password string
	// Username, DB and TLS apply to the data nodes of Sentinel and
	// Cluster (a URL carries its own). A cluster has only database 0. TLS
	// nil means plain TCP; with Sentinel it applies to the sentinels too.
	Username string
	DB       int
	TLS      *tls.Config
	// WaitReplicas, if positive, makes every write that a credential's
	// fate depends on (refresh-token families, revocations, not-before
	// records) wait until that many replicas have it (Redis WAIT, for up
	// to a quarter of Timeout); a write they do not confirm is reported as
	// ErrUnavailable. Limiter writes do not wait. Zero: writes are
	// acknowledged by the primary alone, and a failover can lose the
	// last ones (asynchronous replication).
	WaitReplicas int
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
	client  redis.UniversalClient
	dialer  *redisDialer
	prefix  string
	timeout time.Duration
	now     func() time.Time // nil: server clock for the limiter

	topo         *topology
	legacy       bool          // read the previous release's untagged keys (not on Cluster)
	waitReplicas int           // see RedisOptions.WaitReplicas
	waitTimeout  time.Duration // WAIT's own timeout
	settleAfter  time.Duration // see rotateSrc

	scripts        redisScripts // the limiter's
	startScript    *redis.Script
	rotateScript   *redis.Script
	settleScript   *redis.Script
	revokeScript   *redis.Script
	raiseScript    *redis.Script
	sessionScripts sessionScripts

	closeOnce sync.Once
	closeErr  error
}

var _ Store = (*Redis)(nil)

// luaFamily selects a family script's record: KEYS[1], or the previous
// release's untagged name KEYS[2] (passed only off Cluster) when only that
// one exists, so a family started before an upgrade lives out its life
// where replicas of both releases see it. revoked is true when either
// name is revoked: a logout handled by a replica of the previous release
// during a rolling upgrade writes the untagged name.
const luaFamily = `
local k = KEYS[1]
local revoked = false
if #KEYS > 1 then
  if redis.call('EXISTS', k) == 0 and redis.call('EXISTS', KEYS[2]) == 1 then k = KEYS[2] end
  revoked = redis.call('HEXISTS', KEYS[2], 'rev') == 1
end
revoked = revoked or redis.call('HEXISTS', k, 'rev') == 1
`

// startSrc creates a family unless it exists (under either name).
// KEYS as luaFamily; ARGV[1] jti; ARGV[2] expiry in unix ms. Returns 0 or
// 1 (exists).
const startSrc = `
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then return 1 end
end
redis.call('HSET', KEYS[1], 'cur', ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 0
`

// rotateSrc rotates a family's current token. A rotation is pending
// ("lost" names its new token, "lat" its instant) until settleSrc confirms
// that the gateway that made it got the answer and may hand the new token
// out. While it is pending, the superseded token ("prev") is not yet
// reuse: if the answer was lost (a failover, a timeout), the client got a
// 503, still holds that token, and retries with it. After settleAfter a
// retry rotates anew; before, it is answered "pending", which gives the
// gateway that made the rotation time to settle it. A settled rotation
// makes the superseded token reuse, as without this step.
//
// KEYS as luaFamily; ARGV[1] now in µs or "" for the server clock; ARGV[2]
// old jti; ARGV[3] new jti; ARGV[4] expiry in unix ms; ARGV[5]
// settleAfter in µs. Returns 0 rotated (pending), 1 reuse (family now
// revoked), 2 revoked/unknown, 3 pending (retry later).
const rotateSrc = luaNow + luaFamily + `
if revoked then return 2 end
local f = redis.call('HMGET', k, 'cur', 'prev', 'lost', 'lat')
local cur = f[1]
if not cur then return 2 end
local function rotate()
  redis.call('HSET', k, 'cur', ARGV[3], 'prev', ARGV[2], 'lost', ARGV[3], 'lat', string.format('%.0f', now))
  redis.call('PEXPIREAT', k, ARGV[4])
  return 0
end
if cur == ARGV[2] then return rotate() end
if f[2] == ARGV[2] and f[3] == cur then
  if now - (tonumber(f[4]) or 0) >= tonumber(ARGV[5]) then return rotate() end
  return 3
end
redis.call('HSET', k, 'rev', '1')
return 1
`

// settleSrc confirms the rotation to ARGV[1] (see rotateSrc). Returns 0
// settled (or already), 1 superseded (a retry rotated the family again
// meanwhile: the new token must not be handed out), 2 revoked.
const settleSrc = luaFamily + `
if revoked then return 2 end
local f = redis.call('HMGET', k, 'cur', 'lost')
if f[1] ~= ARGV[1] then return 1 end
if f[2] == ARGV[1] then redis.call('HDEL', k, 'lost', 'lat') end
return 0
`

// revokeFamilySrc marks a family revoked and extends (never shortens) its
// expiry to ARGV[1] (unix ms). KEYS as luaFamily.
const revokeFamilySrc = luaFamily + `
redis.call('HSET', k, 'rev', '1')
local exp = tonumber(ARGV[1])
local pttl = redis.call('PTTL', k)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if pttl < 0 or now + pttl < exp then
  redis.call('PEXPIREAT', k, ARGV[1])
end
return 0
`

// NewRedis connects to Redis and checks that it answers. The password never
// appears in errors.
func NewRedis(ctx context.Context, o RedisOptions) (*Redis, error) {
	kind, err := o.kind()
	if err != nil {
		return nil, err
	}
	if o.Timeout < 0 {
		return nil, fmt.Errorf("state: redis timeout must not be negative, got %s", o.Timeout)
	}
	opt, err := o.nodeOptions(kind)
	if err != nil {
		return nil, err
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
	dialer := newRedisDialer(timeout, opt.TLSConfig, redisPoolSize, kind == TopologySingle)
	opt.Dialer = dialer.dial
	opt.DialTimeout = redisDialBudget
	opt.ReadTimeout = timeout
	opt.WriteTimeout = timeout
	opt.PoolTimeout = timeout
	opt.ContextTimeoutEnabled = true
	opt.PoolSize = redisPoolSize
	opt.DialerRetries = 1
	// No automatic retries: a script whose reply was lost may have run, and
	// running it twice charges a limiter twice (a rotation run twice is
	// only answered "pending", see rotateSrc). A broken connection is
	// dropped from the pool, so the next operation dials afresh. (A
	// cluster client still follows MOVED and ASK redirects, which the
	// node answers without running the command.)
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
	topo := &topology{kind: kind, now: time.Now}
	r := &Redis{
		client:       newClient(kind, opt, o, topo),
		dialer:       dialer,
		prefix:       prefix,
		timeout:      timeout,
		now:          o.Now,
		topo:         topo,
		legacy:       kind != TopologyCluster,
		waitReplicas: o.WaitReplicas,
		// Redis ends a WAIT that timed out only at its next cron tick (100
		// ms at the default hz 10), so WAIT gets a quarter of the budget.
		waitTimeout:    max(timeout/4, time.Millisecond),
		settleAfter:    max(time.Second, 4*timeout),
		scripts:        newRedisScripts(),
		startScript:    redis.NewScript(startSrc),
		rotateScript:   redis.NewScript(rotateSrc),
		settleScript:   redis.NewScript(settleSrc),
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
	cmd, err := r.runDurable(ctx, r.startScript, r.familyKeys(fam), jti, exp.UnixMilli())
	if err != nil {
		return unavailable("start family", err)
	}
	n, err := cmd.Int64()
	if err != nil {
		return unavailable("start family", err)
	}
	if n != 0 {
		return fmt.Errorf("state: start family %q: already exists", fam)
	}
	return nil
}

// Errors behind an ErrUnavailable from Rotate on a healthy store.
var (
	// errRotationPending: the presented token was superseded by a
	// rotation that is not settled yet (see rotateSrc).
	errRotationPending = errors.New("rotation of this token pending")
	// errRotationSuperseded: while this rotation waited to be settled, a
	// retry with the same token rotated the family again.
	errRotationSuperseded = errors.New("rotation superseded by a retry")
)

// Rotate implements Store, in two steps so that a rotation whose answer is
// lost is never judged reuse. The first step rotates and marks the rotation
// pending; the second settles it. A token is handed out (nil) only once the
// first step's answer came back; until the rotation is settled, the old
// token is accepted again as the retry of a lost answer (see rotateSrc).
// A failed first step is ErrUnavailable: the client keeps its token and
// retries. A failed second step still returns nil: the rotation happened,
// and the pending mark only keeps the old token usable as well until the
// new one is used, so reuse detection is delayed, never lost.
func (r *Redis) Rotate(ctx context.Context, fam, oldJTI, newJTI string, exp time.Time) error {
	if fam == "" || oldJTI == "" || newJTI == "" {
		return errors.New("state: rotate: empty id")
	}
	keys := r.familyKeys(fam)
	octx, cancel := r.op(ctx)
	cmd, err := r.runDurable(octx, r.rotateScript, keys, r.nowArg(), oldJTI, newJTI, exp.UnixMilli(), micros(r.settleAfter))
	cancel()
	if err != nil {
		return unavailable("rotate", err)
	}
	n, err := cmd.Int64()
	if err != nil {
		return unavailable("rotate", err)
	}
	switch n {
	case 0:
	case 1:
		// Refresh-token replay: the script revoked the whole family in the
		// same step (OAuth 2.0 Security BCP, refresh token rotation).
		return ErrReuse
	case 3:
		return unavailable("rotate", errRotationPending)
	default:
		return ErrRevoked
	}
	octx, cancel = r.op(ctx)
	defer cancel()
	settled, err := r.settleScript.Run(octx, r.client, keys, newJTI).Int64()
	switch {
	case err != nil:
		return nil
	case settled == 1:
		return unavailable("rotate", errRotationSuperseded)
	case settled == 2:
		return ErrRevoked
	}
	return nil
}

// RevokeFamily implements Store. A revocation is never shortened: the family
// stays revoked until the later of its expiry and exp.
func (r *Redis) RevokeFamily(ctx context.Context, fam string, exp time.Time) error {
	if fam == "" {
		return errors.New("state: revoke family: empty id")
	}
	ctx, cancel := r.op(ctx)
	defer cancel()
	if _, err := r.runDurable(ctx, r.revokeScript, r.familyKeys(fam), exp.UnixMilli()); err != nil {
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
	key := r.revokedKey(jti)
	if _, err := durable(ctx, r, key, func(ctx context.Context, c redis.Cmdable) *redis.StatusCmd {
		return c.Set(ctx, key, "1", ttl)
	}); err != nil {
		return unavailable("revoke", err)
	}
	return nil
}

// IsRevoked implements Store.
func (r *Redis) IsRevoked(ctx context.Context, jti string) (bool, error) {
	ctx, cancel := r.op(ctx)
	defer cancel()
	pipe := r.client.Pipeline()
	var hits []*redis.IntCmd
	for _, key := range r.withLegacy(r.revokedKey(jti), kindRevoked, jti) {
		hits = append(hits, pipe.Exists(ctx, key))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return false, unavailable("is revoked", err)
	}
	for _, h := range hits {
		if h.Val() > 0 {
			return true, nil
		}
	}
	return false, nil
}

// Ping implements Store: the primary answers, or on a cluster every
// primary does.
func (r *Redis) Ping(ctx context.Context) error {
	ctx, cancel := r.op(ctx)
	defer cancel()
	if err := r.probe(ctx); err != nil {
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

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
