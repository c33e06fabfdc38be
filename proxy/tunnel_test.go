package proxy_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/policy"
	"github.com/authgate/authgate/proxy"
)

const tunnelPolicy = `roles: [chat, admin]
rules:
  - id: chat
    path: /chat
    roles: [chat]
  - id: lobby
    path: /lobby
    public: true
`

// switchAuth authenticates the X-Token header as whatever the test set
// last: the principal, a refusal or a failure. It records the tokens it
// was asked about.
type switchAuth struct {
	mu   sync.Mutex
	p    authn.Principal
	err  error
	seen []string
}

func (a *switchAuth) set(p authn.Principal, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.p, a.err = p, err
}

func (a *switchAuth) Authenticate(r *http.Request) (authn.Principal, bool, error) {
	tok := r.Header.Get("Authorization")
	if tok == "" {
		return authn.Principal{}, false, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seen = append(a.seen, tok)
	if a.err != nil {
		return authn.Principal{}, false, a.err
	}
	return a.p, true, nil
}

func (a *switchAuth) tokens() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.seen...)
}

type tunnelEnv struct {
	gw       *httptest.Server
	auth     *switchAuth
	policy   *policy.Store
	reg      *prometheus.Registry
	logs     *observer.ObservedLogs
	upClosed chan struct{} // receives when an upstream connection ends
}

// newTunnelEnv runs a gateway in front of a WebSocket echo upstream, with
// rechecks every recheck.
func newTunnelEnv(t *testing.T, recheck time.Duration) *tunnelEnv {
	t.Helper()
	e := &tunnelEnv{auth: &switchAuth{}, reg: prometheus.NewRegistry(), upClosed: make(chan struct{}, 16)}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer func() { e.upClosed <- struct{}{} }()
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(context.Background())
			if err != nil {
				return
			}
			if err := c.Write(context.Background(), typ, msg); err != nil {
				return
			}
		}
	}))
	t.Cleanup(up.Close)
	set, err := policy.Load("policy.yaml", []byte(tunnelPolicy))
	if err != nil {
		t.Fatal(err)
	}
	e.policy = policy.NewStore(set)
	upURL, _ := url.Parse(up.URL)
	core, logs := observer.New(zapcore.DebugLevel)
	e.logs = logs
	gw, err := proxy.New(proxy.Options{
		Upstream: upURL, Policy: e.policy, Authenticator: e.auth, Metrics: proxy.NewMetrics(e.reg),
		Logger: zap.New(core), TunnelRecheck: recheck,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.gw = httptest.NewServer(gw)
	t.Cleanup(e.gw.Close)
	return e
}

// dial opens a tunnel to path, with token as the credential unless empty,
// and checks that it echoes.
func (e *tunnelEnv) dial(t *testing.T, path, token string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	opts := &websocket.DialOptions{HTTPHeader: http.Header{}}
	if token != "" {
		opts.HTTPHeader.Set("Authorization", token)
	}
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.gw.URL, "http")+path, opts)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	t.Cleanup(func() { c.CloseNow() })
	if err := c.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
		t.Fatalf("write: %v", err)
	}
	if _, msg, err := c.Read(ctx); err != nil || string(msg) != "ping" {
		t.Fatalf("echo = %q, %v; want ping", msg, err)
	}
	return c
}

