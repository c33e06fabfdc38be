package issuer

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/authgate/authgate/authn/state"
	"github.com/authgate/authgate/authn/token"
	"github.com/authgate/authgate/authn/users"
	"github.com/authgate/authgate/internal/clientip"
)

func TestLoginSuccess(t *testing.T) {
	tests := []struct {
		name        string
		contentType string
		body        string
	}{
		{"form", "application/x-www-form-urlencoded", form("username", "alice", "password", "alice-pw")},
		{"form with grant_type", "application/x-www-form-urlencoded; charset=utf-8", form("grant_type", "password", "username", "alice", "password", "alice-pw")},
		{"json", "application/json", `{"username":"alice","password":"alice-pw"}`},
		{"json with grant_type", "application/json", `{"grant_type":"password","username":"alice","password":"alice-pw","scope":"x"}`},
		{"username normalized", "application/x-www-form-urlencoded", form("username", " ALICE ", "password", "alice-pw")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			w := f.do(request{path: "/auth/login", contentType: tt.contentType, body: tt.body})
			tr := f.mustTokens(w)
			for k, want := range map[string]string{"Cache-Control": "no-store", "Pragma": "no-cache", "Content-Type": "application/json"} {
				if got := w.Header().Get(k); got != want {
					t.Errorf("header %s = %q, want %q", k, got, want)
				}
			}
			if tr.TokenType != "bearer" || tr.ExpiresIn != 900 || tr.AccessToken == "" || tr.RefreshToken == "" {
				t.Errorf("token response = %+v, want bearer, expires_in 900 and both tokens", tr)
			}
			ctx := context.Background()
			p, err := f.verifier.Verify(ctx, tr.AccessToken)
			if err != nil {
				t.Fatalf("Verify(access token) error = %v", err)
			}
			if p.Subject != "alice" || !slices.Equal(p.Roles, []string{"admin", "user"}) {
				t.Errorf("access principal = %+v, want alice with admin,user", p)
			}
			alice, _ := f.users.Load().Lookup("alice")
			ac, err := f.verifier.Parse(ctx, tr.AccessToken, token.TypeAccess)
			if err != nil || ac.Ver != alice.Ver() {
				t.Errorf("access claims ver = %v (err %v), want %q", ac, err, alice.Ver())
			}
			rc, err := f.verifier.Parse(ctx, tr.RefreshToken, token.TypeRefresh)
			if err != nil {
				t.Fatalf("Parse(refresh token) error = %v", err)
			}
			if rc.Family == "" || rc.Ver != alice.Ver() || !rc.ExpiresAt.Equal(f.clk.Now().Add(time.Hour)) {
				t.Errorf("refresh claims = %+v, want a family, alice's ver and a 1h expiry", rc)
			}
			if _, err := f.verifier.Verify(ctx, tr.RefreshToken); err == nil {
				t.Error("Verify(refresh token as access token) error = nil, want an error")
			}
			if got := counter(t, f.reg, "authgate_logins_total", "outcome", "success"); got != 1 {
				t.Errorf("authgate_logins_total{success} = %v, want 1", got)
			}
			if f.compares.Load() != 1 {
				t.Errorf("bcrypt compares = %d, want 1", f.compares.Load())
			}
		})
	}
}

// TestLoginFailuresIndistinguishable checks that every failed login gets the
// same status and the same bytes, and costs exactly one bcrypt compare, so
// neither the answer nor the work reveals which usernames exist.
func TestLoginFailuresIndistinguishable(t *testing.T) {
	tests := []struct {
		name, user, password, reason string
	}{
		{"wrong password", "alice", "nope", reasonBadPassword},
		{"unknown user", "mallory", "alice-pw", reasonUnknownUser},
		{"disabled user with right password", "bob", "bob-pw", reasonDisabled},
		// bcrypt would accept carol's 72 bytes plus anything after them.
		{"password over 72 bytes", "carol", carolPassword + "x", reasonPasswordTooLong},
		{"another user's password", "alice", "bob-pw", reasonBadPassword},
	}
	const want = `{"error":"invalid_grant","error_description":"invalid username or password"}` + "\n"
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			w := f.login(tt.user, tt.password)
			if w.Code != http.StatusBadRequest || w.Body.String() != want {
				t.Errorf("login(%s) = %d %q, want 400 %q", tt.user, w.Code, w.Body, want)
			}
			if n := f.compares.Load(); n != 1 {
				t.Errorf("bcrypt compares = %d, want exactly 1", n)
			}
			if got := counter(t, f.reg, "authgate_logins_total", "outcome", "failure"); got != 1 {
				t.Errorf("authgate_logins_total{failure} = %v, want 1", got)
			}
			entries := f.logs.FilterField(stringField("reason", tt.reason)).All()
			if len(entries) != 1 {
				t.Fatalf("audit entries with reason %s = %d, want 1", tt.reason, len(entries))
			}
			ctx := entries[0].ContextMap()
			if ctx["event"] != "login" || ctx["username"] != tt.user || ctx["outcome"] != "failure" || ctx["client_ip"] != "192.0.2.1" {
				t.Errorf("audit fields = %v", ctx)
			}
			for _, e := range f.logs.All() {
				for _, v := range e.ContextMap() {
					if s, ok := v.(string); ok && s == tt.password {
						t.Errorf("log entry %q contains the password", e.Message)
					}
				}
			}
		})
	}
	t.Run("72-byte password still works", func(t *testing.T) {
		f := newFixture(t)
		f.mustTokens(f.login("carol", carolPassword))
	})
}

