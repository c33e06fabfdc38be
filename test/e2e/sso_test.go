package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/authn/jwks"
	"github.com/authgate/authgate/authn/session"
	"github.com/authgate/authgate/internal/app"
	"github.com/authgate/authgate/internal/config"
	"github.com/authgate/authgate/internal/hydratest"
)

// hydraBinary returns the Hydra built by scripts/hydra.sh (or $HYDRA).
// Without it the test is skipped, or fails when CI is set.
func hydraBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("SSO test: skipped under -short")
	}
	if p := hydratest.BinaryPath(filepath.Join("..", "tools", "go.mod")); p != "" {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatal("hydra not built but CI is set: run scripts/hydra.sh (make test does)")
	}
	t.Skip("hydra not built; run scripts/hydra.sh (make test does)")
	return ""
}

// ssoUsers are the provider's accounts: alice gets the admin role in her
// ID token, bob none.
var ssoUsers = map[string]hydratest.User{
	"alice": {Password: "alice-at-the-idp", Roles: []string{"admin"}},
	"bob":   {Password: "bob-at-the-idp"},
}

// startHydra runs one provider for t with a client for the gateway at gw.
func startHydra(t *testing.T, name, clientID, gw string, accessTTL time.Duration) *hydratest.Hydra {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h, err := hydratest.Start(ctx, hydratest.Options{Binary: hydraBinary(t), Users: ssoUsers, AccessTokenTTL: accessTTL, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	if err := h.CreateClient(hydratest.Client{
		ID: clientID, Secret: clientID + "-secret-0123456789",
		RedirectURIs: []string{gw + "/auth/callback"}, PostLogoutRedirectURIs: []string{gw + "/auth/sign_out"},
		BackchannelLogoutURI: gw + "/auth/backchannel_logout/" + clientID,
	}); err != nil {
		t.Fatal(err)
	}
	registerSecret(clientID + "-secret-0123456789")
	return h
}

// ssoEnv is a gateway with the users file and two providers, each a real
// Hydra: "one" (access tokens of accessTTL) and "two".
type ssoEnv struct {
	*gwEnv
	one, two *hydratest.Hydra
}

func newSSOEnv(t *testing.T, accessTTL time.Duration) *ssoEnv {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gw := "http://" + ln.Addr().String()
	one := startHydra(t, "Hydra One", "one", gw, accessTTL)
	two := startHydra(t, "Hydra Two", "two", gw, time.Hour)
	login := func(id, name string, h *hydratest.Hydra) jwks.IssuerConfig {
		return jwks.IssuerConfig{Issuer: h.Issuer, Discovery: true, Audiences: []string{id}, Algorithms: []string{"RS256"},
			RolesClaim: "roles", Login: &jwks.LoginConfig{ID: id, Name: name, ClientID: id,
				Scopes: []string{"offline_access", "profile", "email"}, BackchannelLogout: true}}
	}
	sec := config.Secrets{JWT: []byte(testSecret), ClientSecrets: map[string]string{"one": "one-secret-0123456789", "two": "two-secret-0123456789"}}
	e := newEnvOn(t, ln, sec, app.Deps{}, "", nil, withSessions, func(c *config.Config) {
		c.Sessions.ExternalURL = gw
		c.Issuers = []jwks.IssuerConfig{login("one", "Hydra One", one), login("two", "Hydra Two", two)}
	})
	// As behind a Service: no sign-in before both providers' keys are in
	// (on a loaded machine the first fetches can take a while).
	waitReadyWithin(t, e, http.StatusOK, 2*time.Minute)
	return &ssoEnv{gwEnv: e, one: one, two: two}
}

// signInAtHydra clicks the provider's button on the gateway's sign-in page
// and goes through Hydra's login and consent pages.
func (b *browser) signInAtHydra(button, user, password string) {
	b.t.Helper()
	b.clickAndWait(`a.button[href*="/sign_in/` + button + `"]`)
	if err := doSteps(b, `#user`, user, `#pass`, password); err != nil {
		b.t.Fatalf("hydra login page: %v (page %q)", err, b.text())
	}
	b.clickAndWait(`#login`)
	if strings.Contains(b.location(), "/consent") {
		b.clickAndWait(`#allow`)
	}
}

// TestSSOWithHydra signs a real browser in through a real OpenID Provider.
func TestSSOWithHydra(t *testing.T) {
	e := newSSOEnv(t, 4*time.Second)
	b := newBrowser(t)

	b.open(e.gw.URL + "/admin/users")
	page := b.text()
	for _, want := range []string{"Sign in with Hydra One", "Sign in with Hydra Two", "Username", "Password"} {
		if !strings.Contains(page, want) {
			t.Fatalf("sign-in page lacks %q: %q", want, page)
		}
	}
	b.signInAtHydra("one", "alice", "alice-at-the-idp")
	if loc := pathOf(e.gw.URL, b.location()); loc != "/admin/users" {
		t.Fatalf("after the provider the browser is at %q (page %q), want /admin/users", loc, b.text())
	}
	got := e.up.last(t)
	if got.Header.Get("X-Auth-Subject") != "alice" || got.Header.Get("X-Auth-Issuer") != e.one.Issuer ||
		got.Header.Get("X-Auth-Method") != "session" || got.Header.Get("X-Auth-Roles") != "admin" {
		t.Fatalf("upstream identity: subject %q issuer %q method %q roles %q", got.Header.Get("X-Auth-Subject"),
			got.Header.Get("X-Auth-Issuer"), got.Header.Get("X-Auth-Method"), got.Header.Get("X-Auth-Roles"))
	}
	if a := got.Header.Get("X-Auth-Assertion"); a != "" {
		t.Logf("assertion header present (%d bytes)", len(a))
	}

	t.Run("refresh past the access token's lifetime", func(t *testing.T) {
		b := b.in(t)
		time.Sleep(5 * time.Second) // the 4s access token has expired
		b.open(e.gw.URL + "/admin/users")
		if pathOf(e.gw.URL, b.location()) != "/admin/users" {
			t.Fatalf("after the access token expired: at %q, want still signed in", b.location())
		}
		if n := e.logs.FilterMessage("session refreshed at the provider").Len(); n == 0 {
			t.Fatal("no refresh at the provider was logged")
		}
	})

	t.Run("back-channel logout", func(t *testing.T) {
		b := b.in(t)
		sids, err := e.one.LoginSessionIDs("alice")
		if err != nil || len(sids) == 0 {
			t.Fatalf("login sessions of alice: %v, %v", sids, err)
		}
		for _, sid := range sids {
			if err := e.one.RevokeLoginSession(sid); err != nil {
				t.Fatal(err)
			}
		}
		deadline := time.Now().Add(30 * time.Second)
		for e.logs.FilterMessage("back-channel logout").Len() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("no back-channel logout reached the gateway")
			}
			time.Sleep(50 * time.Millisecond)
		}
		b.open(e.gw.URL + "/admin/users")
		if loc := pathOf(e.gw.URL, b.location()); !strings.HasPrefix(loc, "/auth/sign_in") {
			t.Fatalf("after back-channel logout: at %q, want the sign-in page", loc)
		}
	})

	t.Run("a missing role denies", func(t *testing.T) {
		b := b.in(t)
		b.open(e.gw.URL + "/api/items")
		b.signInAtHydra("two", "bob", "bob-at-the-idp")
		if loc := pathOf(e.gw.URL, b.location()); loc != "/api/items" {
			t.Fatalf("bob landed on %q", loc)
		}
		if e.up.last(t).Header.Get("X-Auth-Issuer") != e.two.Issuer {
			t.Fatal("bob's session is not from the second provider")
		}
		b.open(e.gw.URL + "/admin/users")
		if txt := b.text(); !strings.Contains(txt, "forbidden") {
			t.Fatalf("bob without the admin role got %q, want 403", txt)
		}
	})

	t.Run("RP-initiated logout", func(t *testing.T) {
		b := b.in(t)
		b.open(e.gw.URL + "/auth/sign_out")
		b.clickAndWait(`button[value=this]`)
		// The signed-out page sends the browser on to Hydra's logout, which
		// sends it back to the registered post-logout URI with the state.
		deadline := time.Now().Add(30 * time.Second)
		for {
			// The page is replaced twice on the way; a read that races a
			// navigation is retried.
			txt, err := b.tryText()
			if err == nil && strings.Contains(b.location(), "state=") && strings.Contains(txt, "You are signed out") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("RP-initiated logout ended at %q: %q (%v)", b.location(), txt, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !strings.HasPrefix(b.location(), e.gw.URL+"/auth/sign_out") {
			t.Fatalf("after logout the browser is at %q", b.location())
		}
		if c := b.cookie(e.gw.URL, session.DefaultCookieName); c != nil {
			t.Fatal("session cookie left after RP-initiated logout")
		}
	})
}

// doSteps types values into fields: selector, value, ...
func doSteps(b *browser, kv ...string) error {
	for i := 0; i+1 < len(kv); i += 2 {
		if err := typeInto(b, kv[i], kv[i+1]); err != nil {
			return err
		}
	}
	return nil
}

// TestSSOAttacks drives the flow with an HTTP client against the real
// Hydra and shows that a tampered state, a replayed authorization
// response, a manipulated nonce and a denied consent all fail.
func TestSSOAttacks(t *testing.T) {
	e := newSSOEnv(t, time.Hour)
	// flow runs one sign-in up to the gateway's callback and returns the
	// callback URL; edit may change the authorization request first.
	newClient := func() *http.Client {
		jar, _ := cookiejar.New(nil)
		return &http.Client{Jar: jar, Timeout: 30 * time.Second,
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if strings.HasPrefix(req.URL.String(), e.gw.URL+"/auth/callback") {
					return http.ErrUseLastResponse
				}
				return nil
			}}
	}
	flow := func(c *http.Client, user, decision string, edit func(url.Values)) string {
		t.Helper()
		noFollow := *c
		noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, err := noFollow.Get(e.gw.URL + "/auth/sign_in/one?rd=%2Fapi%2Fitems")
		if err != nil || resp.StatusCode != http.StatusFound {
			t.Fatalf("start: %v %v", resp, err)
		}
		resp.Body.Close()
		auth, _ := url.Parse(resp.Header.Get("Location"))
		q := auth.Query()
		if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("nonce") == "" || q.Get("state") == "" {
			t.Fatalf("authorization request lacks PKCE S256, nonce or state: %s", auth)
		}
		if q.Get("redirect_uri") != e.gw.URL+"/auth/callback" {
			t.Fatalf("redirect_uri = %q", q.Get("redirect_uri"))
		}
		if edit != nil {
			edit(q)
			auth.RawQuery = q.Encode()
		}
		resp, err = c.Get(auth.String()) // Hydra, then its login page
		if err != nil {
			t.Fatal(err)
		}
		loginPage, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		ch := between(string(loginPage), `name="challenge" value="`, `"`)
		resp, err = c.PostForm(e.one.LoginAppURL()+"/login", url.Values{"challenge": {ch}, "user": {user}, "pass": {ssoUsers[user].Password}})
		if err != nil {
			t.Fatal(err)
		}
		consentPage, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if ch := between(string(consentPage), `name="challenge" value="`, `"`); ch != "" {
			resp, err = c.PostForm(e.one.LoginAppURL()+"/consent", url.Values{"challenge": {ch}, "decision": {decision}})
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
		loc := resp.Header.Get("Location")
		if resp.StatusCode/100 != 3 || !strings.HasPrefix(loc, e.gw.URL+"/auth/callback?") {
			t.Fatalf("the flow did not come back to the gateway: %d to %q", resp.StatusCode, loc)
		}
		return loc
	}
	callback := func(c *http.Client, u string) (int, string) {
		t.Helper()
		noFollow := *c
		noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, err := noFollow.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	// refusals names the sign-in failures the gateway logged, so that an
	// unexpected refusal says why.
	refusals := func() string {
		var out []string
		for _, en := range e.logs.FilterMessage("provider sign-in failed").All() {
			m := en.ContextMap()
			out = append(out, fmt.Sprintf("%v: %v", m["reason"], m["error"]))
		}
		return strings.Join(out, "; ")
	}
	failures := func(reason string) float64 {
		provider := "one"
		if reason == "unknown_state" {
			provider = "unknown" // no flow record names it
		}
		return counterValue(t, e.app.Registry(), "authgate_oidc_failures_total", map[string]string{"provider": provider, "reason": reason})
	}

	t.Run("tampered state, then replayed response", func(t *testing.T) {
		c := newClient()
		cb := flow(c, "alice", "allow", nil)
		u, _ := url.Parse(cb)
		q := u.Query()
		good := q.Get("state")
		q.Set("state", good[:len(good)-2]+"xx")
		u.RawQuery = q.Encode()
		if code, body := callback(c, u.String()); code != http.StatusBadRequest || !strings.Contains(body, "Try again") {
			t.Fatalf("tampered state: %d %q", code, body)
		}
		if code, _ := callback(c, cb); code != http.StatusSeeOther {
			t.Fatalf("the genuine response after the tampered one: %d, want 303 (refusals: %s)", code, refusals())
		}
		before := failures("unknown_state")
		if code, _ := callback(c, cb); code != http.StatusBadRequest {
			t.Fatalf("replayed response (same state and code): %d, want 400", code)
		}
		if failures("unknown_state") != before+1 {
			t.Fatal("the replay was not counted")
		}
	})
	t.Run("response in another browser", func(t *testing.T) {
		cb := flow(newClient(), "alice", "allow", nil)
		if code, _ := callback(newClient(), cb); code != http.StatusBadRequest || failures("flow_cookie") < 1 {
			t.Fatalf("callback from another browser: %d, want 400 (login CSRF)", code)
		}
	})
	t.Run("wrong nonce", func(t *testing.T) {
		c := newClient()
		cb := flow(c, "alice", "allow", func(q url.Values) { q.Set("nonce", "attacker-chosen-nonce-0123456789abcdef") })
		if code, _ := callback(c, cb); code != http.StatusBadRequest || failures("nonce_mismatch") != 1 {
			t.Fatalf("manipulated nonce: %d, %v nonce_mismatch failures, want 400 and 1 (refusals: %s)", code, failures("nonce_mismatch"), refusals())
		}
	})
	t.Run("denied consent", func(t *testing.T) {
		c := newClient()
		// bob has never consented to this client, so Hydra asks.
		cb := flow(c, "bob", "deny", nil)
		code, body := callback(c, cb)
		if code != http.StatusForbidden || !strings.Contains(body, "access_denied") || !strings.Contains(body, "Try again") {
			t.Fatalf("denied consent: %d %q", code, body)
		}
		if strings.Contains(body, "The user denied the request") {
			t.Fatal("the provider's error_description was reflected")
		}
	})
}

// between returns the text of s between the first start and the next end.
func between(s, start, end string) string {
	_, rest, ok := strings.Cut(s, start)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, end)
	return v
}
