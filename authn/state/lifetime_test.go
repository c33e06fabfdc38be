package state

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/authn/state/statetest"
)

// TestAccessRevoked checks the one-lookup revocation check of access
// tokens: a revoked jti, and every token of a family revoked by logout or
// by reuse detection, seen from another replica.
func TestAccessRevoked(t *testing.T) {
	ctx := context.Background()
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			tests := []struct {
				name     string
				setup    func(t *testing.T, s Store, exp time.Time)
				jti, sid string
				want     bool
			}{
				{"nothing revoked", func(*testing.T, Store, time.Time) {}, "j1", "f1", false},
				{"jti revoked", func(t *testing.T, s Store, exp time.Time) {
					mustNil(t, "Revoke", s.Revoke(ctx, "j1", exp))
				}, "j1", "f1", true},
				{"jti revoked, no session", func(t *testing.T, s Store, exp time.Time) {
					mustNil(t, "Revoke", s.Revoke(ctx, "j1", exp))
				}, "j1", "", true},
				{"family logged out", func(t *testing.T, s Store, exp time.Time) {
					mustNil(t, "StartFamily", s.StartFamily(ctx, "f1", "r1", exp))
					mustNil(t, "RevokeFamily", s.RevokeFamily(ctx, "f1", exp))
				}, "j1", "f1", true},
				{"family revoked by reuse", func(t *testing.T, s Store, exp time.Time) {
					mustNil(t, "StartFamily", s.StartFamily(ctx, "f1", "r1", exp))
					mustNil(t, "Rotate", s.Rotate(ctx, "f1", "r1", "r2", exp))
					mustIs(t, "Rotate(reused)", s.Rotate(ctx, "f1", "r1", "r3", exp), ErrReuse)
				}, "j1", "f1", true},
				{"live family", func(t *testing.T, s Store, exp time.Time) {
					mustNil(t, "StartFamily", s.StartFamily(ctx, "f1", "r1", exp))
					mustNil(t, "Rotate", s.Rotate(ctx, "f1", "r1", "r2", exp))
				}, "j1", "f1", false},
				{"another family revoked", func(t *testing.T, s Store, exp time.Time) {
					mustNil(t, "RevokeFamily", s.RevokeFamily(ctx, "f2", exp))
				}, "j1", "f1", false},
				{"revoked family, token without session", func(t *testing.T, s Store, exp time.Time) {
					mustNil(t, "RevokeFamily", s.RevokeFamily(ctx, "f1", exp))
				}, "j1", "", false},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					clk := statetest.NewClock(t0())
					a, b := be.open(t, clk)
					tt.setup(t, a, clk.Now().Add(time.Hour))
					got, err := b.AccessRevoked(ctx, tt.jti, tt.sid)
					if err != nil || got != tt.want {
						t.Errorf("AccessRevoked(%q, %q) = %v, %v; want %v, nil", tt.jti, tt.sid, got, err, tt.want)
					}
				})
			}
		})
	}
}

// TestNotBefore checks the per-user not-before records: raised, never
// lowered, shared between replicas, and gone once every token they refuse
// has expired.
func TestNotBefore(t *testing.T) {
	ctx := context.Background()
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			clk := statetest.NewClock(t0())
			a, b := be.open(t, clk)
			now := clk.Now()
			long := strings.Repeat("u", 300)
			mustNil(t, "RaiseNotBefore", a.RaiseNotBefore(ctx, map[string]time.Time{"alice": now, "bob": now.Add(time.Second), long: now}, time.Hour))
			// Lower instants change nothing; a later one raises.
			mustNil(t, "RaiseNotBefore(lower)", b.RaiseNotBefore(ctx, map[string]time.Time{"alice": now.Add(-time.Minute)}, time.Hour))
			mustNil(t, "RaiseNotBefore(later)", b.RaiseNotBefore(ctx, map[string]time.Time{"bob": now.Add(5 * time.Second)}, time.Hour))
			got, err := b.NotBefore(ctx, []string{"alice", "bob", "carol", long})
			mustNil(t, "NotBefore", err)
			want := map[string]time.Time{"alice": now, "bob": now.Add(5 * time.Second), long: now}
			if len(got) != len(want) {
				t.Fatalf("NotBefore() = %v, want %v", got, want)
			}
			for k, w := range want {
				if !got[k].Equal(w) {
					t.Errorf("NotBefore()[%.10q] = %v, want %v", k, got[k], w)
				}
			}
			if got, err := a.NotBefore(ctx, nil); err != nil || len(got) != 0 {
				t.Errorf("NotBefore(nil) = %v, %v; want empty", got, err)
			}
			for name, call := range map[string]error{
				"empty subject": a.RaiseNotBefore(ctx, map[string]time.Time{"": now}, time.Hour),
				"zero instant":  a.RaiseNotBefore(ctx, map[string]time.Time{"x": {}}, time.Hour),
				"no keep":       a.RaiseNotBefore(ctx, map[string]time.Time{"x": now}, 0),
			} {
				if call == nil {
					t.Errorf("RaiseNotBefore(%s) = nil, want an error", name)
				}
			}
		})
	}
}

