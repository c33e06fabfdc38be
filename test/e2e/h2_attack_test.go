package e2e

import (
	"bytes"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/authgate/authgate/internal/config"
)

// withH2C turns on HTTP/2 with prior knowledge on the plain listener.
func withH2C(c *config.Config) { c.Listen.H2C = true }

// Every :path an HTTP/2 client can send is decided exactly as the same
// request-target over HTTP/1: the canonical path or a refusal. None of
// the forms reaches /admin anonymously.
func TestAttackH2PathVariants(t *testing.T) {
	e := newEnv(t, "", nil, withH2C)
	h := dialH2(t, e.addr())
	tests := []struct {
		path    string
		method  string
		allowed string // the path the upstream must see; "" means refused
	}{
		{path: "/public/x", allowed: "/public/x"},
		{path: "/admin/x"},
		{path: "/public/../admin/x"},
		{path: "/public/%2e%2e/admin/x"},
		{path: "/public/%2E%2e/admin/x"},
		{path: "/public/..%2fadmin/x"},
		{path: "/public%2f..%2fadmin/x"},
		{path: "/public/.%2e/admin/x"},
		{path: "//admin/x"},
		{path: "/./admin/x"},
		{path: "/ADMIN/x"},
		{path: "/admin%2fx"},
		{path: "/public/x%00/../../admin/x"},
		{path: "/public\\..\\admin\\x"},
		{path: "/public/x;/../../admin/x"},
		{path: "/public/x#/../../admin/x"},
		{path: "/public/%252e%252e/admin/x"},
		{path: "admin/x"},
		{path: "public/x"},
		{path: "*"},
		{path: "*", method: "OPTIONS", allowed: "-"}, // net/http answers "OPTIONS *" itself, never the handler
		{path: ""},
		{path: "http://evil.example/admin/x"},
		{path: "http://evil.example/public/x", allowed: "/public/x"},
		{path: "//evil.example/admin/x"},
		{path: "http:admin/x"},
		{path: "/public/x?q=1", allowed: "/public/x"},
	}
	for _, tc := range tests {
		method := tc.method
		if method == "" {
			method = "GET"
		}
		before := e.up.count()
		id := h.request(true, ":method", method, ":scheme", "http", ":authority", "gateway.test", ":path", tc.path)
		res := h.await(id)
		if res.ConnErr != nil || res.GoAway {
			// A connection-level refusal: continue on a new connection.
			h = dialH2(t, e.addr())
		}
		if tc.allowed == "" {
			if !res.refused() || e.up.count() != before {
				t.Errorf("%s %q: %v, upstream saw %d requests; want a refusal", method, tc.path, res, e.up.count()-before)
			}
			continue
		}
		if tc.allowed == "-" {
			if e.up.count() != before {
				t.Errorf("%s %q reached the upstream", method, tc.path)
			}
			continue
		}
		if res.Status != "200" || e.up.count() != before+1 {
			t.Errorf("%s %q: %v, want 200 from the upstream", method, tc.path, res)
			continue
		}
		if got := e.up.last(t); got.RawPath != tc.allowed || got.Host != "gateway.test" {
			t.Errorf("%s %q reached the upstream as %q with Host %q, want %q for gateway.test", method, tc.path, got.RawPath, got.Host, tc.allowed)
		}
	}
	for _, r := range e.up.all() {
		if strings.Contains(strings.ToLower(r.Path), "admin") {
			t.Errorf("upstream saw %q", r.Path)
		}
	}
}

