package issuer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authgate/authgate/authn/state"
)

// v6 returns a client address in the n-th IPv6 /64 of 2001:db8::/32, a
// fresh limiter bucket for every n.
func v6(n int) string { return fmt.Sprintf("[2001:db8:%x:%x::1]:1000", n>>16&0xffff, n&0xffff) }

// loginFrom logs in as user from the client address remote.
func (f *fixture) loginFrom(remote, user, password string) *httptest.ResponseRecorder {
	f.t.Helper()
	return f.do(request{path: "/auth/login", remote: remote, body: form("username", user, "password", password)})
}

// withLimits sets the login limits on top of looseLimits.
func withLimits(set func(*Limits)) fixtureOpt {
	return func(o *Options, _ *hooks) { set(&o.Limits) }
}

// smallLimits are per-username limits small enough to spend in a test:
// 2 failures per client, 3 for the username, then 1 each for known and
// clean clients; nothing refills within an hour.
func smallLimits(l *Limits) {
	l.LoginPerUserClient = state.Limit{Every: time.Hour, Burst: 2}
	l.LoginPerUser = state.Limit{Every: time.Hour, Burst: 3}
	l.LoginKnownClient = state.Limit{Every: time.Hour, Burst: 1}
	l.LoginCleanClient = state.Limit{Every: time.Hour, Burst: 1}
	l.LoginCleanAfter = 24 * time.Hour
	l.LoginKnownFor = 24 * time.Hour
}

func TestLimitsDefaultsAndValidate(t *testing.T) {
	d := DefaultLimits()
	if err := d.Validate(); err != nil {
		t.Fatalf("DefaultLimits().Validate() = %v", err)
	}
	if got := (Limits{}).WithDefaults(); got != d {
		t.Errorf("Limits{}.WithDefaults() = %+v, want %+v", got, d)
	}
	set := Limits{LoginCleanAfter: time.Minute, LoginPerUserClient: state.Limit{Every: time.Hour, Burst: 1}}.WithDefaults()
	if set.LoginCleanAfter != time.Minute || set.LoginPerUserClient.Every != time.Hour || set.LoginKnownFor != d.LoginKnownFor {
		t.Errorf("WithDefaults() replaced a set field or kept a zero one: %+v", set)
	}
	if err := (Limits{}).Validate(); err != nil {
		t.Errorf("Limits{}.Validate() = %v, want nil: zero fields take their defaults", err)
	}
	half := state.Limit{Every: time.Second}
	err := Limits{LoginPerIP: half, LoginPerUserClient: half, LoginPerUser: half, LoginKnownClient: half,
		LoginCleanClient: half, RefreshPerIP: half, LoginCleanAfter: -1, LoginKnownFor: -time.Hour}.Validate()
	for _, name := range []string{"login_per_ip", "login_per_user_client", "login_per_user", "login_known_client",
		"login_clean_client", "login_clean_after", "login_known_for", "refresh_per_ip"} {
		if err == nil || !strings.Contains(err.Error(), "issuer: limits: "+name+":") {
			t.Errorf("Validate() of partly set limits = %v, want an error naming %s", err, name)
		}
	}
	bad := d
	bad.LoginKnownFor = state.MaxWindow + time.Second
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "login_known_for") {
		t.Errorf("Validate() with known_for past MaxWindow = %v, want an error", err)
	}
}

// loginCase is one attempt and the status it must get.
type loginCase struct {
	remote, user, password string
	want                   int
}

func TestLoginPerUsernameLimits(t *testing.T) {
	const (
		a1, a2, a3 = "198.51.100.1:1", "198.51.100.2:1", "198.51.100.3:1"
		home       = "203.0.113.10:1"
		cafe       = "203.0.113.20:1"
	)
	wrong := func(remote string, want int) loginCase { return loginCase{remote, "alice", "wrong", want} }
	right := func(remote string, want int) loginCase { return loginCase{remote, "alice", "alice-pw", want} }
	const bad, ok, limited = http.StatusBadRequest, http.StatusOK, http.StatusTooManyRequests
	tests := []struct {
		name  string
		steps []loginCase
	}{
		{"one client meets its own limit", []loginCase{
			wrong(a1, bad), wrong(a1, bad), wrong(a1, limited),
			// the right password too: a refusal is decided before bcrypt
			right(a1, limited),
		}},
		{"the issue's lockout attack does not lock out a clean address", []loginCase{
			wrong(a1, bad), wrong(a1, bad), wrong(a2, bad), // the username's budget is spent
			wrong(a2, limited), wrong(a1, limited), // failed addresses stay out
			right(cafe, ok),
			right(cafe, ok), // a success is refunded: it costs no budget
		}},
		{"once a fresh address took the clean reserve, a clean address waits", []loginCase{
			wrong(a1, bad), wrong(a1, bad), wrong(a2, bad),
			wrong(a3, bad), wrong(a3, limited), // a3 took the clean reserve
			right(cafe, limited),
		}},
		{"a known address keeps its reserve while fresh addresses spend the rest", []loginCase{
			right(home, ok),
			wrong(v6(1), bad), wrong(v6(2), bad), wrong(v6(3), bad), // username budget
			wrong(v6(4), bad),                            // clean reserve
			wrong(v6(5), limited), right(v6(6), limited), // a fresh address cannot reach the known reserve
			right(home, ok),
		}},
		{"spellings that normalize alike share the buckets", []loginCase{
			{a1, "ALICE", "wrong", bad}, {a1, " alice\t", "wrong", bad}, {a1, "Alice", "wrong", limited},
			{a2, "aLiCe", "wrong", bad}, {a2, "alice", "alice-pw", limited},
		}},
		{"other spellings are other names and spend nothing of alice's", []loginCase{
			{a1, "ａｌｉｃｅ", "wrong", bad}, {a1, "ａｌｉｃｅ", "wrong", bad}, {a1, "ａｌｉｃｅ", "wrong", limited},
			{a1, "alice\u200b", "wrong", bad}, {a1, "alice\u200b", "wrong", bad},
			right(a1, ok),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, withLimits(smallLimits))
			for i, st := range tt.steps {
				w := f.loginFrom(st.remote, st.user, st.password)
				if w.Code != st.want {
					t.Fatalf("step %d: login %q from %s = %d %s, want %d", i, st.user, st.remote, w.Code, w.Body, st.want)
				}
				if w.Code == limited && (w.Header().Get("Retry-After") == "" || errorCode(t, w) != codeTooManyRequests) {
					t.Errorf("step %d: 429 without Retry-After or too_many_requests: %v %s", i, w.Header(), w.Body)
				}
			}
		})
	}
}