func TestLoginBadRequests(t *testing.T) {
	big := form("username", "alice", "password", strings.Repeat("p", 5000))
	tests := []struct {
		name        string
		rq          request
		wantStatus  int
		wantCode    string
		wantHeaders map[string]string
	}{
		{"GET", request{method: http.MethodGet, path: "/auth/login"}, 405, "method_not_allowed", map[string]string{"Allow": "POST"}},
		{"PUT", request{method: http.MethodPut, path: "/auth/login", body: form("username", "alice", "password", "alice-pw")}, 405, "method_not_allowed", nil},
		{"text/plain", request{path: "/auth/login", contentType: "text/plain", body: "username=alice&password=alice-pw"}, 400, "invalid_request", nil},
		{"multipart", request{path: "/auth/login", contentType: "multipart/form-data; boundary=x", body: "--x--"}, 400, "invalid_request", nil},
		{"body too large", request{path: "/auth/login", body: big}, 413, "payload_too_large", nil},
		{"duplicate form field", request{path: "/auth/login", body: "username=alice&username=admin&password=alice-pw"}, 400, "invalid_request", nil},
		{"duplicate json key", request{path: "/auth/login", contentType: "application/json", body: `{"username":"mallory","username":"alice","password":"alice-pw"}`}, 400, "invalid_request", nil},
		{"json number", request{path: "/auth/login", contentType: "application/json", body: `{"username":"alice","password":1}`}, 400, "invalid_request", nil},
		{"json trailing data", request{path: "/auth/login", contentType: "application/json", body: `{"username":"alice","password":"alice-pw"} {}`}, 400, "invalid_request", nil},
		{"json array", request{path: "/auth/login", contentType: "application/json", body: `["alice"]`}, 400, "invalid_request", nil},
		{"unsupported grant", request{path: "/auth/login", body: form("grant_type", "client_credentials", "username", "alice", "password", "alice-pw")}, 400, "unsupported_grant_type", nil},
		{"missing password", request{path: "/auth/login", body: form("username", "alice")}, 400, "invalid_request", nil},
		{"password in query", request{path: "/auth/login?password=alice-pw", body: form("username", "alice", "password", "alice-pw")}, 400, "invalid_request", nil},
		{"bad form encoding", request{path: "/auth/login", body: "username=%zz&password=x"}, 400, "invalid_request", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			w := f.do(tt.rq)
			if w.Code != tt.wantStatus || errorCode(t, w) != tt.wantCode {
				t.Errorf("%s %s = %d %s, want %d %s", tt.rq.method, tt.rq.path, w.Code, w.Body, tt.wantStatus, tt.wantCode)
			}
			for k, v := range tt.wantHeaders {
				if got := w.Header().Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if w.Header().Get("Content-Type") != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", w.Header().Get("Content-Type"))
			}
			if n := f.compares.Load(); n != 0 {
				t.Errorf("bcrypt compares = %d, want 0 for a malformed request", n)
			}
		})
	}
}

