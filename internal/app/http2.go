package app

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authgate/authgate/internal/config"
)

// HTTP/2 on the main listener is net/http's bundled server, which carries
// the defences this gateway relies on (checked on Go 1.26):
//
//   - Rapid reset (CVE-2023-44487): at most max_concurrent_streams handlers
//     run per connection however fast streams are opened and reset; new
//     streams past it wait for a handler to finish, and a connection that
//     queues more than four times the limit is closed with
//     ENHANCE_YOUR_CALM ("too_many_early_resets" in
//     authgate_http2_errors_total). A stream the server resets itself
//     (the "MadeYouReset" variant, CVE-2025-8671) still counts until its
//     handler returns, so it cannot raise the number of running handlers
//     either.
//   - CONTINUATION floods (CVE-2023-45288): header blocks are bounded by
//     listen.max_header_bytes as they are read, and the connection is
//     closed at the first CONTINUATION frame past the bound, before it is
//     decoded.
//   - HPACK bombs: the decoder table is the RFC's 4 KiB, and a decoded
//     field larger than the header bound is refused.
//   - Control-frame floods (PING, SETTINGS): more than 10000 queued
//     replies close the connection.
//
// What a connection may hold is bounded by listen.http2: streams, the
// request-body bytes buffered per stream and per connection, and the
// frame size (which is also the largest read buffer a connection
// allocates). listen.write_idle_timeout doubles as the connection's write
// timeout, so a client that stops reading at the TCP level is cut off as
// an HTTP/1 client is. listen.idle_timeout closes idle connections,
// listen.max_connections and listen.max_connections_per_client count
// HTTP/2 connections like any other, and the per-client bound on requests
// in flight applies to the streams of a direct HTTP/2 client.

// configureHTTP2 sets the protocols and HTTP/2 limits of the main server.
// h2 is offered over TLS (ALPN), h2c with prior knowledge on a plain
// listener only when listen.h2c asks for it.
func (a *App) configureHTTP2(srv *http.Server) {
	l := a.cfg.Listen
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetHTTP2(l.HTTP2.Enabled && l.TLS.CertFile != "")
	p.SetUnencryptedHTTP2(l.H2C)
	srv.Protocols = &p
	h := l.HTTP2
	srv.HTTP2 = &http.HTTP2Config{
		MaxConcurrentStreams:          h.MaxConcurrentStreams,
		MaxReceiveBufferPerStream:     h.MaxReceiveBufferPerStream,
		MaxReceiveBufferPerConnection: h.MaxReceiveBufferPerConnection,
		MaxReadFrameSize:              h.MaxReadFrameSize,
		SendPingTimeout:               h.PingInterval,
		PingTimeout:                   h.PingTimeout,
		WriteByteTimeout:              l.WriteIdleTimeout,
		CountError:                    a.countHTTP2Error,
	}
}

// nextProtos are the ALPN protocols the TLS listener offers.
func nextProtos(l config.ListenConfig) []string {
	if l.HTTP2.Enabled {
		return []string{"h2", "http/1.1"}
	}
	return []string{"http/1.1"}
}

// registerHTTP2Metrics registers the HTTP/2 protocol error counter. Its
// label is the error type net/http reports, from a fixed set of names in
// its source (lower case, digits and underscores), so it is bounded.
func (a *App) registerHTTP2Metrics() {
	a.h2Errors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authgate_http2_errors_total",
		Help: "HTTP/2 protocol errors on the main listener, by the type net/http reports (too_many_early_resets is a rapid-reset attack).",
	}, []string{"type"})
	// The rapid-reset series exists from the start, so that an alert on
	// its rate sees the first attack.
	a.h2Errors.WithLabelValues("too_many_early_resets")
	a.reg.MustRegister(a.h2Errors)
}

func (a *App) countHTTP2Error(errType string) {
	a.h2Errors.WithLabelValues(errType).Inc()
}
