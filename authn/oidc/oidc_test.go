package oidc

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/authgate/authgate/authn/jwks"
	"github.com/authgate/authgate/authn/session"
	"github.com/authgate/authgate/authn/state"
)

// fakeOP is an OpenID Provider for the flow's state machine: it checks
// PKCE, the redirect URI, the client's secret and single use of codes,
// and issues tokens a test can bend.
type fakeOP struct {
	t   *testing.T
	srv *httptest.Server
	key *rsa.PrivateKey
	iss bool // advertises and sends RFC 9207 iss
	// methods are the advertised PKCE methods; nil means [S256].
	methods []string
	mu      sync.Mutex
	auth    map[string]url.Values // code -> authorization request
	// idToken edits the claims of the next ID tokens.
	idToken func(jwt.MapClaims)
	// refreshFails makes refresh grants fail.
	refreshFails bool
	refreshes    int
}

func newFakeOP(t *testing.T) *fakeOP {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	op := &fakeOP{t: t, key: k, auth: map[string]url.Values{}}
	op.srv = httptest.NewServer(http.HandlerFunc(op.serve))
	t.Cleanup(op.srv.Close)
	return op
}

func (op *fakeOP) serve(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/.well-known/openid-configuration":
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": op.srv.URL, "authorization_endpoint": op.srv.URL + "/authorize", "token_endpoint": op.srv.URL + "/token",
			"jwks_uri": op.srv.URL + "/jwks", "end_session_endpoint": op.srv.URL + "/logout",
			"code_challenge_methods_supported": op.pkceMethods(), "authorization_response_iss_parameter_supported": op.iss,
		})
	case "/jwks":
		n := base64.RawURLEncoding.EncodeToString(op.key.N.Bytes())
		e := base64.RawURLEncoding.EncodeToString(big.NewInt(int64(op.key.E)).Bytes())
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]string{{"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig", "n": n, "e": e}}})
	case "/token":
		op.token(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (op *fakeOP) pkceMethods() []string {
	if op.methods == nil {
		return []string{"S256"}
	}
	return op.methods
}

// authorize plays the provider's authorization endpoint for the URL the
// gateway redirected to and returns the callback URL.
func (op *fakeOP) authorize(location string) string {
	u, err := url.Parse(location)
	if err != nil || !strings.HasPrefix(location, op.srv.URL+"/authorize?") {
		op.t.Fatalf("redirect to %q, want the authorization endpoint", location)
	}
	q := u.Query()
	code := fmt.Sprintf("code-%d", len(op.auth)+1)
	op.mu.Lock()
	op.auth[code] = q
	op.mu.Unlock()
	cb := url.Values{"code": {code}, "state": {q.Get("state")}}
	if op.iss {
		cb.Set("iss", op.srv.URL)
	}
	return q.Get("redirect_uri") + "?" + cb.Encode()
}

func (op *fakeOP) sign(c jwt.MapClaims) string {
	tk := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
	tk.Header["kid"] = "k1"
	s, err := tk.SignedString(op.key)
	if err != nil {
		op.t.Fatal(err)
	}
	return s
}

func (op *fakeOP) token(w http.ResponseWriter, r *http.Request) {
	id, secret, _ := r.BasicAuth()
	if id != "gw" || secret != "gw-secret" {
		w.WriteHeader(401)
		_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
		return
	}
	_ = r.ParseForm()
	bad := func() { w.WriteHeader(400); _, _ = w.Write([]byte(`{"error":"invalid_grant"}`)) }
	op.mu.Lock()
	defer op.mu.Unlock()
	var nonce string
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		q, ok := op.auth[r.PostForm.Get("code")]
		delete(op.auth, r.PostForm.Get("code")) // single use
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		if !ok || q.Get("code_challenge_method") != "S256" || base64.RawURLEncoding.EncodeToString(sum[:]) != q.Get("code_challenge") ||
			r.PostForm.Get("redirect_uri") != q.Get("redirect_uri") {
			bad()
			return
		}
		nonce = q.Get("nonce")
	case "refresh_token":
		op.refreshes++
		if op.refreshFails || r.PostForm.Get("refresh_token") == "" {
			bad()
			return
		}
	default:
		bad()
		return
	}
	now := time.Now()
	c := jwt.MapClaims{"iss": op.srv.URL, "sub": "alice", "aud": "gw", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "roles": []string{"admin"}, "sid": "op-session-1"}
	if nonce != "" {
		c["nonce"] = nonce
	}
	if op.idToken != nil {
		op.idToken(c)
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": fmt.Sprintf("at-%d", now.UnixNano()), "token_type": "Bearer",
		"expires_in": 8, "refresh_token": fmt.Sprintf("rt-%d", now.UnixNano()), "id_token": op.sign(c)})
}

