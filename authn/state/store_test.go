package state

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authgate/authgate/authn/state/statetest"
)

// t0 is a fixed instant near the real time: Redis expires keys by its own
// clock, so absolute expiries in tests must lie in the real future.
func t0() time.Time { return time.Now().Truncate(time.Second) }

// backend opens stores of one implementation for the shared behaviour tests.
type backend struct {
	name string
	// open returns two stores sharing one state (two replicas); for the
	// embedded store both are the same value.
	open func(t *testing.T, clk *statetest.Clock) (a, b Store)
}

// backends returns the implementations under test. The Redis one starts a
// single server for the calling test and gives every open its own key
// prefix. Without redis-server the Redis subtests are skipped (or fail when
// CI=true) and the embedded store is still tested.
func backends(t *testing.T) []backend {
	t.Helper()
	var srv *statetest.Server
	if _, err := exec.LookPath("redis-server"); err == nil || os.Getenv("CI") == "true" {
		srv = statetest.StartServer(t)
		// Runs before the server stops: whatever the suite wrote must
		// expire by itself.
		t.Cleanup(func() { checkAllKeysExpire(t, srv, maxSuiteLifetime) })
	}
	var n atomic.Int64
	return []backend{
		{name: "memory", open: func(t *testing.T, clk *statetest.Clock) (Store, Store) {
			m, err := NewMemory(MemoryOptions{Now: clk.Now})
			if err != nil {
				t.Fatalf("NewMemory() error = %v", err)
			}
			t.Cleanup(func() { _ = m.Close() })
			return m, m
		}},
		{name: "redis", open: func(t *testing.T, clk *statetest.Clock) (Store, Store) {
			if srv == nil {
				t.Skip("redis-server not installed; apt-get install -y redis-server")
			}
			prefix := fmt.Sprintf("test%d:", n.Add(1))
			a := newRedis(t, srv.URL(0), prefix, clk.Now)
			b := newRedis(t, srv.URL(0), prefix, clk.Now)
			return a, b
		}},
	}
}

// maxSuiteLifetime is the longest token lifetime or limiter window the
// shared tests use.
const maxSuiteLifetime = 7 * time.Hour

// checkAllKeysExpire asserts that every key in srv's database 0 has a TTL in
// (0, bound].
func checkAllKeysExpire(t *testing.T, srv *statetest.Server, bound time.Duration) {
	t.Helper()
	ctx := context.Background()
	c := rawClient(t, srv.URL(0))
	iter := c.Scan(ctx, 0, "*", 1000).Iterator()
	n := 0
	for iter.Next(ctx) {
		n++
		ttl, err := c.PTTL(ctx, iter.Val()).Result()
		if err != nil {
			t.Errorf("PTTL(%s) error = %v", iter.Val(), err)
			return
		}
		// -2 (gone) and 0 (expiring this millisecond) are a key that
		// expired between SCAN and PTTL; -1 is a key without a TTL.
		if ttl == -1 || ttl > bound {
			t.Errorf("PTTL(%s) = %v after the suite, want an expiry within %v", iter.Val(), ttl, bound)
		}
	}
	if err := iter.Err(); err != nil {
		t.Errorf("SCAN error = %v", err)
	}
	t.Logf("%d keys left by the suite, all expiring within %v", n, bound)
}

