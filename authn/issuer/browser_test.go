package issuer

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/authn/session"
	"github.com/authgate/authgate/authn/state"
)

// browserFixture is the issuer fixture with the browser endpoints and a
// cookie jar of one browser.
type browserFixture struct {
	*fixture
	b   *Browser
	mg  *session.Manager
	mux *http.ServeMux
	jar map[string]*http.Cookie
}

func newBrowserFixture(t *testing.T, opts ...fixtureOpt) *browserFixture {
	t.Helper()
	f := newFixture(t, opts...)
	mg, err := session.New(session.Options{Store: f.mem, Binding: f.users, Now: f.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewBrowser(BrowserOptions{Issuer: f.is, Sessions: mg, CSRFKey: []byte(strings.Repeat("k", 32)), Logger: f.is.log})
	if err != nil {
		t.Fatal(err)
	}
	bf := &browserFixture{fixture: f, b: b, mg: mg, mux: http.NewServeMux(), jar: map[string]*http.Cookie{}}
	for p, h := range b.Handlers() {
		bf.mux.Handle(p, h)
	}
	// Past the users' not-before second, as a real sign-in waits.
	f.clk.Advance(2 * time.Second)
	return bf
}

// do sends a request with the jar's cookies and keeps what it sets.
func (bf *browserFixture) do(method, target string, form url.Values, hdr ...string) *httptest.ResponseRecorder {
	var r *http.Request
	if form != nil {
		r = httptest.NewRequest(method, "https://app.example"+target, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		r = httptest.NewRequest(method, "https://app.example"+target, nil)
	}
	for _, c := range bf.jar {
		r.AddCookie(c)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	bf.mux.ServeHTTP(w, r)
	for _, c := range w.Result().Cookies() {
		if c.MaxAge < 0 {
			delete(bf.jar, c.Name)
		} else {
			bf.jar[c.Name] = c
		}
	}
	return w
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(w.Body.String())
	if m == nil {
		t.Fatalf("no csrf field in the page: %s", w.Body.String())
	}
	return m[1]
}

func (bf *browserFixture) signIn(t *testing.T, user, password, rd string) *httptest.ResponseRecorder {
	t.Helper()
	page := bf.do("GET", "/auth/sign_in?rd="+url.QueryEscape(rd), nil)
	return bf.do("POST", "/auth/sign_in", url.Values{"csrf": {csrfOf(t, page)}, "username": {user}, "password": {password}, "rd": {rd}},
		"Origin", "https://app.example")
}

func TestSignInPageHeaders(t *testing.T) {
	bf := newBrowserFixture(t)
	w := bf.do("GET", "/auth/sign_in?rd=%2Fapp", nil)
	if w.Code != 200 {
		t.Fatalf("GET sign_in = %d", w.Code)
	}
	h := w.Header()
	csp := h.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "frame-ancestors 'none'", "form-action 'self'", "base-uri 'none'", "style-src 'nonce-"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "script-src") || strings.Contains(w.Body.String(), "<script") {
		t.Error("the page uses script")
	}
	for k, v := range map[string]string{"X-Frame-Options": "DENY", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"} {
		if h.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, h.Get(k), v)
		}
	}
	body := w.Body.String()
	for _, want := range []string{`<label for="username">`, `<label for="password">`, `autocomplete="current-password"`, `name="viewport"`, `lang="en"`, `value="/app"`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s", want)
		}
	}
}

func TestSignInStartsASessionAndRedirects(t *testing.T) {
	bf := newBrowserFixture(t)
	w := bf.signIn(t, "Alice", "alice-pw", "/app/page?x=1")
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/app/page?x=1" {
		t.Fatalf("sign-in = %d Location %q; want 303 to /app/page?x=1", w.Code, w.Header().Get("Location"))
	}
	c := bf.jar[session.DefaultCookieName]
	if c == nil || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode {
		t.Fatalf("session cookie = %+v", c)
	}
	r := httptest.NewRequest("GET", "https://app.example/app", nil)
	r.AddCookie(c)
	if p, ok, err := bf.mg.Authenticate(r); !ok || err != nil || p.Subject != "alice" {
		t.Fatalf("Authenticate() = %+v, %v, %v", p, ok, err)
	}
	// Signed in, the page sends the browser on at once.
	if w := bf.do("GET", "/auth/sign_in?rd=%2Fx", nil); w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/x" {
		t.Fatalf("sign-in page when signed in = %d %q, want 303 to /x", w.Code, w.Header().Get("Location"))
	}
	// A hostile rd lands on /.
	delete(bf.jar, session.DefaultCookieName)
	w = bf.signIn(t, "alice", "alice-pw", "//evil.example/")
	if loc := w.Header().Get("Location"); loc != "/" {
		t.Fatalf("sign-in with rd=//evil.example/ went to %q, want /", loc)
	}
	if c2 := bf.jar[session.DefaultCookieName]; c2.Value == c.Value {
		t.Fatal("a second sign-in kept the session id")
	}
}

