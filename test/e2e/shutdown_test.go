package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/authgate/authgate/internal/testkit"
)

// shutdownTally is what one client loop saw across a rolling shutdown.
type shutdownTally struct {
	ok          int       // 200 with the full body
	okAfter503  int       // of which completed after /readyz turned 503
	refused     int       // new dials refused: the listener was closed
	firstRefuse time.Time // zero when no dial was refused
	failures    []string  // anything else; the first few only
	lastOK      time.Time // completion of the last 200
}

func (s *shutdownTally) fail(format string, args ...any) {
	if len(s.failures) < 10 {
		s.failures = append(s.failures, fmt.Sprintf(format, args...))
	}
}

// timedGet is a request that started at start and what it returned.
type timedGet struct {
	start, end time.Time
	status     int
	err        error
}

// getIn sends GET url on its own client and reports the result on the
// returned channel.
func getIn(url string) <-chan timedGet {
	ch := make(chan timedGet, 1)
	go func() {
		c := &http.Client{Transport: &http.Transport{}, Timeout: 20 * time.Second}
		defer c.CloseIdleConnections()
		r := timedGet{start: time.Now()}
		resp, err := c.Get(url)
		if err == nil {
			var body []byte
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			r.status = resp.StatusCode
			if err == nil && string(body) != "ok" {
				err = fmt.Errorf("body %q, want ok", body)
			}
		}
		r.end, r.err = time.Now(), err
		ch <- r
	}()
	return ch
}

