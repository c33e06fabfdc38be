package issuer

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/authgate/authgate/authn/state"
	"github.com/authgate/authgate/authn/state/statetest"
	"github.com/authgate/authgate/authn/token"
	"github.com/authgate/authgate/authn/users"
)

// Cost-10 bcrypt hashes computed once, so most tests need no bcrypt work.
const (
	hashAlice    = "$2a$10$5jz4w8FMsn3uXXdXWZzxkO5RF2fec3u8Zo1e.K5RgVgbx.jnZnIim" // alice-pw
	hashAliceNew = "$2a$10$tiNUc85EIk1I.O6Q9bPIbOePKlMXo0FBndErcnHstIG9FjRihZEK6" // alice-new-pw
	hashBob      = "$2a$10$gzyIN2BCCbRMQ/MC1fVsG.jNNbks6HbE2v4mAcodQclqnuOK7zBXO" // bob-pw
	// hashCarol stands, for the fake compare, for a 72-byte password.
	hashCarol = "$2a$10$jipOnsucaah.0vQnRTsUl.AOhlLP0xtUwyNz6gJCt.acDCuY0saCi"
	fakeDummy = "$2a$10$dummy"
)

var carolPassword = strings.Repeat("c", 72)

// fakePasswords is what the fake compare believes each hash holds.
func fakePasswords() map[string]string {
	return map[string]string{
		hashAlice:    "alice-pw",
		hashAliceNew: "alice-new-pw",
		hashBob:      "bob-pw",
		hashCarol:    carolPassword,
	}
}

const usersYAML = `users:
  - username: alice
    password_hash: "` + hashAlice + `"
    roles: [admin, user]
  - username: bob
    password_hash: "` + hashBob + `"
    roles: [user]
    disabled: true
  - username: carol
    password_hash: "` + hashCarol + `"
    roles: [user]
`

func parseUsers(t testing.TB, data string) *users.Set {
	t.Helper()
	s, err := users.Parse("users.yaml", []byte(data))
	if err != nil {
		t.Fatalf("users.Parse() error = %v", err)
	}
	return s
}

// stringField is a log field to filter observed entries by.
func stringField(k, v string) zap.Field { return zap.String(k, v) }

// fixture is an issuer wired to a real memory store, a settable clock, an
// observed logger and a private registry.
type fixture struct {
	t        testing.TB
	is       *Issuer
	mux      *http.ServeMux
	clk      *statetest.Clock
	users    *users.Store
	mem      *state.Memory
	signer   *token.Signer
	verifier *token.Verifier
	logs     *observer.ObservedLogs
	reg      *prometheus.Registry
	compares atomic.Int64
}

type fixtureOpt func(*Options, *hooks)

// looseLimits are limits no functional test reaches.
func looseLimits() Limits {
	loose := state.Limit{Every: time.Second, Burst: 1000}
	return Limits{
		LoginPerIP: loose, LoginPerUserClient: loose, LoginPerUser: loose,
		LoginKnownClient: loose, LoginCleanClient: loose, RefreshPerIP: loose,
		LoginCleanAfter: time.Hour, LoginKnownFor: time.Hour,
	}
}

func newFixture(t testing.TB, opts ...fixtureOpt) *fixture {
	t.Helper()
	f := &fixture{t: t, clk: statetest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)), users: &users.Store{}}
	mem, err := state.NewMemory(state.MemoryOptions{Now: f.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mem.Close() })
	f.mem = mem
	if err := f.users.Track(mem, users.TrackOptions{Keep: 48 * time.Hour, Now: f.clk.Now}); err != nil {
		t.Fatal(err)
	}
	f.users.Swap(parseUsers(t, usersYAML))
	ks, err := token.NewKeySet(token.Key{ID: "k1", Secret: []byte(strings.Repeat("s", 32))})
	if err != nil {
		t.Fatal(err)
	}
	settings := token.Settings{Issuer: "authgate", Audience: "authgate", Leeway: 5 * time.Second}
	f.signer = token.NewSigner(ks, settings, token.Options{Now: f.clk.Now})
	f.verifier = token.NewVerifier(ks, settings, token.Options{Now: f.clk.Now, Binding: f.users})
	core, logs := observer.New(zap.DebugLevel)
	f.logs = logs
	f.reg = prometheus.NewRegistry()
	known := fakePasswords()
	o := Options{
		Users: f.users, Signer: f.signer, Verifier: f.verifier, State: mem,
		AccessTTL: 15 * time.Minute, RefreshTTL: time.Hour, Limits: looseLimits(),
		Now: f.clk.Now, Logger: zap.New(core), Registerer: f.reg,
	}
	h := hooks{
		// The fake compare behaves like bcrypt, including its silent
		// truncation at 72 bytes, so the issuer must refuse long
		// passwords itself.
		compare: func(hash, password []byte) error {
			f.compares.Add(1)
			if len(password) > 72 {
				password = password[:72]
			}
			if want, ok := known[string(hash)]; ok && want == string(password) {
				return nil
			}
			return errors.New("mismatch")
		},
		generate: func([]byte, int) ([]byte, error) { return []byte(fakeDummy), nil },
	}
	for _, opt := range opts {
		opt(&o, &h)
	}
	is, err := newIssuer(o, h)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	f.is = is
	f.mux = http.NewServeMux()
	for p, hd := range is.Handlers("/auth") {
		f.mux.Handle(p, hd)
	}
	return f
}

