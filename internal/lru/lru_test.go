package lru

import (
	"crypto/sha256"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

func key(s string) [32]byte { return sha256.Sum256([]byte(s)) }

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestGetNeverServesAnExpiredEntry(t *testing.T) {
	tests := []struct {
		name string
		at   time.Time
		want Result
	}{
		{"well before expiry", t0.Add(-time.Minute), Hit},
		{"one nanosecond before expiry", t0.Add(-time.Nanosecond), Hit},
		{"at expiry", t0, Expired},
		{"after expiry", t0.Add(time.Hour), Expired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := New[string](4)
			c.Put(key("a"), "v", t0)
			if _, got := c.Get(key("a"), tc.at); got != tc.want {
				t.Fatalf("Get(a, %v) = %v, want %v", tc.at, got, tc.want)
			}
			if tc.want == Expired {
				if _, got := c.Get(key("a"), t0.Add(-time.Hour)); got != Miss {
					t.Errorf("Get after an expired lookup = %v, want Miss: the entry must be removed", got)
				}
				if c.Len() != 0 {
					t.Errorf("Len() = %d after the expired entry was seen, want 0", c.Len())
				}
			}
		})
	}
}

func TestPutEvictsTheLeastRecentlyUsed(t *testing.T) {
	c := New[int](2)
	c.Put(key("a"), 1, t0)
	c.Put(key("b"), 2, t0)
	if _, r := c.Get(key("a"), t0.Add(-time.Second)); r != Hit { // a is now the most recent
		t.Fatalf("Get(a) = %v, want Hit", r)
	}
	c.Put(key("c"), 3, t0)
	if _, r := c.Get(key("b"), t0.Add(-time.Second)); r != Miss {
		t.Errorf("Get(b) = %v after c was added, want Miss (b was least recently used)", r)
	}
	for _, k := range []string{"a", "c"} {
		if _, r := c.Get(key(k), t0.Add(-time.Second)); r != Hit {
			t.Errorf("Get(%s) = %v, want Hit", k, r)
		}
	}
	if c.Len() != 2 {
		t.Errorf("Len() = %d, want the bound 2", c.Len())
	}
}

func TestPutReplacesValueAndExpiry(t *testing.T) {
	c := New[int](2)
	c.Put(key("a"), 1, t0.Add(time.Hour))
	c.Put(key("a"), 2, t0)
	v, r := c.Get(key("a"), t0.Add(time.Minute))
	if r != Expired || v != 2 {
		t.Fatalf("Get(a) = %d, %v; want 2, Expired: a second Put must shorten the expiry too", v, r)
	}
	if c.Len() != 0 {
		t.Errorf("Len() = %d, want 0", c.Len())
	}
}

func TestRemove(t *testing.T) {
	c := New[int](2)
	c.Put(key("a"), 1, t0)
	c.Remove(key("a"))
	c.Remove(key("missing"))
	if _, r := c.Get(key("a"), t0.Add(-time.Second)); r != Miss {
		t.Errorf("Get(a) after Remove = %v, want Miss", r)
	}
}

func TestDisabledCacheStoresNothing(t *testing.T) {
	for _, size := range []int{0, -1} {
		c := New[int](size)
		if c != nil {
			t.Fatalf("New(%d) = %v, want nil (disabled)", size, c)
		}
		c.Put(key("a"), 1, t0)
		c.Remove(key("a"))
		if _, r := c.Get(key("a"), t0.Add(-time.Second)); r != Miss {
			t.Errorf("disabled Get = %v, want Miss", r)
		}
		if c.Len() != 0 {
			t.Errorf("disabled Len = %d, want 0", c.Len())
		}
	}
}

func TestConcurrentUseStaysBounded(t *testing.T) {
	const size = 64
	c := New[int](size)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				k := key(fmt.Sprint(g, i%200))
				c.Put(k, i, t0.Add(time.Duration(i%3)*time.Second))
				if v, r := c.Get(k, t0.Add(time.Second)); r == Hit && i%3 < 2 {
					t.Errorf("Get served value %d expiring at %v at t0+1s", v, t0.Add(time.Duration(i%3)*time.Second))
					return
				}
				if i%7 == 0 {
					c.Remove(k)
				}
			}
		}()
	}
	wg.Wait()
	if n := c.Len(); n > size {
		t.Fatalf("Len() = %d, want at most %d", n, size)
	}
}

// An empty cache costs the same whatever its bound: the memory comes with
// the entries.
//
// TotalAlloc counts the whole process, so a runtime or test-runner
// allocation made meanwhile adds to a measurement; the smallest of five is
// taken. A cache that reserved its bound would allocate tens of megabytes.
func TestEmptyCacheDoesNotReserveItsBound(t *testing.T) {
	var c *Cache[int]
	least := ^uint64(0)
	for range 5 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		c = New[int](1_000_000)
		runtime.ReadMemStats(&after)
		least = min(least, after.TotalAlloc-before.TotalAlloc)
	}
	if least > 4<<10 {
		t.Errorf("New(1,000,000) allocated %d bytes before any entry, want at most 4 KiB", least)
	}
	c.Put([32]byte{1}, 1, time.Now().Add(time.Minute))
	if _, res := c.Get([32]byte{1}, time.Now()); res != Hit {
		t.Errorf("Get after Put = %v, want Hit", res)
	}
}
