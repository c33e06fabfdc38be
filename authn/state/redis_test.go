package state

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/authgate/authgate/authn/state/statetest"
)

// rawClient is a plain client for inspecting the server a store writes to.
func rawClient(t *testing.T, url string) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// storeOps runs every Store operation once and returns the name of each
// with its error and duration.
type opResult struct {
	name string
	err  error
	took time.Duration
}

func storeOps(s Store, exp time.Time) []opResult {
	ctx := context.Background()
	l := Limit{Every: time.Second, Burst: 100}
	loginKey := LoginKey{Account: "alice", Known: true, Client: "c"}
	ops := []struct {
		name string
		fn   func() error
	}{
		{"Ping", func() error { return s.Ping(ctx) }},
		{"Allow", func() error { _, _, err := s.Allow(ctx, "t", "k", l); return err }},
		{"CheckLogin", func() error { _, err := s.CheckLogin(ctx, loginKey, testLogin()); return err }},
		{"SettleLogin", func() error { return s.SettleLogin(ctx, loginKey, testLogin(), TierUser, LoginNotChecked) }},
		{"StartFamily", func() error {
			return s.StartFamily(ctx, "f"+strconv.FormatInt(time.Now().UnixNano(), 10), "j", exp)
		}},
		{"Rotate", func() error {
			err := s.Rotate(ctx, "nofamily", "a", "b", exp)
			if errors.Is(err, ErrRevoked) {
				return nil
			}
			return err
		}},
		{"RevokeFamily", func() error { return s.RevokeFamily(ctx, "g", exp) }},
		{"Revoke", func() error { return s.Revoke(ctx, "j", exp) }},
		{"IsRevoked", func() error { _, err := s.IsRevoked(ctx, "j"); return err }},
		{"AccessRevoked", func() error { _, err := s.AccessRevoked(ctx, "j", "g"); return err }},
		{"RaiseNotBefore", func() error {
			return s.RaiseNotBefore(ctx, map[string]time.Time{"alice": time.Now()}, time.Hour)
		}},
		{"NotBefore", func() error { _, err := s.NotBefore(ctx, []string{"alice"}); return err }},
	}
	var res []opResult
	for _, op := range ops {
		start := time.Now()
		err := op.fn()
		res = append(res, opResult{op.name, err, time.Since(start)})
	}
	return res
}