// newRedis opens a Redis store closed at the end of the test.
func newRedis(t testing.TB, url, prefix string, now func() time.Time) *Redis {
	t.Helper()
	// A generous timeout: functional tests must not fail on a loaded machine;
	// the fault tests set their own short one.
	r, err := NewRedis(context.Background(), RedisOptions{URL: url, KeyPrefix: prefix, Now: now, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("NewRedis(%s) error = %v", url, err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func TestLimitValidate(t *testing.T) {
	tests := []struct {
		name    string
		l       Limit
		wantErr bool
	}{
		{"valid", Limit{Every: time.Second, Burst: 5}, false},
		{"zero value", Limit{}, true},
		{"zero every is not unlimited", Limit{Burst: 5}, true},
		{"negative every", Limit{Every: -time.Second, Burst: 5}, true},
		{"zero burst", Limit{Every: time.Second}, true},
		{"negative burst", Limit{Every: time.Second, Burst: -1}, true},
		{"window of MaxWindow", Limit{Every: MaxWindow / 1000, Burst: 1000}, false},
		{"window over MaxWindow", Limit{Every: MaxWindow / 1000, Burst: 1001}, true},
		{"window overflows", Limit{Every: time.Hour, Burst: 1 << 40}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.l.Validate(); (err != nil) != tt.wantErr {
				t.Errorf("%+v.Validate() = %v, want error %v", tt.l, err, tt.wantErr)
			}
		})
	}
}

func TestAllow(t *testing.T) {
	// step advances the clock by wait, then calls Allow on key.
	type step struct {
		wait   time.Duration
		key    string
		wantOK bool
	}
	lim := Limit{Every: time.Second, Burst: 3}
	tests := []struct {
		name  string
		limit Limit
		steps []step
	}{
		{"burst then deny", lim, []step{
			{0, "a", true}, {0, "a", true}, {0, "a", true}, {0, "a", false}, {0, "a", false},
		}},
		{"refill one per every", lim, []step{
			{0, "a", true}, {0, "a", true}, {0, "a", true}, {0, "a", false},
			{time.Second, "a", true}, {0, "a", false},
			{999 * time.Millisecond, "a", false}, {time.Millisecond, "a", true},
		}},
		{"refill is capped at burst", lim, []step{
			{0, "a", true}, {0, "a", true}, {0, "a", true},
			{time.Hour, "a", true}, {0, "a", true}, {0, "a", true}, {0, "a", false},
		}},
		{"keys are independent", Limit{Every: time.Minute, Burst: 1}, []step{
			{0, "a", true}, {0, "a", false}, {0, "b", true}, {0, "b", false},
		}},
		{"burst of one", Limit{Every: 10 * time.Millisecond, Burst: 1}, []step{
			{0, "a", true}, {0, "a", false}, {10 * time.Millisecond, "a", true},
		}},
		{"long keys are kept apart", Limit{Every: time.Minute, Burst: 1}, []step{
			{0, string(make([]byte, 500)) + "x", true},
			{0, string(make([]byte, 500)) + "y", true},
			{0, string(make([]byte, 500)) + "x", false},
		}},
	}
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					clk := statetest.NewClock(t0())
					s, _ := be.open(t, clk)
					for i, st := range tt.steps {
						clk.Advance(st.wait)
						ok, retry, err := s.Allow(context.Background(), "t", st.key, tt.limit)
						if err != nil {
							t.Fatalf("step %d: Allow() error = %v", i, err)
						}
						if ok != st.wantOK {
							t.Fatalf("step %d: Allow() ok = %v, want %v", i, ok, st.wantOK)
						}
						if !ok && (retry <= 0 || retry > tt.limit.Every) {
							t.Errorf("step %d: Allow() retryAfter = %v, want in (0, %v]", i, retry, tt.limit.Every)
						}
						if ok && retry != 0 {
							t.Errorf("step %d: Allow() retryAfter = %v on success, want 0", i, retry)
						}
					}
				})
			}
			t.Run("retry after is exact", func(t *testing.T) {
				clk := statetest.NewClock(t0())
				s, _ := be.open(t, clk)
				l := Limit{Every: 10 * time.Second, Burst: 1}
				_, _, _ = s.Allow(context.Background(), "t", "k", l)
				clk.Advance(4 * time.Second)
				ok, retry, err := s.Allow(context.Background(), "t", "k", l)
				if err != nil || ok || retry != 6*time.Second {
					t.Errorf("Allow() = %v, %v, %v; want false, 6s, nil", ok, retry, err)
				}
			})
			t.Run("invalid limit is an error", func(t *testing.T) {
				s, _ := be.open(t, statetest.NewClock(t0()))
				for _, l := range []Limit{{}, {Burst: 10}, {Every: time.Second}} {
					ok, _, err := s.Allow(context.Background(), "t", "k", l)
					if err == nil || ok {
						t.Errorf("Allow(%+v) = %v, %v; want false and an error", l, ok, err)
					}
				}
			})
		})
	}
}

