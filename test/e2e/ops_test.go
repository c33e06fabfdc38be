package e2e

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/internal/config"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// metricValue scrapes the admin listener and returns the value of the
// series whose name and labels are given exactly as exposed.
func (e *gwEnv) metricValue(series string) string {
	e.t.Helper()
	resp, err := http.Get(e.gw.AdminURL + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			return rest
		}
	}
	return ""
}

func TestOpsUpstreamErrorsCountedByKind(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		e := newEnv(t, "", nil)
		e.upstream.Close()
		resp, body := e.do("GET", "/public/x")
		assertJSONError(t, resp, body, http.StatusBadGateway)
		if v := e.metricValue(`authgate_upstream_errors_total{kind="refused"}`); v != "1" {
			t.Errorf("refused count = %q, want 1", v)
		}
		if v := e.metricValue(`authgate_requests_total{auth_method="none",code_class="5xx",decision="error",reason="upstream_refused"}`); v != "1" {
			t.Errorf("requests_total for the 502 = %q, want 1", v)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		block := make(chan struct{})
		e := newEnv(t, "", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-block:
			case <-r.Context().Done():
			}
		}), func(c *config.Config) { c.Upstream.ResponseHeaderTimeout = 100 * time.Millisecond })
		defer close(block)
		resp, body := e.do("GET", "/public/x")
		assertJSONError(t, resp, body, http.StatusGatewayTimeout)
		if v := e.metricValue(`authgate_upstream_errors_total{kind="timeout"}`); v != "1" {
			t.Errorf("timeout count = %q, want 1", v)
		}
	})
}

func TestOpsSlowlorisIsCutOff(t *testing.T) {
	e := newEnv(t, "", nil, func(c *config.Config) { c.Listen.ReadHeaderTimeout = 300 * time.Millisecond })
	c, err := net.Dial("tcp", e.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_, _ = io.WriteString(c, "GET /public/x HTTP/1.1\r\nHost: x\r\n")
	// Dribble one header byte at a time, never finishing the headers.
	closed := false
	for time.Since(start) < 3*time.Second {
		if _, err := io.WriteString(c, "X"); err != nil {
			closed = true
			break
		}
		_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		buf := make([]byte, 512)
		if n, err := c.Read(buf); n > 0 || (err != nil && !isTimeout(err)) {
			closed = true
			break
		}
	}
	if !closed {
		t.Fatalf("connection still open after %v", time.Since(start))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("closed after %v, want about the 300ms header timeout", d)
	}
	if e.up.count() != 0 {
		t.Error("upstream saw the slow request")
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func TestOpsOversizedHeadersGet431(t *testing.T) {
	e := newEnv(t, "", nil, func(c *config.Config) { c.Listen.MaxHeaderBytes = 4096 })
	code, _ := raw(t, e.addr(), "GET /public/x HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 64<<10)+"\r\nConnection: close\r\n\r\n")
	if code != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("status = %d, want 431", code)
	}
	if e.up.count() != 0 {
		t.Error("upstream saw the oversized request")
	}
}

func TestOpsConcurrencyCapReturns503(t *testing.T) {
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	e := newEnv(t, "", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
	}), func(c *config.Config) { c.Listen.MaxInFlight = 1 })
	done := make(chan int)
	go func() {
		resp, err := http.Get(e.gw.URL + "/public/first")
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	<-entered
	resp, body := e.do("GET", "/public/second")
	assertJSONError(t, resp, body, http.StatusServiceUnavailable)
	if resp.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	close(release)
	if code := <-done; code != 200 {
		t.Errorf("first request = %d, want 200", code)
	}
}

func TestOpsRequestIDAndTracePropagation(t *testing.T) {
	e := newEnv(t, "", nil)
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	resp, _ := e.do("GET", "/public/x", "X-Request-Id", "abc-123", "traceparent", tp, "tracestate", "vendor=1,other=2")
	got := e.up.last(t)
	if resp.Header.Get("X-Request-Id") != "abc-123" || got.Header.Get("X-Request-Id") != "abc-123" {
		t.Errorf("valid incoming id not kept: client %q upstream %q", resp.Header.Get("X-Request-Id"), got.Header.Get("X-Request-Id"))
	}
	if got.Header.Get("Traceparent") != tp || got.Header.Get("Tracestate") != "vendor=1,other=2" {
		t.Errorf("trace headers changed: %q %q", got.Header.Get("Traceparent"), got.Header.Get("Tracestate"))
	}
	for _, bad := range []string{"has space", strings.Repeat("a", 200), "<script>"} {
		resp, _ := e.do("GET", "/public/x", "X-Request-Id", bad)
		got := e.up.last(t)
		rid := resp.Header.Get("X-Request-Id")
		if rid == bad || rid == "" || got.Header.Get("X-Request-Id") != rid {
			t.Errorf("invalid id %q: client got %q, upstream %q; want a fresh id on both", bad, rid, got.Header.Get("X-Request-Id"))
		}
	}
	// Denied requests carry the id in the header and the body.
	resp, body := e.do("GET", "/admin/x", "X-Request-Id", "deny-1")
	if resp.Header.Get("X-Request-Id") != "deny-1" || !strings.Contains(body, `"request_id":"deny-1"`) {
		t.Errorf("denied response id: header %q body %s", resp.Header.Get("X-Request-Id"), body)
	}
}

func TestOpsInFlightGaugeReturnsToZero(t *testing.T) {
	e := newEnv(t, "", nil)
	for i := 0; i < 5; i++ {
		e.do("GET", "/public/x")
	}
	if v := e.metricValue("authgate_requests_in_flight"); v != "0" {
		t.Errorf("in-flight after requests = %q, want 0", v)
	}
	if n := testutil.CollectAndCount(e.app.Registry(), "authgate_requests_total"); n == 0 {
		t.Error("no authgate_requests_total series")
	}
}

func TestAdminExplain(t *testing.T) {
	off := newEnv(t, "", nil)
	if resp, err := http.Get(off.gw.AdminURL + "/explain?method=GET&path=/admin/users&role=user"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("/explain without listen.admin_explain: %v %v, want 404 (it reveals the policy)", resp, err)
	}
	e := newEnv(t, "", nil, func(c *config.Config) { c.Listen.AdminExplain = true })
	get := func(q string) (int, string) {
		resp, err := http.Get(e.gw.AdminURL + "/explain?" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("method=GET&path=/admin/users&role=user")
	if code != 200 || !strings.Contains(body, "deny_missing_role") || !strings.Contains(body, "admin") {
		t.Errorf("explain missing role = %d %s", code, body)
	}
	code, body = get("method=GET&path=/public/x&anonymous=true")
	if code != 200 || !strings.Contains(body, "allow_public") {
		t.Errorf("explain anonymous = %d %s", code, body)
	}
	if code, _ := get("method=GET"); code != 400 {
		t.Errorf("explain without path = %d, want 400", code)
	}
	code, body = get("method=GET&path=/admin/users&role=admin&auth_method=external&issuer=https://idp.example&client_ip=10.0.0.1")
	if code != 200 || !strings.Contains(body, "(auth_method external, issuer https://idp.example, client_ip 10.0.0.1)") {
		t.Errorf("explain with a credential = %d %s", code, body)
	}
	if code, _ := get("method=GET&path=/x&auth_method=password"); code != 400 {
		t.Errorf("explain with an unknown auth_method = %d, want 400", code)
	}
}