// fakePages records what the flow showed.
type fakePages struct {
	mu       sync.Mutex
	errors   []string
	outcomes []string
}

func (p *fakePages) ErrorPage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	p.mu.Lock()
	p.errors = append(p.errors, msg)
	p.mu.Unlock()
	w.WriteHeader(status)
	_, _ = w.Write([]byte(msg))
}
func (p *fakePages) SignedOutPage(w http.ResponseWriter, r *http.Request, next string) {
	_, _ = w.Write([]byte("signed out " + next))
}
func (p *fakePages) CountSignIn(r *http.Request, subject, outcome, reason string) {
	p.mu.Lock()
	p.outcomes = append(p.outcomes, outcome+":"+reason)
	p.mu.Unlock()
}

type rpFixture struct {
	op    *fakeOP
	rp    *RP
	mg    *session.Manager
	pages *fakePages
	store *state.Memory
	jar   map[string]*http.Cookie
}

func newRPFixture(t *testing.T, iss bool) *rpFixture {
	op := newFakeOP(t)
	op.iss = iss
	keys, err := jwks.New([]jwks.IssuerConfig{{Issuer: op.srv.URL, Discovery: true, Audiences: []string{"gw"}, RolesClaim: "roles"}}, jwks.CacheConfig{}, jwks.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(keys.Close)
	store, _ := state.NewMemory(state.MemoryOptions{})
	t.Cleanup(func() { _ = store.Close() })
	rp, err := New(Options{Keys: keys, Store: store, Providers: []ProviderConfig{{
		Issuer: op.srv.URL, Login: jwks.LoginConfig{ID: "op", ClientID: "gw", BackchannelLogout: true}, ClientSecret: "gw-secret",
		RedirectURL: "https://app.example/auth/callback", PostLogoutURL: "https://app.example/auth/sign_out"}}})
	if err != nil {
		t.Fatal(err)
	}
	mg, err := session.New(session.Options{Store: store, Refresher: rp})
	if err != nil {
		t.Fatal(err)
	}
	f := &rpFixture{op: op, rp: rp, mg: mg, pages: &fakePages{}, store: store, jar: map[string]*http.Cookie{}}
	rp.Attach(mg, f.pages)
	return f
}

// do sends r with the jar and keeps the cookies it sets.
func (f *rpFixture) do(h func(http.ResponseWriter, *http.Request), r *http.Request) *httptest.ResponseRecorder {
	for _, c := range f.jar {
		r.AddCookie(c)
	}
	w := httptest.NewRecorder()
	h(w, r)
	for _, c := range w.Result().Cookies() {
		if c.MaxAge < 0 {
			delete(f.jar, c.Name)
		} else {
			f.jar[c.Name] = c
		}
	}
	return w
}

// start begins a flow and returns the provider's callback URL.
func (f *rpFixture) start(t *testing.T) string {
	t.Helper()
	w := f.do(func(w http.ResponseWriter, r *http.Request) { f.rp.Providers()[0].Start(w, r, "/app") },
		httptest.NewRequest("GET", "https://app.example/auth/sign_in/op", nil))
	if w.Code != http.StatusFound {
		t.Fatalf("Start() = %d %s", w.Code, w.Body)
	}
	loc := w.Header().Get("Location")
	q, _ := url.Parse(loc)
	v := q.Query()
	if v.Get("code_challenge_method") != "S256" || v.Get("response_type") != "code" || v.Get("redirect_uri") != "https://app.example/auth/callback" ||
		!strings.Contains(v.Get("scope"), "openid") || len(v.Get("state")) < 40 || len(v.Get("nonce")) < 40 {
		t.Fatalf("authorization request %s lacks PKCE S256, the exact redirect_uri, openid, state or nonce", loc)
	}
	return f.op.authorize(loc)
}

func (f *rpFixture) callback(cb string) *httptest.ResponseRecorder {
	u, _ := url.Parse(cb)
	return f.do(f.rp.Callback, httptest.NewRequest("GET", "https://app.example/auth/callback?"+u.RawQuery, nil))
}

func (f *rpFixture) failures(reason string) float64 {
	return testutil.ToFloat64(f.rp.failures.WithLabelValues("op", reason)) + testutil.ToFloat64(f.rp.failures.WithLabelValues("unknown", reason))
}

func TestFlowSignsIn(t *testing.T) {
	f := newRPFixture(t, true)
	w := f.callback(f.start(t))
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/app" {
		t.Fatalf("callback = %d %q %s; want 303 to /app", w.Code, w.Header().Get("Location"), w.Body)
	}
	r := httptest.NewRequest("GET", "https://app.example/app", nil)
	r.AddCookie(f.jar[session.DefaultCookieName])
	p, ok, err := f.mg.Authenticate(r)
	if !ok || err != nil || p.Subject != "alice" || p.Issuer != f.op.srv.URL || strings.Join(p.Roles, ",") != "admin" {
		t.Fatalf("session principal = %+v, %v, %v", p, ok, err)
	}
	if _, still := f.jar[f.rp.FlowCookie()]; still {
		t.Fatal("the flow cookie outlived the flow")
	}
}