// request describes one call to an issuer endpoint.
type request struct {
	method      string
	path        string
	contentType string
	body        string
	remote      string
	header      http.Header
}

func (f *fixture) do(rq request) *httptest.ResponseRecorder {
	f.t.Helper()
	if rq.method == "" {
		rq.method = http.MethodPost
	}
	if rq.contentType == "" {
		rq.contentType = "application/x-www-form-urlencoded"
	}
	r := httptest.NewRequest(rq.method, rq.path, strings.NewReader(rq.body))
	r.Header.Set("Content-Type", rq.contentType)
	for k, vs := range rq.header {
		r.Header[k] = vs
	}
	if rq.remote != "" {
		r.RemoteAddr = rq.remote
	}
	w := httptest.NewRecorder()
	f.mux.ServeHTTP(w, r)
	return w
}

func form(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v.Encode()
}

func (f *fixture) login(user, password string) *httptest.ResponseRecorder {
	f.t.Helper()
	return f.do(request{path: "/auth/login", body: form("username", user, "password", password)})
}

func (f *fixture) refresh(rt string) *httptest.ResponseRecorder {
	f.t.Helper()
	return f.do(request{path: "/auth/refresh", body: form("grant_type", "refresh_token", "refresh_token", rt)})
}

// mustTokens logs in and returns the token response.
func (f *fixture) mustTokens(w *httptest.ResponseRecorder) tokenResponse {
	f.t.Helper()
	if w.Code != http.StatusOK {
		f.t.Fatalf("status = %d, want 200; body %s", w.Code, w.Body)
	}
	var tr tokenResponse
	if err := json.Unmarshal(w.Body.Bytes(), &tr); err != nil {
		f.t.Fatalf("decode token response: %v", err)
	}
	return tr
}

func errorCode(t testing.TB, w *httptest.ResponseRecorder) string {
	t.Helper()
	var b struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &b); err != nil {
		t.Fatalf("decode error body %q: %v", w.Body, err)
	}
	return b.Error
}

// counter returns the value of the counter name with the given labels.
func counter(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !hasLabel(m, labels[i], labels[i+1]) {
					continue metric
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s%v not found", name, labels)
	return 0
}

func hasLabel(m *dto.Metric, k, v string) bool {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == k && lp.GetValue() == v {
			return true
		}
	}
	return false
}

// failingStore is a Store whose selected operations fail the way a backend
// outage does; the others go to an inner Memory.
type failingStore struct {
	state.Store
	mu    sync.Mutex
	fail  map[string]bool
	block bool // wait for the context instead of failing at once
}

func (s *failingStore) err(ctx context.Context, op string) error {
	s.mu.Lock()
	fail, block := s.fail[op], s.block
	s.mu.Unlock()
	if !fail {
		return nil
	}
	if block {
		<-ctx.Done()
		return errors.Join(state.ErrUnavailable, ctx.Err())
	}
	return state.ErrUnavailable
}

func (s *failingStore) Allow(ctx context.Context, scope state.Scope, id string, l state.Limit) (bool, time.Duration, error) {
	if err := s.err(ctx, "allow"); err != nil {
		return false, 0, err
	}
	return s.Store.Allow(ctx, scope, id, l)
}

func (s *failingStore) CheckLogin(ctx context.Context, k state.LoginKey, l state.LoginLimits) (state.LoginVerdict, error) {
	if err := s.err(ctx, "check_login"); err != nil {
		return state.LoginVerdict{}, err
	}
	return s.Store.CheckLogin(ctx, k, l)
}

func (s *failingStore) SettleLogin(ctx context.Context, k state.LoginKey, l state.LoginLimits, tier state.LoginTier, o state.LoginOutcome) error {
	if err := s.err(ctx, "settle_login"); err != nil {
		return err
	}
	return s.Store.SettleLogin(ctx, k, l, tier, o)
}

func (s *failingStore) StartFamily(ctx context.Context, fam, jti string, exp time.Time) error {
	if err := s.err(ctx, "start"); err != nil {
		return err
	}
	return s.Store.StartFamily(ctx, fam, jti, exp)
}

func (s *failingStore) Rotate(ctx context.Context, fam, oldJTI, newJTI string, exp time.Time) error {
	if err := s.err(ctx, "rotate"); err != nil {
		return err
	}
	return s.Store.Rotate(ctx, fam, oldJTI, newJTI, exp)
}

func (s *failingStore) RevokeFamily(ctx context.Context, fam string, exp time.Time) error {
	if err := s.err(ctx, "revoke_family"); err != nil {
		return err
	}
	return s.Store.RevokeFamily(ctx, fam, exp)
}

func (s *failingStore) Revoke(ctx context.Context, jti string, exp time.Time) error {
	if err := s.err(ctx, "revoke"); err != nil {
		return err
	}
	return s.Store.Revoke(ctx, jti, exp)
}
