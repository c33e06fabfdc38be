package filewatch

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// writeInPlace rewrites path in place, as editors without write-and-rename
// do: truncate, then each chunk in turn, with between() run after the
// truncation and after every chunk but the last.
func writeInPlace(t *testing.T, path string, chunks []string, between func()) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	between()
	for i, c := range chunks {
		if _, err := f.WriteString(c); err != nil {
			t.Fatal(err)
		}
		if i < len(chunks)-1 {
			between()
		}
	}
}

func appendTo(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func TestInPlaceEditNeverLoadsAPrefix(t *testing.T) {
	w, l, res, path, c := setupClock(t)
	// Each step is seen by a check, and the writer pauses for just under
	// the settle interval: no prefix may ever reach the loader.
	writeInPlace(t, path, []string{"v2 part one, ", "part two, ", "part three"}, func() {
		w.Check(false)
		c.advance(testSettle - time.Millisecond)
		w.Check(false)
	})
	if got := l.calls(); !slices.Equal(got, []string{"v1"}) {
		t.Fatalf("loader calls during the edit = %q, want only [v1]", got)
	}
	settleAndCheck(w, c)
	if got := l.calls(); !slices.Equal(got, []string{"v1", "v2 part one, part two, part three"}) {
		t.Errorf("loader calls after the edit settled = %q, want v1 then the whole v2", got)
	}
	for _, r := range res.take() {
		if r.Err != nil {
			t.Errorf("Check() reported %+v during an in-place edit, want no error (an empty moment is not a version)", r)
		}
	}
}

func TestRewriteWithSameBytesButNewMtimeRestartsTheWait(t *testing.T) {
	w, l, _, path, c := setupClock(t)
	write(t, path, "v2")
	mtime := time.Now().Add(-time.Minute)
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	w.Check(false)
	c.advance(testSettle - time.Millisecond)
	// The writer touches the file again (same bytes, new mtime): it is
	// still at work, so the wait starts over.
	mtime = mtime.Add(time.Second)
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	w.Check(false)
	c.advance(time.Millisecond)
	w.Check(false)
	if got := l.calls(); !slices.Equal(got, []string{"v1"}) {
		t.Errorf("loader calls = %q, want [v1]: the file changed within the settle interval", got)
	}
	c.advance(testSettle)
	w.Check(false)
	if got := l.calls(); !slices.Equal(got, []string{"v1", "v2"}) {
		t.Errorf("loader calls = %q, want [v1 v2]", got)
	}
}

func TestTruncatedToZeroKeepsLastGood(t *testing.T) {
	w, l, res, path, c := setupClock(t)
	write(t, path, "")
	settleAndCheck(w, c)
	got := withoutPending(res.take())
	if len(got) != 1 || !errors.Is(got[0].Err, ErrEmpty) || got[0].Changed || !strings.Contains(got[0].Err.Error(), path) {
		t.Fatalf("Check() on a file left empty reported %+v, want one ErrEmpty naming %s", got, path)
	}
	for range 3 {
		c.advance(testSettle)
		w.Check(false)
	}
	if got := withoutPending(res.take()); len(got) != 0 {
		t.Errorf("Check() repeated %+v for a file that stayed empty, want one report", got)
	}
	if got := l.calls(); !slices.Equal(got, []string{"v1"}) || l.good != "v1" {
		t.Errorf("loader calls = %q (good %q), want the empty file never loaded", got, l.good)
	}
	write(t, path, "v2")
	settleAndCheck(w, c)
	if l.good != "v2" {
		t.Errorf("after the file was written again, loaded %q, want v2", l.good)
	}
}

func TestReplacedFileAppliesAtOnce(t *testing.T) {
	t.Run("rename over", func(t *testing.T) {
		w, l, res, path := setup(t)
		tmp := path + ".tmp"
		write(t, tmp, "v2")
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
		w.Check(false)
		if l.good != "v2" {
			t.Errorf("loaded %q right after the rename, want v2 without a settle wait", l.good)
		}
		if got := res.take(); len(got) != 1 || !got[0].Changed || got[0].Err != nil {
			t.Errorf("Check() reported %+v, want one successful change", got)
		}
	})
	t.Run("empty file renamed over", func(t *testing.T) {
		w, l, res, path := setup(t)
		tmp := path + ".tmp"
		write(t, tmp, "")
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
		w.Check(false)
		if got := res.take(); len(got) != 1 || !errors.Is(got[0].Err, ErrEmpty) {
			t.Errorf("Check() reported %+v, want ErrEmpty", got)
		}
		if got := l.calls(); !slices.Equal(got, []string{"v1"}) {
			t.Errorf("loader calls = %q, want the empty file never loaded", got)
		}
	})
	t.Run("replaced, then edited in place", func(t *testing.T) {
		w, l, _, path, c := setupClock(t)
		tmp := path + ".tmp"
		write(t, tmp, "v2")
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
		w.Check(false)
		write(t, path, "v3") // same inode as v2 now
		w.Check(false)
		if l.good != "v2" {
			t.Errorf("loaded %q, want v2 until the in-place edit settles", l.good)
		}
		c.advance(testSettle)
		w.Check(false)
		if l.good != "v3" {
			t.Errorf("loaded %q, want v3 once settled", l.good)
		}
	})
}

func TestForcedCheckSkipsTheSettleWait(t *testing.T) {
	w, l, res, path := setup(t)
	write(t, path, "v2")
	w.Check(true)
	if l.good != "v2" {
		t.Errorf("after Check(true) loaded %q, want v2 at once", l.good)
	}
	res.take()
	write(t, path, "")
	w.Check(true)
	if got := res.take(); len(got) != 1 || !errors.Is(got[0].Err, ErrEmpty) {
		t.Errorf("Check(true) on an empty file reported %+v, want ErrEmpty", got)
	}
	if l.good != "v2" {
		t.Errorf("after a forced check of an empty file, good = %q, want v2 kept", l.good)
	}
}

func TestEditDuringARead(t *testing.T) {
	w, l, res, path, c := setupClock(t)
	write(t, path, "v2 partial")
	// The first read of the edit races a write: it is discarded.
	var once sync.Once
	w.duringRead = func(p string) { once.Do(func() { appendTo(t, p, " and the rest") }) }
	w.Check(true) // even a forced check never loads a read that raced a write
	if got := l.calls(); !slices.Equal(got, []string{"v1"}) {
		t.Fatalf("loader calls after a racing read = %q, want [v1]", got)
	}
	if got := res.take(); len(got) != 1 || !errors.Is(got[0].Err, errRacing) {
		t.Errorf("Check(true) with a racing read reported %+v, want errRacing", got)
	}
	settleAndCheck(w, c)
	if got := l.calls(); !slices.Equal(got, []string{"v1", "v2 partial and the rest"}) {
		t.Errorf("loader calls = %q, want v1 then the whole v2", got)
	}
}

func TestEditBetweenPollsRestartsTheWait(t *testing.T) {
	w, l, _, path, c := setupClock(t)
	write(t, path, "v2 first half")
	w.Check(false)
	c.advance(testSettle / 2)
	write(t, path, "v2 first half, second half")
	w.Check(false)
	c.advance(testSettle / 2)
	w.Check(false)
	if got := l.calls(); !slices.Equal(got, []string{"v1"}) {
		t.Errorf("loader calls = %q, want [v1]: the last write is only half a settle interval old", got)
	}
	c.advance(testSettle / 2)
	w.Check(false)
	if got := l.calls(); !slices.Equal(got, []string{"v1", "v2 first half, second half"}) {
		t.Errorf("loader calls = %q, want the whole v2 and never the half", got)
	}
}

func TestChangedBackBeforeSettling(t *testing.T) {
	w, l, _, path, c := setupClock(t)
	write(t, path, "v1 with a typo")
	w.Check(false)
	write(t, path, "v1")
	c.advance(testSettle)
	w.Check(false)
	c.advance(testSettle)
	w.Check(false)
	if got := l.calls(); !slices.Equal(got, []string{"v1"}) {
		t.Errorf("loader calls = %q, want only the initial load: the content is back to what is loaded", got)
	}
}

func TestAddWaitsForAFreshFile(t *testing.T) {
	const settle = 150 * time.Millisecond
	t.Run("old file loads at once", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "p.yaml")
		write(t, path, "v1")
		old := time.Now().Add(-time.Minute)
		if err := os.Chtimes(path, old, old); err != nil {
			t.Fatal(err)
		}
		w, l := New(time.Hour, nil, WithSettle(30*time.Second)), &loader{}
		start := time.Now()
		if err := w.Add(path, l.load); err != nil || l.good != "v1" {
			t.Fatalf("Add() = %v, loaded %q; want v1", err, l.good)
		}
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("Add() of a file a minute old took %v, want no settle wait", d)
		}
	})
	t.Run("fresh file written in place during the wait", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "p.yaml")
		write(t, path, "v1 first half")
		w, l := New(time.Hour, nil, WithSettle(settle)), &loader{}
		var slept []time.Duration
		w.sleep = func(d time.Duration) {
			// The writer finishes while Add waits the first time.
			if len(slept) == 0 {
				appendTo(t, path, ", second half")
			}
			slept = append(slept, d)
			time.Sleep(d)
		}
		if err := w.Add(path, l.load); err != nil {
			t.Fatalf("Add() error = %v", err)
		}
		if got := l.calls(); !slices.Equal(got, []string{"v1 first half, second half"}) {
			t.Errorf("Add() loaded %q, want only the whole file", got)
		}
		if len(slept) == 0 {
			t.Error("Add() of a file written just now did not wait")
		}
	})
	t.Run("file that never settles", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "p.yaml")
		write(t, path, "v0")
		w, l := New(time.Hour, nil, WithSettle(time.Hour)), &loader{}
		n := 0
		w.sleep = func(time.Duration) {
			// The writer is at work during every wait.
			n++
			appendTo(t, path, "x")
		}
		err := w.Add(path, l.load)
		if err == nil || !strings.Contains(err.Error(), "still being written") {
			t.Errorf("Add(a file written during every wait) error = %v, want still being written", err)
		}
		if n != startupAttempts {
			t.Errorf("Add() waited %d times, want the bound %d", n, startupAttempts)
		}
		if got := len(l.calls()); got != 0 {
			t.Errorf("loader called %d times, want 0", got)
		}
	})
	t.Run("empty file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "p.yaml")
		write(t, path, "")
		w, l := New(time.Hour, nil, WithClock(later)), &loader{}
		if err := w.Add(path, l.load); !errors.Is(err, ErrEmpty) {
			t.Errorf("Add(empty file) error = %v, want ErrEmpty", err)
		}
		if n := len(l.calls()); n != 0 {
			t.Errorf("loader called %d times for an empty file, want 0", n)
		}
	})
}