// Pseudo-header and header confusion: what the upstream sees follows from
// the one decided request, and malformed header lists never reach it.
func TestAttackH2PseudoHeaders(t *testing.T) {
	e := newEnv(t, "", nil, withH2C)
	t.Run(":authority wins over a Host header", func(t *testing.T) {
		h := dialH2(t, e.addr())
		id := h.request(true, ":method", "GET", ":scheme", "http", ":authority", "a.example", ":path", "/public/x", "host", "b.example")
		if res := h.await(id); res.Status != "200" {
			t.Fatalf("%v, want 200", res)
		}
		got := e.up.last(t)
		if got.Host != "a.example" || got.Header.Get("Host") != "" || got.Header.Get("X-Forwarded-Host") != "a.example" {
			t.Fatalf("upstream Host %q, Host header %q, X-Forwarded-Host %q; want a.example only", got.Host, got.Header.Get("Host"), got.Header.Get("X-Forwarded-Host"))
		}
	})
	t.Run("Host alone stands for :authority", func(t *testing.T) {
		h := dialH2(t, e.addr())
		id := h.request(true, ":method", "GET", ":scheme", "http", ":path", "/public/x", "host", "b.example")
		if res := h.await(id); res.Status != "200" || e.up.last(t).Host != "b.example" {
			t.Fatalf("%v with upstream Host %q, want 200 for b.example", res, e.up.last(t).Host)
		}
	})
	refused := []struct {
		name   string
		fields []string
	}{
		{"second :path naming admin", []string{":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/public/x", ":path", "/admin/x"}},
		{"second :method", []string{":method", "GET", ":method", "DELETE", ":scheme", "http", ":authority", "a", ":path", "/admin/x"}},
		{"pseudo-header after a regular one", []string{":method", "GET", ":scheme", "http", ":authority", "a", "x-a", "1", ":path", "/admin/x"}},
		{"missing :path", []string{":method", "GET", ":scheme", "http", ":authority", "a"}},
		{"missing :method", []string{":scheme", "http", ":authority", "a", ":path", "/public/x"}},
		{"unknown pseudo-header", []string{":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/public/x", ":route", "/admin/x"}},
		{"lower-case method", []string{":method", "get", ":scheme", "http", ":authority", "a", ":path", "/public/x"}},
		{"CONNECT", []string{":method", "CONNECT", ":authority", "upstream.internal:22"}},
		{"extended CONNECT", []string{":method", "CONNECT", ":protocol", "websocket", ":scheme", "http", ":authority", "a", ":path", "/public/x"}},
		{"TRACE", []string{":method", "TRACE", ":scheme", "http", ":authority", "a", ":path", "/public/x"}},
		{"upper-case header name", get("/admin/x", "X-Auth-Roles", "admin")},
		{"connection header", get("/public/x", "connection", "x-auth-roles")},
		{"upgrade h2c", get("/public/x", "upgrade", "h2c")},
		{"upgrade websocket", get("/public/x", "upgrade", "websocket")},
		{"transfer-encoding", get("/public/x", "transfer-encoding", "chunked")},
		{"keep-alive", get("/public/x", "keep-alive", "timeout=5")},
		{"proxy-connection", get("/public/x", "proxy-connection", "keep-alive")},
		{"te other than trailers", get("/public/x", "te", "gzip")},
		{"header value with CR LF", get("/public/x", "x-a", "1\r\nx-auth-subject: admin")},
		{"header name with a space", get("/public/x", "x a", "1")},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			h := dialH2(t, e.addr())
			before := e.up.count()
			res := h.await(h.request(true, tc.fields...))
			if !res.refused() || e.up.count() != before {
				t.Fatalf("%v, upstream saw %d requests; want a refusal", res, e.up.count()-before)
			}
		})
	}
	t.Run("identity headers in any spelling are stripped", func(t *testing.T) {
		h := dialH2(t, e.addr())
		res := h.await(h.request(true, get("/public/x", "x-auth-subject", "admin", "x_auth_roles", "admin", "x-forwarded-user", "admin", "x-pomerium-claim-email", "a@b")...))
		if res.Status != "200" {
			t.Fatalf("%v, want 200", res)
		}
		for k := range e.up.last(t).Header {
			if lk := strings.ToLower(k); strings.Contains(lk, "auth") || strings.Contains(lk, "user") || strings.Contains(lk, "pomerium") {
				t.Errorf("upstream got %s", k)
			}
		}
	})
}

// Bodies under HTTP/2: a DATA length that disagrees with Content-Length
// never becomes a second upstream request, and a body on GET is refused
// as over HTTP/1 without closing the client's other streams.
func TestAttackH2Bodies(t *testing.T) {
	e := newEnv(t, "", nil, withH2C)
	t.Run("more DATA than Content-Length", func(t *testing.T) {
		h := dialH2(t, e.addr())
		before := e.up.count()
		smuggled := "GET /admin/x HTTP/1.1\r\nHost: a\r\nX-Auth-Roles: admin\r\n\r\n"
		id := h.request(false, ":method", "POST", ":scheme", "http", ":authority", "a", ":path", "/public/x", "content-length", "2")
		_ = h.fr.WriteData(id, true, []byte("{}"+smuggled))
		res := h.await(id)
		for _, r := range e.up.all()[before:] {
			if r.Path != "/public/x" {
				t.Fatalf("upstream saw %s %s", r.Method, r.Path)
			}
		}
		if res.Status == "200" {
			t.Fatalf("%v: a body longer than its Content-Length was accepted", res)
		}
	})
	t.Run("body on GET", func(t *testing.T) {
		h := dialH2(t, e.addr())
		before := e.up.count()
		id := h.request(false, get("/public/x")...)
		_ = h.fr.WriteData(id, true, []byte(strings.Repeat("x", 100)))
		res := h.await(id)
		if res.Status != "400" || e.up.count() != before {
			t.Fatalf("%v, want 400 and nothing upstream", res)
		}
		// The refusal closes nothing else: the connection serves on.
		if res := h.await(h.request(true, get("/public/y")...)); res.Status != "200" {
			t.Fatalf("next stream on the connection: %v, want 200", res)
		}
	})
}

