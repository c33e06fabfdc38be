package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// TransportOptions tune the upstream transport. Zero fields take the
// defaults given on each field.
type TransportOptions struct {
	// DialTimeout bounds connecting to the upstream; default 5s.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds waiting for the upstream's response
	// headers; past it the client gets 504. Default 60s.
	ResponseHeaderTimeout time.Duration
	// IdleConnTimeout closes idle pooled connections; default 90s.
	IdleConnTimeout time.Duration
	// MaxIdleConns is the idle pool size. A sidecar talks to one upstream,
	// so the per-host limit equals it; default 256.
	MaxIdleConns int
	// RootCAs verifies an https upstream; nil means the system roots.
	RootCAs *x509.CertPool
	// Protocol is how the upstream is spoken to; empty means HTTP/1.1.
	Protocol Protocol
	// TLSClientConfig, when set, is the whole TLS configuration to an
	// https upstream, in place of RootCAs.
	TLSClientConfig *tls.Config
}

// NewTransport returns a transport tuned for a sidecar in front of one
// upstream on the same host: a large per-host idle pool (the default of 2
// makes every burst open new connections), bounded dial and response-header
// waits, and no proxy from the environment.
func NewTransport(o TransportOptions) *http.Transport {
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.ResponseHeaderTimeout <= 0 {
		o.ResponseHeaderTimeout = 60 * time.Second
	}
	if o.IdleConnTimeout <= 0 {
		o.IdleConnTimeout = 90 * time.Second
	}
	if o.MaxIdleConns <= 0 {
		o.MaxIdleConns = 256
	}
	d := &net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		MaxIdleConns:          o.MaxIdleConns,
		MaxIdleConnsPerHost:   o.MaxIdleConns,
		IdleConnTimeout:       o.IdleConnTimeout,
		ResponseHeaderTimeout: o.ResponseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		TLSHandshakeTimeout:   o.DialTimeout,
		ForceAttemptHTTP2:     false,
		WriteBufferSize:       32 << 10,
		ReadBufferSize:        32 << 10,
		TLSClientConfig:       &tls.Config{RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12},
	}
	if o.TLSClientConfig != nil {
		t.TLSClientConfig = o.TLSClientConfig.Clone()
	}
	applyProtocol(t, o.Protocol)
	return t
}

// timedTransport measures the upstream round trip of each request.
type timedTransport struct {
	next    http.RoundTripper
	calls   *longCalls   // nil: every request goes to next
	tracer  trace.Tracer // nil: tracing off (see trace.go)
	metrics *Metrics
}

func (t *timedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	next := t.next
	if t.calls != nil {
		next = t.calls.pick(r, next)
	}
	var resp *http.Response
	var err error
	if t.tracer != nil {
		resp, err = t.tracedRoundTrip(next, r)
	} else {
		resp, err = next.RoundTrip(r)
	}
	d := time.Since(start)
	if st := stateOf(r.Context()); st != nil {
		st.upstream = d
	}
	if t.metrics != nil && err == nil {
		t.metrics.upstreamDuration.Observe(d.Seconds())
	}
	return resp, err
}

// bufferPool implements httputil.BufferPool with 32 KiB buffers. It pools
// array pointers, so neither Get nor Put allocates.
type bufferPool struct{ p sync.Pool }

const bufSize = 32 << 10

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { return new([bufSize]byte) }}}
}

func (b *bufferPool) Get() []byte { return b.p.Get().(*[bufSize]byte)[:] }

func (b *bufferPool) Put(p []byte) {
	if cap(p) >= bufSize {
		b.p.Put((*[bufSize]byte)(p[:bufSize]))
	}
}

// statusWriter records the status code written through it. Unwrap lets
// http.ResponseController reach Flush and Hijack of the real writer, which
// the reverse proxy needs for streaming and WebSocket upgrades.
//
// It also holds the request's connection limits: an answer written while
// the request body is unread closes the connection (net/http would
// otherwise first drain up to 256 KiB of body, with no deadline, before
// answering), and with a pacer every write to the client gets its
// deadline.
type statusWriter struct {
	http.ResponseWriter
	status   int
	dl       deadliner  // nil when the writer has no deadlines
	body     *bodyState // nil without a request body
	pace     *sendPacer // nil: no write deadlines
	h2       bool       // the request came over HTTP/2 (see h2.go)
	grpc     grpcKind   // how the gateway's own answers are written (see grpc.go)
	grpcCode int        // the gRPC status of the gateway's own answer, 0 for none
}

// arm sets the deadline of the next write to the client.
func (w *statusWriter) arm() {
	if w.pace != nil {
		_ = w.dl.SetWriteDeadline(w.pace.deadline(time.Now()))
	}
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 || w.status == http.StatusSwitchingProtocols {
		w.status = code
	}
	if w.body != nil && !w.body.eof.Load() && code >= 200 {
		w.ResponseWriter.Header().Set("Connection", "close")
	}
	if w.h2 {
		dropConnectionHeader(w.ResponseWriter.Header())
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	w.arm()
	n, err := w.ResponseWriter.Write(p)
	if w.pace != nil {
		w.pace.done(n, time.Now())
		w.settle()
	}
	return n, err
}

func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	w.arm()
	_ = http.NewResponseController(w.ResponseWriter).Flush()
	if w.pace != nil {
		w.pace.done(0, time.Now())
		w.settle()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// sampler decides whether to log an allowed request.
type sampler struct{ p float64 }

func newSampler(p float64) sampler { return sampler{p: p} }

func (s sampler) take() bool { return s.p >= 1 || (s.p > 0 && rand.Float64() < s.p) }

func newRequestID() string {
	return strconv.FormatUint(rand.Uint64()|1<<63, 36)
}