func TestRunAppliesASettledEditWithoutWaitingForTheTicker(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the poll loop on real time")
	}
	const (
		interval = 30 * time.Millisecond
		settle   = 300 * time.Millisecond
	)
	path := filepath.Join(t.TempDir(), "p.yaml")
	write(t, path, "v1")
	res := newResults()
	w := New(interval, res.add, WithSettle(settle), WithClock(nil))
	l := &loader{}
	old := time.Now().Add(-time.Minute)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(path, l.load); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); <-done }()
	go func() { w.Run(ctx); close(done) }()
	edited := time.Now()
	write(t, path, "v2")
	for {
		select {
		case r := <-res.ch:
			if r.Pending {
				continue
			}
			if r.Err != nil || !r.Changed {
				t.Fatalf("Run() reported %+v, want the edit applied", r)
			}
			// Never before the settle interval, whatever the machine's
			// speed.
			if d := time.Since(edited); d < settle {
				t.Errorf("edit applied %v after it was made, want at least %v", d, settle)
			}
			return
		case <-time.After(30 * time.Second):
			t.Fatal("Run() never applied the edit")
		}
	}
}

// A file added with EmptyIsValid loads when empty, at start and after an
// edit; one without it keeps its last version.
func TestEmptyIsValid(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.pem")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	_ = os.Chtimes(path, old, old)
	var loads []string
	w := New(time.Hour, nil, WithSettle(time.Millisecond))
	if err := w.Add(path, func(b []byte) error { loads = append(loads, string(b)); return nil }, EmptyIsValid); err != nil {
		t.Fatalf("Add(empty, EmptyIsValid) = %v", err)
	}
	if len(loads) != 1 || loads[0] != "" {
		t.Fatalf("loads = %q, want one empty load", loads)
	}
	other := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(other, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_ = os.Chtimes(other, old, old)
	if err := w.Add(other, func([]byte) error { return nil }); !errors.Is(err, ErrEmpty) {
		t.Fatalf("Add(empty) error = %v, want ErrEmpty", err)
	}
}