// TestLoginLimitsDoNotRevealUsernames runs one attacker script against a
// user that exists and a name that does not: every answer must be the same
// bytes, Retry-After included, and each admitted attempt costs exactly one
// bcrypt compare.
func TestLoginLimitsDoNotRevealUsernames(t *testing.T) {
	script := func(f *fixture, user string) []string {
		var out []string
		for i, remote := range []string{"198.51.100.1:1", "198.51.100.1:1", "198.51.100.1:1", "198.51.100.2:1",
			"198.51.100.2:1", v6(1), v6(1), v6(2), v6(3)} {
			f.clk.Advance(time.Duration(i) * time.Second)
			w := f.loginFrom(remote, user, "wrong")
			out = append(out, fmt.Sprintf("%d %q %s", w.Code, w.Header().Get("Retry-After"), w.Body))
		}
		return out
	}
	known, unknown := newFixture(t, withLimits(smallLimits)), newFixture(t, withLimits(smallLimits))
	a, b := script(known, "alice"), script(unknown, "nobody")
	for i := range a {
		if a[i] != b[i] {
			t.Errorf("attempt %d: existing user answered %s, unknown name %s", i, a[i], b[i])
		}
	}
	if k, u := known.compares.Load(), unknown.compares.Load(); k != u || k != 4 {
		t.Errorf("bcrypt compares: %d for the user, %d for the unknown name; want 4 each (one per admitted attempt)", k, u)
	}
	if got := counter(t, known.reg, "authgate_rate_limited_total", "endpoint", "login", "key", "user_client"); got != 1 {
		t.Errorf("authgate_rate_limited_total{login,user_client} = %v, want 1", got)
	}
	if got := counter(t, known.reg, "authgate_rate_limited_total", "endpoint", "login", "key", "user"); got != 4 {
		t.Errorf("authgate_rate_limited_total{login,user} = %v, want 4", got)
	}
	if n := known.logs.FilterField(stringField("reason", reasonLimitUserClient)).Len(); n != 1 {
		t.Errorf("audit entries with reason %s = %d, want 1", reasonLimitUserClient, n)
	}
}

func TestLoginLimiterStoreFailuresFailClosed(t *testing.T) {
	for _, tc := range []struct {
		op, password string
		wantCompares int64
	}{
		{"check_login", "alice-pw", 0},
		{"settle_login", "alice-pw", 1},
		{"settle_login", "wrong", 1},
	} {
		t.Run(tc.op+"/"+tc.password, func(t *testing.T) {
			f := newFixture(t, func(o *Options, _ *hooks) {
				o.State = &failingStore{Store: o.State, fail: map[string]bool{tc.op: true}}
			})
			w := f.login("alice", tc.password)
			if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
				t.Errorf("login with %s failing = %d %v, want 503 with Retry-After", tc.op, w.Code, w.Header())
			}
			if n := f.compares.Load(); n != tc.wantCompares {
				t.Errorf("bcrypt compares = %d, want %d", n, tc.wantCompares)
			}
		})
	}
}

