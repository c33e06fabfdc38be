package state

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/authn/state/statetest"
)

func newMemory(t *testing.T, o MemoryOptions) *Memory {
	t.Helper()
	m, err := NewMemory(o)
	if err != nil {
		t.Fatalf("NewMemory(%+v) error = %v", o, err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func TestNewMemoryRejectsNegativeMaxKeys(t *testing.T) {
	if _, err := NewMemory(MemoryOptions{MaxKeys: -1}); err == nil {
		t.Errorf("NewMemory(MaxKeys: -1) error = nil, want error")
	}
}

func TestMemoryLimiterIsBounded(t *testing.T) {
	tests := []struct {
		name    string
		maxKeys int
		wantMax int
		keys    int
	}{
		{"small map", 10000, 10000, 200000},
		{"default size", 0, DefaultMaxKeys, 120000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := statetest.NewClock(t0())
			m := newMemory(t, MemoryOptions{Now: clk.Now, MaxKeys: tt.maxKeys})
			// A window far longer than the test, so nothing expires by
			// idleness and eviction alone must bound the map.
			l := Limit{Every: time.Hour, Burst: 5}

			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			ctx := context.Background()
			for i := range tt.keys {
				ok, _, err := m.Allow(ctx, "t", "ip:"+strconv.Itoa(i), l)
				if err != nil || !ok {
					t.Fatalf("Allow(ip:%d) = %v, %v; want true, nil", i, ok, err)
				}
				if i%1000 == 0 {
					if n := m.Len(); n > tt.wantMax {
						t.Fatalf("after %d keys Len() = %d, want <= %d", i+1, n, tt.wantMax)
					}
				}
			}
			if n := m.Len(); n != tt.wantMax {
				t.Errorf("after %d keys Len() = %d, want %d", tt.keys, n, tt.wantMax)
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
			// Generous: about 1 KiB per bucket allowed; unbounded growth
			// over all keys would exceed it.
			limit := int64(tt.wantMax) * 1024
			t.Logf("heap grew %d KiB for %d keys (%d kept)", grown>>10, tt.keys, m.Len())
			if grown > limit {
				t.Errorf("heap grew by %d bytes for %d keys, want <= %d", grown, tt.keys, limit)
			}
			runtime.KeepAlive(m)
		})
	}
}

func TestMemoryIdleBucketsExpire(t *testing.T) {
	clk := statetest.NewClock(t0())
	m := newMemory(t, MemoryOptions{Now: clk.Now})
	l := Limit{Every: time.Second, Burst: 2}
	ctx := context.Background()
	for i := range 20 {
		_, _, _ = m.Allow(ctx, "t", "k"+strconv.Itoa(i), l)
	}
	clk.Advance(l.window())
	for range 10 {
		_, _, _ = m.Allow(ctx, "t", "fresh", l)
	}
	if n := m.Len(); n != 1 {
		t.Errorf("Len() after all other buckets went idle = %d, want 1", n)
	}
}

func TestMemoryEvictsTheBucketOwingLeast(t *testing.T) {
	clk := statetest.NewClock(t0())
	m := newMemory(t, MemoryOptions{Now: clk.Now, MaxKeys: 3})
	l := Limit{Every: time.Hour, Burst: 3}
	ctx := context.Background()
	// a is spent (owes 3h), c owes 2h, b owes 1h and was used last.
	for _, k := range []string{"a", "a", "a", "c", "c", "b"} {
		if ok, _, _ := m.Allow(ctx, "t", k, l); !ok {
			t.Fatalf("Allow(%s) = false while filling", k)
		}
	}
	// A fourth key evicts b, the bucket closest to full, although it is
	// the most recently used: an LRU would have dropped a, the exhausted
	// one, and handed its owner a fresh burst.
	_, _, _ = m.Allow(ctx, "t", "d", l)
	if n := m.Len(); n != 3 {
		t.Fatalf("Len() = %d, want 3", n)
	}
	if ok, _, _ := m.Allow(ctx, "t", "a", l); ok {
		t.Errorf("Allow(a) after the eviction = true, want false: the exhausted bucket was dropped")
	}
	for range 3 {
		if ok, _, _ := m.Allow(ctx, "t", "b", l); !ok {
			t.Errorf("Allow(b) = false, want a full bucket again after its eviction")
		}
	}
}

func TestMemorySweepsExpiredEntries(t *testing.T) {
	clk := statetest.NewClock(t0())
	m := newMemory(t, MemoryOptions{Now: clk.Now})
	ctx := context.Background()
	exp := clk.Now().Add(time.Minute)
	for i := range 100 {
		mustNil(t, "StartFamily()", m.StartFamily(ctx, "f"+strconv.Itoa(i), "j", exp))
		mustNil(t, "Revoke()", m.Revoke(ctx, "r"+strconv.Itoa(i), exp))
	}
	clk.Advance(time.Minute + sweepInterval)
	if revoked, _ := m.IsRevoked(ctx, "r1"); revoked {
		t.Errorf("IsRevoked(r1) after expiry = true, want false")
	}
	mustIs(t, "Rotate(f1)", m.Rotate(ctx, "f1", "j", "j2", clk.Now().Add(time.Hour)), ErrRevoked)
	mustNil(t, "Revoke(live)", m.Revoke(ctx, "live", clk.Now().Add(time.Hour)))
	m.mu.Lock()
	nf, nr := len(m.families), len(m.revoked)
	m.mu.Unlock()
	if nf != 0 || nr != 1 {
		t.Errorf("after sweep: %d families, %d revocations; want 0, 1", nf, nr)
	}
}

func TestMemoryPersistsAcrossRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.json")
	clk := statetest.NewClock(t0())
	exp := clk.Now().Add(time.Hour)

	m1 := newMemory(t, MemoryOptions{Now: clk.Now, Path: path})
	mustNil(t, "Revoke(j1)", m1.Revoke(ctx, "j1", exp))
	mustNil(t, "Revoke(gone)", m1.Revoke(ctx, "gone", clk.Now().Add(time.Minute)))
	mustNil(t, "StartFamily(f, a1)", m1.StartFamily(ctx, "f", "a1", exp))
	mustNil(t, "StartFamily(g, b1)", m1.StartFamily(ctx, "g", "b1", exp))
	mustNil(t, "Rotate(g, b1, b2)", m1.Rotate(ctx, "g", "b1", "b2", exp))
	mustNil(t, "StartFamily(h, c1)", m1.StartFamily(ctx, "h", "c1", exp))
	mustNil(t, "Rotate(h, c1, c2)", m1.Rotate(ctx, "h", "c1", "c2", exp))
	mustIs(t, "Rotate(h, c1, c3)", m1.Rotate(ctx, "h", "c1", "c3", exp), ErrReuse)

	// Revocations are written before the call returns: a second process
	// started without a clean shutdown of the first already sees them.
	crash := newMemory(t, MemoryOptions{Now: clk.Now, Path: path})
	if got, _ := crash.IsRevoked(ctx, "j1"); !got {
		t.Errorf("after crash: IsRevoked(j1) = false, want true")
	}
	mustIs(t, "after crash: Rotate(h, c2, c4)", crash.Rotate(ctx, "h", "c2", "c4", exp), ErrRevoked)

	mustNil(t, "RevokeFamily(f)", m1.RevokeFamily(ctx, "f", exp))
	mustNil(t, "Close()", m1.Close())

	info, err := os.Stat(path)
	if err != nil {
		t.Fatalf("Stat(%s) error = %v", path, err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("state file mode = %v, want 0600", perm)
	}

	clk.Advance(2 * time.Minute) // "gone" expires while stopped
	m2 := newMemory(t, MemoryOptions{Now: clk.Now, Path: path})
	for jti, want := range map[string]bool{"j1": true, "gone": false, "other": false} {
		if got, err := m2.IsRevoked(ctx, jti); err != nil || got != want {
			t.Errorf("after restart: IsRevoked(%s) = %v, %v; want %v, nil", jti, got, err, want)
		}
	}
	mustIs(t, "after restart: Rotate(f, a1, a2)", m2.Rotate(ctx, "f", "a1", "a2", exp), ErrRevoked)
	mustIs(t, "after restart: Rotate(h, c2, c4)", m2.Rotate(ctx, "h", "c2", "c4", exp), ErrRevoked)
	mustNil(t, "after restart: Rotate(g, b2, b3)", m2.Rotate(ctx, "g", "b2", "b3", exp))
	if _, ok := m2.revoked["gone"]; ok {
		t.Errorf("after restart: expired revocation was loaded")
	}
}

func TestMemoryDebouncedWrite(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.json")
	clk := statetest.NewClock(t0())
	exp := clk.Now().Add(time.Hour)
	m := newMemory(t, MemoryOptions{Now: clk.Now, Path: path})
	mustNil(t, "StartFamily(f, a1)", m.StartFamily(ctx, "f", "a1", exp))
	deadline := time.Now().Add(time.Second + flushDelay)
	for {
		b, err := os.ReadFile(path)
		if err == nil && strings.Contains(string(b), `"f"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("family not written to %s within %v", path, time.Second+flushDelay)
		}
		time.Sleep(20 * time.Millisecond)
	}
	other := newMemory(t, MemoryOptions{Now: clk.Now, Path: path})
	mustNil(t, "Rotate(f, a1, a2) on reloaded state", other.Rotate(ctx, "f", "a1", "a2", exp))
}

func TestMemoryCorruptStateFile(t *testing.T) {
	exp := t0().Add(time.Hour).UTC().Format(time.RFC3339)
	tests := []struct {
		name    string
		content string
	}{
		{"empty", ""},
		{"garbage", "not json"},
		{"truncated", `{"version":1,"families":{`},
		{"unknown field", `{"version":1,"families":{},"revoked":{},"extra":1}`},
		{"wrong version", `{"version":2,"families":{},"revoked":{}}`},
		{"missing version", `{"families":{},"revoked":{}}`},
		{"trailing data", `{"version":1,"families":{},"revoked":{}} {}`},
		{"bad time", `{"version":1,"families":{},"revoked":{"j":"yesterday"}}`},
		{"family without token", `{"version":1,"families":{"f":{"exp":"` + exp + `"}},"revoked":{}}`},
		{"empty revocation id", `{"version":1,"families":{},"revoked":{"":"` + exp + `"}}`},
		{"not-before without instant", `{"version":1,"families":{},"revoked":{},"not_before":{"alice":{"exp":"` + exp + `"}}}`},
		{"not-before for no one", `{"version":1,"families":{},"revoked":{},"not_before":{"":{"at":"` + exp + `","exp":"` + exp + `"}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.json")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			m, err := NewMemory(MemoryOptions{Path: path})
			if err == nil {
				_ = m.Close()
				t.Fatalf("NewMemory(Path: %q) with %s file = nil error, want error", path, tt.name)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("NewMemory() error = %q, want it to name %s", err, path)
			}
		})
	}
	t.Run("valid file loads", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "state.json")
		content := `{"version":1,"families":{"f":{"current":"a","exp":"` + exp + `"}},"revoked":{"j":"` + exp + `"}}`
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		m := newMemory(t, MemoryOptions{Now: t0, Path: path})
		if got, _ := m.IsRevoked(context.Background(), "j"); !got {
			t.Errorf("IsRevoked(j) = false, want true")
		}
	})
	t.Run("unreadable path", func(t *testing.T) {
		dir := t.TempDir() // a directory cannot be read as a file
		if _, err := NewMemory(MemoryOptions{Path: dir}); err == nil {
			t.Errorf("NewMemory(Path: directory) error = nil, want error")
		}
	})
}

func TestMemoryWriteFailureFailsClosed(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "missing-dir", "state.json")
	clk := statetest.NewClock(t0())
	m := newMemory(t, MemoryOptions{Now: clk.Now, Path: path})
	err := m.Revoke(ctx, "j", clk.Now().Add(time.Hour))
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("Revoke() with unwritable state file = %v, want ErrUnavailable", err)
	}
	// The revocation still holds in this process.
	if got, _ := m.IsRevoked(ctx, "j"); !got {
		t.Errorf("IsRevoked(j) after failed write = false, want true")
	}
	if err := m.Ping(ctx); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Ping() after failed write = %v, want ErrUnavailable", err)
	}
	exp := clk.Now().Add(time.Hour)
	mustNil(t, "StartFamily(f, a)", m.StartFamily(ctx, "f", "a", exp))
	mustNil(t, "Rotate(f, a, b)", m.Rotate(ctx, "f", "a", "b", exp))
	err = m.Rotate(ctx, "f", "a", "c", exp)
	if !errors.Is(err, ErrReuse) || !errors.Is(err, ErrUnavailable) {
		t.Errorf("Rotate(f, a, c) reuse with unwritable file = %v, want ErrReuse and ErrUnavailable", err)
	}
}