func TestFlowRefusals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		iss    bool
		edit   func(f *rpFixture, cb string) string
		claims func(jwt.MapClaims)
		reason string
	}{
		{name: "tampered state", edit: func(_ *rpFixture, cb string) string { return strings.Replace(cb, "state=", "state=x", 1) }, reason: ReasonUnknownState},
		{name: "no state", edit: func(_ *rpFixture, cb string) string { return strings.Replace(cb, "state=", "st=", 1) }, reason: ReasonUnknownState},
		{name: "other browser", edit: func(f *rpFixture, cb string) string { delete(f.jar, f.rp.FlowCookie()); return cb }, reason: ReasonFlowCookie},
		{name: "iss of another provider", iss: true, edit: func(f *rpFixture, cb string) string {
			return strings.Replace(cb, url.QueryEscape(f.op.srv.URL), url.QueryEscape("https://evil.example"), 1)
		}, reason: ReasonIssuerMismatch},
		{name: "iss missing where supported", iss: true, edit: func(f *rpFixture, cb string) string {
			u, _ := url.Parse(cb)
			q := u.Query()
			q.Del("iss")
			u.RawQuery = q.Encode()
			return u.String()
		}, reason: ReasonIssuerMismatch},
		{name: "provider error", edit: func(_ *rpFixture, cb string) string {
			u, _ := url.Parse(cb)
			q := u.Query()
			q.Del("code")
			q.Set("error", "<script>alert(1)</script>")
			u.RawQuery = q.Encode()
			return u.String()
		}, reason: ReasonProviderError},
		{name: "no code", edit: func(_ *rpFixture, cb string) string { return strings.Replace(cb, "code=", "c=", 1) }, reason: ReasonNoCode},
		{name: "code of another flow", edit: func(_ *rpFixture, cb string) string { return strings.Replace(cb, "code=code-", "code=code-9", 1) }, reason: ReasonTokenExchange},
		{name: "wrong nonce", claims: func(c jwt.MapClaims) { c["nonce"] = "other" }, reason: ReasonNonce},
		{name: "no nonce", claims: func(c jwt.MapClaims) { delete(c, "nonce") }, reason: ReasonNonce},
		{name: "azp of another client", claims: func(c jwt.MapClaims) { c["aud"] = []string{"gw", "other"}; c["azp"] = "other" }, reason: ReasonAZP},
		{name: "several audiences without azp", claims: func(c jwt.MapClaims) { c["aud"] = []string{"gw", "other"} }, reason: ReasonAZP},
		{name: "audience of another client", claims: func(c jwt.MapClaims) { c["aud"] = "other" }, reason: ReasonIDToken},
		{name: "expired", claims: func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() }, reason: ReasonIDToken},
		{name: "no iat", claims: func(c jwt.MapClaims) { delete(c, "iat") }, reason: ReasonIDToken},
		{name: "another issuer", claims: func(c jwt.MapClaims) { c["iss"] = "https://evil.example" }, reason: ReasonIDToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newRPFixture(t, tc.iss)
			f.op.idToken = tc.claims
			cb := f.start(t)
			if tc.edit != nil {
				cb = tc.edit(f, cb)
			}
			w := f.callback(cb)
			if w.Code < 400 {
				t.Fatalf("callback = %d, want a refusal", w.Code)
			}
			if got := f.failures(tc.reason); got != 1 {
				t.Fatalf("failures{reason=%s} = %v, want 1 (page %q)", tc.reason, got, w.Body)
			}
			if _, ok := f.jar[session.DefaultCookieName]; ok {
				t.Fatal("a refused flow set a session cookie")
			}
			if strings.Contains(w.Body.String(), "<script>") {
				t.Fatal("the provider's error was reflected")
			}
		})
	}
}