// TestLoginNotCheckedIsRefunded: an attempt that never reached bcrypt (the
// pool is saturated) gives its charge back, so the client keeps the clean
// reserve it was admitted on.
func TestLoginNotCheckedIsRefunded(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	var block sync.Once
	f := newFixture(t, withLimits(func(l *Limits) {
		smallLimits(l)
		l.LoginPerUser = state.Limit{Every: time.Hour, Burst: 2}
	}), func(o *Options, h *hooks) {
		o.BcryptConcurrency = 1
		o.BcryptWait = 20 * time.Millisecond
		inner := h.compare
		h.compare = func(hash, pw []byte) error {
			block.Do(func() {
				entered <- struct{}{}
				<-release
			})
			return inner(hash, pw)
		}
	})
	done := make(chan int)
	go func() { done <- f.loginFrom("198.51.100.1:1", "alice", "wrong").Code }()
	<-entered
	if w := f.loginFrom("198.51.100.2:1", "alice", "wrong"); w.Code != http.StatusServiceUnavailable {
		t.Errorf("attempt while the bcrypt pool is held = %d, want 503", w.Code)
	}
	close(release)
	if c := <-done; c != http.StatusBadRequest {
		t.Errorf("the held attempt = %d, want 400", c)
	}
	// Only the held attempt counted: one token of the username's two is
	// left, then the clean reserve. Had the 503 been charged, the second
	// client here would already be on the clean reserve and the third
	// would be refused.
	for i, tc := range []struct {
		remote string
		want   int
	}{{"198.51.100.3:1", http.StatusBadRequest}, {"198.51.100.4:1", http.StatusBadRequest}, {"198.51.100.5:1", http.StatusTooManyRequests}} {
		if w := f.loginFrom(tc.remote, "alice", "wrong"); w.Code != tc.want {
			t.Errorf("attempt %d after the busy pool = %d, want %d", i, w.Code, tc.want)
		}
	}
}

// ctxStore fails every call whose context is done, as a networked store
// does.
type ctxStore struct{ state.Store }

func (s ctxStore) SettleLogin(ctx context.Context, k state.LoginKey, l state.LoginLimits, tier state.LoginTier, o state.LoginOutcome) error {
	if err := ctx.Err(); err != nil {
		return errors.Join(state.ErrUnavailable, err)
	}
	return s.Store.SettleLogin(ctx, k, l, tier, o)
}

// TestLoginFailureCountedWhenClientLeaves: a guesser that hangs up while
// bcrypt runs must still be marked as failed, or it would stay clean and
// keep drawing on the clean reserve.
func TestLoginFailureCountedWhenClientLeaves(t *testing.T) {
	var cancel context.CancelFunc
	f := newFixture(t, withLimits(func(l *Limits) {
		smallLimits(l)
		l.LoginPerUser = state.Limit{Every: time.Hour, Burst: 1}
		l.LoginCleanClient = state.Limit{Every: time.Hour, Burst: 5}
		l.LoginPerUserClient = state.Limit{Every: time.Minute, Burst: 2}
	}), func(o *Options, h *hooks) {
		o.State = ctxStore{o.State}
		inner := h.compare
		h.compare = func(hash, pw []byte) error {
			if cancel != nil {
				cancel()
			}
			return inner(hash, pw)
		}
	})
	const leaver = "198.51.100.9:1"
	ctx, c := context.WithCancel(context.Background())
	cancel = c
	r := httptest.NewRequestWithContext(ctx, http.MethodPost, "/auth/login", strings.NewReader(form("username", "alice", "password", "wrong")))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr = leaver
	f.mux.ServeHTTP(httptest.NewRecorder(), r)
	cancel = nil
	// The username's budget (1) is spent; once the leaver's own bucket
	// has refilled it would be clean again, unless its failure counted.
	f.clk.Advance(time.Minute)
	if w := f.loginFrom(leaver, "alice", "wrong"); w.Code != http.StatusTooManyRequests {
		t.Errorf("the client that left, again = %d, want 429 (its failure must count)", w.Code)
	}
	if w := f.loginFrom("198.51.100.10:1", "alice", "wrong"); w.Code != http.StatusBadRequest {
		t.Errorf("a clean client = %d, want 400 (the clean reserve is open)", w.Code)
	}
}

// TestLoginTarpitOnlyForClientRefusals: a client refused by its own bucket
// is held for limited_delay; a client refused by the username's shared
// budget (a user waiting out an attack) is answered at once.
func TestLoginTarpitOnlyForClientRefusals(t *testing.T) {
	const delay = time.Second // long, so the at-once answer never reaches it on a loaded machine
	f := newFixture(t, withLimits(smallLimits), func(o *Options, _ *hooks) { o.LimitedDelay = delay })
	for _, r := range []string{"198.51.100.1:1", "198.51.100.1:1", "198.51.100.2:1", "198.51.100.3:1"} {
		f.loginFrom(r, "alice", "wrong")
	}
	start := time.Now()
	if w := f.loginFrom("198.51.100.1:1", "alice", "wrong"); w.Code != http.StatusTooManyRequests {
		t.Fatalf("client over its own limit = %d, want 429", w.Code)
	}
	if took := time.Since(start); took < delay {
		t.Errorf("refusal by the client's own bucket took %v, want >= %v (tarpit)", took, delay)
	}
	start = time.Now()
	if w := f.loginFrom("198.51.100.4:1", "alice", "wrong"); w.Code != http.StatusTooManyRequests {
		t.Fatalf("clean client on a spent username = %d, want 429", w.Code)
	}
	if took := time.Since(start); took >= delay {
		t.Errorf("refusal by the username's budget took %v, want < %v (no tarpit)", took, delay)
	}
}
