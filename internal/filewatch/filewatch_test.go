package filewatch

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

var errRejected = errors.New("rejected")

// loader records what it was given and rejects content starting with "bad".
type loader struct {
	mu   sync.Mutex
	got  []string
	good string // the last accepted content
}

func (l *loader) load(data []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, string(data))
	if len(data) >= 3 && string(data[:3]) == "bad" {
		return errRejected
	}
	l.good = string(data)
	return nil
}

func (l *loader) calls() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.got)
}

// results collects the watcher's reports.
type results struct {
	mu  sync.Mutex
	all []Result
	ch  chan Result
}

func newResults() *results { return &results{ch: make(chan Result, 64)} }

func (r *results) add(res Result) {
	r.mu.Lock()
	r.all = append(r.all, res)
	r.mu.Unlock()
	r.ch <- res
}

func (r *results) take() []Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.all
	r.all = nil
	for len(r.ch) > 0 {
		<-r.ch
	}
	return out
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// clock is a settable clock for the settle interval.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// later is a clock an hour ahead, so files written by a test are old
// enough for Add to load them at once.
func later() time.Time { return time.Now().Add(time.Hour) }

// testSettle is the settle interval of the watchers built by setup.
const testSettle = 2 * time.Second

// setup returns a watcher over dir/policy.yaml holding "v1", timed by a
// fake clock that starts well after the file was written.
func setup(t *testing.T) (*Watcher, *loader, *results, string) {
	w, l, res, path, _ := setupClock(t)
	return w, l, res, path
}

func setupClock(t *testing.T) (*Watcher, *loader, *results, string, *clock) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	write(t, path, "v1")
	l, res := &loader{}, newResults()
	c := &clock{t: time.Now().Add(time.Hour)}
	w := New(time.Hour, res.add, WithSettle(testSettle), WithClock(c.now))
	if err := w.Add(path, l.load); err != nil {
		t.Fatalf("Add(%s) error = %v", path, err)
	}
	return w, l, res, path, c
}

// settleAndCheck checks once (the edit is seen), lets the settle interval
// pass and checks again (the edit is applied).
func settleAndCheck(w *Watcher, c *clock) {
	w.Check(false)
	c.advance(testSettle)
	w.Check(false)
}

// withoutPending drops the Pending reports.
func withoutPending(rs []Result) []Result {
	var out []Result
	for _, r := range rs {
		if !r.Pending {
			out = append(out, r)
		}
	}
	return out
}

func TestAdd(t *testing.T) {
	t.Run("loads once", func(t *testing.T) {
		_, l, res, _ := setup(t)
		if got := l.calls(); !slices.Equal(got, []string{"v1"}) {
			t.Errorf("loader calls = %q, want [v1]", got)
		}
		if got := res.take(); len(got) != 0 {
			t.Errorf("Add() reported %v, want nothing", got)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		w := New(time.Hour, nil)
		l := &loader{}
		err := w.Add(filepath.Join(t.TempDir(), "nope.yaml"), l.load)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Add(missing) error = %v, want ErrNotExist", err)
		}
		w.Check(true)
		if n := len(l.calls()); n != 0 {
			t.Errorf("loader called %d times for a file that failed Add, want 0", n)
		}
	})
	t.Run("loader error", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "p.yaml")
		write(t, path, "bad content")
		w, l := New(time.Hour, nil, WithClock(later)), &loader{}
		if err := w.Add(path, l.load); !errors.Is(err, errRejected) {
			t.Errorf("Add(rejected content) error = %v, want the loader's error", err)
		}
		write(t, path, "good now")
		w.Check(true)
		if got := l.calls(); len(got) != 1 {
			t.Errorf("loader calls = %q, want only the failed Add: an unloadable file is not watched", got)
		}
	})
}

