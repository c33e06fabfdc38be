package proxy_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/internal/testkit"
	"github.com/authgate/authgate/policy"
	"github.com/authgate/authgate/proxy"
)

// retryEnv is a gateway on a real listener whose upstream address is
// reserved but not listening until the test opens it.
type retryEnv struct {
	gwURL    string
	upAddr   string
	reg      *prometheus.Registry
	requests atomic.Int64 // requests the upstream read
}

func newRetryEnv(t *testing.T, delay time.Duration) *retryEnv {
	t.Helper()
	set, err := policy.Load("policy.yaml", []byte("rules:\n  - id: open\n    path: /**\n    public: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	// The upstream's port: free a moment ago, refused until listened on,
	// and outside the ephemeral range so no other socket takes it.
	upAddr, err := testkit.StableAddr()
	if err != nil {
		t.Fatal(err)
	}
	e := &retryEnv{upAddr: upAddr, reg: prometheus.NewRegistry()}
	up, _ := url.Parse("http://" + e.upAddr)
	tr := proxy.NewTransport(proxy.TransportOptions{DialTimeout: 2 * time.Second})
	t.Cleanup(tr.CloseIdleConnections)
	gw, err := proxy.New(proxy.Options{
		Upstream: up, Policy: policy.NewStore(set), Authenticator: authn.Chain{},
		Transport: tr, Metrics: proxy.NewMetrics(e.reg), RetryRefusedDelay: delay,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: gw}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	e.gwURL = "http://" + ln.Addr().String()
	return e
}

// openUpstream starts the upstream on the reserved port: it answers every
// request with the method, the body's length and its SHA-256.
func (e *retryEnv) openUpstream(t *testing.T) {
	t.Helper()
	l, err := net.Listen("tcp", e.upAddr)
	if err != nil {
		t.Errorf("upstream listen %s: %v", e.upAddr, err)
		return
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.requests.Add(1)
		b, _ := io.ReadAll(r.Body)
		sum := sha256.Sum256(b)
		fmt.Fprintf(w, "%s %d %s", r.Method, len(b), hex.EncodeToString(sum[:]))
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
}

func (e *retryEnv) retries(t *testing.T) float64 {
	t.Helper()
	return counterValue(t, e.reg, "authgate_upstream_retries_total", map[string]string{"reason": "refused"})
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("%s%v not found", name, labels)
	return 0
}

// noLength hides a reader's type, so the request is sent chunked.
type noLength struct{ io.Reader }

// TestRetryRefusedUpstream: an upstream that opens its port within the
// retry delay gets every request once, whole, whatever the method: a
// refused connection carried nothing, so the retry sends the body that the
// first attempt never read.
func TestRetryRefusedUpstream(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	sum := sha256.Sum256(body)
	cases := []struct {
		method  string
		body    func() io.Reader
		wantLen int
	}{
		{"GET", func() io.Reader { return nil }, 0},
		{"DELETE", func() io.Reader { return nil }, 0},
		{"POST", func() io.Reader { return bytes.NewReader(body) }, len(body)},
		{"PUT", func() io.Reader { return noLength{bytes.NewReader(body)} }, len(body)}, // chunked
	}
	for _, tc := range cases {
		t.Run(tc.method, func(t *testing.T) {
			const delay = 300 * time.Millisecond
			e := newRetryEnv(t, delay)
			// The upstream comes up well inside the delay.
			time.AfterFunc(delay/3, func() { e.openUpstream(t) })
			req, err := http.NewRequest(tc.method, e.gwURL+"/x", tc.body())
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("%s through the gateway: %v", tc.method, err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s = %d %s, want 200 after one retry", tc.method, resp.StatusCode, got)
			}
			want := fmt.Sprintf("%s %d ", tc.method, tc.wantLen)
			if tc.wantLen > 0 {
				want += hex.EncodeToString(sum[:])
			}
			if !strings.HasPrefix(string(got), want) {
				t.Errorf("upstream saw %q, want %q: the retried body was not whole", got, want)
			}
			if n := e.requests.Load(); n != 1 {
				t.Errorf("upstream got %d requests, want 1", n)
			}
			if r := e.retries(t); r != 1 {
				t.Errorf("authgate_upstream_retries_total{reason=refused} = %v, want 1", r)
			}
			if took := time.Since(start); took < delay {
				t.Errorf("answered after %v, before the %v retry delay", took, delay)
			}
		})
	}
}

// TestRetryRefusedOnce: an upstream that stays down is tried twice, not
// more, and the client gets the 502 after one delay.
func TestRetryRefusedOnce(t *testing.T) {
	const delay = 100 * time.Millisecond
	e := newRetryEnv(t, delay)
	start := time.Now()
	resp, err := http.Post(e.gwURL+"/x", "text/plain", strings.NewReader("payload"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("POST to a down upstream = %d, want 502", resp.StatusCode)
	}
	if took := time.Since(start); took < delay {
		t.Errorf("502 after %v, before the retry delay %v", took, delay)
	}
	if r := e.retries(t); r != 1 {
		t.Errorf("retries = %v, want 1", r)
	}
	if n := counterValue(t, e.reg, "authgate_upstream_errors_total", map[string]string{"kind": "refused"}); n != 1 {
		t.Errorf("upstream_errors_total{refused} = %v, want 1 (the final failure only)", n)
	}
}

// TestRetryNotWhenSent: a request that reached the upstream is never
// retried, whatever its method, even when the upstream closed the
// connection without answering: it may have acted on it.
func TestRetryNotWhenSent(t *testing.T) {
	for _, method := range []string{"GET", "POST"} {
		t.Run(method, func(t *testing.T) {
			e := newRetryEnv(t, 50*time.Millisecond)
			l, err := net.Listen("tcp", e.upAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			var conns atomic.Int64
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					conns.Add(1)
					// Read the request, then drop the connection unanswered.
					buf := make([]byte, 4096)
					_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
					_, _ = c.Read(buf)
					c.Close()
				}
			}()
			var body io.Reader
			if method == "POST" {
				body = strings.NewReader("payload")
			}
			req, _ := http.NewRequest(method, e.gwURL+"/x", body)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadGateway {
				t.Errorf("%s to an upstream that hung up = %d, want 502", method, resp.StatusCode)
			}
			l.Close()
			wg.Wait()
			if n := conns.Load(); n != 1 {
				t.Errorf("upstream saw %d connections, want 1: a sent request was retried", n)
			}
			if r := e.retries(t); r != 0 {
				t.Errorf("retries = %v, want 0", r)
			}
		})
	}
}

// TestRetryStopsWithTheClient: a client that goes away during the delay
// ends the wait; nothing is sent after it left.
func TestRetryStopsWithTheClient(t *testing.T) {
	e := newRetryEnv(t, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.gwURL+"/x", nil)
	start := time.Now()
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("request = %d, want the client's deadline", resp.StatusCode)
	}
	// The gateway notices the closed client connection and stops waiting;
	// opening the upstream afterwards must not see a request.
	time.Sleep(300 * time.Millisecond)
	e.openUpstream(t)
	time.Sleep(200 * time.Millisecond)
	if n := e.requests.Load(); n != 0 {
		t.Errorf("upstream got %d requests after the client left", n)
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("took %v: the wait did not end with the client", took)
	}
	if r := e.retries(t); r != 0 {
		t.Errorf("retries = %v, want 0", r)
	}
}

// TestRetryOff: a zero delay turns the retry off.
func TestRetryOff(t *testing.T) {
	e := newRetryEnv(t, 0)
	resp, err := http.Get(e.gwURL + "/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("GET = %d, want 502", resp.StatusCode)
	}
	if r := e.retries(t); r != 0 {
		t.Errorf("retries = %v, want 0", r)
	}
}
