package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"github.com/coder/websocket"
)

// slowPolicy opens /public and the WebSocket path and protects /admin.
const slowPolicy = `rules:
  - id: public
    path: /public/**
    public: true
  - id: ws
    path: /ws
    public: true
  - id: admin
    path: /admin/**
    roles: [admin]
`

// slowConfig runs the gateway with its default limits (only the addresses
// and files are set), in mode both so forward-auth checks are exercised.
const slowConfig = `mode: both
forward_auth:
  trusted_peers: [127.0.0.1/32]
upstream:
  url: %s
listen:
  address: 127.0.0.1:%d
  admin_address: 127.0.0.1:%d
  shutdown_delay: 0s
policy_file: policy.yaml
api_keys_file: keys.yaml
users_file: users.yaml
logging:
  level: error
`

// slowUpstream answers /public/big with 8 MiB, /ws with a WebSocket echo
// and everything else with a short body.
func slowUpstream() http.Handler {
	big := make([]byte, 8<<20)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ws":
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			for {
				if _, _, err := c.Read(r.Context()); err != nil {
					return
				}
			}
		case "/public/big":
			_, _ = w.Write(big)
		default:
			_, _ = io.Copy(io.Discard, r.Body)
			_, _ = io.WriteString(w, "ok")
		}
	})
}

// startSlowGateway starts the built gateway with slowConfig and returns it
// with its main address.
func startSlowGateway(t *testing.T, upstream string) (*proc, string) {
	t.Helper()
	bin := buildBinary(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "policy.yaml"), slowPolicy)
	writeFile(t, filepath.Join(dir, "keys.yaml"), testKeys())
	writeFile(t, filepath.Join(dir, "users.yaml"), testUsers(t, "alice-password-1"))
	// GOMEMLIMIT as the chart sets it: 90% of a 200Mi container limit.
	p := startProcConfig(t, bin, dir, func(gw, adm int) string { return fmt.Sprintf(slowConfig, upstream, gw, adm) },
		[]string{"AUTHGATE_JWT_SECRET=" + testSecret, "GOMEMLIMIT=180MiB"})
	p.waitReady()
	return p, strings.TrimPrefix(p.gwURL, "http://")
}

// rssMiB returns the resident set size of pid in MiB.
func rssMiB(t *testing.T, pid int) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("reading RSS: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// The slow-client kinds an attacker mixes: each holds a connection in its
// own way.
var slowKinds = []string{"trickled body", "unfinished headers", "unfinished login", "denied POST without its body",
	"unfinished forward-auth check", "slow reader", "idle keep-alive", "idle WebSocket"}

// holdSlow opens one connection of kind from src and holds it the way the
// kind does until ctx ends or the gateway closes it. It reports whether the
// connection was accepted at all.
func holdSlow(ctx context.Context, kind int, src, addr string) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	if slowKinds[kind] == "slow reader" {
		// A small receive buffer set before connecting, so the kernel
		// cannot take the answer off the gateway on the reader's behalf.
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		}
	}
	if slowKinds[kind] == "idle WebSocket" {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		c, _, err := websocket.Dial(dctx, "ws://"+addr+"/ws", &websocket.DialOptions{HTTPClient: &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}})
		if err != nil {
			return
		}
		defer c.CloseNow()
		_, _, _ = c.Read(ctx)
		return
	}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return
	}
	defer c.Close()
	go func() { <-ctx.Done(); c.Close() }()
	trickle := func(head string) {
		if _, err := io.WriteString(c, head); err != nil {
			return
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(2 * time.Second):
			}
			if _, err := c.Write([]byte("a")); err != nil {
				return
			}
		}
	}
	switch slowKinds[kind] {
	case "trickled body":
		trickle("POST /public/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
	case "unfinished headers":
		trickle("GET /public/x HTTP/1.1\r\nHost: x\r\nX-Slow: ")
	case "unfinished login":
		_, _ = io.WriteString(c, "POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nusername=al")
		_, _ = io.Copy(io.Discard, c)
	case "denied POST without its body":
		_, _ = io.WriteString(c, "POST /admin/x HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n")
		_, _ = io.Copy(io.Discard, c)
	case "unfinished forward-auth check":
		_, _ = io.WriteString(c, "POST /_authgate/verify HTTP/1.1\r\nHost: x\r\nX-Original-Method: GET\r\nX-Original-Uri: /admin/x\r\nContent-Length: 100\r\n\r\n")
		_, _ = io.Copy(io.Discard, c)
	case "slow reader":
		_, _ = io.WriteString(c, "GET /public/big HTTP/1.1\r\nHost: x\r\n\r\n")
		_, _ = io.Copy(io.Discard, iotest.OneByteReader(&trickleReader{c: c, ctx: ctx}))
	case "idle keep-alive":
		_, _ = io.WriteString(c, "GET /public/x HTTP/1.1\r\nHost: x\r\n\r\n")
		br := bufio.NewReader(c)
		if resp, err := http.ReadResponse(br, nil); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		_, _ = br.ReadByte() // until the idle timeout closes it
	}
}

