package state

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authgate/authgate/authn/state/statetest"
)

// faultHook is a go-redis hook that breaks chosen script calls: lose runs
// the call and then loses its reply, as a failover or a timeout right
// after the script ran does; drop fails the call without sending it;
// before runs first. Each rule fires once.
type faultHook struct {
	mu     sync.Mutex
	lose   map[string]bool // script sha -> lose the next reply
	drop   map[string]bool // script sha -> fail the next call unsent
	before map[string]func()
}

func newFaultHook() *faultHook {
	return &faultHook{lose: map[string]bool{}, drop: map[string]bool{}, before: map[string]func(){}}
}

var errLostReply = errors.New("test: reply lost")

// script returns the SHA-1 of the script cmd runs, or "".
func script(cmd redis.Cmder) string {
	args := cmd.Args()
	if len(args) < 2 {
		return ""
	}
	switch fmt.Sprint(args[0]) {
	case "evalsha":
		return fmt.Sprint(args[1])
	case "eval":
		return redis.NewScript(fmt.Sprint(args[1])).Hash()
	}
	return ""
}

func (h *faultHook) take(sha string) (lose, drop bool, before func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	lose, drop, before = h.lose[sha], h.drop[sha], h.before[sha]
	delete(h.drop, sha)
	delete(h.before, sha)
	return lose, drop, before
}