func TestCheck(t *testing.T) {
	t.Run("unchanged file is not reloaded", func(t *testing.T) {
		w, l, res, _ := setup(t)
		w.Check(false)
		w.Check(false)
		if got := l.calls(); len(got) != 1 {
			t.Errorf("loader calls = %q, want only the initial load", got)
		}
		if got := res.take(); len(got) != 0 {
			t.Errorf("Check() reported %v for an unchanged file", got)
		}
	})
	t.Run("same content rewritten is not reloaded", func(t *testing.T) {
		w, l, res, path := setup(t)
		write(t, path, "v1")
		later := time.Now().Add(time.Minute)
		if err := os.Chtimes(path, later, later); err != nil {
			t.Fatal(err)
		}
		w.Check(false)
		if got := l.calls(); len(got) != 1 {
			t.Errorf("loader calls = %q, want no reload for identical content", got)
		}
		if got := res.take(); len(got) != 0 {
			t.Errorf("Check() reported %v", got)
		}
	})
	t.Run("edit in place reloads once settled", func(t *testing.T) {
		w, l, res, path, c := setupClock(t)
		write(t, path, "v2")
		w.Check(false)
		if got := l.calls(); !slices.Equal(got, []string{"v1"}) {
			t.Errorf("loader calls right after the edit = %q, want [v1]: an in-place edit waits to settle", got)
		}
		if got := res.take(); len(got) != 1 || !got[0].Pending || got[0].Err != nil || got[0].Changed {
			t.Errorf("Check() right after the edit reported %+v, want one pending change", got)
		}
		c.advance(testSettle - time.Millisecond)
		w.Check(false)
		if got := l.calls(); !slices.Equal(got, []string{"v1"}) {
			t.Errorf("loader calls before the settle interval passed = %q, want [v1]", got)
		}
		c.advance(time.Millisecond)
		w.Check(false)
		if got := l.calls(); !slices.Equal(got, []string{"v1", "v2"}) {
			t.Errorf("loader calls = %q, want [v1 v2]", got)
		}
		if got := res.take(); len(got) != 1 || !got[0].Changed || got[0].Err != nil || got[0].Path != path {
			t.Errorf("Check() reported %+v, want one successful change of %s", got, path)
		}
	})
	t.Run("forced check reloads unchanged file", func(t *testing.T) {
		w, l, res, _ := setup(t)
		w.Check(true)
		if got := l.calls(); !slices.Equal(got, []string{"v1", "v1"}) {
			t.Errorf("loader calls = %q, want [v1 v1]", got)
		}
		if got := res.take(); len(got) != 1 || got[0].Err != nil {
			t.Errorf("Check(true) reported %+v, want one success", got)
		}
	})
}

func TestConfigMapSymlinkSwap(t *testing.T) {
	// The layout kubelet writes for a mounted ConfigMap: the file is a
	// symlink through "..data", which is itself swapped atomically.
	dir := t.TempDir()
	mkdata := func(name, content string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, name, "policy.yaml"), content)
	}
	mkdata("..2026_01", "v1")
	if err := os.Symlink("..2026_01", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "policy.yaml")
	if err := os.Symlink(filepath.Join("..data", "policy.yaml"), path); err != nil {
		t.Fatal(err)
	}
	l, res := &loader{}, newResults()
	w := New(time.Hour, res.add, WithClock(later))
	if err := w.Add(path, l.load); err != nil {
		t.Fatalf("Add() error = %v", err)
	}

	mkdata("..2026_02", "v2")
	if err := os.Symlink("..2026_02", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "..2026_01")); err != nil {
		t.Fatal(err)
	}
	w.Check(false)
	if got := l.calls(); !slices.Equal(got, []string{"v1", "v2"}) {
		t.Errorf("loader calls after the ..data swap = %q, want [v1 v2]", got)
	}
	if got := res.take(); len(got) != 1 || got[0].Err != nil || got[0].Path != path {
		t.Errorf("Check() reported %+v, want one success for %s", got, path)
	}
}

