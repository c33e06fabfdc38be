package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"time"
)

// HTTP/2 behind and in front of the gateway.
//
// On the listener, net/http's bundled HTTP/2 server parses frames, so no
// request reaches the gateway that HTTP/1 rules would not have: a :path
// that is not origin-form (or "*", or absolute-form) is a stream error,
// connection-specific headers (Connection, Upgrade, Transfer-Encoding,
// Keep-Alive, TE other than "trailers") are refused as malformed (RFC 9113
// §8.2.2), a DATA length that disagrees with Content-Length is a stream
// error, :authority becomes Host and a Host header beside it is never
// forwarded, and extended CONNECT (RFC 8441) is off. Everything after
// that is the same pipeline as HTTP/1: the same method and target checks,
// the same canonical path, stripping and one decision per request (each
// stream is a request).
//
// What differs is the life of a connection, and the gateway accounts for
// it here:
//
//   - "Connection: close" on an HTTP/2 response is read by net/http as
//     "shut the whole connection down" (GOAWAY), ending every other stream
//     of the client. An unread request body on one stream is discarded by
//     the HTTP/2 server without desynchronising anything, so the header
//     the HTTP/1 paths set to close after a refusal is dropped.
//   - A read or write deadline on an HTTP/2 stream is a timer that resets
//     the stream when it fires, even when no read or write is waiting. The
//     HTTP/1 pacing sets a deadline before each read and write and leaves
//     it; under HTTP/2 it is cleared after each one, so an upstream that
//     pauses (a server-streaming call, a long poll) does not get its
//     stream reset by a deadline meant for a stalled client.
//   - One connection carries up to max_concurrent_streams requests, so the
//     per-client bound on requests in flight applies to HTTP/2 clients as
//     it does to the clients of trusted proxies (see serve).

// Protocol is how the gateway speaks to its upstream.
type Protocol string

// The upstream protocols.
const (
	// ProtocolHTTP1 is HTTP/1.1, over TLS for an https upstream. The zero
	// value means ProtocolHTTP1.
	ProtocolHTTP1 Protocol = "http1"
	// ProtocolH2C is HTTP/2 with prior knowledge over plain TCP (an http
	// upstream), as gRPC servers without TLS speak it.
	ProtocolH2C Protocol = "h2c"
	// ProtocolH2 is HTTP/2 over TLS negotiated with ALPN (an https
	// upstream). HTTP/1 is not offered: an upstream that does not select
	// h2 fails the request rather than silently losing trailers.
	ProtocolH2 Protocol = "h2"
)

// upstreamStreamWindow is the flow-control window of one upstream response
// body over HTTP/2: what the gateway buffers of a response its client has
// not read yet. Go's transport default is 4 MiB per stream; a slow reader
// on each of max_in_flight requests would pin that much each. 256 KiB keeps
// the budget near that of an HTTP/1 upstream connection while leaving room
// for full-speed transfers on a local link. The connection window stays at
// the transport's (very large) default, so one slow stream never stalls
// the others multiplexed on the same connection.
const upstreamStreamWindow = 256 << 10

// applyProtocol configures t for p; t's TLS client configuration (trusted
// roots, server name) is already set for https upstreams.
func applyProtocol(t *http.Transport, p Protocol) {
	var ps http.Protocols
	switch p {
	case ProtocolH2C:
		ps.SetUnencryptedHTTP2(true)
	case ProtocolH2:
		ps.SetHTTP2(true)
		if t.TLSClientConfig == nil {
			t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		t.DialTLSContext = dialH2(t)
	default:
		return
	}
	t.Protocols = &ps
	t.HTTP2 = &http.HTTP2Config{MaxReceiveBufferPerStream: upstreamStreamWindow}
}

// errNoH2 is the upstream's refusal of h2 in the TLS handshake.
var errNoH2 = errors.New("proxy: upstream did not select h2 in the TLS handshake (ALPN); upstream.protocol h2 needs an HTTP/2 server")

// dialH2 returns a TLS dialer for t that insists on h2. Go's transport
// would otherwise speak HTTP/1.1 to a server that ignores ALPN, even with
// HTTP/1 off, and a gRPC call would lose its trailers (its status).
func dialH2(t *http.Transport) func(ctx context.Context, network, addr string) (net.Conn, error) {
	dial, conf, timeout := t.DialContext, t.TLSClientConfig, t.TLSHandshakeTimeout
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		raw, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		c := conf.Clone()
		c.NextProtos = []string{"h2"}
		if c.ServerName == "" {
			c.ServerName, _, _ = net.SplitHostPort(addr)
		}
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		tc := tls.Client(raw, c)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, err
		}
		if tc.ConnectionState().NegotiatedProtocol != "h2" {
			tc.Close()
			return nil, errNoH2
		}
		return tc, nil
	}
}

// dropConnectionHeader removes the Connection header of an HTTP/2
// response (see the top of this file).
func dropConnectionHeader(h http.Header) {
	if _, ok := h["Connection"]; ok {
		delete(h, "Connection")
	}
}

// begin readies the write deadlines of a proxied response, with pace
// (nil for none). An HTTP/1 connection may carry a deadline left by an
// earlier answer, which is replaced; an HTTP/2 stream starts with none,
// and gets one only around each write.
func (w *statusWriter) begin(pace *sendPacer) {
	w.pace = pace
	if w.h2 {
		return
	}
	if w.pace != nil {
		w.arm()
	} else {
		_ = w.dl.SetWriteDeadline(time.Time{})
	}
}

// settle ends the deadline of a write that returned, under HTTP/2 (see the
// top of this file); HTTP/1 keeps it until the next write replaces it.
func (w *statusWriter) settle() {
	if w.h2 && w.pace != nil {
		_ = w.dl.SetWriteDeadline(time.Time{})
	}
}