// TestSignInFailuresAreUniform: unknown user, wrong password, disabled
// user and an over-long password get byte-identical pages, with one bcrypt
// compare each.
func TestSignInFailuresAreUniform(t *testing.T) {
	bf := newBrowserFixture(t)
	page := bf.do("GET", "/auth/sign_in", nil)
	csrf := csrfOf(t, page)
	var first string
	for _, tc := range []struct{ user, password string }{
		{"nobody", "x"}, {"alice", "wrong"}, {"bob", "bob-pw"}, {"carol", carolPassword + "x"},
	} {
		before := bf.compares.Load()
		w := bf.do("POST", "/auth/sign_in", url.Values{"csrf": {csrf}, "username": {"same-name"}, "password": {tc.password}, "rd": {"/"}})
		// The typed name is echoed; compare with it normalised away.
		w2 := bf.do("POST", "/auth/sign_in", url.Values{"csrf": {csrf}, "username": {tc.user}, "password": {tc.password}, "rd": {"/"}})
		if w2.Code != http.StatusUnauthorized || !strings.Contains(w2.Body.String(), msgInvalid) {
			t.Fatalf("%s: status %d, want 401 with the uniform message", tc.user, w2.Code)
		}
		if n := bf.compares.Load() - before; n != 2 {
			t.Errorf("%s: %d bcrypt compares for 2 attempts, want 2", tc.user, n)
		}
		body := nonceRE.ReplaceAllString(strings.ReplaceAll(w2.Body.String(), `value="`+tc.user+`"`, `value="X"`), "")
		if first == "" {
			first = body
		} else if body != first {
			t.Errorf("%s: page differs from the first failure", tc.user)
		}
		_ = w
	}
	if _, ok := bf.jar[session.DefaultCookieName]; ok {
		t.Fatal("a failed sign-in set a session cookie")
	}
}

var nonceRE = regexp.MustCompile(`nonce="[^"]+"`)

func TestSignInCSRF(t *testing.T) {
	bf := newBrowserFixture(t)
	page := bf.do("GET", "/auth/sign_in", nil)
	csrf := csrfOf(t, page)
	for _, tc := range []struct {
		name  string
		token string
		hdr   []string
	}{
		{"no token", "", nil},
		{"forged token", strings.Repeat("A", 43), nil},
		{"cross-site origin", csrf, []string{"Origin", "https://evil.example"}},
		{"cross-site fetch", csrf, []string{"Sec-Fetch-Site", "cross-site"}},
	} {
		before := bf.compares.Load()
		w := bf.do("POST", "/auth/sign_in", url.Values{"csrf": {tc.token}, "username": {"alice"}, "password": {"alice-pw"}}, tc.hdr...)
		if w.Code != http.StatusForbidden {
			t.Errorf("%s: status %d, want 403", tc.name, w.Code)
		}
		if bf.compares.Load() != before {
			t.Errorf("%s: the password was checked", tc.name)
		}
	}
	// Another browser's token is worth nothing with this browser's cookie.
	other := newBrowserFixture(t)
	otherToken := csrfOf(t, other.do("GET", "/auth/sign_in", nil))
	if w := bf.do("POST", "/auth/sign_in", url.Values{"csrf": {otherToken}, "username": {"alice"}, "password": {"alice-pw"}}); w.Code != http.StatusForbidden {
		t.Errorf("another browser's token: status %d, want 403", w.Code)
	}
	if _, ok := bf.jar[session.DefaultCookieName]; ok {
		t.Fatal("a refused form set a session cookie")
	}
}

