package proxy

import (
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DefaultRetryRefusedDelay is how long the gateway waits before sending a
// request again whose upstream connection was refused, when the config
// does not say otherwise. It covers an app that restarts in place: the old
// process closes its listener and the new one opens it tens of
// milliseconds later.
const DefaultRetryRefusedDelay = 50 * time.Millisecond

// MaxRetryRefusedDelay bounds the retry delay: a request waiting for it
// holds an in-flight slot and its client.
const MaxRetryRefusedDelay = time.Second

// retryRefused sends a request once more, after delay, when the upstream
// refused the connection. A refused dial is the one failure where nothing
// of the request reached the upstream: no connection existed, so no byte
// was written. Retrying it is therefore safe for every method, POST
// included (RFC 9110 §9.2.2 allows automatic retries only where the
// request cannot have been processed). Every other failure (a reset or an
// EOF on a connection that was open, a timeout) may have reached the
// upstream and is never retried here.
//
// The request body is not buffered and GetBody is not needed: the body of
// a refused attempt was never read. The inner transport closes a request's
// body when the dial fails, so the first attempt sees a guard that holds
// that Close back until it is known that no retry follows.
type retryRefused struct {
	next  http.RoundTripper
	delay time.Duration
	// retried counts retries; nil counts nothing.
	retried func()
}

func (t *retryRefused) RoundTrip(r *http.Request) (*http.Response, error) {
	var guard *heldBody
	first := r
	if r.Body != nil && r.Body != http.NoBody {
		guard = &heldBody{rc: r.Body}
		first = new(http.Request)
		*first = *r
		first.Body = guard
	}
	resp, err := t.next.RoundTrip(first)
	if err == nil || !refusedDial(err) || (guard != nil && !guard.unread()) {
		guard.settle()
		if resp != nil {
			resp.Request = r
		}
		return resp, err
	}
	timer := time.NewTimer(t.delay)
	select {
	case <-r.Context().Done():
		timer.Stop()
		guard.settle()
		return nil, err
	case <-timer.C:
	}
	if t.retried != nil {
		t.retried()
	}
	// The second attempt owns the real body: the inner transport closes it.
	guard.handOver()
	return t.next.RoundTrip(r)
}

// refusedDial reports whether err is a refused TCP connection to the
// upstream: a dial that the peer answered with RST, so that no connection
// ever carried a byte of the request.
func refusedDial(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial" && errors.Is(err, syscall.ECONNREFUSED)
}

// heldBody wraps a request body for an attempt that may be retried. Reads
// pass through. A Close before any Read is held back, so that the body
// stays usable for a retry; a Close after a Read (the attempt sent the
// body, so it is not retried) passes through. A nil *heldBody does
// nothing. It is safe for concurrent use: the transport reads and closes
// the body from its own goroutines.
type heldBody struct {
	rc io.ReadCloser

	read atomic.Bool // a Read was made: the attempt may have sent bytes

	mu    sync.Mutex
	held  bool // a Close came before any Read and was held back
	final bool // no retry follows: Close passes through
	gone  bool // the body passed to a retry: Close is the inner transport's
}

func (b *heldBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	return b.rc.Read(p)
}

func (b *heldBody) Close() error {
	b.mu.Lock()
	if b.gone {
		b.mu.Unlock()
		return nil
	}
	if !b.final && !b.read.Load() {
		b.held = true
		b.mu.Unlock()
		return nil
	}
	b.mu.Unlock()
	return b.rc.Close()
}

// unread reports whether the body was never read, so that a retry may send
// it whole.
func (b *heldBody) unread() bool { return !b.read.Load() }

// settle records that no retry follows and closes the body if its Close
// was held back.
func (b *heldBody) settle() {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.final = true
	held := b.held
	b.held = false
	b.mu.Unlock()
	if held {
		_ = b.rc.Close()
	}
}

// handOver gives the body to a retry: later Close calls on the guard are
// dropped, since the retry's transport closes the body itself.
func (b *heldBody) handOver() {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.gone = true
	b.mu.Unlock()
}

// withRetry wraps next so that a refused upstream connection is retried
// once after delay; a zero delay returns next unchanged.
func withRetry(next http.RoundTripper, delay time.Duration, m *Metrics) http.RoundTripper {
	if delay <= 0 {
		return next
	}
	t := &retryRefused{next: next, delay: delay}
	if m != nil {
		c := m.upstreamRetries.WithLabelValues("refused")
		t.retried = c.Inc
	}
	return t
}