func TestFlowIsSingleUse(t *testing.T) {
	f := newRPFixture(t, false)
	cb := f.start(t)
	if w := f.callback(cb); w.Code != http.StatusSeeOther {
		t.Fatalf("first callback = %d", w.Code)
	}
	delete(f.jar, session.DefaultCookieName)
	if w := f.callback(cb); w.Code != http.StatusBadRequest || f.failures(ReasonUnknownState) != 1 {
		t.Fatalf("replayed callback = %d, want 400 unknown_state", w.Code)
	}
}

func TestRefreshAndItsFailure(t *testing.T) {
	f := newRPFixture(t, false)
	f.callback(f.start(t))
	c := f.jar[session.DefaultCookieName]
	key := session.Key(c.Value)
	s, err := f.store.Session(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	if f.rp.Due(s, time.Now()) {
		t.Fatal("a fresh access token is due for refresh")
	}
	if !f.rp.Due(s, time.Now().Add(7*time.Second)) {
		t.Fatal("an access token 1s before expiry is not due")
	}
	data, err := f.rp.Refresh(t.Context(), s)
	if err != nil || data == nil || f.op.refreshes != 1 {
		t.Fatalf("Refresh() = %q, %v after %d refreshes", data, err, f.op.refreshes)
	}
	tk, _ := decodeTokens(data)
	old, _ := decodeTokens(s.Data)
	if tk.Access == old.Access || tk.Refresh == old.Refresh || tk.IDToken == "" {
		t.Fatal("refresh did not replace the tokens")
	}
	f.op.refreshFails = true
	s.Data = data
	if _, err := f.rp.Refresh(t.Context(), s); err == nil {
		t.Fatal("a refused refresh returned no error")
	}
	f.op.idToken = func(c jwt.MapClaims) { c["sub"] = "mallory" }
	f.op.refreshFails = false
	tk.Refresh = "rt-other" // another refresh token: not under the lock of the one refused above
	other, _ := json.Marshal(tk)
	if _, err := f.rp.Refresh(t.Context(), state.Session{Subject: "alice", Issuer: f.op.srv.URL, Data: other}); err == nil {
		t.Fatal("a refreshed ID token of another subject was accepted")
	}
}

func TestBackchannelLogout(t *testing.T) {
	f := newRPFixture(t, false)
	f.callback(f.start(t))
	c := f.jar[session.DefaultCookieName]
	alive := func() bool {
		r := httptest.NewRequest("GET", "https://app.example/", nil)
		r.AddCookie(c)
		_, ok, _ := f.mg.Authenticate(r)
		return ok
	}
	h := f.rp.BackchannelHandler(f.rp.Providers()[0])
	post := func(claims jwt.MapClaims) int {
		body := url.Values{"logout_token": {f.op.sign(claims)}}.Encode()
		r := httptest.NewRequest("POST", "https://app.example/auth/backchannel_logout/op", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	now := time.Now().Unix()
	base := func() jwt.MapClaims {
		return jwt.MapClaims{"iss": f.op.srv.URL, "aud": "gw", "iat": now, "exp": now + 60, "jti": "j1", "sid": "op-session-1",
			"events": map[string]any{backchannelEvent: map[string]any{}}}
	}
	for _, tc := range []struct {
		name string
		edit func(jwt.MapClaims)
	}{
		{"no event", func(c jwt.MapClaims) { delete(c, "events") }},
		{"nonce", func(c jwt.MapClaims) { c["nonce"] = "n" }},
		{"another audience", func(c jwt.MapClaims) { c["aud"] = "other" }},
		{"no jti", func(c jwt.MapClaims) { delete(c, "jti") }},
		{"neither sub nor sid", func(c jwt.MapClaims) { delete(c, "sid") }},
	} {
		cl := base()
		tc.edit(cl)
		if code := post(cl); code != http.StatusBadRequest || !alive() {
			t.Fatalf("%s: status %d, session alive %v; want 400 and alive", tc.name, code, alive())
		}
	}
	if code := post(base()); code != http.StatusOK || alive() {
		t.Fatalf("valid logout token: status %d, session alive %v; want 200 and ended", code, alive())
	}
	if code := post(base()); code != http.StatusBadRequest {
		t.Fatalf("replayed logout token: status %d, want 400", code)
	}
}

func TestProviderWithoutS256IsRefused(t *testing.T) {
	f := newRPFixture(t, false)
	f.op.methods = []string{"plain"}
	w := f.do(func(w http.ResponseWriter, r *http.Request) { f.rp.Providers()[0].Start(w, r, "/app") },
		httptest.NewRequest("GET", "https://app.example/auth/sign_in/op", nil))
	if w.Code != http.StatusServiceUnavailable || f.failures(ReasonDiscovery) != 1 {
		t.Fatalf("Start() with a provider without S256 = %d, want 503 and a discovery failure", w.Code)
	}
}