func (h *faultHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *faultHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		sha := script(cmd)
		if sha == "" {
			return next(ctx, cmd)
		}
		lose, drop, before := h.take(sha)
		if before != nil {
			before()
		}
		if drop {
			cmd.SetErr(errLostReply)
			return errLostReply
		}
		err := next(ctx, cmd)
		if lose && err == nil {
			// Only a call that ran loses its reply; a NOSCRIPT is
			// followed by the EVAL that runs.
			h.mu.Lock()
			delete(h.lose, sha)
			h.mu.Unlock()
			cmd.SetErr(errLostReply)
			return errLostReply
		}
		return err
	}
}
func (h *faultHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestRedisRotationLostAnswer checks that a rotation whose answer never
// reached the gateway (so the client was answered 503 and still holds its
// token) is never judged reuse, and that no two callers get a new token
// from one old one.
func TestRedisRotationLostAnswer(t *testing.T) {
	srv := statetest.StartServer(t)
	ctx := context.Background()
	var n int
	open := func(t *testing.T) (a, b *Redis, hook *faultHook, clk *statetest.Clock, exp time.Time) {
		n++
		clk = statetest.NewClock(t0())
		prefix := fmt.Sprintf("lost%d:", n)
		a, b = newRedis(t, srv.URL(0), prefix, clk.Now), newRedis(t, srv.URL(0), prefix, clk.Now)
		hook = newFaultHook()
		a.client.AddHook(hook)
		exp = clk.Now().Add(time.Hour)
		mustNil(t, "StartFamily(f, a)", a.StartFamily(ctx, "f", "a", exp))
		return a, b, hook, clk, exp
	}
	pending := func(t *testing.T, call string, err error) {
		t.Helper()
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, errRotationPending) {
			t.Fatalf("%s = %v, want ErrUnavailable (rotation pending)", call, err)
		}
	}

	t.Run("rotation ran, answer lost", func(t *testing.T) {
		a, b, hook, clk, exp := open(t)
		hook.lose[a.rotateScript.Hash()] = true
		mustIs(t, "Rotate(a, b) answer lost", a.Rotate(ctx, "f", "a", "b", exp), ErrUnavailable)
		// The client got 503 and retries with a. Straight away the
		// rotation might still be settled by the gateway that made it.
		pending(t, "Rotate(a, c) at once", b.Rotate(ctx, "f", "a", "c", exp))
		clk.Advance(b.settleAfter)
		mustNil(t, "Rotate(a, c) after settleAfter", b.Rotate(ctx, "f", "a", "c", exp))
		mustNil(t, "Rotate(c, d)", a.Rotate(ctx, "f", "c", "d", exp))
		// b was never handed out; presented, it is reuse.
		mustIs(t, "Rotate(b, x)", b.Rotate(ctx, "f", "b", "x", exp), ErrReuse)
	})

	t.Run("rotation did not run", func(t *testing.T) {
		a, b, hook, _, exp := open(t)
		hook.drop[a.rotateScript.Hash()] = true
		mustIs(t, "Rotate(a, b) unsent", a.Rotate(ctx, "f", "a", "b", exp), ErrUnavailable)
		mustNil(t, "Rotate(a, c) retry", b.Rotate(ctx, "f", "a", "c", exp))
	})

	t.Run("settled, answer of the settle lost", func(t *testing.T) {
		a, b, hook, clk, exp := open(t)
		hook.lose[a.settleScript.Hash()] = true
		mustNil(t, "Rotate(a, b) settle answer lost", a.Rotate(ctx, "f", "a", "b", exp))
		clk.Advance(b.settleAfter)
		// The rotation was settled, so a is reuse, however late.
		mustIs(t, "Rotate(a, x)", b.Rotate(ctx, "f", "a", "x", exp), ErrReuse)
	})

	t.Run("settle never ran", func(t *testing.T) {
		a, b, hook, clk, exp := open(t)
		hook.drop[a.settleScript.Hash()] = true
		// The rotation's own answer came back, so b is handed out.
		mustNil(t, "Rotate(a, b) settle unsent", a.Rotate(ctx, "f", "a", "b", exp))
		mustNil(t, "Rotate(b, c)", b.Rotate(ctx, "f", "b", "c", exp))
		clk.Advance(b.settleAfter)
		mustIs(t, "Rotate(a, x)", b.Rotate(ctx, "f", "a", "x", exp), ErrReuse)
	})

	t.Run("settle never ran, old token replayed", func(t *testing.T) {
		a, b, hook, clk, exp := open(t)
		hook.drop[a.settleScript.Hash()] = true
		mustNil(t, "Rotate(a, b) settle unsent", a.Rotate(ctx, "f", "a", "b", exp))
		// The unsettled rotation leaves a accepted once more: detection
		// is delayed to the moment both copies have been used.
		clk.Advance(b.settleAfter)
		mustNil(t, "Rotate(a, x) replay", b.Rotate(ctx, "f", "a", "x", exp))
		mustIs(t, "Rotate(b, y) by the holder of b", b.Rotate(ctx, "f", "b", "y", exp), ErrReuse)
		mustIs(t, "Rotate(x, z) by the replayer", b.Rotate(ctx, "f", "x", "z", exp), ErrRevoked)
	})

	t.Run("retry overtakes a slow settle", func(t *testing.T) {
		a, b, hook, clk, exp := open(t)
		var retry error
		hook.before[a.settleScript.Hash()] = func() {
			clk.Advance(b.settleAfter)
			retry = b.Rotate(ctx, "f", "a", "c", exp)
		}
		// The retry rotated the family again before a's settle: b must
		// not be handed out as well.
		err := a.Rotate(ctx, "f", "a", "b", exp)
		mustNil(t, "the overtaking Rotate(a, c)", retry)
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, errRotationSuperseded) {
			t.Fatalf("Rotate(a, b) overtaken = %v, want ErrUnavailable (superseded)", err)
		}
		mustNil(t, "Rotate(c, d)", b.Rotate(ctx, "f", "c", "d", exp))
	})

	t.Run("logout before the settle", func(t *testing.T) {
		a, b, hook, _, exp := open(t)
		hook.before[a.settleScript.Hash()] = func() {
			mustNil(t, "RevokeFamily", b.RevokeFamily(ctx, "f", exp))
		}
		mustIs(t, "Rotate(a, b) logged out meanwhile", a.Rotate(ctx, "f", "a", "b", exp), ErrRevoked)
	})

	t.Run("server clock", func(t *testing.T) {
		c := newRedis(t, srv.URL(0), "lostclock:", nil)
		c.settleAfter = 50 * time.Millisecond
		hook := newFaultHook()
		c.client.AddHook(hook)
		exp := time.Now().Add(time.Hour)
		mustNil(t, "StartFamily", c.StartFamily(ctx, "f", "a", exp))
		hook.lose[c.rotateScript.Hash()] = true
		mustIs(t, "Rotate(a, b) answer lost", c.Rotate(ctx, "f", "a", "b", exp), ErrUnavailable)
		pending(t, "Rotate(a, c) at once", c.Rotate(ctx, "f", "a", "c", exp))
		time.Sleep(2 * c.settleAfter)
		mustNil(t, "Rotate(a, c) later", c.Rotate(ctx, "f", "a", "c", exp))
	})
}

