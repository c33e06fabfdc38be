// Package filewatch reloads files when their content changes.
//
// It polls: each interval it reads the file through its path, following
// symlinks afresh, and compares a SHA-256 of the content with the last one
// it loaded. That handles every way a file is replaced — an editor's
// write-and-rename, and Kubernetes' atomic swap of the "..data" symlink in
// a mounted ConfigMap or Secret directory — without depending on inotify
// events that a symlink swap in a parent directory does not deliver for the
// file's own inode.
package filewatch

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"sync"
	"time"
)

// Loader parses and applies new content. It returns an error to reject the
// content; the watcher then keeps the last good state, as the Loader must.
type Loader func(data []byte) error

// Result is what one reload attempt did.
type Result struct {
	// Path is the file.
	Path string
	// Changed reports whether the content differed from the last load.
	Changed bool
	// Err is the read or load error; nil on success.
	Err error
}

// Watcher polls a set of files. The zero value is not usable; use New. It is
// safe for concurrent use.
type Watcher struct {
	interval time.Duration
	onResult func(Result)

	mu    sync.Mutex
	files []*file
	kick  chan struct{}
}

type file struct {
	path string
	load Loader
	sum  [sha256.Size]byte
	ok   bool
}

// New returns a watcher that polls every interval and reports every
// attempt that changed something or failed to onResult (which may be nil).
func New(interval time.Duration, onResult func(Result)) *Watcher {
	if onResult == nil {
		onResult = func(Result) {}
	}
	return &Watcher{interval: interval, onResult: onResult, kick: make(chan struct{}, 1)}
}

// Add loads path once with load and then watches it. The first load's
// error is returned, and the file is not watched in that case: a file that
// cannot be loaded at startup must stop startup.
func (w *Watcher) Add(path string, load Loader) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("filewatch: %w", err)
	}
	if err := load(data); err != nil {
		return err
	}
	w.mu.Lock()
	w.files = append(w.files, &file{path: path, load: load, sum: sha256.Sum256(data), ok: true})
	w.mu.Unlock()
	return nil
}

// Trigger asks for an immediate check of every file (SIGHUP).
func (w *Watcher) Trigger() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Run polls until ctx is done.
func (w *Watcher) Run(ctx context.Context) {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.Check(false)
		case <-w.kick:
			w.Check(true)
		}
	}
}

// Check reads every file once and reloads those whose content changed. With
// force, unchanged files are reloaded too.
func (w *Watcher) Check(force bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, f := range w.files {
		data, err := os.ReadFile(f.path)
		if err != nil {
			// A vanished or unreadable file keeps the last good state.
			if f.ok {
				f.ok = false
				w.onResult(Result{Path: f.path, Err: fmt.Errorf("filewatch: %w", err)})
			}
			continue
		}
		sum := sha256.Sum256(data)
		if sum == f.sum && !force && f.ok {
			continue
		}
		// Changed content, a forced check, or a file that came back after
		// a read failure: load it. Rejected content is remembered too, so
		// it is not retried (and logged) every interval; any further edit
		// is tried again.
		err = f.load(data)
		f.sum, f.ok = sum, true
		w.onResult(Result{Path: f.path, Changed: true, Err: err})
	}
}
