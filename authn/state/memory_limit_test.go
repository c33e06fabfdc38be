package state

import (
	"context"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/authgate/authgate/authn/state/statetest"
)

// TestMemoryKindsDoNotEvictEachOther spends a real account's budget and a
// client's per-IP login bucket, then floods every other kind of entry far
// past MaxKeys: refresh buckets from fresh clients, attempts on invented
// usernames (names and pairs), and attempts on the account itself from
// fresh clients. None of it may hand the spent buckets back.
func TestMemoryKindsDoNotEvictEachOther(t *testing.T) {
	const maxKeys = 500
	clk := statetest.NewClock(t0())
	m := newMemory(t, MemoryOptions{Now: clk.Now, MaxKeys: maxKeys})
	ctx := context.Background()
	l := testLogin()
	ipLimit := Limit{Every: time.Hour, Burst: 1}
	check := func(acct string, known bool, client string) LoginVerdict {
		t.Helper()
		k := LoginKey{Account: acct, Known: known, Client: client}
		v, err := m.CheckLogin(ctx, k, l)
		if err != nil {
			t.Fatal(err)
		}
		if v.Allowed {
			mustNil(t, "SettleLogin()", m.SettleLogin(ctx, k, l, v.Tier, LoginFailed))
		}
		return v
	}
	// Spend alice: user (3) and clean (1).
	for _, c := range []string{"a1", "a1", "a2", "a3"} {
		if v := check("alice", true, c); !v.Allowed {
			t.Fatalf("spending alice from %s: %+v", c, v)
		}
	}
	if ok, _, _ := m.Allow(ctx, "login:ip", "a1", ipLimit); !ok {
		t.Fatal("first per-IP login token refused")
	}
	assertSpent := func(phase string) {
		t.Helper()
		if v := check("alice", true, "fresh-"+phase); v.Allowed {
			t.Errorf("%s: a clean client was admitted on spent alice: %+v", phase, v)
		}
		if ok, _, _ := m.Allow(ctx, "login:ip", "a1", ipLimit); ok {
			t.Errorf("%s: the spent per-IP login bucket was refilled", phase)
		}
	}
	assertSpent("before")
	for i := range 3 * maxKeys {
		if ok, _, err := m.Allow(ctx, "refresh:ip", "r"+strconv.Itoa(i), ipLimit); !ok || err != nil {
			t.Fatalf("refresh flood %d: %v %v", i, ok, err)
		}
	}
	assertSpent("after a refresh flood")
	for i := range 3 * maxKeys {
		if v := check("nobody"+strconv.Itoa(i), false, "u"+strconv.Itoa(i)); !v.Allowed {
			t.Fatalf("invented name %d refused: %+v", i, v)
		}
	}
	assertSpent("after a flood of invented usernames")
	for i := range 3 * maxKeys {
		check("alice", true, "p"+strconv.Itoa(i))
	}
	assertSpent("after a flood of fresh clients on alice")
	// Within one scope, the bucket owing most goes last: a2 has spent two
	// tokens, every flooding client one.
	two := Limit{Every: time.Hour, Burst: 2}
	for range 2 {
		_, _, _ = m.Allow(ctx, "login:ip", "a2", two)
	}
	for i := range 3 * maxKeys {
		_, _, _ = m.Allow(ctx, "login:ip", "i"+strconv.Itoa(i), two)
	}
	if ok, _, _ := m.Allow(ctx, "login:ip", "a2", two); ok {
		t.Errorf("a flood of one-token buckets in its own scope refilled a spent per-IP bucket")
	}
	lm := m.lim
	lm.mu.Lock()
	defer lm.mu.Unlock()
	for name, n := range map[string]int{"pairs": lm.pairs.len(), "known": lm.known.len(), "unknown": lm.unknown.len(),
		"login:ip": lm.scopes["login:ip"].len(), "refresh:ip": lm.scopes["refresh:ip"].len()} {
		if n > maxKeys {
			t.Errorf("%s table holds %d entries, want <= %d", name, n, maxKeys)
		}
	}
}

