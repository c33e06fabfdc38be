package proxy

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Limits bound what one client can hold of the gateway: time, request
// slots, tunnels and memory. Every client-held resource has a bound, so
// clients that never finish cannot exhaust the gateway for the others. The
// zero value bounds nothing; the config's defaults are documented there.
type Limits struct {
	// MaxPerClient caps the requests one client has in flight at once.
	// It applies to requests from trusted proxies, keyed by the real
	// client address they forward (IPv6 by /64); direct peers are bounded
	// per connection by the listener. Beyond it: 429 with Retry-After.
	// Zero means no cap.
	MaxPerClient int
	// MaxTunnels caps open WebSocket tunnels. Tunnels are counted apart
	// from MaxInFlight: a long-lived tunnel must not take a request slot.
	// Zero means no cap.
	MaxTunnels int
	// EndpointTimeout is a whole-request deadline, reading and writing,
	// for everything the gateway answers itself: its own endpoints, every
	// refusal and every forward-auth decision. Zero means none.
	EndpointTimeout time.Duration
	// BodyMinRate is the lowest request-body data rate, in bytes per
	// second averaged over BodyRateWindow, that a proxied upload may
	// fall to; a slower client is cut off with 408, as Apache
	// mod_reqtimeout's MinRate does. Zero means no minimum.
	BodyMinRate int
	// BodyRateWindow is the window BodyMinRate is measured over; it is
	// also the grace before the first bytes. Zero means 10s.
	BodyRateWindow time.Duration
	// WriteIdleTimeout bounds each write of a proxied response to the
	// client: a client that stops reading is cut off after it, as with
	// nginx's send_timeout. Zero means no bound.
	WriteIdleTimeout time.Duration
	// WriteMinRate is the lowest rate, in bytes per second over
	// BodyRateWindow, at which a client must read a response the gateway
	// is sending: a client that reads a trickle holds an in-flight slot
	// and an upstream connection, so it is cut off as a slow uploader
	// is. Time the gateway waits for the upstream does not count. Zero
	// means no minimum.
	WriteMinRate int
	// RequestBuffer is how much of a request body is read before the
	// request takes a slot and is sent upstream, as nginx's request
	// buffering does: a slow upload then holds only its connection, never
	// an upstream connection or an in-flight slot. A body that fits is
	// sent whole with its length; the rest of a larger one streams. Zero
	// streams every body from its first byte.
	RequestBuffer int
}

// errSlowBody reports a request body that arrived too slowly; the client
// gets 408 and the connection is closed.
var errSlowBody = errors.New("proxy: request body too slow")

// clientSlots counts requests in flight per client address. It holds an
// entry only while its client has a request in flight, so it is bounded by
// the number of requests in flight. It is safe for concurrent use.
type clientSlots struct {
	max int
	mu  sync.Mutex
	n   map[netip.Addr]int
}

func newClientSlots(max int) *clientSlots {
	if max <= 0 {
		return nil
	}
	return &clientSlots{max: max, n: make(map[netip.Addr]int)}
}

// acquire reports whether a has a free slot, and takes it.
func (c *clientSlots) acquire(a netip.Addr) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[a] >= c.max {
		return false
	}
	c.n[a]++
	return true
}

func (c *clientSlots) release(a netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.n[a] - 1; n > 0 {
		c.n[a] = n
	} else {
		delete(c.n, a)
	}
}