func TestAllowConcurrentNeverExceedsBurst(t *testing.T) {
	const goroutines, perG = 50, 20
	l := Limit{Every: time.Hour, Burst: 7}
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			clk := statetest.NewClock(t0())
			a, b := be.open(t, clk)
			var allowed atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, goroutines)
			for g := range goroutines {
				s := a
				if g%2 == 1 {
					s = b
				}
				wg.Go(func() {
					for range perG {
						ok, _, err := s.Allow(context.Background(), "t", "hot", l)
						if err != nil {
							errs <- err
							return
						}
						if ok {
							allowed.Add(1)
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatalf("Allow() error = %v", err)
			}
			if got := allowed.Load(); got != int64(l.Burst) {
				t.Errorf("%d concurrent Allow() calls allowed %d, want exactly %d", goroutines*perG, got, l.Burst)
			}
		})
	}
}

func TestFamilies(t *testing.T) {
	ctx := context.Background()
	// Each scenario runs against a fresh store; exp is one hour after the
	// clock's start.
	tests := []struct {
		name string
		run  func(t *testing.T, s Store, exp time.Time)
	}{
		{"rotation chain", func(t *testing.T, s Store, exp time.Time) {
			mustNil(t, "StartFamily(f, j1)", s.StartFamily(ctx, "f", "j1", exp))
			for i := 1; i < 5; i++ {
				old, next := fmt.Sprintf("j%d", i), fmt.Sprintf("j%d", i+1)
				mustNil(t, "Rotate(f, "+old+", "+next+")", s.Rotate(ctx, "f", old, next, exp))
			}
		}},
		{"reuse revokes the family", func(t *testing.T, s Store, exp time.Time) {
			mustNil(t, "StartFamily(f, j1)", s.StartFamily(ctx, "f", "j1", exp))
			mustNil(t, "Rotate(f, j1, j2)", s.Rotate(ctx, "f", "j1", "j2", exp))
			mustIs(t, "Rotate(f, j1, j3)", s.Rotate(ctx, "f", "j1", "j3", exp), ErrReuse)
			// The legitimate holder of j2 is logged out too: either copy
			// may be the stolen one.
			mustIs(t, "Rotate(f, j2, j4)", s.Rotate(ctx, "f", "j2", "j4", exp), ErrRevoked)
			mustIs(t, "Rotate(f, j1, j5)", s.Rotate(ctx, "f", "j1", "j5", exp), ErrRevoked)
		}},
		{"unknown jti on first use is reuse", func(t *testing.T, s Store, exp time.Time) {
			mustNil(t, "StartFamily(f, j1)", s.StartFamily(ctx, "f", "j1", exp))
			mustIs(t, "Rotate(f, jX, j2)", s.Rotate(ctx, "f", "jX", "j2", exp), ErrReuse)
			mustIs(t, "Rotate(f, j1, j2)", s.Rotate(ctx, "f", "j1", "j2", exp), ErrRevoked)
		}},
		{"revoke family then rotate", func(t *testing.T, s Store, exp time.Time) {
			mustNil(t, "StartFamily(f, j1)", s.StartFamily(ctx, "f", "j1", exp))
			mustNil(t, "RevokeFamily(f)", s.RevokeFamily(ctx, "f", exp))
			mustNil(t, "RevokeFamily(f) again", s.RevokeFamily(ctx, "f", exp))
			mustIs(t, "Rotate(f, j1, j2)", s.Rotate(ctx, "f", "j1", "j2", exp), ErrRevoked)
		}},
		{"revoke unknown family", func(t *testing.T, s Store, exp time.Time) {
			mustNil(t, "RevokeFamily(g)", s.RevokeFamily(ctx, "g", exp))
			mustIs(t, "Rotate(g, j1, j2)", s.Rotate(ctx, "g", "j1", "j2", exp), ErrRevoked)
			if err := s.StartFamily(ctx, "g", "j1", exp); err == nil {
				t.Errorf("StartFamily(g) on a revoked family = nil, want error")
			}
		}},
		{"unknown family", func(t *testing.T, s Store, exp time.Time) {
			mustIs(t, "Rotate(nope, j1, j2)", s.Rotate(ctx, "nope", "j1", "j2", exp), ErrRevoked)
		}},
		{"expired family", func(t *testing.T, s Store, exp time.Time) {
			past := exp.Add(-2 * time.Hour)
			mustNil(t, "StartFamily(f, j1, past)", s.StartFamily(ctx, "f", "j1", past))
			mustIs(t, "Rotate(f, j1, j2)", s.Rotate(ctx, "f", "j1", "j2", exp), ErrRevoked)
		}},
		{"families are independent", func(t *testing.T, s Store, exp time.Time) {
			mustNil(t, "StartFamily(f, j1)", s.StartFamily(ctx, "f", "j1", exp))
			mustNil(t, "StartFamily(g, k1)", s.StartFamily(ctx, "g", "k1", exp))
			mustNil(t, "RevokeFamily(f)", s.RevokeFamily(ctx, "f", exp))
			mustNil(t, "Rotate(g, k1, k2)", s.Rotate(ctx, "g", "k1", "k2", exp))
		}},
		{"start existing family", func(t *testing.T, s Store, exp time.Time) {
			mustNil(t, "StartFamily(f, j1)", s.StartFamily(ctx, "f", "j1", exp))
			if err := s.StartFamily(ctx, "f", "j9", exp); err == nil {
				t.Errorf("StartFamily(f, j9) on an existing family = nil, want error")
			}
			mustNil(t, "Rotate(f, j1, j2)", s.Rotate(ctx, "f", "j1", "j2", exp))
		}},
		{"empty ids", func(t *testing.T, s Store, exp time.Time) {
			for name, err := range map[string]error{
				"StartFamily(\"\", j)": s.StartFamily(ctx, "", "j", exp),
				"StartFamily(f, \"\")": s.StartFamily(ctx, "f", "", exp),
				"Rotate(f, \"\", j)":   s.Rotate(ctx, "f", "", "j", exp),
				"RevokeFamily(\"\")":   s.RevokeFamily(ctx, "", exp),
				"Revoke(\"\")":         s.Revoke(ctx, "", exp),
			} {
				if err == nil {
					t.Errorf("%s = nil, want error", name)
				}
			}
		}},
	}
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					clk := statetest.NewClock(t0())
					s, _ := be.open(t, clk)
					tt.run(t, s, clk.Now().Add(time.Hour))
				})
			}
		})
	}
}