func TestLoginRateLimitPerIP(t *testing.T) {
	f := newFixture(t, func(o *Options, _ *hooks) {
		o.Limits.LoginPerIP = state.Limit{Every: time.Minute, Burst: 3}
	})
	for i := range 3 {
		if w := f.login("alice", "wrong"); w.Code != http.StatusBadRequest {
			t.Fatalf("attempt %d: status = %d, want 400", i+1, w.Code)
		}
	}
	w := f.login("alice", "alice-pw")
	if w.Code != http.StatusTooManyRequests || errorCode(t, w) != "too_many_requests" {
		t.Fatalf("attempt 4 = %d %s, want 429 too_many_requests", w.Code, w.Body)
	}
	if got := w.Header().Get("Retry-After"); got != "60" {
		t.Errorf("Retry-After = %q, want 60", got)
	}
	if n := f.compares.Load(); n != 3 {
		t.Errorf("bcrypt compares = %d, want 3 (none for the limited attempt)", n)
	}
	if got := counter(t, f.reg, "authgate_rate_limited_total", "endpoint", "login", "key", "ip"); got != 1 {
		t.Errorf("authgate_rate_limited_total{login,ip} = %v, want 1", got)
	}
	if got := counter(t, f.reg, "authgate_logins_total", "outcome", "rate_limited"); got != 1 {
		t.Errorf("authgate_logins_total{rate_limited} = %v, want 1", got)
	}
	// Another client is not affected.
	if w := f.do(request{path: "/auth/login", remote: "198.51.100.7:4000", body: form("username", "alice", "password", "alice-pw")}); w.Code != http.StatusOK {
		t.Errorf("login from another IP = %d, want 200", w.Code)
	}
	f.clk.Advance(time.Minute)
	f.mustTokens(f.login("alice", "alice-pw"))
}

func TestLoginRateLimitForwardedFor(t *testing.T) {
	trusted, err := clientip.Parse([]string{"10.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(o *Options, _ *hooks) {
		o.Limits.LoginPerIP = state.Limit{Every: time.Hour, Burst: 2}
		o.Trusted = trusted
	})
	login := func(remote, xff string) int {
		h := http.Header{}
		if xff != "" {
			h.Set("X-Forwarded-For", xff)
		}
		return f.do(request{path: "/auth/login", remote: remote, header: h, body: form("username", "alice", "password", "wrong")}).Code
	}
	t.Run("spoofed header from an untrusted peer", func(t *testing.T) {
		for i := range 5 {
			want := 400
			if i >= 2 {
				want = http.StatusTooManyRequests
			}
			if c := login("203.0.113.9:5555", "198.51.100."+strconv.Itoa(i)); c != want {
				t.Errorf("attempt %d with a fresh X-Forwarded-For = %d, want %d", i+1, c, want)
			}
		}
	})
	t.Run("trusted proxy", func(t *testing.T) {
		for i, tc := range []struct {
			xff  string
			want int
		}{
			{"192.0.2.50", 400},
			{"192.0.2.50", 400},
			{"192.0.2.50", http.StatusTooManyRequests},
			// A different client behind the same proxy has its own quota,
			// and a forged left-most entry does not help the first one.
			{"192.0.2.51", 400},
			{"1.2.3.4, 192.0.2.50", http.StatusTooManyRequests},
		} {
			if c := login("10.1.2.3:443", tc.xff); c != tc.want {
				t.Errorf("attempt %d via proxy, X-Forwarded-For %q = %d, want %d", i+1, tc.xff, c, tc.want)
			}
		}
		got := f.logs.FilterField(stringField("client_ip", "192.0.2.51")).Len()
		if got != 1 {
			t.Errorf("audit entries for client_ip 192.0.2.51 = %d, want 1", got)
		}
	})
}

func TestLoginStateUnavailable(t *testing.T) {
	tests := []struct {
		name  string
		fail  string
		block bool
	}{
		{"limiter fails", "allow", false},
		{"limiter hangs", "allow", true},
		{"family cannot be stored", "start", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(o *Options, _ *hooks) {
				o.State = &failingStore{Store: o.State, fail: map[string]bool{tt.fail: true}, block: tt.block}
				o.StateTimeout = 20 * time.Millisecond
			})
			w := f.login("alice", "alice-pw")
			if w.Code != http.StatusServiceUnavailable || errorCode(t, w) != "temporarily_unavailable" {
				t.Fatalf("login = %d %s, want 503 temporarily_unavailable", w.Code, w.Body)
			}
			if w.Header().Get("Retry-After") == "" {
				t.Error("Retry-After missing")
			}
			if tt.fail == "allow" && f.compares.Load() != 0 {
				t.Errorf("bcrypt compares = %d, want 0: the limiter must not be skipped", f.compares.Load())
			}
			if got := counter(t, f.reg, "authgate_logins_total", "outcome", "unavailable"); got != 1 {
				t.Errorf("authgate_logins_total{unavailable} = %v, want 1", got)
			}
		})
	}
}