// TestRedisWaitReplicas checks that with WaitReplicas set a write that no
// replica confirms is reported unavailable, while limiter writes go on.
func TestRedisWaitReplicas(t *testing.T) {
	srv := statetest.StartServer(t)
	ctx := context.Background()
	// Generous: the WAIT takes a quarter of it, and up to 100ms more.
	r, err := NewRedis(ctx, RedisOptions{URL: srv.URL(0), KeyPrefix: "wait:", Timeout: time.Second, WaitReplicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	exp := time.Now().Add(time.Hour)
	for name, err := range map[string]error{
		"StartFamily":    r.StartFamily(ctx, "f", "a", exp),
		"RevokeFamily":   r.RevokeFamily(ctx, "g", exp),
		"Revoke":         r.Revoke(ctx, "j", exp),
		"RaiseNotBefore": r.RaiseNotBefore(ctx, map[string]time.Time{"alice": time.Now()}, time.Hour),
	} {
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, errNotReplicated) {
			t.Errorf("%s with no replica = %v, want ErrUnavailable (not replicated)", name, err)
		}
	}
	if ok, _, err := r.Allow(ctx, "t", "k", Limit{Every: time.Second, Burst: 1}); err != nil || !ok {
		t.Errorf("Allow with no replica = %v, %v; want allowed (limiters do not wait)", ok, err)
	}
	if _, err := NewRedis(ctx, RedisOptions{URL: srv.URL(0), WaitReplicas: -1}); err == nil {
		t.Error("NewRedis(WaitReplicas -1) = nil error, want one")
	}
}

// Scripts of the previous release, which wrote untagged key names. They
// play a replica that is not upgraded yet.
const (
	prevStartSrc = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
redis.call('HSET', KEYS[1], 'cur', ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 0
`
	prevRotateSrc = `
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
	prevRevokeFamilySrc = `
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
)

// prevReplica is a gateway of the previous release on the same Redis.
type prevReplica struct {
	t      *testing.T
	c      *redis.Client
	prefix string
}

func (p prevReplica) run(src string, key string, args ...any) int64 {
	p.t.Helper()
	n, err := p.c.Eval(context.Background(), src, []string{p.prefix + key}, args...).Int64()
	if err != nil {
		p.t.Fatalf("previous release: %v", err)
	}
	return n
}

// TestRedisUpgradeFromUntaggedKeys checks a rolling upgrade from the
// release that wrote untagged keys: nothing it recorded is forgotten, a
// family it started and rotated keeps rotating on either release without a
// false reuse, and a revocation made by either release is seen by the
// upgraded one.
func TestRedisUpgradeFromUntaggedKeys(t *testing.T) {
	srv := statetest.StartServer(t)
	ctx := context.Background()
	const prefix = "upgrade:"
	raw := rawClient(t, srv.URL(0))
	prev := prevReplica{t, raw, prefix}
	s := newRedis(t, srv.URL(0), prefix, nil)
	exp := time.Now().Add(time.Hour)
	ms := exp.UnixMilli()

	t.Run("family mid-rotation", func(t *testing.T) {
		prev.run(prevStartSrc, "fam:f1", "a", ms)
		if prev.run(prevRotateSrc, "fam:f1", "a", "b", ms) != 0 {
			t.Fatal("previous release: rotate(a, b) failed")
		}
		mustNil(t, "Rotate(b, c) after the upgrade", s.Rotate(ctx, "f1", "b", "c", exp))
		// A replica not upgraded yet sees the rotation: the record is
		// rotated in place under its untagged name.
		if n := prev.run(prevRotateSrc, "fam:f1", "c", "d", ms); n != 0 {
			t.Fatalf("previous release: rotate(c, d) = %d, want 0", n)
		}
		mustNil(t, "Rotate(d, e)", s.Rotate(ctx, "f1", "d", "e", exp))
		if n, _ := raw.Exists(ctx, prefix+"fam:{f1}").Result(); n != 0 {
			t.Errorf("a tagged copy of the family was written beside the untagged record")
		}
		mustIs(t, "Rotate(b, x) replayed", s.Rotate(ctx, "f1", "b", "x", exp), ErrReuse)
		if n := prev.run(prevRotateSrc, "fam:f1", "e", "y", ms); n != 2 {
			t.Errorf("previous release after the reuse: rotate = %d, want 2 (revoked)", n)
		}
		if got, err := s.AccessRevoked(ctx, "j", "f1"); err != nil || !got {
			t.Errorf("AccessRevoked(f1) = %v, %v; want true", got, err)
		}
	})

	t.Run("family id taken by the previous release", func(t *testing.T) {
		prev.run(prevStartSrc, "fam:f2", "a", ms)
		if err := s.StartFamily(ctx, "f2", "z", exp); err == nil {
			t.Error("StartFamily(f2) = nil, want already exists")
		}
	})

	t.Run("logout on either release", func(t *testing.T) {
		// A family of the previous release, logged out after the upgrade:
		// the record is revoked where both releases look.
		prev.run(prevStartSrc, "fam:f3", "a", ms)
		mustNil(t, "RevokeFamily(f3)", s.RevokeFamily(ctx, "f3", exp))
		if n := prev.run(prevRotateSrc, "fam:f3", "a", "b", ms); n != 2 {
			t.Errorf("previous release: rotate(f3) after logout = %d, want 2", n)
		}
		// A family of the new release, logged out by a replica not yet
		// upgraded (which writes the untagged name).
		mustNil(t, "StartFamily(f4)", s.StartFamily(ctx, "f4", "a", exp))
		prev.run(prevRevokeFamilySrc, "fam:f4", ms)
		mustIs(t, "Rotate(f4) after the old logout", s.Rotate(ctx, "f4", "a", "b", exp), ErrRevoked)
		if got, err := s.AccessRevoked(ctx, "j", "f4"); err != nil || !got {
			t.Errorf("AccessRevoked(f4) = %v, %v; want true", got, err)
		}
	})

	t.Run("revoked access token", func(t *testing.T) {
		mustNil(t, "SET", raw.Set(ctx, prefix+"rev:j1", "1", time.Hour).Err())
		if got, err := s.AccessRevoked(ctx, "j1", ""); err != nil || !got {
			t.Errorf("AccessRevoked(j1) = %v, %v; want true", got, err)
		}
		if got, err := s.IsRevoked(ctx, "j1"); err != nil || !got {
			t.Errorf("IsRevoked(j1) = %v, %v; want true", got, err)
		}
	})

	t.Run("not-before record", func(t *testing.T) {
		old := time.Now().Add(time.Minute).Truncate(time.Millisecond)
		mustNil(t, "SET", raw.Set(ctx, prefix+"nb:alice", old.UnixMilli(), time.Hour).Err())
		mustNil(t, "RaiseNotBefore", s.RaiseNotBefore(ctx, map[string]time.Time{"alice": old.Add(-time.Hour)}, time.Hour))
		got, err := s.NotBefore(ctx, []string{"alice"})
		if err != nil || !got["alice"].Equal(old) {
			t.Errorf("NotBefore(alice) = %v, %v; want the later record %v", got, err, old)
		}
	})

	t.Run("spent bucket", func(t *testing.T) {
		future := time.Now().Add(time.Hour).UnixMicro()
		mustNil(t, "SET", raw.Set(ctx, prefix+"rl:refresh:ip:192.0.2.1", future, time.Hour).Err())
		ok, retry, err := s.Allow(ctx, "refresh:ip", "192.0.2.1", Limit{Every: time.Minute, Burst: 5})
		if err != nil || ok || retry < 50*time.Minute {
			t.Errorf("Allow on a bucket the previous release spent = %v, %v, %v; want refused for about an hour", ok, retry, err)
		}
	})

	t.Run("cluster reads no untagged names", func(t *testing.T) {
		c := newRedis(t, srv.URL(0), prefix, nil)
		c.legacy = false
		if got, err := c.AccessRevoked(ctx, "j1", ""); err != nil || got {
			t.Errorf("AccessRevoked(j1) with the cluster layout = %v, %v; want false (no fallback)", got, err)
		}
	})
}
