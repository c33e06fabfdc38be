package proxy_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/authn/apikey"
	"github.com/authgate/authgate/internal/clientip"
	"github.com/authgate/authgate/policy"
	"github.com/authgate/authgate/proxy"
)

// limitsPolicy has a public upload path, a protected path and a
// WebSocket path.
const limitsPolicy = `rules:
  - id: public
    path: /public/**
    public: true
  - id: ws
    path: /ws
    public: true
  - id: admin
    path: /admin/**
    authenticated: true
`

// upstreamLog is an upstream that records what it saw and echoes the
// body length and framing it received. /slow waits for release.
type upstreamLog struct {
	mu      sync.Mutex
	reqs    []string // "METHOD PATH cl=N te=X body=N"
	release chan struct{}
}

func (u *upstreamLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/ws" {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, b, err := c.Read(context.Background())
			if err != nil {
				return
			}
			_ = c.Write(context.Background(), typ, b)
		}
	}
	body, _ := io.ReadAll(r.Body)
	u.mu.Lock()
	u.reqs = append(u.reqs, fmt.Sprintf("%s %s cl=%d te=%v body=%d", r.Method, r.URL.Path, r.ContentLength, r.TransferEncoding, len(body)))
	u.mu.Unlock()
	if r.URL.Path == "/public/slow" {
		<-u.release
	}
	if r.URL.Path == "/public/big" {
		_, _ = w.Write(make([]byte, 8<<20))
		return
	}
	_, _ = io.WriteString(w, "upstream ok")
}

func (u *upstreamLog) seen() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.reqs...)
}

type limitsEnv struct {
	url  string
	addr string
	up   *upstreamLog
	reg  *prometheus.Registry
}

// newLimitsEnv runs a gateway with lim on a real server in front of a
// recording upstream.
func newLimitsEnv(t *testing.T, lim proxy.Limits, tune func(*proxy.Options)) *limitsEnv {
	t.Helper()
	up := &upstreamLog{release: make(chan struct{})}
	ups := httptest.NewServer(up)
	t.Cleanup(ups.Close)
	t.Cleanup(func() { close(up.release) })
	set, err := policy.Load("policy.yaml", []byte(limitsPolicy))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := apikey.Parse("keys.yaml", []byte(faKeysYAML()))
	if err != nil {
		t.Fatal(err)
	}
	var ks apikey.Store
	ks.Swap(keys)
	u, _ := url.Parse(ups.URL)
	reg := prometheus.NewRegistry()
	o := proxy.Options{
		Upstream:      u,
		Policy:        policy.NewStore(set),
		Authenticator: authn.Chain{APIKey: apikey.NewAuthenticator(&ks, nil)},
		Logger:        zap.NewNop(),
		Metrics:       proxy.NewMetrics(reg),
		Limits:        lim,
	}
	if tune != nil {
		tune(&o)
	}
	gw, err := proxy.New(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	t.Cleanup(srv.Close)
	return &limitsEnv{url: srv.URL, addr: srv.Listener.Addr().String(), up: up, reg: reg}
}

// rawConn opens a connection and writes head (a request head and perhaps
// part of a body).
func rawConn(t *testing.T, addr, head string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	return c, bufio.NewReader(c)
}

// slowReaderConn opens a connection whose receive buffer is set small
// before it connects, so the kernel cannot absorb a large answer on the
// client's behalf, and writes head.
func slowReaderConn(t *testing.T, addr, head string) (net.Conn, *bufio.Reader) {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	return c, bufio.NewReaderSize(c, 512)
}

// readResponse reads one response within limit, failing the test when none
// comes.
func readResponse(t *testing.T, c net.Conn, br *bufio.Reader, limit time.Duration) *http.Response {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(limit))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no response within %v: %v", limit, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// assertClosed checks that the server closes c (EOF, not a timeout).
func assertClosed(t *testing.T, c net.Conn, br *bufio.Reader, limit time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(limit))
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("connection still delivers bytes, want it closed")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection still open after %v, want it closed", limit)
	}
}

// A refusal is answered from the request head: the gateway neither waits
// for the body nor drains it, and closes the connection after answering.
func TestRefusalIsAnsweredWithoutWaitingForTheBody(t *testing.T) {
	e := newLimitsEnv(t, proxy.Limits{EndpointTimeout: 10 * time.Second}, nil)
	tests := []struct {
		name, head string
		want       int
	}{
		{"denied POST with a declared body", "POST /admin/x HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n", 401},
		{"denied POST with a chunked body", "POST /admin/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n", 401},
		{"bad credential with a body", "POST /admin/x HTTP/1.1\r\nHost: x\r\nX-API-Key: wrong\r\nContent-Length: 100\r\n\r\n", 401},
		{"malformed path with a body", "POST /public/%2e%2e/admin HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab", 400},
		{"unknown gateway-owned path with a body", "POST /public/../x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, br := rawConn(t, e.addr, tc.head)
			start := time.Now()
			resp := readResponse(t, c, br, 5*time.Second)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("answered after %v, want without waiting for the body", took)
			}
			if !resp.Close {
				t.Errorf("response without Connection: close, want the connection retired")
			}
			assertClosed(t, c, br, 5*time.Second)
		})
	}
	if n := len(e.up.seen()); n != 0 {
		t.Fatalf("upstream saw %d requests: %v", n, e.up.seen())
	}
}

