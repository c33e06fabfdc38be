package e2e

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authgate/authgate/authn/apikey"
	"github.com/authgate/authgate/authn/users"
	"github.com/authgate/authgate/internal/app"
	"github.com/authgate/authgate/internal/apptest"
	"github.com/authgate/authgate/internal/config"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

const testSecret = "e2e-test-secret-0123456789abcdefghijklmnop"

// testAPIKey is the admin key in testKeys; testReaderKey is a reader's.
const (
	testAPIKey    = "agk_test_admin_key_0123456789abcdefghij"
	testReaderKey = "agk_test_reader_key_0123456789abcdefghij"
)

// testPolicy covers every access level; the e2e tests use it.
const testPolicy = `roles: [admin, user, reader]
rules:
  - id: public
    path: /public/**
    public: true
  - id: api
    path: /api/**
    authenticated: true
  - id: admin
    path: /admin/**
    roles: [admin]
  - id: reports
    path: /reports/*
    methods: [GET]
    roles: [reader, admin]
  - id: ws
    path: /ws
    authenticated: true
  - id: stream
    path: /stream
    authenticated: true
  - id: slow
    path: /slow
    public: true
`

// recorded is what the upstream saw of one request.
type recorded struct {
	Method     string
	Path       string // decoded, as a Go upstream sees it
	RawPath    string // the request-target path as sent on the wire
	RawQuery   string
	Header     http.Header
	Host       string
	RemoteAddr string
}

// recorder is an httptest upstream that records every request it gets.
type recorder struct {
	mu   sync.Mutex
	reqs []recorded
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, _, _ := strings.Cut(r.RequestURI, "?")
	rc.mu.Lock()
	rc.reqs = append(rc.reqs, recorded{Method: r.Method, Path: r.URL.Path, RawPath: raw, RawQuery: r.URL.RawQuery, Header: r.Header.Clone(), Host: r.Host, RemoteAddr: r.RemoteAddr})
	rc.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, "upstream ok")
}

func (rc *recorder) all() []recorded {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]recorded(nil), rc.reqs...)
}

func (rc *recorder) last(t *testing.T) recorded {
	t.Helper()
	all := rc.all()
	if len(all) == 0 {
		t.Fatal("upstream saw no request")
	}
	return all[len(all)-1]
}

func (rc *recorder) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.reqs)
}

// env is a running gateway in front of an upstream, on real listeners.
type gwEnv struct {
	t        *testing.T
	dir      string
	app      *app.App
	gw       *apptest.Gateway
	up       *recorder
	logs     *observer.ObservedLogs
	client   *http.Client
	upstream *httptest.Server
}

type envOption func(*config.Config)

// withUsers serves login, refresh and logout from the test users file. It
// is opt-in because every issuer hashes a dummy password at start, which
// is slow under the race detector.
func withUsers(c *config.Config) {
	c.UsersFile = filepath.Join(filepath.Dir(c.PolicyFile), "users.yaml")
}

// newEnv starts a gateway with testPolicy (unless policy is given) and an
// upstream handler (a recorder unless handler is given).
func newEnv(t *testing.T, policyText string, handler http.Handler, opts ...envOption) *gwEnv {
	t.Helper()
	return newEnvSecrets(t, config.Secrets{JWT: []byte(testSecret)}, policyText, handler, opts...)
}

// newEnvSecrets is newEnv with the secrets given to newApp, for example a
// Redis URL that several gateways share.
func newEnvSecrets(t *testing.T, sec config.Secrets, policyText string, handler http.Handler, opts ...envOption) *gwEnv {
	t.Helper()
	return newEnvOn(t, nil, sec, app.Deps{}, policyText, handler, opts...)
}

// newEnvDeps is newEnvSecrets with collaborators for app.New; the test
// logger and version are filled in.
func newEnvDeps(t *testing.T, sec config.Secrets, d app.Deps, policyText string, handler http.Handler, opts ...envOption) *gwEnv {
	t.Helper()
	return newEnvOn(t, nil, sec, d, policyText, handler, opts...)
}