func TestRotateConcurrentReuseReportedOnce(t *testing.T) {
	const goroutines = 50
	ctx := context.Background()
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			clk := statetest.NewClock(t0())
			a, b := be.open(t, clk)
			exp := clk.Now().Add(time.Hour)
			mustNil(t, "StartFamily(f, j0)", a.StartFamily(ctx, "f", "j0", exp))
			var ok, reuse, revoked atomic.Int64
			var pendingMu sync.Mutex
			var pending []int
			var wg sync.WaitGroup
			start := make(chan struct{})
			rotate := func(g int) {
				s := a
				if g%2 == 1 {
					s = b
				}
				err := s.Rotate(ctx, "f", "j0", fmt.Sprintf("n%d", g), exp)
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, ErrReuse):
					reuse.Add(1)
				case errors.Is(err, ErrRevoked):
					revoked.Add(1)
				case errors.Is(err, errRotationPending):
					// Redis: the winner's rotation was not settled yet
					// (see rotateSrc); the client is told to retry.
					pendingMu.Lock()
					pending = append(pending, g)
					pendingMu.Unlock()
				default:
					t.Errorf("Rotate(f, j0) error = %v", err)
				}
			}
			for g := range goroutines {
				wg.Go(func() {
					<-start
					rotate(g)
				})
			}
			close(start)
			wg.Wait()
			if ok.Load() != 1 || reuse.Load() > 1 {
				t.Fatalf("%d concurrent Rotate(f, j0): %d ok, %d reuse; want 1 and at most 1", goroutines, ok.Load(), reuse.Load())
			}
			// A retry once the winner is settled is judged as usual.
			for _, g := range pending {
				rotate(g)
			}
			t.Logf("%d calls were answered pending and retried", len(pending))
			if ok.Load() != 1 || reuse.Load() != 1 || revoked.Load() != goroutines-2 {
				t.Errorf("%d concurrent Rotate(f, j0): %d ok, %d reuse, %d revoked; want 1, 1, %d",
					goroutines, ok.Load(), reuse.Load(), revoked.Load(), goroutines-2)
			}
			for g := range goroutines {
				err := a.Rotate(ctx, "f", fmt.Sprintf("n%d", g), "later", exp)
				if !errors.Is(err, ErrRevoked) {
					t.Fatalf("Rotate(f, n%d) after reuse = %v, want ErrRevoked", g, err)
				}
			}
		})
	}
}