// A body that fits the request buffer is read in full before the request
// goes upstream: a trickling upload never reaches the upstream and never
// takes an in-flight slot; it is cut off with 408 once it falls below the
// minimum rate.
func TestSlowUploadIsBufferedAndCutOff(t *testing.T) {
	e := newLimitsEnv(t, proxy.Limits{BodyMinRate: 100, BodyRateWindow: time.Second, RequestBuffer: 64 << 10}, func(o *proxy.Options) {
		o.MaxInFlight = 1
	})
	c, br := rawConn(t, e.addr, "POST /public/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")

	// The trickler holds no slot: an ordinary request passes meanwhile.
	resp, err := http.Get(e.url + "/public/other")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("ordinary request during a slow upload: %v %v", resp, err)
	}
	resp.Body.Close()

	start := time.Now()
	got := readResponse(t, c, br, 5*time.Second)
	if got.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("slow upload got %d, want 408", got.StatusCode)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("cut off after %v, want within about one 1s window", took)
	}
	assertClosed(t, c, br, 5*time.Second)
	for _, s := range e.up.seen() {
		if strings.Contains(s, "/public/upload") {
			t.Fatalf("upstream saw the incomplete upload: %s", s)
		}
	}
}

// An upload that keeps to the minimum rate is not cut off, and a chunked
// body that fits the buffer reaches the upstream whole, with its length.
func TestSteadyUploadPassesWhole(t *testing.T) {
	e := newLimitsEnv(t, proxy.Limits{BodyMinRate: 100, BodyRateWindow: time.Second, RequestBuffer: 64 << 10}, nil)
	c, br := rawConn(t, e.addr, "POST /public/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
	for range 6 { // 6 × 200 bytes over 1.5 s: above 100 B/s in every window
		fmt.Fprintf(c, "c8\r\n%s\r\n", strings.Repeat("a", 200))
		time.Sleep(250 * time.Millisecond)
	}
	io.WriteString(c, "0\r\n\r\n")
	resp := readResponse(t, c, br, 5*time.Second)
	if resp.StatusCode != 200 {
		t.Fatalf("steady upload got %d, want 200", resp.StatusCode)
	}
	seen := e.up.seen()
	if len(seen) != 1 || seen[0] != "POST /public/upload cl=1200 te=[] body=1200" {
		t.Fatalf("upstream saw %q, want one POST with Content-Length 1200 and no chunking", seen)
	}
}

// A body larger than the buffer streams, and is still cut off when it
// stalls.
func TestLargeUploadStreamsAndStallIsCut(t *testing.T) {
	e := newLimitsEnv(t, proxy.Limits{BodyMinRate: 100, BodyRateWindow: time.Second, RequestBuffer: 16}, nil)
	c, br := rawConn(t, e.addr, "POST /public/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"+strings.Repeat("a", 500))
	resp := readResponse(t, c, br, 5*time.Second)
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("stalled large upload got %d, want 408", resp.StatusCode)
	}
	assertClosed(t, c, br, 5*time.Second)
}

// The gateway's own endpoints, refusals and forward-auth checks have a
// whole-request deadline: a client that never finishes its body is cut off.
func TestEndpointDeadlineCutsUnfinishedRequests(t *testing.T) {
	slowEndpoint := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			proxy.WriteError(w, "", &proxy.Error{Code: http.StatusBadRequest, Msg: "body not read"})
			return
		}
		_, _ = io.WriteString(w, "endpoint ok")
	})
	e := newLimitsEnv(t, proxy.Limits{EndpointTimeout: 500 * time.Millisecond}, func(o *proxy.Options) {
		o.Owned = map[string]http.Handler{"/auth/login": slowEndpoint}
		o.OwnedPrefix = "/auth"
	})
	c, br := rawConn(t, e.addr, "POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nusername=")
	start := time.Now()
	resp := readResponse(t, c, br, 5*time.Second)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("unfinished login got %d, want 400", resp.StatusCode)
	}
	if took := time.Since(start); took < 400*time.Millisecond || took > 3*time.Second {
		t.Errorf("cut off after %v, want at the 500ms deadline", took)
	}
	assertClosed(t, c, br, 5*time.Second)
}

