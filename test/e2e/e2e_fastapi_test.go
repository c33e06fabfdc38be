package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authgate/authgate/authn/token"
	"github.com/authgate/authgate/internal/testkit"
)

// fastAPIPython returns a Python that has the example's dependencies
// (AUTHGATE_TEST_PYTHON, python3, /usr/bin/python3), or skips; under CI
// a missing one fails.
func fastAPIPython(t *testing.T) string {
	t.Helper()
	candidates := []string{os.Getenv("AUTHGATE_TEST_PYTHON"), "python3", "/usr/bin/python3"}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		bin, err := exec.LookPath(c)
		if err != nil {
			continue
		}
		out, err := exec.Command(bin, "-c", "import fastapi, uvicorn, jwt, cryptography; print(fastapi.__version__, uvicorn.__version__, jwt.__version__)").Output()
		if err == nil {
			t.Logf("%s: fastapi, uvicorn, pyjwt %s", bin, strings.TrimSpace(string(out)))
			return bin
		}
	}
	msg := "no python3 with fastapi, uvicorn and pyjwt[crypto]: python3 -m pip install -r examples/fastapi/requirements.txt"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// tap is a transparent hop between the gateway and the app that records
// the assertions the gateway sends: Host, method and path go on as they
// came.
type tap struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []string // X-Auth-Assertion values
	host []string
}

func newTap(t *testing.T, target string) *tap {
	tp := &tap{}
	to, _ := url.Parse(target)
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.Out.URL.Scheme, pr.Out.URL.Host = to.Scheme, to.Host
		pr.Out.Host = pr.In.Host
	}}
	tp.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tp.mu.Lock()
		tp.seen = append(tp.seen, r.Header.Get("X-Auth-Assertion"))
		tp.host = append(tp.host, r.Host)
		tp.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(tp.srv.Close)
	return tp
}

// startFastAPI runs examples/fastapi with uvicorn on addr until the test
// ends, and waits until it answers.
func startFastAPI(t *testing.T, python, addr string, env ...string) {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, python, "-m", "uvicorn", "app:app", "--host", host, "--port", port, "--log-level", "warning")
	cmd.Dir = filepath.Join("..", "..", "examples", "fastapi")
	cmd.Env = append(os.Environ(), env...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/public/ping")
		if err == nil {
			resp.Body.Close()
			return // 401: no assertion, but it answers
		}
		select {
		case <-done:
			t.Fatalf("uvicorn exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("uvicorn did not answer on %s: %s", addr, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The real FastAPI example behind the gateway: admitted requests reach it
// with a caller it verified with PyJWT, public paths with an anonymous
// one; a replayed assertion and a bypass of the sidecar are refused.
func TestE2EFastAPIVerifiesTheAssertion(t *testing.T) {
	python := fastAPIPython(t)
	appAddr := fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t))
	tp := newTap(t, "http://"+appAddr)
	g := startTrustGateway(t, newKeyPair(t, token.AlgEdDSA), tp.srv.URL, false)
	startFastAPI(t, python, appAddr, "AUTHGATE_JWKS_URL="+g.gw.URL+"/.well-known/jwks.json", "AUTHGATE_ISSUER="+g.gw.URL, "AUTHGATE_AUDIENCE="+tp.srv.URL)

	type answer struct {
		Subject, AuthMethod, Path string
		Roles                     []string
	}
	get := func(method, path string, hdr ...string) (int, answer) {
		t.Helper()
		resp, body := g.do(method, path, hdr...)
		var a struct {
			Subject    string   `json:"subject"`
			Roles      []string `json:"roles"`
			AuthMethod string   `json:"auth_method"`
			Path       string   `json:"path"`
		}
		_ = json.Unmarshal([]byte(body), &a)
		return resp.StatusCode, answer{a.Subject, a.AuthMethod, a.Path, a.Roles}
	}
	if code, a := get("GET", "/api/orders", "X-API-Key", testAPIKey); code != 200 || a.Subject != "admin-bot" || a.AuthMethod != "apikey" {
		t.Fatalf("GET /api/orders through the gateway = %d %+v", code, a)
	}
	if code, a := get("POST", "/api/caf%C3%A9/x%20y", "X-API-Key", testAPIKey); code != 200 || a.Subject != "admin-bot" {
		t.Errorf("POST with an encoded path = %d %+v", code, a)
	}
	if code, a := get("GET", "/admin/panel", "X-API-Key", testAPIKey); code != 200 || a.Path != "/admin/panel" {
		t.Errorf("GET /admin/panel as admin = %d %+v", code, a)
	}
	if code, a := get("GET", "/public/hello"); code != 200 || a.Subject != "" || a.AuthMethod != "none" {
		t.Errorf("GET /public/hello anonymous = %d %+v", code, a)
	}
	// Capture the assertion of GET /api/orders and replay it.
	if code, _ := get("GET", "/api/orders", "X-API-Key", testAPIKey); code != 200 {
		t.Fatal("second GET /api/orders failed")
	}
	tp.mu.Lock()
	captured, host := tp.seen[len(tp.seen)-1], tp.host[len(tp.host)-1]
	tp.mu.Unlock()
	if captured == "" {
		t.Fatal("the gateway sent no assertion")
	}
	registerSecret(captured)
	// Straight to the app: same host header as through the gateway.
	req, _ := http.NewRequest("GET", "http://"+appAddr+"/api/orders", nil)
	req.Host = host
	req.Header.Set("X-Auth-Assertion", captured)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("the identical request straight to the app = %d; the replay checks below would prove nothing", resp.StatusCode)
	}
	checkReplayAndBypass(t, "http://"+appAddr, g.gw.URL, captured, host)
}