func TestRejectedContent(t *testing.T) {
	w, l, res, path, c := setupClock(t)
	write(t, path, "bad 1")
	settleAndCheck(w, c)
	got := withoutPending(res.take())
	if len(got) != 1 || !errors.Is(got[0].Err, errRejected) || !got[0].Changed {
		t.Fatalf("Check() after a bad edit reported %+v, want one rejected change", got)
	}
	w.Check(false)
	w.Check(false)
	if n := len(l.calls()); n != 2 {
		t.Errorf("loader called %d times, want 2: rejected content is not retried every interval", n)
	}
	if got := res.take(); len(got) != 0 {
		t.Errorf("Check() repeated a report for the same rejected content: %+v", got)
	}
	if l.good != "v1" {
		t.Errorf("last good content = %q, want v1 kept", l.good)
	}

	write(t, path, "bad 2")
	settleAndCheck(w, c)
	if got := withoutPending(res.take()); len(got) != 1 || !errors.Is(got[0].Err, errRejected) {
		t.Errorf("Check() after a second bad edit reported %+v, want it tried again", got)
	}
	write(t, path, "v2")
	settleAndCheck(w, c)
	if got := withoutPending(res.take()); len(got) != 1 || got[0].Err != nil || l.good != "v2" {
		t.Errorf("Check() after a fix reported %+v (loaded %q), want v2 loaded", got, l.good)
	}
}

func TestDeletedFile(t *testing.T) {
	w, l, res, path := setup(t)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		w.Check(false)
	}
	w.Check(true)
	got := res.take()
	if len(got) != 1 || !errors.Is(got[0].Err, fs.ErrNotExist) || got[0].Changed {
		t.Fatalf("Check() on a deleted file reported %+v, want exactly one not-exist error", got)
	}
	if n := len(l.calls()); n != 1 {
		t.Errorf("loader called %d times while the file was gone, want only the initial load", n)
	}

	write(t, path, "v1") // restored with the same content
	w.Check(false)
	if got := l.calls(); !slices.Equal(got, []string{"v1", "v1"}) {
		t.Errorf("loader calls after restore = %q, want the restored file reloaded", got)
	}
	if got := res.take(); len(got) != 1 || got[0].Err != nil {
		t.Errorf("Check() after restore reported %+v, want one success", got)
	}
	w.Check(false)
	if n := len(l.calls()); n != 2 {
		t.Errorf("loader called %d times, want no reload after the restore settled", n)
	}
}

func TestRun(t *testing.T) {
	t.Run("trigger forces a reload", func(t *testing.T) {
		w, l, res, _ := setup(t)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { w.Run(ctx); close(done) }()
		w.Trigger()
		select {
		case r := <-res.ch:
			if r.Err != nil {
				t.Errorf("forced reload reported %v", r.Err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Trigger() did not cause a reload")
		}
		if got := l.calls(); !slices.Equal(got, []string{"v1", "v1"}) {
			t.Errorf("loader calls = %q, want the unchanged file reloaded", got)
		}
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Run() did not return after ctx was cancelled")
		}
	})
	t.Run("trigger never blocks", func(t *testing.T) {
		w := New(time.Hour, nil)
		for range 10 {
			w.Trigger() // no Run loop is draining the channel
		}
	})
	t.Run("ticker polls", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "p.yaml")
		write(t, path, "v1")
		l, res := &loader{}, newResults()
		w := New(5*time.Millisecond, res.add, WithSettle(20*time.Millisecond))
		if err := w.Add(path, l.load); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan struct{})
		go func() { w.Run(ctx); close(done) }()
		write(t, path, "v2")
		for done := false; !done; {
			select {
			case r := <-res.ch:
				if r.Pending {
					continue
				}
				if r.Err != nil || !r.Changed {
					t.Errorf("poll reported %+v, want a successful change", r)
				}
				done = true
			case <-time.After(10 * time.Second):
				t.Fatal("Run() did not apply the edit")
			}
		}
		cancel()
		<-done
	})
	t.Run("stops on an already cancelled context", func(t *testing.T) {
		w := New(time.Hour, nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		done := make(chan struct{})
		go func() { w.Run(ctx); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Run() did not return for a cancelled ctx")
		}
	})
}

func TestAddWhileRunning(t *testing.T) {
	dir := t.TempDir()
	w := New(time.Millisecond, nil, WithClock(later))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := filepath.Join(dir, string(rune('a'+i)))
			write(t, path, "v1")
			if err := w.Add(path, (&loader{}).load); err != nil {
				t.Errorf("Add(%s) error = %v", path, err)
			}
			w.Trigger()
		}()
	}
	wg.Wait()
	cancel()
	<-done
}