// TestNotBeforeExpires checks that a record goes once its keep has passed
// (the tokens it refused have all expired), and that raising extends it.
func TestNotBeforeExpires(t *testing.T) {
	ctx := context.Background()
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			clk := statetest.NewClock(t0())
			s, _ := be.open(t, clk)
			now := clk.Now()
			const keep = 1500 * time.Millisecond
			mustNil(t, "RaiseNotBefore", s.RaiseNotBefore(ctx, map[string]time.Time{"alice": now, "bob": now}, keep))
			// Re-raising bob with the same instant and a longer keep
			// extends his record.
			mustNil(t, "RaiseNotBefore(extend)", s.RaiseNotBefore(ctx, map[string]time.Time{"bob": now}, time.Hour))
			// Redis expires by its own clock, the embedded store by the
			// injected one: advance both.
			clk.Advance(3 * time.Second)
			deadline := time.Now().Add(10 * time.Second)
			for {
				got, err := s.NotBefore(ctx, []string{"alice", "bob"})
				mustNil(t, "NotBefore", err)
				if _, ok := got["alice"]; !ok {
					if _, ok := got["bob"]; !ok {
						t.Fatalf("NotBefore() = %v, want bob's extended record kept", got)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("alice's record still there after its keep: %v", got)
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
}

func TestMemoryNotBeforePersists(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.json")
	clk := statetest.NewClock(t0())
	now := clk.Now()
	m1 := newMemory(t, MemoryOptions{Now: clk.Now, Path: path})
	mustNil(t, "RaiseNotBefore", m1.RaiseNotBefore(ctx, map[string]time.Time{"alice": now, "gone": now}, time.Hour))
	mustNil(t, "RaiseNotBefore(gone)", m1.RaiseNotBefore(ctx, map[string]time.Time{"gone": now}, time.Hour))
	// Written before the call returned: a crash right after loses nothing.
	crash := newMemory(t, MemoryOptions{Now: clk.Now, Path: path})
	if got, _ := crash.NotBefore(ctx, []string{"alice"}); !got["alice"].Equal(now) {
		t.Errorf("after crash: NotBefore(alice) = %v, want %v", got, now)
	}
	mustNil(t, "Close", m1.Close())
	clk.Advance(2 * time.Hour)
	m2 := newMemory(t, MemoryOptions{Now: clk.Now, Path: path})
	if got, _ := m2.NotBefore(ctx, []string{"alice", "gone"}); len(got) != 0 {
		t.Errorf("after restart past the keep: NotBefore() = %v, want nothing", got)
	}
}

// TestRedisNotBeforeTTL checks that a not-before record expires in Redis no
// later than its instant plus keep.
func TestRedisNotBeforeTTL(t *testing.T) {
	srv := statetest.StartServer(t)
	s := newRedis(t, srv.URL(3), "nbttl:", nil)
	ctx := context.Background()
	now := time.Now()
	mustNil(t, "RaiseNotBefore", s.RaiseNotBefore(ctx, map[string]time.Time{"alice": now}, time.Hour))
	ttl, err := rawClient(t, srv.URL(3)).PTTL(ctx, "nbttl:nb:{alice}").Result()
	if err != nil || ttl <= 59*time.Minute || ttl > time.Hour {
		t.Errorf("PTTL(nb:{alice}) = %v, %v; want just under 1h", ttl, err)
	}
}