// peakGoroutines samples the goroutine count every 2ms until stop closes.
func peakGoroutines(stop <-chan struct{}) *atomic.Int64 {
	var peak atomic.Int64
	go func() {
		for {
			if n := int64(runtime.NumGoroutine()); n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	return &peak
}

// peakInFlight samples the gateway's requests-in-flight gauge (its
// running handlers) every millisecond until stop closes.
func peakInFlight(t *testing.T, e *gwEnv, stop <-chan struct{}) *atomic.Int64 {
	var peak atomic.Int64
	go func() {
		for {
			if n := int64(counterValue(t, e.app.Registry(), "authgate_requests_in_flight", nil)); n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	return &peak
}

// concurrency is an upstream handler that counts the requests it holds at
// once, holding each request for /slow until it ends or hold passes.
type concurrency struct {
	hold      time.Duration
	now, peak atomic.Int64
	total     atomic.Int64
}

func (c *concurrency) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/slow" && !strings.HasPrefix(r.URL.Path, "/admin/") {
		_, _ = w.Write([]byte("ok")) // a bystander
		return
	}
	n := c.now.Add(1)
	defer c.now.Add(-1)
	c.total.Add(1)
	for {
		p := c.peak.Load()
		if n <= p || c.peak.CompareAndSwap(p, n) {
			break
		}
	}
	select {
	case <-time.After(c.hold):
	case <-r.Context().Done():
	}
	_, _ = w.Write([]byte("ok"))
}

// A served request on a fresh HTTP/1 connection, while an attack runs.
func servedMeanwhile(t *testing.T, e *gwEnv) time.Duration {
	t.Helper()
	start := time.Now()
	resp, body := e.do("GET", "/public/ok")
	if resp.StatusCode != 200 {
		t.Fatalf("a bystander's request during the attack: %d %s", resp.StatusCode, body)
	}
	return time.Since(start)
}

// Rapid reset (CVE-2023-44487): a client opening and resetting streams as
// fast as it can runs at most max_concurrent_streams handlers at once and
// reaches the upstream no more often than that; on a denied path it
// reaches the upstream never; the gateway keeps serving others.
func TestAttackH2RapidReset(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 10000 streams")
	}
	const streams = 10
	for _, path := range []string{"/slow", "/admin/x"} {
		t.Run(path, func(t *testing.T) {
			up := &concurrency{hold: 5 * time.Second}
			e := newEnv(t, "", up, withH2C, func(c *config.Config) { c.Listen.HTTP2.MaxConcurrentStreams = streams })
			base := runtime.NumGoroutine()
			totalBefore := up.total.Load()
			stop := make(chan struct{})
			peak, inFlight := peakGoroutines(stop), peakInFlight(t, e, stop)
			h := dialH2(t, e.addr())
			const n = 5000
			var sent int
			for sent = 0; sent < n; sent++ {
				id := h.request(true, get(path)...)
				if err := h.fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
					break // the server closed the connection
				}
			}
			servedMeanwhile(t, e)
			closed, goAway := h.drainUntilClosed(2 * time.Second)
			close(stop)
			t.Logf("%s: %d streams opened and reset; %d handlers at most at once; upstream saw %d requests, at most %d at once; connection closed: %v (%s); peak goroutines %d (from %d)",
				path, sent, inFlight.Load(), up.total.Load()-totalBefore, up.peak.Load(), closed, goAwayCode(goAway), peak.Load(), base)
			if path == "/admin/x" && up.total.Load() != totalBefore {
				t.Fatalf("reset streams to a denied path reached the upstream %d times", up.total.Load()-totalBefore)
			}
			checkStreamBound(t, inFlight.Load(), up.peak.Load(), streams)
			// Each running handler costs a few goroutines (handler, upstream
			// connection reader and writer); the limit keeps them few.
			if g := peak.Load(); g > int64(base)+40*streams {
				t.Fatalf("peak goroutines %d from %d: the attack was not bounded by max_concurrent_streams", g, base)
			}
		})
	}
}