func TestSignOut(t *testing.T) {
	bf := newBrowserFixture(t)
	bf.signIn(t, "alice", "alice-pw", "/")
	first := bf.jar[session.DefaultCookieName]
	// A second browser of alice's.
	second := newBrowserFixture(t)
	second.fixture, second.b, second.mg, second.mux = bf.fixture, bf.b, bf.mg, bf.mux
	second.signIn(t, "alice", "alice-pw", "/")
	other := second.jar[session.DefaultCookieName]
	alive := func(c *http.Cookie) bool {
		r := httptest.NewRequest("GET", "https://app.example/", nil)
		r.AddCookie(c)
		_, ok, _ := bf.mg.Authenticate(r)
		return ok
	}

	page := bf.do("GET", "/auth/sign_out", nil)
	if !strings.Contains(page.Body.String(), "alice") {
		t.Fatal("sign-out page does not name the user")
	}
	token := csrfOf(t, page)
	// Without the token, or cross-site, nothing happens (logout CSRF).
	if w := bf.do("POST", "/auth/sign_out", url.Values{"scope": {"this"}}); w.Code != http.StatusForbidden || !alive(first) {
		t.Fatalf("sign-out without a token = %d, session alive %v; want 403 and alive", w.Code, alive(first))
	}
	if w := bf.do("POST", "/auth/sign_out", url.Values{"csrf": {token}}, "Origin", "https://evil.example"); w.Code != http.StatusForbidden || !alive(first) {
		t.Fatalf("cross-site sign-out = %d; want 403", w.Code)
	}
	w := bf.do("POST", "/auth/sign_out", url.Values{"csrf": {token}, "scope": {"this"}}, "Origin", "https://app.example")
	if w.Code != 200 || alive(first) || !alive(other) {
		t.Fatalf("sign-out = %d, this session alive %v, the other %v; want 200, ended, alive", w.Code, alive(first), alive(other))
	}
	if _, ok := bf.jar[session.DefaultCookieName]; ok {
		t.Fatal("sign-out did not clear the cookie")
	}
	// Sign out everywhere from the second browser ends every session.
	bf.signIn(t, "alice", "alice-pw", "/")
	again := bf.jar[session.DefaultCookieName]
	page = second.do("GET", "/auth/sign_out", nil)
	second.do("POST", "/auth/sign_out", url.Values{"csrf": {csrfOf(t, page)}, "scope": {"everywhere"}})
	if alive(other) || alive(again) {
		t.Fatal("sign out everywhere left a session alive")
	}
	if n, _ := bf.mem.SessionCount(t.Context()); n != 0 {
		t.Fatalf("%d sessions left", n)
	}
	_ = state.ErrNoSession
}

// stubProvider records the browsers sent to it.
type stubProvider struct{ started []string }

func (s *stubProvider) Name() string { return "Example IdP" }
func (s *stubProvider) ID() string   { return "idp" }
func (s *stubProvider) Start(w http.ResponseWriter, r *http.Request, rd string) {
	s.started = append(s.started, rd)
	w.Header().Set("Location", "https://idp.example/authorize")
	w.WriteHeader(http.StatusFound)
}

func TestSignInWithProviders(t *testing.T) {
	f := newFixture(t)
	mg, _ := session.New(session.Options{Store: f.mem, Now: f.clk.Now})
	p := &stubProvider{}
	// One provider and no users file: straight to the provider.
	b, err := NewBrowser(BrowserOptions{Sessions: mg, Providers: []Provider{p}, CSRFKey: []byte(strings.Repeat("k", 32))})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	b.Handlers()["/auth/sign_in"].ServeHTTP(w, httptest.NewRequest("GET", "https://app.example/auth/sign_in?rd=%2Fx", nil))
	if w.Code != http.StatusFound || len(p.started) != 1 || p.started[0] != "/x" {
		t.Fatalf("sign-in page with one provider = %d, started %v; want a redirect to the provider with rd /x", w.Code, p.started)
	}
	// With the users file too: the form and one button.
	bf := newBrowserFixture(t)
	b2, err := NewBrowser(BrowserOptions{Issuer: bf.is, Sessions: bf.mg, Providers: []Provider{p}, CSRFKey: []byte(strings.Repeat("k", 32))})
	if err != nil {
		t.Fatal(err)
	}
	w = httptest.NewRecorder()
	b2.Handlers()["/auth/sign_in"].ServeHTTP(w, httptest.NewRequest("GET", "https://app.example/auth/sign_in?rd=%2Fx", nil))
	body := w.Body.String()
	if w.Code != 200 || !strings.Contains(body, `href="/auth/sign_in/idp?rd=%2fx"`) && !strings.Contains(body, `href="/auth/sign_in/idp?rd=%2Fx"`) || !strings.Contains(body, "Sign in with Example IdP") || !strings.Contains(body, `id="password"`) {
		t.Fatalf("sign-in page with a users file and a provider: %d %s", w.Code, body)
	}
}