// TestShutdownLosesNoRequest runs the real binary under continuous
// keep-alive traffic and sends it SIGTERM, as a rolling update does. No
// client may see a 5xx or a reset: every request gets 200, or is refused on
// a new dial once the listener has closed (the load balancer retries those
// elsewhere). Readiness turns off before the listener closes, requests in
// flight complete, and the process exits 0.
func TestShutdownLosesNoRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	const (
		delay     = 2 * time.Second
		clients   = 4
		slowSleep = 1 * time.Second
		// drainSleep keeps one request in flight past the end of the
		// delay, so that it is drained by the server's Shutdown.
		drainSleep = delay + 2*time.Second
	)
	bin := buildBinary(t)

	var loopHits atomic.Int64
	arrived := make(chan string, 4)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/public/loop":
			loopHits.Add(1)
		case "/public/slow", "/public/drain":
			d, err := time.ParseDuration(r.URL.Query().Get("sleep"))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			arrived <- r.URL.Path
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(up.Close)

	p := startProc(t, bin, t.TempDir(), up.URL, reloadPolicyA, delay, []string{"AUTHGATE_JWT_SECRET=" + testSecret})
	p.waitReady()
	gwAddr := strings.TrimPrefix(p.gwURL, "http://")

	stop := make(chan struct{})
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	var wg sync.WaitGroup
	var readyOffAt atomic.Int64 // unix nanoseconds of the first 503

	// Readiness poller: 200 until SIGTERM, then 503 and never 200 again.
	var readyFlapped atomic.Bool
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stopped() {
			switch p.readyz() {
			case http.StatusServiceUnavailable:
				readyOffAt.CompareAndSwap(0, time.Now().UnixNano())
			case http.StatusOK:
				if readyOffAt.Load() != 0 {
					readyFlapped.Store(true)
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()

	// Listener prober: the first refused dial on the main port.
	var listenerClosedAt atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stopped() {
			c, err := net.DialTimeout("tcp", gwAddr, time.Second)
			if err == nil {
				c.Close()
			} else if testkit.IsRefusedDial(err) {
				listenerClosedAt.Store(time.Now().UnixNano())
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()

	// Client loops, each with its own keep-alive connection pool.
	tallies := make([]*shutdownTally, clients)
	var warmed sync.WaitGroup
	for i := range tallies {
		s := &shutdownTally{}
		tallies[i] = s
		wg.Add(1)
		warmed.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{
				DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
				MaxIdleConnsPerHost: 1,
				IdleConnTimeout:     time.Minute,
			}
			c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			defer tr.CloseIdleConnections()
			first := true
			for !stopped() {
				resp, err := c.Get(p.gwURL + "/public/loop")
				now := time.Now()
				if err != nil {
					if testkit.IsRefusedDial(err) {
						s.refused++
						if s.firstRefuse.IsZero() {
							s.firstRefuse = now
						}
						// Nothing listens: pause rather than spin.
						time.Sleep(5 * time.Millisecond)
						continue
					}
					s.fail("GET /public/loop at %s: %v", now.Format("15:04:05.000"), err)
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case err != nil:
					s.fail("GET /public/loop at %s: reading body: %v", now.Format("15:04:05.000"), err)
				case resp.StatusCode != http.StatusOK || string(body) != "ok":
					s.fail("GET /public/loop at %s = %d %q, want 200 ok", now.Format("15:04:05.000"), resp.StatusCode, body)
				default:
					s.ok++
					s.lastOK = now
					if off := readyOffAt.Load(); off != 0 && now.UnixNano() > off {
						s.okAfter503++
					}
					if first {
						first = false
						warmed.Done()
					}
				}
			}
			if first {
				warmed.Done()
			}
		}()
	}
	t.Cleanup(func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	})

	// Every client has a live keep-alive connection before the signal.
	warmedDone := make(chan struct{})
	go func() { warmed.Wait(); close(warmedDone) }()
	select {
	case <-warmedDone:
	case <-time.After(10 * time.Second):
		t.Fatal("client loops got no 200 within 10s")
	}
	time.Sleep(500 * time.Millisecond) // steady traffic before the signal

	// A long request in flight when the signal arrives.
	slow := getIn(p.gwURL + "/public/slow?sleep=" + slowSleep.String())
	select {
	case path := <-arrived:
		if path != "/public/slow" {
			t.Fatalf("upstream got %s, want /public/slow", path)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("slow request did not reach the upstream within 5s")
	}
	sigAt := time.Now()
	p.signal(syscall.SIGTERM)
	// A request still running when the delay ends and the server's
	// Shutdown starts: it must be drained, not cut.
	drain := getIn(p.gwURL + "/public/drain?sleep=" + drainSleep.String())
	select {
	case <-arrived:
	case <-time.After(delay):
		t.Fatal("drain request did not reach the upstream during the shutdown delay")
	}

	// The drain request ends 2s after the delay; the rest is slack for a
	// loaded machine.
	exitBound := delay + 6*time.Second
	select {
	case <-p.done:
	case <-time.After(exitBound):
		t.Fatalf("authgate did not exit within %v of SIGTERM", exitBound)
	}
	exitAt := time.Now()
	close(stop)
	wg.Wait()

	if p.err != nil {
		t.Errorf("exit: %v, want status 0", p.err)
	}
	t.Logf("exit %v after SIGTERM", exitAt.Sub(sigAt).Round(time.Millisecond))

	// The listener closed at the first refused dial, by the prober or by
	// a client loop.
	for _, s := range tallies {
		if f := s.firstRefuse.UnixNano(); !s.firstRefuse.IsZero() && (listenerClosedAt.Load() == 0 || f < listenerClosedAt.Load()) {
			listenerClosedAt.Store(f)
		}
	}
	// Readiness turned off after the signal and before the listener closed.
	closedAt := time.Unix(0, listenerClosedAt.Load())
	offAt := time.Unix(0, readyOffAt.Load())
	switch {
	case listenerClosedAt.Load() == 0:
		t.Error("no dial to the main port was ever refused: the listener did not close")
	case readyOffAt.Load() == 0:
		t.Error("/readyz never returned 503")
	default:
		t.Logf("/readyz 503 %v after SIGTERM, listener closed %v after SIGTERM",
			offAt.Sub(sigAt).Round(time.Millisecond), closedAt.Sub(sigAt).Round(time.Millisecond))
		if offAt.Before(sigAt) {
			t.Errorf("/readyz turned 503 %v before SIGTERM", sigAt.Sub(offAt))
		}
		if !offAt.Before(closedAt) {
			t.Errorf("/readyz turned 503 %v after the listener closed, want before", offAt.Sub(closedAt))
		}
		if closedAt.Sub(sigAt) < delay {
			t.Errorf("listener closed %v after SIGTERM, before the %v shutdown delay", closedAt.Sub(sigAt), delay)
		}
	}
	if readyFlapped.Load() {
		t.Error("/readyz returned 200 again after turning 503")
	}

	// Every client request got 200 or a refused dial after the listener
	// closed; none got a 5xx, a reset or a timeout.
	var ok, okAfter503, refused int
	for i, s := range tallies {
		ok += s.ok
		okAfter503 += s.okAfter503
		refused += s.refused
		for _, f := range s.failures {
			t.Errorf("client %d: %s", i, f)
		}
		if !s.firstRefuse.IsZero() && s.firstRefuse.Sub(sigAt) < delay {
			t.Errorf("client %d: dial refused %v after SIGTERM, before the %v shutdown delay", i, s.firstRefuse.Sub(sigAt), delay)
		}
		if s.lastOK.Before(sigAt) {
			t.Errorf("client %d: no 200 after SIGTERM (last at %v)", i, s.lastOK.Format("15:04:05.000"))
		}
	}
	t.Logf("client loops: %d ok (%d after /readyz 503), %d refused dials after the listener closed", ok, okAfter503, refused)
	if okAfter503 == 0 {
		t.Error("no request was served while readiness was off: the delay did not keep serving")
	}
	// Transport retries a request whose reused connection broke, so a
	// reset could hide behind a later refused dial; the upstream count
	// shows it: every request the upstream answered reached its client.
	if hits := loopHits.Load(); hits != int64(ok) {
		t.Errorf("upstream answered %d loop requests, clients got %d: some responses were lost", hits, ok)
	}

	for _, c := range []struct {
		name     string
		ch       <-chan timedGet
		drainsOn bool // must still run when the listener closes
	}{
		{"slow request started before SIGTERM", slow, false},
		{"request in flight when Shutdown began", drain, true},
	} {
		select {
		case r := <-c.ch:
			if r.err != nil || r.status != http.StatusOK {
				t.Errorf("%s: status %d, error %v; want 200", c.name, r.status, r.err)
			}
			if c.drainsOn && listenerClosedAt.Load() != 0 && !r.end.After(closedAt) {
				t.Errorf("%s ended %v before the listener closed: the drain was not exercised", c.name, closedAt.Sub(r.end))
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s: no response within 5s of the exit", c.name)
		}
	}
}
