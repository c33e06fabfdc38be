package config

import (
	"strings"
	"testing"
)

func TestValidateHTTP2(t *testing.T) {
	base := func() Config {
		c := Default()
		c.Path, c.PolicyFile, c.Upstream.URL = "config.yaml", "policy.yaml", "http://127.0.0.1:8081"
		return c
	}
	if err := func() error { c := base(); return c.Validate() }(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	tests := []struct {
		name string
		mod  func(*Config)
		want string // field, then optionally ": " and part of the message; "" means valid
	}{
		{"h2c on a plain listener", func(c *Config) { c.Listen.H2C = true }, ""},
		{"h2c upstream", func(c *Config) { c.Upstream.Protocol = "h2c" }, ""},
		{"h2 upstream", func(c *Config) { c.Upstream.Protocol, c.Upstream.URL = "h2", "https://app:8443" }, ""},
		{"h2 upstream, upper-case scheme", func(c *Config) { c.Upstream.Protocol, c.Upstream.URL = "h2", "HTTPS://app:8443" }, ""},
		{"h2c with TLS", func(c *Config) { c.Listen.H2C, c.Listen.TLS = true, TLSConfig{CertFile: "c", KeyFile: "k"} }, "listen.h2c"},
		{"h2c without HTTP/2", func(c *Config) { c.Listen.H2C, c.Listen.HTTP2.Enabled = true, false }, "listen.h2c: needs listen.http2.enabled"},
		{"unknown protocol", func(c *Config) { c.Upstream.Protocol = "http2" }, "upstream.protocol: want http1, h2c or h2"},
		{"empty protocol", func(c *Config) { c.Upstream.Protocol = "" }, "upstream.protocol"},
		{"h2c to https", func(c *Config) { c.Upstream.Protocol, c.Upstream.URL = "h2c", "https://app" }, "upstream.protocol: it needs an http:// upstream.url"},
		{"h2 to http", func(c *Config) { c.Upstream.Protocol = "h2" }, "upstream.protocol: it needs an https:// upstream.url"},
		{"zero streams", func(c *Config) { c.Listen.HTTP2.MaxConcurrentStreams = 0 }, "listen.http2.max_concurrent_streams: must be between 1 and 10000"},
		{"too many streams", func(c *Config) { c.Listen.HTTP2.MaxConcurrentStreams = 100000 }, "listen.http2.max_concurrent_streams: must be between 1 and 10000"},
		{"tiny stream window", func(c *Config) { c.Listen.HTTP2.MaxReceiveBufferPerStream = 100 }, "listen.http2.max_receive_buffer_per_stream: must be between"},
		{"connection window below stream window", func(c *Config) {
			c.Listen.HTTP2.MaxReceiveBufferPerStream, c.Listen.HTTP2.MaxReceiveBufferPerConnection = 1<<20, 512<<10
		}, "listen.http2.max_receive_buffer_per_connection: must be at least listen.http2.max_receive_buffer_per_stream"},
		{"frame size below the RFC minimum", func(c *Config) { c.Listen.HTTP2.MaxReadFrameSize = 1024 }, "listen.http2.max_read_frame_size: must be between 16384"},
		{"negative ping interval", func(c *Config) { c.Listen.HTTP2.PingInterval = -1 }, "listen.http2.ping_interval: must not be negative"},
		{"zero ping timeout", func(c *Config) { c.Listen.HTTP2.PingTimeout = 0 }, "listen.http2.ping_timeout: must be positive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.mod(&c)
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			field, msg, _ := strings.Cut(tc.want, ": ")
			if err == nil || !strings.Contains(err.Error(), "config.yaml: field "+field+": ") || !strings.Contains(err.Error(), msg) {
				t.Fatalf("Validate = %v, want an error naming %q", err, tc.want)
			}
		})
	}
}
