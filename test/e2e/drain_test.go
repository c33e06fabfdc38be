package e2e

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/authgate/authgate/authn/state"
	"github.com/authgate/authgate/internal/app"
	"github.com/authgate/authgate/internal/apptest"
	"github.com/authgate/authgate/internal/config"
)

// keepAliveConn is one client connection on which requests are written by
// hand, so that a test sees each response's Connection header and when
// the server closes the connection.
type keepAliveConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialKeepAlive(t *testing.T, addr string) *keepAliveConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &keepAliveConn{t: t, c: c, br: bufio.NewReader(c)}
}

// get sends GET path and reports whether the response said Connection:
// close.
func (k *keepAliveConn) get(path string) (closes bool) {
	k.t.Helper()
	_ = k.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(k.c, "GET "+path+" HTTP/1.1\r\nHost: gw\r\n\r\n"); err != nil {
		k.t.Fatalf("write: %v", err)
	}
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		k.t.Fatalf("GET %s: %v", path, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		k.t.Fatalf("GET %s = %d", path, resp.StatusCode)
	}
	return resp.Close
}

// closedWithin reports whether the server closes the connection within d.
func (k *keepAliveConn) closedWithin(d time.Duration) bool {
	_ = k.c.SetReadDeadline(time.Now().Add(d))
	_, err := k.br.ReadByte()
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// stopAsync ends g's Run as SIGTERM does and returns when it returned.
func stopAsync(g *apptest.Gateway) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- g.Stop() }()
	return ch
}

// TestDrainRetiresConnections follows one gateway's stop order from a
// client's connections. During the first part of the shutdown delay every
// response says Connection: close; in the settle before the listener
// closes, connections are kept alive again; once the listener is closed,
// the next response on a connection says close, and a connection left
// idle is closed only after it has been idle for the grace, never under a
// client that just used it.
func TestDrainRetiresConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("follows a shutdown delay of several seconds")
	}
	const delay = 3 * time.Second // settle: the last 600ms
	e := newEnv(t, "", nil, func(c *config.Config) {
		c.Listen.ShutdownDelay = delay
		c.Listen.ShutdownTimeout = 5 * time.Second
	})
	before := dialKeepAlive(t, e.addr())
	if before.get("/public/a") {
		t.Fatal("response before SIGTERM closes its connection")
	}

	start := time.Now()
	stopped := stopAsync(e.gw)
	eventually(t, time.Second, "/readyz 503", func() bool { code, _ := adminGet(t, e, "/readyz"); return code == http.StatusServiceUnavailable })
	at := func(d time.Duration) { time.Sleep(time.Until(start.Add(d))) }
	at(200 * time.Millisecond)

	// Retiring: an old connection and a new one are both told to close.
	if !before.get("/public/b") {
		t.Error("response during the delay on a kept-alive connection does not say Connection: close")
	}
	if !before.closedWithin(time.Second) {
		t.Error("connection not closed after a Connection: close response")
	}
	if !dialKeepAlive(t, e.addr()).get("/public/c") {
		t.Error("response on a new connection during the delay does not say Connection: close")
	}

	// Settle: connections are kept alive, so a direct client holds one
	// connection and does not dial while the listener closes.
	at(delay - 400*time.Millisecond)
	busy, idle := dialKeepAlive(t, e.addr()), dialKeepAlive(t, e.addr())
	if busy.get("/public/d") || idle.get("/public/e") {
		t.Error("response during the settle says Connection: close")
	}
	idleSince := time.Now()
	if time.Since(start) >= delay {
		t.Fatalf("settle checks ended %v after the stop, after the delay: machine too slow", time.Since(start))
	}

	// Listener closed: new dials are refused, the next response closes.
	at(delay + 150*time.Millisecond)
	if c, err := net.DialTimeout("tcp", e.addr(), time.Second); err == nil {
		c.Close()
		t.Error("dial after the delay succeeded: the listener is still open")
	}
	if !busy.get("/public/f") {
		t.Error("response after the listener closed does not say Connection: close")
	}
	// The idle connection is closed once idle for the grace (1s), not when
	// the listener closes.
	if idle.closedWithin(time.Until(idleSince.Add(800 * time.Millisecond))) {
		t.Errorf("idle connection closed %v after its last response, before the grace", time.Since(idleSince))
	}
	if !idle.closedWithin(3 * time.Second) {
		t.Error("idle connection still open 3s past the grace")
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("Run returned %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("gateway did not stop")
	}
	t.Logf("stopped %v after the signal", time.Since(start).Round(time.Millisecond))
}

// closeCounter is a state store that counts Close calls.
type closeCounter struct {
	state.Store
	closes atomic.Int32
}

func (c *closeCounter) Close() error {
	c.closes.Add(1)
	return c.Store.Close()
}

// TestDrainCutByTimeout: a request still running when shutdown_timeout
// ends is cut; the log says what was cut (by kind, with no request
// detail), Run returns an error (exit 1), and the state store is closed,
// and so flushed, all the same.
func TestDrainCutByTimeout(t *testing.T) {
	entered, release := make(chan struct{}, 1), make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
	}))
	t.Cleanup(up.Close)
	t.Cleanup(func() { close(release) })
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "policy.yaml"), testPolicy)
	cfg := config.Default()
	cfg.Path = filepath.Join(dir, "config.yaml")
	cfg.Upstream.URL = up.URL
	cfg.PolicyFile = filepath.Join(dir, "policy.yaml")
	cfg.Listen.ShutdownDelay = 0
	cfg.Listen.ShutdownTimeout = 300 * time.Millisecond
	mem, err := state.NewMemory(state.MemoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := &closeCounter{Store: mem}
	core, logs := observer.New(zapcore.DebugLevel)
	registerSink(logs)
	a, err := app.New(&cfg, config.Secrets{JWT: []byte(testSecret)}, app.Deps{Logger: zap.New(core), State: st})
	if err != nil {
		t.Fatal(err)
	}
	g := apptest.Run(t, a)
	cut := make(chan error, 1)
	go func() {
		resp, err := http.Get(g.URL + "/public/slow?secret-query=1")
		if err == nil {
			resp.Body.Close()
		}
		cut <- err
	}()
	<-entered
	err = g.Stop()
	if err == nil {
		t.Fatal("Run returned nil after cutting a request, want an error (exit 1)")
	}
	if n := st.closes.Load(); n != 1 {
		t.Errorf("state store closed %d times, want 1 (flushed even when the drain is cut)", n)
	}
	lines := logs.FilterMessage("shutdown timeout: cutting requests that did not finish").All()
	if len(lines) != 1 {
		t.Fatalf("logged %d cut lines, want 1", len(lines))
	}
	f := lines[0].ContextMap()
	for k, want := range map[string]int64{"requests_proxied": 1, "requests_in_flight": 1, "requests_upgraded": 0, "requests_auth_endpoint": 0} {
		if f[k] != want {
			t.Errorf("cut log %s = %v, want %d", k, f[k], want)
		}
	}
	for k, v := range f {
		if s, ok := v.(string); ok && (strings.Contains(s, "/public/slow") || strings.Contains(s, "secret-query")) {
			t.Errorf("cut log field %s = %q names the request", k, s)
		}
	}
	select {
	case err := <-cut:
		if err == nil {
			t.Error("the cut request got a response")
		}
	case <-time.After(5 * time.Second):
		t.Error("the cut request's client was not answered or closed")
	}
}
