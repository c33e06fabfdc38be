package session

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/authn/state"
	"github.com/authgate/authgate/authn/users"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var (
	hashOnce sync.Once
	hashA    string
	hashB    string
)

func hashes(t *testing.T) (string, string) {
	hashOnce.Do(func() {
		a, err := users.HashPassword([]byte("password-a"), 10)
		if err != nil {
			t.Fatal(err)
		}
		b, err := users.HashPassword([]byte("password-b"), 10)
		if err != nil {
			t.Fatal(err)
		}
		hashA, hashB = a, b
	})
	return hashA, hashB
}

// usersFile is a users file with alice (admin, user) of the given hash.
func usersFile(t *testing.T, hash string, roles string, disabled bool) *users.Set {
	t.Helper()
	d := "false"
	if disabled {
		d = "true"
	}
	s, err := users.Parse("users.yaml", []byte("users:\n  - username: alice\n    password_hash: \""+hash+"\"\n    roles: "+roles+"\n    disabled: "+d+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type fixture struct {
	clk   *clock
	store *state.Memory
	users *users.Store
	mg    *Manager
}

func newFixture(t *testing.T, o Options) *fixture {
	t.Helper()
	f := &fixture{clk: &clock{t: time.Now().Truncate(time.Second)}}
	var err error
	f.store, err = state.NewMemory(state.MemoryOptions{Now: f.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.store.Close() })
	a, _ := hashes(t)
	f.users = &users.Store{}
	f.users.Swap(usersFile(t, a, "[admin, user]", false))
	o.Store, o.Binding, o.Now = f.store, f.users, f.clk.Now
	o.Roles = func(sub string) ([]string, bool) {
		u, ok := f.users.Load().Lookup(sub)
		if !ok {
			return nil, false
		}
		return u.Roles, true
	}
	f.mg, err = New(o)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// signIn starts a session for alice and returns its cookie.
func (f *fixture) signIn(t *testing.T, r *http.Request) *http.Cookie {
	t.Helper()
	if r == nil {
		r = httptest.NewRequest("POST", "https://app.example/auth/sign_in", nil)
	}
	w := httptest.NewRecorder()
	u, _ := f.users.Load().Lookup("alice")
	// Advance past the users' not-before second so a fresh session is
	// after it, as the issuer's awaitValidFrom ensures.
	if _, err := f.mg.Start(w, r, state.Session{Subject: "alice", Roles: u.Roles, Ver: u.Ver()}); err != nil {
		t.Fatalf("Start() error = %v", err)
	}
	cs := w.Result().Cookies()
	if len(cs) != 1 {
		t.Fatalf("Start() set %d cookies, want 1", len(cs))
	}
	return cs[0]
}

func (f *fixture) auth(method string, c *http.Cookie, hdr ...string) (authn.Principal, bool, error) {
	r := httptest.NewRequest(method, "https://app.example/app", nil)
	if c != nil {
		r.AddCookie(c)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	return f.mg.Authenticate(r)
}

func TestCookieAttributes(t *testing.T) {
	f := newFixture(t, Options{})
	c := f.signIn(t, nil)
	if c.Name != "__Host-authgate_session" || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" {
		t.Fatalf("cookie = %+v; want __Host-authgate_session, Secure, HttpOnly, SameSite=Lax, Path=/, no Domain", c)
	}
	if len(c.Value) != 43 {
		t.Fatalf("session id is %d characters, want 43 (256 bits)", len(c.Value))
	}
	// The store holds the digest, never the id.
	if _, err := f.store.Session(context.Background(), c.Value); !errors.Is(err, state.ErrNoSession) {
		t.Fatalf("store lookup by raw id error = %v, want ErrNoSession", err)
	}
	if _, err := f.store.Session(context.Background(), Key(c.Value)); err != nil {
		t.Fatalf("store lookup by digest: %v", err)
	}
	if _, err := New(Options{Store: f.store, Insecure: true}); err == nil {
		t.Fatal("New() with Insecure and a __Host- name succeeded, want an error")
	}
}

func TestAuthenticate(t *testing.T) {
	f := newFixture(t, Options{})
	c := f.signIn(t, nil)
	p, ok, err := f.auth("GET", c)
	if err != nil || !ok || p.Subject != "alice" || p.Method != authn.MethodSession || strings.Join(p.Roles, ",") != "admin,user" {
		t.Fatalf("Authenticate() = %+v, %v, %v; want alice by session", p, ok, err)
	}
	other := "x" // a first character the real id does not have
	if c.Value[0] == 'x' {
		other = "y"
	}
	for _, bad := range []*http.Cookie{
		{Name: c.Name, Value: other + c.Value[1:]}, // unknown id
		{Name: c.Name, Value: c.Value[:20]},        // malformed
		{Name: c.Name, Value: Key(c.Value)},        // the store key itself
	} {
		if _, ok, err := f.auth("GET", bad); ok || err != nil {
			t.Errorf("Authenticate(%q) = %v, %v; want no session", bad.Value, ok, err)
		}
	}
	// Two cookies of the name (a tossed one beside the real one): none.
	r := httptest.NewRequest("GET", "https://app.example/app", nil)
	r.AddCookie(c)
	r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	if _, ok, _ := f.mg.Authenticate(r); ok {
		t.Fatal("Authenticate() with two session cookies succeeded")
	}
}

func TestRotationAtSignIn(t *testing.T) {
	f := newFixture(t, Options{})
	old := f.signIn(t, nil)
	r := httptest.NewRequest("POST", "https://app.example/auth/sign_in", nil)
	r.AddCookie(old)
	fresh := f.signIn(t, r)
	if fresh.Value == old.Value {
		t.Fatal("sign-in kept the session id (session fixation)")
	}
	if _, ok, _ := f.auth("GET", old); ok {
		t.Fatal("the id from before the sign-in still works")
	}
	if _, ok, _ := f.auth("GET", fresh); !ok {
		t.Fatal("the new id does not work")
	}
}

func TestTimeouts(t *testing.T) {
	f := newFixture(t, Options{IdleTimeout: 10 * time.Minute, AbsoluteTimeout: time.Hour})
	c := f.signIn(t, nil)
	// Activity every 9 minutes keeps it alive past the idle timeout...
	for i := 0; i < 6; i++ {
		f.clk.Advance(9 * time.Minute)
		if _, ok, err := f.auth("GET", c); !ok || err != nil {
			t.Fatalf("request %d after %s: ok=%v err=%v; want the session alive", i, time.Duration(i+1)*9*time.Minute, ok, err)
		}
	}
	// ...but never past the absolute timeout.
	f.clk.Advance(7 * time.Minute) // 61 minutes after the sign-in
	if _, ok, _ := f.auth("GET", c); ok {
		t.Fatal("session alive past its absolute timeout")
	}
	c = f.signIn(t, nil)
	f.clk.Advance(10*time.Minute + time.Second)
	if _, ok, _ := f.auth("GET", c); ok {
		t.Fatal("session alive past its idle timeout")
	}
}

func TestBindingToCredentials(t *testing.T) {
	a, b := hashes(t)
	for _, tc := range []struct {
		name string
		edit *users.Set
	}{
		{"password change", usersFile(t, b, "[admin, user]", false)},
		{"disable", usersFile(t, a, "[admin, user]", true)},
		{"role removal", usersFile(t, a, "[user]", false)},
		{"delete", func() *users.Set { s, _ := users.Parse("u.yaml", []byte("users: []\n")); return s }()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Options{})
			f.clk.Advance(2 * time.Second)
			c := f.signIn(t, nil)
			if _, ok, _ := f.auth("GET", c); !ok {
				t.Fatal("session does not work before the edit")
			}
			f.users.Swap(tc.edit)
			if _, ok, _ := f.auth("GET", c); ok {
				t.Fatalf("session still works after the %s", tc.name)
			}
			// Ended for good: undoing the edit does not bring it back.
			f.users.Swap(usersFile(t, a, "[admin, user]", false))
			if _, ok, _ := f.auth("GET", c); ok {
				t.Fatalf("session came back after the %s was undone", tc.name)
			}
		})
	}
	t.Run("role added counts at once", func(t *testing.T) {
		f := newFixture(t, Options{})
		f.users.Swap(usersFile(t, a, "[user]", false))
		f.clk.Advance(2 * time.Second)
		c := f.signIn(t, nil)
		f.users.Swap(usersFile(t, a, "[admin, user]", false))
		p, ok, _ := f.auth("GET", c)
		if !ok || strings.Join(p.Roles, ",") != "admin,user" {
			t.Fatalf("roles after a role was added = %v (ok %v), want admin,user", p.Roles, ok)
		}
	})
}

func TestCrossSiteUnsafeRequests(t *testing.T) {
	f := newFixture(t, Options{})
	c := f.signIn(t, nil)
	for _, tc := range []struct {
		method string
		hdr    []string
		want   error
	}{
		{"GET", nil, nil},
		{"HEAD", []string{"Origin", "https://evil.example"}, nil},
		{"POST", []string{"Origin", "https://app.example"}, nil},
		{"POST", []string{"Origin", "HTTPS://APP.EXAMPLE"}, nil},
		{"DELETE", []string{"Sec-Fetch-Site", "same-origin"}, nil},
		{"POST", []string{"Origin", "https://evil.example"}, authn.ErrCrossSite},
		{"POST", []string{"Origin", "http://app.example"}, authn.ErrCrossSite},
		{"POST", []string{"Origin", "https://app.example.evil.example"}, authn.ErrCrossSite},
		{"PUT", []string{"Origin", "null"}, authn.ErrCrossSite},
		{"PATCH", nil, authn.ErrCrossSite},
		{"POST", []string{"Sec-Fetch-Site", "same-site"}, authn.ErrCrossSite},
		{"POST", []string{"Sec-Fetch-Site", "cross-site"}, authn.ErrCrossSite},
	} {
		_, _, err := f.auth(tc.method, c, tc.hdr...)
		if !errors.Is(err, tc.want) && !(err == nil && tc.want == nil) {
			t.Errorf("%s with %v: error = %v, want %v", tc.method, tc.hdr, err, tc.want)
		}
	}
	off := newFixture(t, Options{SkipOriginCheck: true})
	c = off.signIn(t, nil)
	if _, ok, err := off.auth("POST", c, "Origin", "https://evil.example"); !ok || err != nil {
		t.Fatalf("with the check off: ok=%v err=%v; want the session", ok, err)
	}
}

// countingStore counts store reads.
type countingStore struct {
	*state.Memory
	mu    sync.Mutex
	reads int
}

func (c *countingStore) Session(ctx context.Context, key string) (state.Session, error) {
	c.mu.Lock()
	c.reads++
	c.mu.Unlock()
	return c.Memory.Session(ctx, key)
}

func TestCacheEndsWithinTTL(t *testing.T) {
	f := newFixture(t, Options{CacheTTL: time.Second})
	cs := &countingStore{Memory: f.store}
	// A second manager on the same store is another replica.
	mgA, _ := New(Options{Store: cs, Now: f.clk.Now, CacheTTL: time.Second})
	mgB, _ := New(Options{Store: f.store, Now: f.clk.Now})
	w := httptest.NewRecorder()
	r := httptest.NewRequest("POST", "https://app.example/auth/sign_in", nil)
	if _, err := mgB.Start(w, r, state.Session{Subject: "alice"}); err != nil {
		t.Fatal(err)
	}
	c := w.Result().Cookies()[0]
	req := func() bool {
		r := httptest.NewRequest("GET", "https://app.example/x", nil)
		r.AddCookie(c)
		_, ok, _ := mgA.Authenticate(r)
		return ok
	}
	for i := 0; i < 5; i++ {
		if !req() {
			t.Fatal("session refused")
		}
	}
	if cs.reads != 1 {
		t.Fatalf("5 requests read the store %d times, want 1 (cached)", cs.reads)
	}
	if _, err := mgB.End(context.Background(), Key(c.Value), EndSignOut); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(time.Second)
	if req() {
		t.Fatal("session ended on another replica still works after the cache TTL")
	}
}

// fakeRefresher is due always and answers err or new data.
type fakeRefresher struct {
	err   error
	calls int
}

func (f *fakeRefresher) Due(state.Session, time.Time) bool { return true }
func (f *fakeRefresher) Refresh(context.Context, state.Session) ([]byte, error) {
	f.calls++
	return []byte("new tokens"), f.err
}

func TestProviderSessionRefresh(t *testing.T) {
	for _, fail := range []bool{false, true} {
		rf := &fakeRefresher{}
		if fail {
			rf.err = errors.New("invalid_grant")
		}
		f := newFixture(t, Options{Refresher: rf})
		w := httptest.NewRecorder()
		if _, err := f.mg.Start(w, httptest.NewRequest("GET", "https://app.example/auth/callback", nil),
			state.Session{Subject: "alice", Issuer: "https://idp.example", Data: []byte("old tokens")}); err != nil {
			t.Fatal(err)
		}
		c := w.Result().Cookies()[0]
		_, ok, err := f.auth("GET", c)
		if fail {
			if ok || err != nil {
				t.Fatalf("failed refresh: ok=%v err=%v; want the session ended", ok, err)
			}
			if _, err := f.store.Session(context.Background(), Key(c.Value)); !errors.Is(err, state.ErrNoSession) {
				t.Fatal("a failed refresh left the session in the store")
			}
			continue
		}
		s, _ := f.store.Session(context.Background(), Key(c.Value))
		if !ok || string(s.Data) != "new tokens" || rf.calls != 1 {
			t.Fatalf("refresh: ok=%v data=%q calls=%d", ok, s.Data, rf.calls)
		}
	}
}