// deadliner is the part of net/http's response writers (HTTP/1 and
// HTTP/2) that http.ResponseController reaches; asserting it directly
// avoids allocating a controller per request.
type deadliner interface {
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

// deadlinerOf returns w's deadline setter, unwrapping as
// http.ResponseController does, or nil.
func deadlinerOf(w http.ResponseWriter) deadliner {
	for {
		if d, ok := w.(deadliner); ok {
			return d
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return nil
		}
		w = u.Unwrap()
	}
}

// bound gives a request the gateway answers itself its whole-request
// deadline. A client that sends its body or reads its answer too slowly is
// cut off at the deadline instead of holding the connection.
func (g *Gateway) bound(w *statusWriter) {
	if g.o.Limits.EndpointTimeout <= 0 || w.dl == nil {
		return
	}
	// The request must be read by the deadline; its answer (a 408 when
	// the body was late) gets as long again to be written.
	t := g.o.Limits.EndpointTimeout
	now := time.Now()
	_ = w.dl.SetReadDeadline(now.Add(t))
	_ = w.dl.SetWriteDeadline(now.Add(2 * t))
}

// retire ends a request answered before its body was read: the server
// would otherwise read up to 256 KiB of the unread body, until the read
// deadline, before it closes the connection. An expired read deadline makes
// that read fail at once, and the connection (marked Connection: close by
// WriteHeader) closes right after the answer.
//
// An HTTP/2 stream needs neither: its server discards the unread body of
// a finished stream without reading it.
//
// For a paced response it also gives the server's final write a fresh
// deadline: the pacer's last one may have passed while the upstream was
// finishing.
func retire(w *statusWriter) {
	if w.body != nil && !w.body.eof.Load() && w.dl != nil && w.status >= 200 && !w.h2 {
		_ = w.dl.SetReadDeadline(time.Now())
	}
	if w.pace != nil {
		_ = w.dl.SetWriteDeadline(w.pace.tail(time.Now()))
	}
}

// bodyState follows a request body: whether it was read to its end, and
// whether it was cut off for being too slow. It is allocated per request,
// never pooled: the upstream transport may still be reading the body in
// its own goroutine after the handler returned (an upstream that answered
// early), so eof and slow are atomic and the value must outlive the
// request.
type bodyState struct {
	io.ReadCloser
	dl       deadliner
	idle     time.Duration
	minRate  int64
	window   time.Duration
	winStart time.Time
	winBytes int64
	eof      atomic.Bool
	slow     atomic.Bool
	h2       bool // an HTTP/2 stream: the deadline is cleared after each read (see h2.go)
}

func newBodyState(body io.ReadCloser, w *statusWriter) *bodyState {
	return &bodyState{ReadCloser: body, dl: w.dl, h2: w.h2}
}

// Read reads the body under two deadlines: idle bounds the wait for the
// next bytes, and the rate window requires minRate×window bytes in every
// window. Once the body is complete the read deadline is cleared, so the
// server's watch for a closed connection is not cut while the upstream
// answers.
func (b *bodyState) Read(p []byte) (int, error) {
	if b.dl != nil && (b.idle > 0 || b.minRate > 0) {
		now := time.Now()
		var deadline time.Time
		if b.idle > 0 {
			deadline = now.Add(b.idle)
		}
		if b.minRate > 0 {
			if b.winStart.IsZero() || b.winBytes >= b.minRate*int64(b.window/time.Second) {
				b.winStart, b.winBytes = now, 0
			}
			if end := b.winStart.Add(b.window); deadline.IsZero() || end.Before(deadline) {
				deadline = end
			}
		}
		_ = b.dl.SetReadDeadline(deadline)
	}
	n, err := b.ReadCloser.Read(p)
	b.winBytes += int64(n)
	switch {
	case err == io.EOF:
		b.eof.Store(true)
		if b.dl != nil {
			_ = b.dl.SetReadDeadline(time.Time{})
		}
	case err != nil && errors.Is(err, os.ErrDeadlineExceeded):
		b.slow.Store(true)
		err = errSlowBody
	case b.h2 && b.dl != nil && (b.idle > 0 || b.minRate > 0):
		_ = b.dl.SetReadDeadline(time.Time{})
	}
	return n, err
}

// hasBody reports whether r carries a request body.
func hasBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && (r.ContentLength != 0 || len(r.TransferEncoding) > 0)
}

// buffer reads up to limit bytes of the body before the request is sent
// upstream. A body that fits is sent complete, with its length; a larger
// one is sent as what was read followed by the rest, streamed. Either way a
// client has to deliver the first limit bytes, at the minimum rate, before
// its request holds an upstream connection or an in-flight slot, whatever
// length it declared. Memory grows with what the client actually sent.
func buffer(r *http.Request, b *bodyState, limit int) error {
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(b, int64(limit)+1))
	if err != nil {
		return err
	}
	if n > int64(limit) {
		r.Body = readCloser{Reader: io.MultiReader(&buf, b), Closer: b}
		return nil
	}
	// The upstream gets the complete body with its length, as from
	// nginx's request buffering, whatever framing the client used.
	r.Body = readCloser{Reader: bytes.NewReader(buf.Bytes()), Closer: b}
	r.ContentLength = n
	r.TransferEncoding = nil
	if n == 0 {
		r.Body = http.NoBody
	}
	return nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// sendPacer sets the write deadline of each write of a proxied response:
// idle bounds one write, and the rate window requires minRate×window bytes
// to be taken by the client in every window in which the gateway keeps
// writing. When the gateway had nothing to write for a whole window (the
// upstream paused) the window starts afresh, so slow or streaming
// upstreams are not blamed on the client.
type sendPacer struct {
	idle     time.Duration
	minRate  int64
	window   time.Duration
	winStart time.Time
	winBytes int64
	lastDone time.Time // when the previous write returned
}

func (s *sendPacer) active() bool { return s.idle > 0 || s.minRate > 0 }

// deadline returns the deadline for a write at now.
func (s *sendPacer) deadline(now time.Time) time.Time {
	var d time.Time
	if s.idle > 0 {
		d = now.Add(s.idle)
	}
	if s.minRate > 0 {
		if s.winStart.IsZero() || now.Sub(s.lastDone) >= s.window || s.winBytes >= s.minRate*int64(s.window/time.Second) {
			s.winStart, s.winBytes = now, 0
		}
		if end := s.winStart.Add(s.window); d.IsZero() || end.Before(d) {
			d = end
		}
	}
	return d
}

// done records a write of n bytes that returned at now.
func (s *sendPacer) done(n int, now time.Time) {
	s.winBytes += int64(n)
	s.lastDone = now
}

// tail returns the deadline for what the server writes after the handler
// returns (the last buffered bytes and the end of a chunked body).
func (s *sendPacer) tail(now time.Time) time.Time {
	if s.minRate > 0 {
		return now.Add(s.window)
	}
	return now.Add(s.idle)
}