func TestRevoke(t *testing.T) {
	ctx := context.Background()
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			tests := []struct {
				name   string
				revoke []string
				expIn  time.Duration
				check  string
				want   bool
			}{
				{"revoked", []string{"a"}, time.Hour, "a", true},
				{"other id", []string{"a"}, time.Hour, "b", false},
				{"nothing revoked", nil, time.Hour, "a", false},
				{"twice", []string{"a", "a"}, time.Hour, "a", true},
				{"already expired", []string{"a"}, -time.Second, "a", false},
				{"long id", []string{string(make([]byte, 1000))}, time.Hour, string(make([]byte, 1000)), true},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					clk := statetest.NewClock(t0())
					a, b := be.open(t, clk)
					for _, j := range tt.revoke {
						mustNil(t, "Revoke()", a.Revoke(ctx, j, clk.Now().Add(tt.expIn)))
					}
					got, err := b.IsRevoked(ctx, tt.check)
					if err != nil || got != tt.want {
						t.Errorf("IsRevoked(%.10q) = %v, %v; want %v, nil", tt.check, got, err, tt.want)
					}
				})
			}
			t.Run("ping", func(t *testing.T) {
				s, _ := be.open(t, statetest.NewClock(t0()))
				mustNil(t, "Ping()", s.Ping(ctx))
			})
			t.Run("closed store is unavailable", func(t *testing.T) {
				clk := statetest.NewClock(t0())
				s, _ := be.open(t, clk)
				mustNil(t, "Close()", s.Close())
				mustNil(t, "Close() again", s.Close())
				exp := clk.Now().Add(time.Hour)
				_, _, err := s.Allow(ctx, "t", "k", Limit{Every: time.Second, Burst: 1})
				mustIs(t, "Allow()", err, ErrUnavailable)
				_, err = s.IsRevoked(ctx, "j")
				mustIs(t, "IsRevoked()", err, ErrUnavailable)
				mustIs(t, "Rotate()", s.Rotate(ctx, "f", "a", "b", exp), ErrUnavailable)
				mustIs(t, "Revoke()", s.Revoke(ctx, "j", exp), ErrUnavailable)
				mustIs(t, "Ping()", s.Ping(ctx), ErrUnavailable)
			})
		})
	}
}

func mustNil(t *testing.T, call string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s = %v, want nil", call, err)
	}
}

func mustIs(t *testing.T, call string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s = %v, want %v", call, err, want)
	}
}

func TestAllowLimitChangeKeepsDebt(t *testing.T) {
	ctx := context.Background()
	loose := Limit{Every: time.Second, Burst: 10}
	strict := Limit{Every: time.Minute, Burst: 2}
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			clk := statetest.NewClock(t0())
			s, _ := be.open(t, clk)
			// Three loose tokens owe 3s. Under the strict limit (after a
			// rolling restart with a new config) that debt is kept, in
			// time: one more token fits in the strict burst, then the
			// bucket is spent for a full strict interval.
			for range 3 {
				if ok, _, err := s.Allow(ctx, "t", "k", loose); !ok || err != nil {
					t.Fatalf("Allow(loose) = %v, %v", ok, err)
				}
			}
			if ok, _, _ := s.Allow(ctx, "t", "k", strict); !ok {
				t.Errorf("Allow(strict) after 3s of debt = false, want true (burst 2 covers 1m)")
			}
			ok, retry, _ := s.Allow(ctx, "t", "k", strict)
			if want := 3 * time.Second; ok || retry != want {
				t.Errorf("second Allow(strict) = %v, %v; want false, %v", ok, retry, want)
			}
		})
	}
}

func TestAllowScopesAreApart(t *testing.T) {
	ctx := context.Background()
	l := Limit{Every: time.Hour, Burst: 1}
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			s, _ := be.open(t, statetest.NewClock(t0()))
			for _, sc := range []Scope{"login:ip", "refresh:ip", "logout:ip"} {
				if ok, _, err := s.Allow(ctx, sc, "192.0.2.1", l); !ok || err != nil {
					t.Errorf("Allow(%s, 192.0.2.1) = %v, %v; want a bucket of its own", sc, ok, err)
				}
			}
		})
	}
}