func TestRedisFailsClosedAndRecovers(t *testing.T) {
	srv := statetest.StartServer(t)
	ignore := goleak.IgnoreCurrent()
	const timeout = 250 * time.Millisecond
	r, err := NewRedis(context.Background(), RedisOptions{URL: srv.URL(0), Timeout: timeout})
	if err != nil {
		t.Fatalf("NewRedis() error = %v", err)
	}
	exp := time.Now().Add(time.Hour)
	expectAll := func(t *testing.T, phase string, wantUnavailable bool) {
		t.Helper()
		var slowest time.Duration
		for _, res := range storeOps(r, exp) {
			slowest = max(slowest, res.took)
			if wantUnavailable && !errors.Is(res.err, ErrUnavailable) {
				t.Errorf("%s: %s() = %v, want ErrUnavailable", phase, res.name, res.err)
			}
			if !wantUnavailable && res.err != nil {
				t.Errorf("%s: %s() = %v, want nil", phase, res.name, res.err)
			}
			// Timeout plus generous slack for -race and a loaded machine.
			if res.took >= time.Second {
				t.Errorf("%s: %s() took %v, want < 1s", phase, res.name, res.took)
			}
		}
		t.Logf("%s: slowest operation took %v", phase, slowest)
	}
	// waitHealthy polls Ping: the first operations after an outage may
	// still meet a connection the server closed.
	waitHealthy := func(t *testing.T) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for r.Ping(context.Background()) != nil {
			if time.Now().After(deadline) {
				t.Fatalf("store did not recover within 5s")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	expectAll(t, "healthy", false)

	srv.Stop()
	expectAll(t, "server stopped", true)

	srv.Restart()
	waitHealthy(t)
	expectAll(t, "server restarted", false)

	// A hung server accepts connections but never answers: only the
	// timeout ends the wait.
	srv.Pause()
	expectAll(t, "server paused", true)
	srv.Resume()
	waitHealthy(t)
	expectAll(t, "server resumed", false)

	if err := r.Close(); err != nil {
		t.Errorf("Close() = %v", err)
	}
	goleak.VerifyNone(t, ignore)
}

func TestRedisKeysHaveBoundedTTL(t *testing.T) {
	srv := statetest.StartServer(t)
	const prefix = "ttl:"
	clk := statetest.NewClock(time.Now())
	s := newRedis(t, srv.URL(2), prefix, clk.Now)
	ctx := context.Background()
	now := clk.Now()

	// Every key name ends in the longest lifetime, in ms, it may have.
	limits := []Limit{
		{Every: time.Second, Burst: 10},
		{Every: 300 * time.Millisecond, Burst: 10}, // sub-second interval; a window long enough to outlive a loaded scan
		{Every: time.Minute, Burst: 5},
		{Every: 1500*time.Millisecond + 500*time.Microsecond, Burst: 3}, // rounds up to whole ms
	}
	for _, l := range limits {
		key := "b" + strconv.FormatInt(l.window().Milliseconds()+1, 10) // +1: rounded up to ms
		for range l.Burst + 2 {
			if _, _, err := s.Allow(ctx, "t", key, l); err != nil {
				t.Fatalf("Allow(%s) error = %v", key, err)
			}
		}
	}
	hour, day := now.Add(time.Hour), now.Add(24*time.Hour)
	ms := func(t time.Time) string { return strconv.FormatInt(t.Sub(now).Milliseconds(), 10) }
	mustNil(t, "StartFamily", s.StartFamily(ctx, "rotated"+ms(hour), "a", hour))
	mustNil(t, "Rotate", s.Rotate(ctx, "rotated"+ms(hour), "a", "b", hour))
	mustNil(t, "StartFamily", s.StartFamily(ctx, "reused"+ms(hour), "a", hour))
	mustNil(t, "Rotate", s.Rotate(ctx, "reused"+ms(hour), "a", "b", hour))
	mustIs(t, "Rotate", s.Rotate(ctx, "reused"+ms(hour), "a", "c", hour), ErrReuse)
	mustNil(t, "RevokeFamily", s.RevokeFamily(ctx, "unknown"+ms(hour), hour))
	mustNil(t, "StartFamily", s.StartFamily(ctx, "extended"+ms(day), "a", hour))
	mustNil(t, "RevokeFamily", s.RevokeFamily(ctx, "extended"+ms(day), day))
	mustNil(t, "RevokeFamily", s.RevokeFamily(ctx, "extended"+ms(day), hour)) // never shortens
	mustNil(t, "Revoke", s.Revoke(ctx, "jti"+ms(hour), hour))
	mustNil(t, "Revoke", s.Revoke(ctx, "short"+ms(now.Add(time.Second)), now.Add(time.Second)))

	c := rawClient(t, srv.URL(2))
	var n int
	iter := c.Scan(ctx, 0, prefix+"*", 100).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		n++
		ttl, err := c.PTTL(ctx, key).Result()
		if err != nil {
			t.Fatalf("PTTL(%s) error = %v", key, err)
		}
		name := strings.TrimSuffix(key, "}") // the id is the hash tag
		i := strings.LastIndexFunc(name, func(r rune) bool { return r < '0' || r > '9' })
		bound, err := strconv.ParseInt(name[i+1:], 10, 64)
		if err != nil {
			t.Fatalf("key %s carries no bound", key)
		}
		if ttl <= 0 || ttl > time.Duration(bound)*time.Millisecond {
			t.Errorf("PTTL(%s) = %v, want in (0, %v]", key, ttl, time.Duration(bound)*time.Millisecond)
		}
		if strings.Contains(key, "extended") && ttl <= time.Hour {
			t.Errorf("PTTL(%s) = %v, want the later expiry kept", key, ttl)
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	if want := len(limits) + 6; n != want {
		t.Errorf("found %d keys under %s, want %d", n, prefix, want)
	}
	// Nothing is written outside the prefix or the selected database.
	if keys, _ := rawClient(t, srv.URL(0)).Keys(ctx, "*").Result(); len(keys) != 0 {
		t.Errorf("db 0 holds keys %v, want none", keys)
	}
}

func TestNewRedisOptions(t *testing.T) {
	srv := statetest.StartServer(t)
	ctx := context.Background()
	const secret = "s3cret-pw"
	if err := rawClient(t, srv.URL(0)).ConfigSet(ctx, "requirepass", secret).Err(); err != nil {
		t.Fatalf("CONFIG SET requirepass error = %v", err)
	}
	tests := []struct {
		name     string
		o        RedisOptions
		wantErr  bool
		wantDown bool
	}{
		{"empty url", RedisOptions{}, true, false},
		{"bad scheme", RedisOptions{URL: "http://:" + secret + "@" + srv.Addr()}, true, false},
		{"negative timeout", RedisOptions{URL: srv.URL(0), Timeout: -1}, true, false},
		{"no password", RedisOptions{URL: srv.URL(0)}, true, true},
		{"password in url", RedisOptions{URL: "redis://:" + secret + "@" + srv.Addr() + "/0"}, false, false},
		{"password option", RedisOptions{URL: srv.URL(0), Password: secret}, false, false},
		{"password option overrides url", RedisOptions{URL: "redis://:wrong@" + srv.Addr() + "/0", Password: secret}, false, false},
		{"wrong password", RedisOptions{URL: srv.URL(0), Password: "wrong"}, true, true},
		{"nothing listening", RedisOptions{URL: "redis://127.0.0.1:1/0"}, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			r, err := NewRedis(ctx, tt.o)
			if took := time.Since(start); took > time.Second {
				t.Errorf("NewRedis() took %v, want < 1s", took)
			}
			if err == nil {
				defer r.Close()
				mustNil(t, "Ping()", r.Ping(ctx))
			}
			if (err != nil) != tt.wantErr {
				t.Fatalf("NewRedis() error = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && errors.Is(err, ErrUnavailable) != tt.wantDown {
				t.Errorf("NewRedis() error = %v; errors.Is(ErrUnavailable) = %v, want %v", err, !tt.wantDown, tt.wantDown)
			}
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Errorf("NewRedis() error %q contains the password", err)
			}
		})
	}
}

func TestRedisServerClock(t *testing.T) {
	srv := statetest.StartServer(t)
	s := newRedis(t, srv.URL(0), "", nil)
	l := Limit{Every: time.Hour, Burst: 2}
	ctx := context.Background()
	for i, want := range []bool{true, true, false} {
		ok, retry, err := s.Allow(ctx, "t", "k", l)
		if err != nil || ok != want {
			t.Fatalf("call %d: Allow() = %v, %v; want %v, nil", i, ok, err, want)
		}
		if !ok && (retry <= 59*time.Minute || retry > time.Hour) {
			t.Errorf("call %d: Allow() retryAfter = %v, want about 1h", i, retry)
		}
	}
	keys, err := rawClient(t, srv.URL(0)).Keys(ctx, DefaultKeyPrefix+"*").Result()
	if err != nil || len(keys) != 1 {
		t.Errorf("keys under the default prefix = %v, %v; want one", keys, err)
	}
}