// A client that stops reading a proxied response is cut off after the
// per-write deadline, and its request slot is freed.
func TestSlowReaderIsCutOff(t *testing.T) {
	e := newLimitsEnv(t, proxy.Limits{WriteIdleTimeout: 300 * time.Millisecond}, func(o *proxy.Options) {
		o.MaxInFlight = 1
	})
	slowReaderConn(t, e.addr, "GET /public/big HTTP/1.1\r\nHost: x\r\n\r\n")
	// Never read. The 8 MiB answer fills the socket buffers, the write
	// blocks, and the deadline frees the slot for the next client.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(e.url + "/public/after")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the slot held by a client that stopped reading was not freed: last %v %v", resp, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Behind a trusted proxy every client shares its connections, so the
// per-client bound counts the requests of each forwarded client address.
func TestPerClientBoundBehindTrustedProxy(t *testing.T) {
	trusted, _ := clientip.Parse([]string{"127.0.0.0/8"})
	e := newLimitsEnv(t, proxy.Limits{MaxPerClient: 1}, func(o *proxy.Options) { o.Trusted = trusted })
	first := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("GET", e.url+"/public/slow", nil)
		req.Header.Set("X-Forwarded-For", "203.0.113.7")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			first <- 0
			return
		}
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	waitFor(t, func() bool { return len(e.up.seen()) == 1 }, "the upstream to see the first request")
	for _, tc := range []struct {
		client string
		want   int
	}{{"203.0.113.7", http.StatusTooManyRequests}, {"203.0.113.8", 200}, {"2001:db8::1", 200}} {
		req, _ := http.NewRequest("GET", e.url+"/public/x", nil)
		req.Header.Set("X-Forwarded-For", tc.client)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("client %s while 203.0.113.7 has a request in flight: %d, want %d", tc.client, resp.StatusCode, tc.want)
		}
		if tc.want == 429 && resp.Header.Get("Retry-After") == "" {
			t.Errorf("429 without Retry-After")
		}
	}
	e.up.release <- struct{}{}
	if code := <-first; code != 200 {
		t.Fatalf("first request: %d", code)
	}
}

// WebSocket tunnels are counted apart from requests in flight: an open
// tunnel takes no request slot, and tunnels have their own bound.
func TestTunnelsAreCountedApart(t *testing.T) {
	e := newLimitsEnv(t, proxy.Limits{MaxTunnels: 1}, func(o *proxy.Options) { o.MaxInFlight = 1 })
	ws := "ws" + strings.TrimPrefix(e.url, "http") + "/ws"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, ws, nil)
	if err != nil {
		t.Fatalf("first tunnel: %v", err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Read(ctx); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(e.url + "/public/x")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("request while a tunnel is open: %v %v, want 200", resp, err)
	}
	resp.Body.Close()
	_, resp, err = websocket.Dial(ctx, ws, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("second tunnel: %v %v, want 503", resp, err)
	}
	if v := gaugeValue(t, e.reg, "authgate_tunnels_open"); v != 1 {
		t.Errorf("authgate_tunnels_open = %v, want 1", v)
	}
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// A client that reads a response at a trickle is cut off once it falls
// below the minimum rate, even though no single write waits long; an
// upstream that pauses between chunks is not blamed on the client.
func TestSendMinRate(t *testing.T) {
	t.Run("trickling reader is cut", func(t *testing.T) {
		e := newLimitsEnv(t, proxy.Limits{WriteIdleTimeout: time.Minute, WriteMinRate: 200 << 10, BodyRateWindow: time.Second}, func(o *proxy.Options) {
			o.MaxInFlight = 1
		})
		c, br := slowReaderConn(t, e.addr, "GET /public/big HTTP/1.1\r\nHost: x\r\n\r\n")
		go func() { // about 25 KiB/s: no single write waits long
			buf := make([]byte, 512)
			for {
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := br.Read(buf); err != nil {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
		waitFor(t, func() bool { return len(e.up.seen()) == 1 }, "the upstream to see the first request")
		deadline := time.Now().Add(10 * time.Second)
		for {
			resp, err := http.Get(e.url + "/public/after")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("the slot held by a trickling reader was not freed: last %v %v", resp, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	t.Run("pausing upstream is not blamed", func(t *testing.T) {
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			for i := range 3 {
				fmt.Fprintf(w, "event %d\n", i)
				w.(http.Flusher).Flush()
				time.Sleep(1500 * time.Millisecond) // longer than the window
			}
		}))
		defer up.Close()
		e := newLimitsEnv(t, proxy.Limits{WriteIdleTimeout: time.Minute, WriteMinRate: 200 << 10, BodyRateWindow: time.Second}, func(o *proxy.Options) {
			o.Upstream, _ = url.Parse(up.URL)
		})
		resp, err := http.Get(e.url + "/public/stream")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || strings.Count(string(body), "event") != 3 {
			t.Fatalf("stream with pauses: %q, %v; want all 3 events", body, err)
		}
	})
}
