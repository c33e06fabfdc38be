package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/authgate/authgate/internal/config"
)

// h2cClient is an HTTP client that speaks HTTP/2 with prior knowledge.
func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Protocols: &p}}
}

// A refusal that HTTP/1 answers with "Connection: close" (a body left
// unread) ends only its own stream under HTTP/2: net/http would turn the
// header into a GOAWAY for every other stream of the client.
func TestH2RefusalKeepsTheConnection(t *testing.T) {
	e := newEnv(t, "", nil, withH2C)
	h := dialH2(t, e.addr())
	// An anonymous upload to a protected path, its body never sent.
	id := h.request(false, ":method", "POST", ":scheme", "http", ":authority", "a", ":path", "/admin/x", "content-length", "100000")
	if res := h.await(id); res.Status != "401" {
		t.Fatalf("%v, want 401", res)
	}
	if res := h.await(h.request(true, get("/public/x")...)); res.Status != "200" || h.goAways != 0 {
		t.Fatalf("the next stream: %v after %d GOAWAY frames; want 200 on the same connection", res, h.goAways)
	}
}

// Requests in flight per client are bounded for a direct HTTP/2 client as
// for the clients of a trusted proxy: streams, not connections, are what
// an HTTP/2 client holds.
func TestH2PerClientRequestBound(t *testing.T) {
	up := &concurrency{hold: 5 * time.Second}
	e := newEnv(t, "", up, withH2C, func(c *config.Config) { c.Listen.MaxConnectionsPerClient = 3 })
	h := dialH2(t, e.addr())
	for i := 0; i < 3; i++ {
		h.request(true, get("/slow")...)
	}
	eventually(t, 3*time.Second, "three requests held upstream", func() bool { return up.now.Load() == 3 })
	res := h.await(h.request(true, get("/public/x")...))
	if res.Status != "429" || res.Header["retry-after"] == "" {
		t.Fatalf("a fourth request in flight: %v, want 429 with Retry-After", res)
	}
	// Another connection of the same client shares the bound.
	h2 := dialH2(t, e.addr())
	if res := h2.await(h2.request(true, get("/public/x")...)); res.Status != "429" {
		t.Fatalf("the same client on a second connection: %v, want 429", res)
	}
}

// An HTTP/2 upload is not cut off as slow while the upstream, not the
// client, is slow to take it: under HTTP/2 a read deadline is a timer
// that fires between reads too, so it is cleared after each read.
func TestH2UploadToASlowUpstream(t *testing.T) {
	if testing.Short() {
		t.Skip("uploads 32 MiB to an upstream that waits first")
	}
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2500 * time.Millisecond) // longer than body_read_timeout
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		_, _ = io.WriteString(w, strconv.FormatInt(n, 10))
	})
	e := newEnv(t, "", slow, withH2C, func(c *config.Config) { c.Listen.BodyReadTimeout = time.Second })
	const size = 32 << 20
	req, _ := http.NewRequestWithContext(context.Background(), "POST", e.gw.URL+"/public/upload", bytes.NewReader(make([]byte, size)))
	resp, err := h2cClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 || string(body) != strconv.Itoa(size) {
		t.Fatalf("HTTP/%d %d %s, want HTTP/2 200 with %d bytes taken", resp.ProtoMajor, resp.StatusCode, body, size)
	}
}

// HTTP/2 is offered through ALPN on the TLS listener (and HTTP/1.1 still
// served), and h2c only when listen.h2c asks for it.
func TestH2Negotiation(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir, "gateway")
	tlsOn := func(c *config.Config) { c.Listen.TLS = config.TLSConfig{CertFile: certFile, KeyFile: keyFile} }
	alpn := func(addr string, protos ...string) string {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: protos})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().NegotiatedProtocol
	}
	e := newEnv(t, "", nil, tlsOn)
	if got := alpn(e.addr(), "h2", "http/1.1"); got != "h2" {
		t.Errorf("ALPN with h2 offered: %q, want h2", got)
	}
	if got := alpn(e.addr(), "http/1.1"); got != "http/1.1" {
		t.Errorf("ALPN with http/1.1 only: %q", got)
	}
	off := newEnv(t, "", nil, tlsOn, func(c *config.Config) { c.Listen.HTTP2.Enabled = false })
	if got := alpn(off.addr(), "h2", "http/1.1"); got != "http/1.1" {
		t.Errorf("with listen.http2.enabled false: ALPN %q, want http/1.1", got)
	}

	plain := newEnv(t, "", nil)
	if _, err := h2cClient().Get(plain.gw.URL + "/public/x"); err == nil {
		t.Error("prior-knowledge h2c was served without listen.h2c")
	}
	on := newEnv(t, "", nil, withH2C)
	resp, err := h2cClient().Get(on.gw.URL + "/public/x")
	if err != nil || resp.ProtoMajor != 2 {
		t.Fatalf("h2c with listen.h2c: %v %v", resp, err)
	}
	resp.Body.Close()
	// HTTP/1.1 still works on an h2c listener.
	if resp, _ := on.do("GET", "/public/x"); resp.StatusCode != 200 || resp.ProtoMajor != 1 {
		t.Fatalf("HTTP/1.1 on an h2c listener: %d HTTP/%d", resp.StatusCode, resp.ProtoMajor)
	}
}
