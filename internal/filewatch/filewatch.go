// Package filewatch reloads files when their content changes, and only
// once they are whole.
//
// It polls: each interval it reads the file through its path, following
// symlinks afresh, and compares a SHA-256 of the content with the last one
// it loaded. That handles every way a file is replaced — an editor's
// write-and-rename, and Kubernetes' atomic swap of the "..data" symlink in
// a mounted ConfigMap or Secret directory — without depending on inotify
// events that a symlink swap in a parent directory does not deliver for the
// file's own inode.
//
// # Whole files only
//
// A reader can catch a file that is being written in place (truncated,
// then written in chunks): loading that prefix would enforce a policy, a
// users list or a key list that neither the old nor the new version holds,
// and a policy cut at a rule boundary is often still valid. So a change is
// applied only when it is known to be complete:
//
//   - Replaced: the path now names a different file (another inode) than
//     the one last read — a rename over the path, or a symlink swap such as
//     the kubelet's. rename(2) is atomic, so the new file was complete when
//     it appeared; it is applied at once.
//   - Edited in place: the same file with new content is applied only after
//     two reads at least the settle interval apart found the same content,
//     size, mtime and inode. A writer that pauses for less than the settle
//     interval between writes is never seen half-way. The settle interval
//     is measured on the watcher's own clock, never by comparing file
//     timestamps with it, so clock skew on network filesystems cannot
//     shorten it.
//   - A read during which the file changed (its size or mtime differ before
//     and after the read) is discarded and the change waits for the next
//     check.
//   - An empty file is never loaded: truncation is how every in-place write
//     starts, so a file left at zero bytes keeps the last good version and
//     is reported (once) with ErrEmpty.
//   - Trigger (SIGHUP) is the operator saying the files are complete: it
//     reloads every file at once, without the settle wait, but still never
//     from a read that raced a write or from an empty file.
//
// At startup (Add) a file modified less than the settle interval ago is
// read again after the interval, and loaded only when it did not change in
// between; the wait is bounded.
//
// Two cases remain that no reader can tell apart from a complete file: a
// writer that pauses for longer than the settle interval in the middle of
// an in-place write, and one that deletes the file and then writes a new
// one at the same path slowly (the new inode looks like a rename; editors
// that do this, such as vim and emacs with their default backup settings,
// write it in one burst). Writing the new version to a temporary file in
// the same directory and renaming it over the old one avoids the question
// entirely and is applied without delay.
package filewatch

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// DefaultSettle is the settle interval when none is given: how long an
// in-place edit must stay unchanged before it is applied.
const DefaultSettle = time.Second

// startupAttempts bounds how many settle intervals Add waits for a file that
// keeps changing.
const startupAttempts = 30

// ErrEmpty is the error reported for a file that is empty: it is never
// loaded, and the last good version stays in force.
var ErrEmpty = errors.New("filewatch: file is empty")

// errRacing is a read during which the file changed.
var errRacing = errors.New("filewatch: file changed while it was read")

// Loader parses and applies new content. It returns an error to reject the
// content; the watcher then keeps the last good state, as the Loader must.
type Loader func(data []byte) error

// Result is what one reload attempt did.
type Result struct {
	// Path is the file.
	Path string
	// Changed reports whether the content was handed to the Loader.
	Changed bool
	// Pending reports a change that was seen but not applied yet: the file
	// is being edited in place and has not been stable for the settle
	// interval. Err is nil; a later Result says what became of it.
	Pending bool
	// Err is the read or load error; nil on success.
	Err error
}

// Option configures a Watcher.
type Option func(*Watcher)

// WithSettle sets the settle interval (DefaultSettle when not positive).
func WithSettle(d time.Duration) Option {
	return func(w *Watcher) {
		if d > 0 {
			w.settle = d
		}
	}
}

// WithClock sets the clock that times the settle interval; nil means
// time.Now.
func WithClock(now func() time.Time) Option {
	return func(w *Watcher) {
		if now != nil {
			w.now = now
		}
	}
}