// MadeYouReset (CVE-2025-8671): streams the server itself resets (here for
// a zero WINDOW_UPDATE, a stream error) still count against
// max_concurrent_streams until their handlers return.
func TestAttackH2MadeYouReset(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 2000 streams")
	}
	up := &concurrency{hold: 5 * time.Second}
	const streams = 10
	e := newEnv(t, "", up, withH2C, func(c *config.Config) { c.Listen.HTTP2.MaxConcurrentStreams = streams })
	stop := make(chan struct{})
	inFlight := peakInFlight(t, e, stop)
	h := dialH2(t, e.addr())
	h.fr.AllowIllegalWrites = true // a zero increment is the point
	sent := 0
	for ; sent < 2000; sent++ {
		id := h.request(true, get("/slow")...)
		if err := h.fr.WriteWindowUpdate(id, 0); err != nil {
			break
		}
	}
	servedMeanwhile(t, e)
	closed, goAway := h.drainUntilClosed(2 * time.Second)
	close(stop)
	t.Logf("%d streams opened and made to be reset; %d handlers at most at once; upstream saw %d requests, at most %d at once; connection closed %v (%s)",
		sent, inFlight.Load(), up.total.Load(), up.peak.Load(), closed, goAwayCode(goAway))
	checkStreamBound(t, inFlight.Load(), up.peak.Load(), streams)
}

// checkStreamBound checks that one attacking connection ran at most
// streams handlers at once (plus the bystander's request). What the
// upstream holds at once is logged, not checked: it notices a canceled
// request only some time after the gateway's handler returned, longer on
// a loaded machine, so its count follows the handlers' with a lag.
func checkStreamBound(t *testing.T, handlers, _ int64, streams int) {
	t.Helper()
	if handlers > int64(streams)+1 {
		t.Fatalf("%d handlers ran at once for one connection, want at most max_concurrent_streams (%d) and the bystander", handlers, streams)
	}
}

// CONTINUATION flood (CVE-2023-45288): a header block that never ends is
// cut off once it exceeds max_header_bytes, before it is decoded; the
// gateway reads only a bounded amount of it and serves others meanwhile.
func TestAttackH2ContinuationFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("writes megabytes of header block")
	}
	e := newEnv(t, "", nil, withH2C)
	for _, tc := range []struct {
		name  string
		frame int // bytes of header block per CONTINUATION frame
	}{{"large frames", 16 << 10}, {"one-byte frames", 1}} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.up.count()
			h := dialH2(t, e.addr())
			// Each field is a literal without indexing, 1000 bytes: the
			// block grows without bound and repeats no table entry.
			var field bytes.Buffer
			_ = hpack.NewEncoder(&field).WriteField(hpack.HeaderField{Name: "x-flood", Value: strings.Repeat("a", 1000), Sensitive: true})
			first := h.block(get("/admin/x")...)
			if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: first, EndStream: true}); err != nil {
				t.Fatal(err)
			}
			var written int
			chunk := bytes.Repeat(field.Bytes(), max(tc.frame/field.Len(), 1))
			if tc.frame < field.Len() {
				chunk = chunk[:tc.frame]
			}
			stopAt := 64 << 20
			if tc.frame == 1 {
				stopAt = 4 << 20
			}
			_ = h.c.SetWriteDeadline(time.Now().Add(20 * time.Second))
			for written < stopAt {
				if err := h.fr.WriteContinuation(1, false, chunk); err != nil {
					break
				}
				written += len(chunk)
			}
			closed, goAway := h.drainUntilClosed(5 * time.Second)
			t.Logf("wrote %d bytes of header block before the write failed or stopped; closed %v (%s)", written, closed, goAwayCode(goAway))
			if !closed || goAway == nil || goAway.ErrCode != http2.ErrCodeProtocol {
				t.Fatalf("connection closed %v (%s), want closed with GOAWAY PROTOCOL_ERROR for the oversized header block", closed, goAwayCode(goAway))
			}
			// What the client got to write before the server stopped reading
			// is the header bound plus what the kernel's socket buffers took.
			if written >= stopAt {
				t.Fatalf("the server read %d bytes of one header block", written)
			}
			servedMeanwhile(t, e)
			if n := e.up.count() - before; n != 1 { // only the bystander's request
				t.Fatalf("the upstream saw %d requests", n)
			}
		})
	}
}

// A flood of header fields under the bound is one request, decided once;
// past the bound it is 431 or a refused stream, never forwarded.
func TestAttackH2LargeHeaderList(t *testing.T) {
	e := newEnv(t, "", nil, withH2C)
	h := dialH2(t, e.addr())
	fields := get("/public/x")
	for i := 0; len(fields) < 2*3000; i++ {
		fields = append(fields, "x-f", strings.Repeat("v", 30))
	}
	before := e.up.count()
	res := h.await(h.request(true, fields...))
	if !res.refused() || e.up.count() != before {
		t.Fatalf("3000 header fields (over 64 KiB): %v, upstream saw %d", res, e.up.count()-before)
	}
}