// closedWithin reports how long the tunnel c took to end, or fails after
// limit. The tunnel is kept busy meanwhile, so an idle timeout cannot be
// what ends it.
func closedWithin(t *testing.T, c *websocket.Conn, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	for i := 0; ; i++ {
		if err := c.Write(ctx, websocket.MessageText, []byte(fmt.Sprint(i))); err != nil {
			break
		}
		if _, _, err := c.Read(ctx); err != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ctx.Err() != nil {
		t.Fatalf("tunnel still open after %v", limit)
	}
	return time.Since(start)
}

func (e *tunnelEnv) waitUpstreamClosed(t *testing.T) {
	t.Helper()
	select {
	case <-e.upClosed:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream connection was not closed")
	}
}

// closedCount returns authgate_tunnels_closed_total{reason}.
func (e *tunnelEnv) closedCount(t *testing.T, reason string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "authgate_tunnels_closed_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "reason" && lp.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("authgate_tunnels_closed_total{reason=%q} not found", reason)
	return 0
}

func (e *tunnelEnv) open(t *testing.T) float64 {
	t.Helper()
	n, err := testutil.GatherAndCount(e.reg, "authgate_tunnels_open")
	if err != nil || n != 1 {
		t.Fatalf("authgate_tunnels_open: %d series, %v", n, err)
	}
	mfs, _ := e.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "authgate_tunnels_open" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}

// TestTunnelLifetime opens a WebSocket tunnel through the gateway for each
// way its credential can end and checks that the gateway closes it, both
// sides, within the recheck interval (or at the credential's expiry), and
// counts why.
func TestTunnelLifetime(t *testing.T) {
	const recheck = 50 * time.Millisecond
	chatter := authn.Principal{Subject: "alice", Roles: []string{"admin", "chat"}, Method: authn.MethodJWT}
	tests := []struct {
		name  string
		path  string
		token string
		p     authn.Principal
		// expiresIn, if set, gives p an expiry that long after the dial.
		expiresIn time.Duration
		end       func(e *tunnelEnv)
		reason    string
		// limit bounds how long after end the tunnel may stay open.
		limit time.Duration
	}{
		{"credential expires", "/chat", "Bearer t1", chatter, time.Second, func(*tunnelEnv) {}, "expired", 5 * time.Second},
		{"token revoked or user disabled", "/chat", "Bearer t1", chatter, 0, func(e *tunnelEnv) {
			e.auth.set(authn.Principal{}, fmt.Errorf("%w: user disabled", authn.ErrInvalidToken))
		}, "credential", 2 * time.Second},
		{"API key removed", "/chat", "Bearer k1", authn.Principal{Subject: "bot", Roles: []string{"chat"}, Method: authn.MethodAPIKey, KeyName: "bot"}, 0, func(e *tunnelEnv) {
			e.auth.set(authn.Principal{}, authn.ErrInvalidAPIKey)
		}, "credential", 2 * time.Second},
		{"a role the tunnel was opened with is removed", "/chat", "Bearer t1", chatter, 0, func(e *tunnelEnv) {
			// /chat is still allowed, but the upstream was told "admin".
			e.auth.set(authn.Principal{Subject: "alice", Roles: []string{"chat"}, Method: authn.MethodJWT}, nil)
		}, "credential", 2 * time.Second},
		{"policy no longer allows it", "/chat", "Bearer t1", chatter, 0, func(e *tunnelEnv) {
			set, err := policy.Load("policy.yaml", []byte(strings.Replace(tunnelPolicy, "roles: [chat]", "roles: [admin]\n    methods: [POST]", 1)))
			if err != nil {
				panic(err)
			}
			e.policy.Swap(set)
		}, "policy", 2 * time.Second},
		{"anonymous tunnel on a path that stops being public", "/lobby", "", authn.Principal{}, 0, func(e *tunnelEnv) {
			set, err := policy.Load("policy.yaml", []byte(strings.Replace(tunnelPolicy, "public: true", "roles: [chat]", 1)))
			if err != nil {
				panic(err)
			}
			e.policy.Swap(set)
		}, "policy", 2 * time.Second},
		{"credential cannot be checked", "/chat", "Bearer t1", chatter, 0, func(e *tunnelEnv) {
			e.auth.set(authn.Principal{}, fmt.Errorf("%w: revocation list: redis down", authn.ErrUnavailable))
		}, "unavailable", 2 * time.Second},
		{"key expiry edited to the past", "/chat", "Bearer k1", authn.Principal{Subject: "bot", Roles: []string{"chat"}, Method: authn.MethodAPIKey, KeyName: "bot"}, 0, func(e *tunnelEnv) {
			e.auth.set(authn.Principal{Subject: "bot", Roles: []string{"chat"}, Method: authn.MethodAPIKey, KeyName: "bot", ExpiresAt: time.Now().Add(100 * time.Millisecond)}, nil)
		}, "expired", 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			noLeaks(t)
			e := newTunnelEnv(t, recheck)
			p := tt.p
			if tt.expiresIn > 0 {
				p.ExpiresAt = time.Now().Add(tt.expiresIn)
			}
			e.auth.set(p, nil)
			c := e.dial(t, tt.path, tt.token)
			if got := e.open(t); got != 1 {
				t.Errorf("authgate_tunnels_open = %v, want 1", got)
			}
			// Healthy rechecks leave it open.
			time.Sleep(4 * recheck)
			if _, msg, err := pingPong(c); err != nil || msg != "still" {
				t.Fatalf("tunnel with a valid credential: %q %v, want it open", msg, err)
			}
			tt.end(e)
			took := closedWithin(t, c, tt.limit)
			t.Logf("closed %v after the change", took)
			e.waitUpstreamClosed(t)
			waitFor(t, func() bool { return e.open(t) == 0 }, "authgate_tunnels_open back to 0")
			if got := e.closedCount(t, tt.reason); got != 1 {
				t.Errorf("authgate_tunnels_closed_total{reason=%q} = %v, want 1", tt.reason, got)
			}
			if tt.token != "" {
				for _, tok := range e.auth.tokens() {
					if tok != tt.token {
						t.Errorf("recheck presented %q, want the tunnel's own credential %q", tok, tt.token)
					}
				}
			}
			if n := e.logs.FilterMessage("tunnel closed").FilterField(zap.String("reason", tt.reason)).Len(); n != 1 {
				t.Errorf("%d 'tunnel closed' log lines with reason %s, want 1", n, tt.reason)
			}
		})
	}
}

// TestTunnelEndedByPeer checks that a tunnel the client closes is counted
// as ended, and that its watcher is gone.
func TestTunnelEndedByPeer(t *testing.T) {
	noLeaks(t)
	e := newTunnelEnv(t, 20*time.Millisecond)
	e.auth.set(authn.Principal{Subject: "alice", Roles: []string{"chat"}, Method: authn.MethodJWT, ExpiresAt: time.Now().Add(time.Hour)}, nil)
	c := e.dial(t, "/chat", "Bearer t1")
	time.Sleep(100 * time.Millisecond)
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatalf("close: %v", err)
	}
	e.waitUpstreamClosed(t)
	waitFor(t, func() bool { return e.open(t) == 0 }, "authgate_tunnels_open back to 0")
	if got := e.closedCount(t, "ended"); got != 1 {
		t.Errorf("authgate_tunnels_closed_total{reason=ended} = %v, want 1", got)
	}
	if n := e.logs.FilterMessage("tunnel closed").Len(); n != 0 {
		t.Errorf("%d 'tunnel closed' log lines for a tunnel the client ended, want 0", n)
	}
}

// pingPong sends "still" on c and reads the echo.
func pingPong(c *websocket.Conn) (websocket.MessageType, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte("still")); err != nil {
		return 0, "", err
	}
	typ, msg, err := c.Read(ctx)
	return typ, string(msg), err
}

// noLeaks checks, after every later cleanup closed the servers and
// connections, that the test left no goroutine behind: a tunnel watcher
// that outlives its tunnel would be one.
func noLeaks(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