// Watcher polls a set of files. The zero value is not usable; use New. It is
// safe for concurrent use.
type Watcher struct {
	interval time.Duration
	settle   time.Duration
	now      func() time.Time
	onResult func(Result)
	// duringRead, when set (by tests), runs between the two stats of a
	// read.
	duringRead func(path string)
	// sleep waits during Add; tests replace it.
	sleep func(time.Duration)

	mu    sync.Mutex
	files []*file
	kick  chan struct{}
}

type file struct {
	path string
	load Loader
	sum  [sha256.Size]byte // content last handed to load or refused
	info os.FileInfo       // the file as last read
	ok   bool              // false after a read failure was reported
	cand *candidate        // an in-place edit waiting to settle
	// emptyOK: an empty file is a version (an empty list of keys), not
	// the start of a write; see EmptyIsValid.
	emptyOK bool
}

// AddOption changes how one file is watched.
type AddOption func(*file)

// EmptyIsValid makes an empty file a version to load, for files whose
// empty form is meaningful and can only remove what they grant (a list
// of previous or next signing keys with none in it). The settle wait
// still applies, so an in-place edit is loaded only once whole.
func EmptyIsValid(f *file) { f.emptyOK = true }

// candidate is changed content seen in the same file, waiting to settle.
type candidate struct {
	sum   [sha256.Size]byte
	info  os.FileInfo
	since time.Time
}

// New returns a watcher that polls every interval and reports every
// attempt that changed something or failed to onResult (which may be nil).
func New(interval time.Duration, onResult func(Result), opts ...Option) *Watcher {
	if onResult == nil {
		onResult = func(Result) {}
	}
	w := &Watcher{interval: interval, settle: DefaultSettle, now: time.Now, sleep: time.Sleep, onResult: onResult, kick: make(chan struct{}, 1)}
	for _, o := range opts {
		o(w)
	}
	return w
}

// Settle returns the settle interval.
func (w *Watcher) Settle() time.Duration { return w.settle }

// Add loads path once with load and then watches it. The first load's
// error is returned, and the file is not watched in that case: a file that
// cannot be loaded at startup must stop startup. A file modified within
// the settle interval is loaded only once it has been stable for the
// interval, so Add may block for about that long (longer, up to a bound,
// while the file keeps changing).
func (w *Watcher) Add(path string, load Loader, opts ...AddOption) error {
	f := &file{path: path, load: load}
	for _, o := range opts {
		o(f)
	}
	data, info, err := w.settled(path)
	if err != nil {
		return err
	}
	if len(data) == 0 && !f.emptyOK {
		return fmt.Errorf("%w: %s", ErrEmpty, path)
	}
	if err := load(data); err != nil {
		return err
	}
	f.sum, f.info, f.ok = sha256.Sum256(data), info, true
	w.mu.Lock()
	w.files = append(w.files, f)
	w.mu.Unlock()
	return nil
}

// settled reads path for Add: at once when it was last modified at least
// the settle interval ago, otherwise again after the interval until two
// reads agree.
func (w *Watcher) settled(path string) ([]byte, os.FileInfo, error) {
	var (
		prevSum  [sha256.Size]byte
		prevInfo os.FileInfo
	)
	for range startupAttempts {
		data, info, err := w.read(path)
		switch {
		case errors.Is(err, errRacing):
			prevInfo = nil
		case err != nil:
			return nil, nil, fmt.Errorf("filewatch: %w", err)
		default:
			sum := sha256.Sum256(data)
			age := w.now().Sub(info.ModTime())
			if age >= w.settle || (prevInfo != nil && sum == prevSum && sameStat(prevInfo, info)) {
				return data, info, nil
			}
			prevSum, prevInfo = sum, info
		}
		wait := w.settle
		if age := w.now().Sub(modTime(prevInfo)); prevInfo != nil && age > 0 && age < w.settle {
			wait = w.settle - age
		}
		w.sleep(wait)
	}
	return nil, nil, fmt.Errorf("filewatch: %s: still being written after %v; write it to a temporary file and rename it into place", path, startupAttempts*w.settle)
}