func TestBcryptConcurrencyBounded(t *testing.T) {
	var cur, peak atomic.Int64
	f := newFixture(t, func(o *Options, h *hooks) {
		o.BcryptConcurrency = 2
		o.BcryptWait = 10 * time.Second
		inner := h.compare
		h.compare = func(hash, pw []byte) error {
			n := cur.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(20 * time.Millisecond)
			cur.Add(-1)
			return inner(hash, pw)
		}
	})
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			w := f.do(request{path: "/auth/login", remote: "198.51.100." + strconv.Itoa(i) + ":1", body: form("username", "u"+strconv.Itoa(i), "password", "x")})
			if w.Code != http.StatusBadRequest {
				t.Errorf("login %d = %d, want 400", i, w.Code)
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p != 2 {
		t.Errorf("peak concurrent compares = %d, want 2", p)
	}
	if n := f.compares.Load(); n != 16 {
		t.Errorf("compares = %d, want 16", n)
	}
}

func TestBcryptBusyAnswers503(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	f := newFixture(t, func(o *Options, h *hooks) {
		o.BcryptConcurrency = 1
		o.BcryptWait = 20 * time.Millisecond
		inner := h.compare
		h.compare = func(hash, pw []byte) error {
			entered <- struct{}{}
			<-release
			return inner(hash, pw)
		}
	})
	done := make(chan int)
	go func() { done <- f.login("alice", "alice-pw").Code }()
	<-entered
	w := f.do(request{path: "/auth/login", remote: "198.51.100.1:1", body: form("username", "carol", "password", "x")})
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "2" {
		t.Errorf("login while bcrypt is saturated = %d Retry-After %q, want 503 Retry-After 2", w.Code, w.Header().Get("Retry-After"))
	}
	close(release)
	if c := <-done; c != http.StatusOK {
		t.Errorf("first login = %d, want 200", c)
	}
}

// TestLimiterBoundedUnderIPFlood drives logins from 100,000 distinct client
// addresses (and as many usernames) through the limiter and checks that the
// memory store stays within its bound: maxKeys for each of the three kinds
// the flood touches (per-IP buckets, (username, client) pairs, names that
// are not users). The store's own test (state.TestMemoryLimiterIsBounded)
// covers the heap size.
func TestLimiterBoundedUnderIPFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 requests")
	}
	const maxKeys = 5000
	f := newFixture(t)
	mem, err := state.NewMemory(state.MemoryOptions{Now: f.clk.Now, MaxKeys: maxKeys})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mem.Close() })
	f.is.state = mem
	f.is.log = zap.NewNop()
	r, _ := http.NewRequest(http.MethodPost, "/auth/login", nil)
	for i := range 100000 {
		body := form("username", "u"+strconv.Itoa(i), "password", "x")
		r.Body = nopCloser{strings.NewReader(body)}
		r.RemoteAddr = "10." + strconv.Itoa(i>>16&255) + "." + strconv.Itoa(i>>8&255) + "." + strconv.Itoa(i&255) + ":1"
		r.Header = http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
		w := &discardWriter{h: http.Header{}}
		f.is.serveLogin(w, r)
		if w.code != http.StatusBadRequest {
			t.Fatalf("login %d = %d, want 400", i, w.code)
		}
		if i%10000 == 0 {
			if n := mem.Len(); n > 3*maxKeys {
				t.Fatalf("after %d logins the limiter holds %d entries, want <= %d", i+1, n, 3*maxKeys)
			}
		}
	}
	if n := mem.Len(); n > 3*maxKeys {
		t.Errorf("limiter holds %d entries, want <= %d", n, 3*maxKeys)
	}
}

type nopCloser struct{ *strings.Reader }

func (nopCloser) Close() error { return nil }

type discardWriter struct {
	h    http.Header
	code int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(code int)        { d.code = code }

func TestLoginZeroUsersStore(t *testing.T) {
	f := newFixture(t, func(o *Options, _ *hooks) { o.Users = &users.Store{} })
	if w := f.login("alice", "alice-pw"); w.Code != http.StatusBadRequest {
		t.Errorf("login with no users file = %d, want 400", w.Code)
	}
	if n := f.compares.Load(); n != 1 {
		t.Errorf("compares = %d, want 1", n)
	}
}

func TestLoginJSONCaseVariantKeysIgnored(t *testing.T) {
	f := newFixture(t)
	// encoding/json would match "PASSWORD" to a password field; the
	// issuer reads exact keys only.
	w := f.do(request{path: "/auth/login", contentType: "application/json", body: `{"username":"alice","PASSWORD":"alice-pw"}`})
	if w.Code != http.StatusBadRequest || errorCode(t, w) != "invalid_request" {
		t.Errorf("login with PASSWORD key = %d %s, want 400 invalid_request", w.Code, w.Body)
	}
}