// TestSlowClientsDoNotStarveOthers holds thousands of slow or unfinished
// connections of every kind open against the real binary, reopening each
// as soon as the gateway cuts it, while a well-behaved client keeps
// working. It records the well-behaved client's success rate and the
// gateway's RSS during and after the attack. AUTHGATE_SLOW_LONG=1 runs
// 5,000 connections for a minute; the default is a short form.
func TestSlowClientsDoNotStarveOthers(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary under a slow-client attack")
	}
	conns, dur, settle := 400, 8*time.Second, 20*time.Second
	if os.Getenv("AUTHGATE_SLOW_LONG") != "" {
		conns, dur, settle = 5000, 60*time.Second, 60*time.Second
	}
	if n, err := strconv.Atoi(os.Getenv("AUTHGATE_SLOW_CONNS")); err == nil && n > 0 {
		conns = n
	}
	if n, err := strconv.Atoi(os.Getenv("AUTHGATE_SLOW_SECONDS")); err == nil && n > 0 {
		dur = time.Duration(n) * time.Second
	}
	// By default the request side: clients that never finish sending, and
	// idle ones. AUTHGATE_SLOW_ALL=1 adds slow readers and idle
	// WebSockets, which cost more each and are bounded by max_in_flight,
	// write_min_rate and max_tunnels.
	kinds := []int{0, 1, 2, 3, 4, 6}
	if os.Getenv("AUTHGATE_SLOW_ALL") != "" {
		kinds = []int{0, 1, 2, 3, 4, 5, 6, 7}
	}
	if only := os.Getenv("AUTHGATE_SLOW_KIND"); only != "" {
		// One kind alone, to see what each costs.
		k, err := strconv.Atoi(only)
		if err != nil || k < 0 || k >= len(slowKinds) {
			t.Fatalf("AUTHGATE_SLOW_KIND=%q: want 0-%d", only, len(slowKinds)-1)
		}
		kinds = []int{k}
	}
	up := &http.Server{Handler: slowUpstream()}
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go up.Serve(upLn)
	t.Cleanup(func() { up.Close() })
	p, addr := startSlowGateway(t, "http://"+upLn.Addr().String())
	pid := p.cmd.Process.Pid
	base := rssMiB(t, pid)

	// Attackers come from 50 loopback addresses (a small botnet), each
	// below the per-client bound, so only the total bound and the
	// per-request deadlines stand between them and the gateway.
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range conns {
		src := fmt.Sprintf("127.0.1.%d", 1+i%50)
		kind := kinds[i%len(kinds)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				holdSlow(ctx, kind, src, addr)
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
			}
		}()
	}

	// The well-behaved client, from an address of its own.
	var ok, failed atomic.Int64
	failures := map[string]int{}
	var fmu sync.Mutex
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.200")}}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
	good := func(method, path, body string, hdr ...string) {
		req, _ := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				ok.Add(1)
				return
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		failed.Add(1)
		fmu.Lock()
		failures[fmt.Sprintf("%s %s: %v", method, path, err)]++
		fmu.Unlock()
	}
	peak := base
	start := time.Now()
	for time.Since(start) < dur {
		good("GET", "/public/x", "")
		good("POST", "/public/form", "a=1&b=2")
		good("GET", "/admin/x", "", "X-API-Key", testAPIKey)
		if r := rssMiB(t, pid); r > peak {
			peak = r
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	wg.Wait()
	client.CloseIdleConnections()

	// Memory held for the connections is returned once they are gone.
	after := rssMiB(t, pid)
	deadline := time.Now().Add(settle)
	for after > base+(peak-base)/2 && time.Now().Before(deadline) {
		time.Sleep(time.Second)
		after = rssMiB(t, pid)
	}
	total := ok.Load() + failed.Load()
	rate := float64(ok.Load()) / float64(total)
	t.Logf("after the attack: %s", metricValues(t, p.admURL, "authgate_connections_open", "go_memstats_heap_inuse_bytes",
		"go_memstats_heap_released_bytes", "go_memstats_stack_inuse_bytes", "go_goroutines", "authgate_connections_refused_total"))
	t.Logf("%d slow connections of %d kinds for %v: well-behaved client %d/%d ok (%.2f%%); RSS base %.1f MiB, peak %.1f MiB, %.1f MiB after the attack",
		conns, len(kinds), dur, ok.Load(), total, 100*rate, base, peak, after)
	for f, n := range failures {
		t.Logf("failure x%d: %s", n, f)
	}
	if rate < 0.95 {
		t.Errorf("well-behaved client succeeded %.2f%% of %d requests, want at least 95%%", 100*rate, total)
	}
	if peak >= 200 {
		t.Errorf("RSS peaked at %.1f MiB, want under 200 MiB", peak)
	}
	if after > base+(peak-base)/2 {
		t.Errorf("RSS %.1f MiB %v after the attack (base %.1f, peak %.1f): connection memory not returned", after, settle, base, peak)
	}
}

// TestIdleConnectionMemory measures what one idle keep-alive connection
// costs the real binary, the figure the chart's memory limit follows.
func TestIdleConnectionMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	n := 2000
	up := &http.Server{Handler: slowUpstream()}
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go up.Serve(upLn)
	t.Cleanup(func() { up.Close() })
	p, addr := startSlowGateway(t, "http://"+upLn.Addr().String())
	pid := p.cmd.Process.Pid
	base := rssMiB(t, pid)
	var conns []net.Conn
	for i := range n {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(fmt.Sprintf("127.0.2.%d", 1+i%200))}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
		_, _ = io.WriteString(c, "GET /public/x HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	time.Sleep(time.Second)
	held := rssMiB(t, pid)
	for _, c := range conns {
		c.Close()
	}
	perConn := (held - base) * 1024 / float64(n)
	t.Logf("idle keep-alive connections: RSS %.1f MiB idle, %.1f MiB with %d open: %.1f KiB each", base, held, n, perConn)
	if perConn > 64 {
		t.Errorf("an idle keep-alive connection costs %.1f KiB, want at most 64 KiB", perConn)
	}
}

// metricValues returns the named samples from the admin listener's
// /metrics, one "name value" per sample.
func metricValues(t *testing.T, adminURL string, names ...string) string {
	t.Helper()
	resp, err := http.Get(adminURL + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		for _, n := range names {
			if strings.HasPrefix(line, n+" ") || strings.HasPrefix(line, n+"{") {
				out = append(out, line)
			}
		}
	}
	return strings.Join(out, "; ")
}

// trickleReader reads one byte every 50 ms: a client that keeps reading,
// far below any useful rate.
type trickleReader struct {
	c   net.Conn
	ctx context.Context
}

func (r *trickleReader) Read(p []byte) (int, error) {
	select {
	case <-r.ctx.Done():
		return 0, io.EOF
	case <-time.After(50 * time.Millisecond):
	}
	return r.c.Read(p[:1])
}
