package config

import (
	"strings"
	"time"

	"github.com/authgate/authgate/proxy"
)

// HTTP2Config bounds HTTP/2 on the main listener. The defaults follow
// Envoy's edge recommendations (100 streams, 64 KiB per stream, 1 MiB per
// connection) with the RFC 9113 default frame size, so that one
// connection holds a bounded amount of memory whatever its client sends.
type HTTP2Config struct {
	// Enabled offers h2 through ALPN on a TLS listener; listen.h2c also
	// needs it. Default true.
	Enabled bool `yaml:"enabled"`
	// MaxConcurrentStreams is SETTINGS_MAX_CONCURRENT_STREAMS: requests one
	// connection may have open at once. Go's server also runs at most this
	// many handlers per connection and closes a connection that queues
	// four times as many (the rapid-reset defence). Default 100.
	MaxConcurrentStreams int `yaml:"max_concurrent_streams"`
	// MaxReceiveBufferPerStream is the flow-control window of one request
	// body: what the client may send ahead of the gateway reading it.
	// Default 65536.
	MaxReceiveBufferPerStream int `yaml:"max_receive_buffer_per_stream"`
	// MaxReceiveBufferPerConnection is the connection's flow-control
	// window: request-body bytes buffered for all its streams together.
	// Default 1048576.
	MaxReceiveBufferPerConnection int `yaml:"max_receive_buffer_per_connection"`
	// MaxReadFrameSize is SETTINGS_MAX_FRAME_SIZE, the largest frame read,
	// which is also the largest read buffer a connection allocates.
	// Default 16384.
	MaxReadFrameSize int `yaml:"max_read_frame_size"`
	// PingInterval sends a PING on a connection that has been silent this
	// long and closes it when no answer comes within PingTimeout. Zero
	// (the default) sends none; listen.idle_timeout still closes idle
	// connections.
	PingInterval time.Duration `yaml:"ping_interval"`
	// PingTimeout is how long a PING answer is awaited. Default 15s.
	PingTimeout time.Duration `yaml:"ping_timeout"`
}

// DefaultHTTP2 is the HTTP/2 listener configuration every unset key falls
// back to.
func DefaultHTTP2() HTTP2Config {
	return HTTP2Config{Enabled: true, MaxConcurrentStreams: 100, MaxReceiveBufferPerStream: 64 << 10,
		MaxReceiveBufferPerConnection: 1 << 20, MaxReadFrameSize: 16 << 10, PingTimeout: 15 * time.Second}
}

// validateHTTP2 checks listen.h2c, listen.http2 and upstream.protocol.
func (c *Config) validateHTTP2(bad func(field, format string, a ...any)) {
	h := c.Listen.HTTP2
	if c.Listen.H2C {
		if c.Listen.TLS.CertFile != "" {
			bad("listen.h2c", "the listener uses TLS, where HTTP/2 is negotiated with ALPN (listen.http2.enabled); h2c is for a plain listener")
		}
		if !h.Enabled {
			bad("listen.h2c", "needs listen.http2.enabled")
		}
	}
	between := func(field string, v, lo, hi int) {
		if v < lo || v > hi {
			bad(field, "must be between %d and %d, got %d", lo, hi, v)
		}
	}
	between("listen.http2.max_concurrent_streams", h.MaxConcurrentStreams, 1, 10000)
	between("listen.http2.max_receive_buffer_per_stream", h.MaxReceiveBufferPerStream, 16<<10, 4<<20-1)
	between("listen.http2.max_receive_buffer_per_connection", h.MaxReceiveBufferPerConnection, 64<<10, 64<<20)
	between("listen.http2.max_read_frame_size", h.MaxReadFrameSize, 16<<10, 16<<20-1)
	if h.MaxReceiveBufferPerConnection < h.MaxReceiveBufferPerStream {
		bad("listen.http2.max_receive_buffer_per_connection", "must be at least listen.http2.max_receive_buffer_per_stream (%d)", h.MaxReceiveBufferPerStream)
	}
	if h.PingInterval < 0 {
		bad("listen.http2.ping_interval", "must not be negative (0 sends no pings)")
	}
	if h.PingTimeout <= 0 {
		bad("listen.http2.ping_timeout", "must be positive")
	}
	scheme, _, _ := strings.Cut(c.Upstream.URL, "://")
	scheme = strings.ToLower(scheme)
	switch proxy.Protocol(c.Upstream.Protocol) {
	case proxy.ProtocolHTTP1:
	case proxy.ProtocolH2C:
		if c.Upstream.URL != "" && scheme != "http" {
			bad("upstream.protocol", "h2c is HTTP/2 without TLS: it needs an http:// upstream.url (use h2 for https://)")
		}
	case proxy.ProtocolH2:
		if c.Upstream.URL != "" && scheme != "https" {
			bad("upstream.protocol", "h2 is HTTP/2 over TLS: it needs an https:// upstream.url (use h2c for http://)")
		}
	default:
		bad("upstream.protocol", "want http1, h2c or h2, got %q", c.Upstream.Protocol)
	}
}