// TestMemoryLoginTablesAreBounded fills each login table with twice
// DefaultMaxKeys distinct entries and reports the heap each kept entry
// costs, the figure behind the memory bound in the README.
func TestMemoryLoginTablesAreBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 600,000 entries")
	}
	l := testLogin()
	l.User = Limit{Every: time.Hour, Burst: 1}
	for _, tc := range []struct {
		name  string
		fill  func(m *Memory, i int)
		count func(m *Memory) int
	}{
		{"per-IP buckets", func(m *Memory, i int) {
			_, _, _ = m.Allow(context.Background(), "login:ip", "2001:db8:"+strconv.Itoa(i)+"::/64", Limit{Every: time.Hour, Burst: 5})
		}, func(m *Memory) int { return m.lim.scopes["login:ip"].len() }},
		{"invented usernames and their pairs", func(m *Memory, i int) {
			k := LoginKey{Account: "nobody-" + strconv.Itoa(i), Client: "2001:db8:" + strconv.Itoa(i) + "::/64"}
			v, _ := m.CheckLogin(context.Background(), k, l)
			_ = m.SettleLogin(context.Background(), k, l, v.Tier, LoginFailed)
		}, func(m *Memory) int { return m.lim.unknown.len() + m.lim.pairs.len() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := statetest.NewClock(t0())
			m := newMemory(t, MemoryOptions{Now: clk.Now})
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			for i := range 2 * DefaultMaxKeys {
				tc.fill(m, i)
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			n := tc.count(m)
			if n > 2*DefaultMaxKeys {
				t.Errorf("holds %d entries, want <= %d", n, 2*DefaultMaxKeys)
			}
			per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / int64(max(n, 1))
			t.Logf("%d entries kept, %d bytes of heap each", n, per)
			if per > 400 {
				t.Errorf("%d bytes per entry, want <= 400", per)
			}
			runtime.KeepAlive(m)
		})
	}
}

// TestTableMatchesReference runs random operations on a table and on a
// plain map with the same rules, and compares them after every step.
func TestTableMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const max = 8
	tb := newTable[int](max)
	ref := map[string]int64{} // key -> until
	var now int64 = 1000
	for step := range 20000 {
		now += rng.Int64N(3) * 100000
		key := "k" + strconv.Itoa(rng.IntN(20))
		switch rng.IntN(3) {
		case 0:
			got := tb.get(key, now)
			want, ok := ref[key]
			if ok && want <= now {
				delete(ref, key)
				ok = false
			}
			if (got != 0) != ok {
				t.Fatalf("step %d: get(%s) = %d, reference has %v", step, key, got, ok)
			}
		case 1:
			// Distinct untils, so that eviction has no ties to break.
			until := now + (rng.Int64N(40)-5)*100000 + int64(step)
			if _, ok := ref[key]; !ok && until > now && len(ref) >= max {
				// Evict the reference's earliest until, as the table does.
				keys := make([]string, 0, len(ref))
				for k := range ref {
					keys = append(keys, k)
				}
				minUntil := slices.MinFunc(keys, func(a, b string) int { return int(ref[a] - ref[b]) })
				delete(ref, minUntil)
			}
			tb.set(key, now, 1, until)
			if until <= now {
				delete(ref, key)
			} else {
				ref[key] = until
			}
		case 2:
			// Only expired entries go; the reference ignores those.
			tb.sweep(now, 2)
		}
		if tb.len() > max {
			t.Fatalf("step %d: len %d > max %d", step, tb.len(), max)
		}
		// Every live reference entry is in the table with its until.
		for k, u := range ref {
			if u <= now {
				continue
			}
			e, ok := tb.index[k]
			if !ok || e.until != u {
				t.Fatalf("step %d: key %s: table %v, reference until %d", step, k, e, u)
			}
		}
		for i, e := range tb.order {
			if e.pos != i || tb.index[e.key] != e {
				t.Fatalf("step %d: heap position %d holds %+v", step, i, e)
			}
			if p := (i - 1) / 2; i > 0 && tb.order[p].until > e.until {
				t.Fatalf("step %d: heap order broken at %d", step, i)
			}
		}
	}
}