// newEnvOn is newEnvDeps on a main listener the caller opened (nil: a
// fresh one), for configs that name the gateway's own URL.
func newEnvOn(t *testing.T, ln net.Listener, sec config.Secrets, d app.Deps, policyText string, handler http.Handler, opts ...envOption) *gwEnv {
	t.Helper()
	e := &gwEnv{t: t, dir: t.TempDir(), up: &recorder{}}
	if policyText == "" {
		policyText = testPolicy
	}
	if handler == nil {
		handler = e.up
	}
	e.upstream = httptest.NewServer(handler)
	t.Cleanup(e.upstream.Close)
	writeFile(t, filepath.Join(e.dir, "policy.yaml"), policyText)
	writeFile(t, filepath.Join(e.dir, "keys.yaml"), testKeys())
	writeFile(t, filepath.Join(e.dir, "users.yaml"), testUsers(t, "alice-password-1"))
	cfg := config.Default()
	cfg.Path = filepath.Join(e.dir, "config.yaml")
	cfg.Upstream.URL = e.upstream.URL
	cfg.Upstream.ResponseHeaderTimeout = 2 * time.Second
	cfg.PolicyFile = filepath.Join(e.dir, "policy.yaml")
	cfg.APIKeysFile = filepath.Join(e.dir, "keys.yaml")
	cfg.ReloadInterval = 50 * time.Millisecond
	// Nothing routes traffic by readiness here, so the gateway stops at
	// once when the test ends.
	cfg.Listen.ShutdownDelay = 0
	cfg.Listen.ShutdownTimeout = 5 * time.Second
	// The files were written just now: a short settle interval keeps the
	// startup wait for a fresh file (and in-place edits) quick.
	cfg.ReloadSettle = 100 * time.Millisecond
	// A login's bcrypt (cost 10, lowest OS priority) can outlast the
	// default 10s endpoint deadline on a machine loaded by other test
	// binaries, and the deadline then cuts the connection (the deadline
	// itself is tested in proxy and by the slow-client tests on the binary).
	cfg.Listen.EndpointTimeout = time.Minute
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test config invalid: %v", err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	e.logs = logs
	registerSink(logs)
	d.Logger, d.Version = zap.New(core), "test"
	if ln != nil {
		e.gw = apptest.StartOn(t, &cfg, sec, d, ln)
	} else {
		e.gw = apptest.Start(t, &cfg, sec, d)
	}
	e.app = e.gw.App
	// A bound that only a hung gateway reaches: logins run bcrypt (cost 10,
	// the users file's minimum) on threads of the lowest OS priority, which
	// wait for CPU on a machine loaded by other test binaries.
	e.client = &http.Client{Timeout: time.Minute}
	return e
}

func testKeys() string {
	return "keys:\n" +
		"  - name: admin-bot\n    sha256: " + digest(testAPIKey) + "\n    roles: [admin]\n" +
		"  - name: reader-bot\n    sha256: " + digest(testReaderKey) + "\n    roles: [reader]\n" +
		"  - name: old-bot\n    sha256: " + digest("agk_expired_key_0123456789") + "\n    roles: [admin]\n    expires: 2001-01-01T00:00:00Z\n"
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// do sends a request through the gateway with extra headers given as
// alternating name, value.
func (e *gwEnv) do(method, path string, hdr ...string) (*http.Response, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.gw.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

// raw writes a request verbatim on a new connection and returns the
// response status and body. It lets tests send request targets that
// http.Client would normalize.
func raw(t *testing.T, addr, request string) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading response to %q: %v", firstLine(request), err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(body)
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\r\n")
	return l
}

func (e *gwEnv) addr() string { return e.gw.Addr }

// assertJSONError checks the gateway's JSON error shape.
func assertJSONError(t *testing.T, resp *http.Response, body string, code int) {
	t.Helper()
	if resp.StatusCode != code {
		t.Fatalf("status = %d, want %d (body %s)", resp.StatusCode, code, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var eb struct {
		Error     string `json:"error"`
		Message   string `json:"message"`
		RequestID string `json:"request_id"`
	}
	if err := json.Unmarshal([]byte(body), &eb); err != nil || eb.Error == "" || eb.RequestID == "" {
		t.Errorf("body %q is not the gateway's JSON error", body)
	}
}

func digest(key string) string { return apikey.Digest(key) }

var (
	hashMu    sync.Mutex
	hashCache = map[string]string{}
)

// hashOf returns a bcrypt hash (cost 10) of password, computed once.
func hashOf(t *testing.T, password string) string {
	t.Helper()
	hashMu.Lock()
	defer hashMu.Unlock()
	if h, ok := hashCache[password]; ok {
		return h
	}
	h, err := users.HashPassword([]byte(password), 10)
	if err != nil {
		t.Fatal(err)
	}
	hashCache[password] = h
	registerSecret(password)
	return h
}

// testUsers is a users file: alice (admin, user) with alicePassword, bob
// (user) and the disabled mallory.
func testUsers(t *testing.T, alicePassword string) string {
	return "users:\n" +
		"  - username: alice\n    password_hash: \"" + hashOf(t, alicePassword) + "\"\n    roles: [admin, user]\n" +
		"  - username: bob\n    password_hash: \"" + hashOf(t, "bob-password-1") + "\"\n    roles: [user]\n" +
		"  - username: mallory\n    password_hash: \"" + hashOf(t, "mallory-password-1") + "\"\n    roles: [admin]\n    disabled: true\n"
}

// counterValue returns the value of the sample of metric name whose labels
// include every pair in labels, or 0.
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
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue metrics
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}
