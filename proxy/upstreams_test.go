package proxy_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// pyRequest is one request the Python upstream parsed.
type pyRequest struct {
	Conn             int    `json:"conn"`
	Method           string `json:"method"`
	Path             string `json:"path"`
	Subject          string `json:"subject"`
	Roles            string `json:"roles"`
	Connection       string `json:"connection"`
	ContentLength    string `json:"content_length"`
	TransferEncoding string `json:"transfer_encoding"`
	Body             string `json:"body"`
}

// pyUpstream is testdata/keepalive_upstream.py: Python's stock
// http.server with HTTP/1.1 keep-alive, which leaves a body sent with
// GET, HEAD, OPTIONS or DELETE in the connection and parses it as the
// next request.
type pyUpstream struct {
	addr string
	mu   sync.Mutex
	reqs []pyRequest
}

// python3 returns the python3 binary; missing, the test fails under CI
// and is skipped otherwise.
func python3(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("python3 is not installed")
		}
		t.Skip("python3 is not installed; the Python upstream tests need it")
	}
	return bin
}

func startPython(t *testing.T) *pyUpstream {
	t.Helper()
	cmd := exec.Command(python3(t), "-u", "testdata/keepalive_upstream.py")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start python upstream: %v", err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		_ = cmd.Wait()
	})
	up := &pyUpstream{}
	ready := make(chan string, 1)
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if port, ok := strings.CutPrefix(line, "READY "); ok {
				ready <- "127.0.0.1:" + port
				continue
			}
			var r pyRequest
			if json.Unmarshal([]byte(line), &r) == nil {
				up.mu.Lock()
				up.reqs = append(up.reqs, r)
				up.mu.Unlock()
			}
		}
	}()
	select {
	case up.addr = <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("python upstream did not start")
	}
	return up
}

func (u *pyUpstream) url() string { return "http://" + u.addr }

// settle waits until the upstream has parsed nothing new for a moment, so
// a request smuggled inside a body has been recorded if it ever will be.
func (u *pyUpstream) settle() []pyRequest {
	last := -1
	for i := 0; i < 50; i++ {
		u.mu.Lock()
		n := len(u.reqs)
		u.mu.Unlock()
		if n == last {
			break
		}
		last = n
		time.Sleep(40 * time.Millisecond)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]pyRequest(nil), u.reqs...)
}

// goRequest is one request the Go upstream received.
type goRequest struct {
	Method, Path, Subject, Body string
	Close                       bool
	ContentLength               int64
	TransferEncoding            []string
	Header                      http.Header
}

// goUpstream is a Go upstream that records requests, bodies included, and
// counts the connections it accepted.
type goUpstream struct {
	srv   *httptest.Server
	mu    sync.Mutex
	reqs  []goRequest
	conns int
}

func startGoUpstream(t *testing.T) *goUpstream {
	t.Helper()
	u := &goUpstream{}
	u.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.reqs = append(u.reqs, goRequest{Method: r.Method, Path: r.URL.RequestURI(), Subject: r.Header.Get("X-Auth-Subject"),
			Body: string(body), Close: r.Close, ContentLength: r.ContentLength, TransferEncoding: r.TransferEncoding, Header: r.Header.Clone()})
		u.mu.Unlock()
		_, _ = io.WriteString(w, "page "+r.URL.Path)
	}))
	u.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			u.mu.Lock()
			u.conns++
			u.mu.Unlock()
		}
	}
	u.srv.Start()
	t.Cleanup(u.srv.Close)
	return u
}

func (u *goUpstream) snapshot() ([]goRequest, int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]goRequest(nil), u.reqs...), u.conns
}

// roundTrip writes raw, one request exactly as given, to addr and reads
// one response.
func roundTrip(t *testing.T, addr, raw string) (*http.Response, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatalf("write: %v", err)
	}
	method, _, _ := strings.Cut(raw, " ")
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%q: read response: %v", firstLine(raw), err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

func firstLine(raw string) string {
	l, _, _ := strings.Cut(raw, "\r\n")
	return l
}