func modTime(fi os.FileInfo) time.Time {
	if fi == nil {
		return time.Time{}
	}
	return fi.ModTime()
}

// read reads path and reports errRacing when the file changed during the
// read: a different size or mtime before and after, or fewer or more bytes
// than its size.
func (w *Watcher) read(path string) ([]byte, os.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	before, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if w.duringRead != nil {
		w.duringRead(path)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, nil, err
	}
	after, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !sameStat(before, after) || int64(len(data)) != after.Size() {
		return nil, nil, fmt.Errorf("%s: %w", path, errRacing)
	}
	return data, after, nil
}

// sameStat reports whether a and b describe the same file with the same
// size and mtime.
func sameStat(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// Trigger asks for an immediate reload of every file (SIGHUP). It does not
// wait for in-place edits to settle: the operator is saying the files are
// complete.
func (w *Watcher) Trigger() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Run polls until ctx is done. Besides every interval, it checks again when
// a pending in-place edit is due to have settled.
func (w *Watcher) Run(ctx context.Context) {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	due := time.NewTimer(time.Hour)
	due.Stop()
	defer due.Stop()
	for {
		var next time.Time
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			next = w.check(false)
		case <-due.C:
			next = w.check(false)
		case <-w.kick:
			next = w.check(true)
		}
		due.Stop()
		if !next.IsZero() {
			due.Reset(max(next.Sub(w.now()), time.Millisecond))
		}
	}
}

// Check reads every file once and applies the changes that are complete
// (see the package documentation). With force, every file is reloaded at
// once, changed or not, without the settle wait.
func (w *Watcher) Check(force bool) { w.check(force) }

// check is Check; it returns the earliest time a pending in-place edit
// settles, or the zero time when none is pending.
func (w *Watcher) check(force bool) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	var next time.Time
	for _, f := range w.files {
		if due := w.checkFile(f, force); !due.IsZero() && (next.IsZero() || due.Before(next)) {
			next = due
		}
	}
	return next
}

func (w *Watcher) checkFile(f *file, force bool) time.Time {
	data, info, err := w.read(f.path)
	switch {
	case errors.Is(err, errRacing):
		// A write is in progress: whatever was pending is stale.
		f.cand = nil
		if force {
			w.onResult(Result{Path: f.path, Err: fmt.Errorf("filewatch: %w; keeping the last good version", err)})
		}
		return time.Time{}
	case err != nil:
		// A vanished or unreadable file keeps the last good state.
		f.cand = nil
		if f.ok {
			f.ok = false
			w.onResult(Result{Path: f.path, Err: fmt.Errorf("filewatch: %w", err)})
		}
		return time.Time{}
	}
	sum := sha256.Sum256(data)
	replaced := f.info == nil || !os.SameFile(f.info, info)
	switch {
	case force:
		// SIGHUP: the operator says the file is complete.
	case sum == f.sum && f.ok:
		// Unchanged, or changed back before it settled.
		f.info, f.cand = info, nil
		return time.Time{}
	case replaced || !f.ok:
		// A rename or symlink swap put a complete file in place; a file
		// that could not be read has come back.
	default:
		// Edited in place: apply only once it has been stable.
		now := w.now()
		if f.cand == nil || f.cand.sum != sum || !sameStat(f.cand.info, info) {
			f.cand = &candidate{sum: sum, info: info, since: now}
			w.onResult(Result{Path: f.path, Pending: true})
			return now.Add(w.settle)
		}
		if due := f.cand.since.Add(w.settle); now.Before(due) {
			return due
		}
	}
	f.sum, f.info, f.ok, f.cand = sum, info, true, nil
	if len(data) == 0 && !f.emptyOK {
		// Every in-place write starts with a truncation; a file left empty
		// is never a version to enforce.
		w.onResult(Result{Path: f.path, Err: fmt.Errorf("%w: %s", ErrEmpty, f.path)})
		return time.Time{}
	}
	// Rejected content is remembered too, so it is not retried (and
	// logged) every interval; any further edit is tried again.
	err = f.load(data)
	w.onResult(Result{Path: f.path, Changed: true, Err: err})
	return time.Time{}
}
