package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/authgate/authgate/authn/session"
	"github.com/authgate/authgate/authn/state/statetest"
	"github.com/authgate/authgate/internal/config"
)

// TestBrowserSignIn walks a real browser through browser sign-in: a
// protected page sends it to the sign-in page, signing in lands it on the
// page it asked for with the identity headers upstream, it stays signed in
// across a reload, a cross-site form cannot act with its session, an open
// redirect fails, and signing out ends the session.
func TestBrowserSignIn(t *testing.T) {
	e := newEnv(t, "", nil, withSessions)
	b := newBrowser(t)
	b.open(e.gw.URL + "/admin/users?tab=all")
	if loc := pathOf(e.gw.URL, b.location()); loc != "/auth/sign_in?rd=%2Fadmin%2Fusers%3Ftab%3Dall" {
		t.Fatalf("protected page sent the browser to %q, want the sign-in page with rd", loc)
	}
	if e.up.count() != 0 {
		t.Fatal("the upstream saw the anonymous navigation")
	}

	b.signIn("alice", "alice-password-1")
	if loc := pathOf(e.gw.URL, b.location()); loc != "/admin/users?tab=all" {
		t.Fatalf("after sign-in the browser is at %q, want /admin/users?tab=all", loc)
	}
	if txt := b.text(); !strings.Contains(txt, "upstream ok") {
		t.Fatalf("page after sign-in: %q", txt)
	}
	got := e.up.last(t)
	if got.Header.Get("X-Auth-Subject") != "alice" || got.Header.Get("X-Auth-Method") != "session" || got.Header.Get("X-Auth-Roles") != "admin,user" {
		t.Fatalf("upstream identity headers: subject %q method %q roles %q", got.Header.Get("X-Auth-Subject"), got.Header.Get("X-Auth-Method"), got.Header.Get("X-Auth-Roles"))
	}
	if a := got.Header.Get("X-Auth-Assertion"); a != "" {
		t.Logf("assertion header present (%d bytes)", len(a))
	}
	if ck := strings.Join(got.Header.Values("Cookie"), ";"); strings.Contains(ck, "authgate") {
		t.Fatalf("the upstream received the gateway's cookies: %q", ck)
	}
	c := b.cookie(e.gw.URL, session.DefaultCookieName)
	if c == nil || !c.Secure || !c.HTTPOnly || c.SameSite != "Lax" || c.Path != "/" {
		t.Fatalf("session cookie in the browser: %+v", c)
	}
	registerSecret(c.Value)

	t.Run("reload stays signed in", func(t *testing.T) {
		b := b.in(t)
		n := e.up.count()
		if err := chromedp.Do(b.ctx, chromedp.Reload()); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.text(), "upstream ok") || e.up.count() != n+1 || e.up.last(t).Header.Get("X-Auth-Subject") != "alice" {
			t.Fatalf("reload: page %q, upstream saw %d new requests", b.text(), e.up.count()-n)
		}
	})

	t.Run("cross-site form is refused", func(t *testing.T) {
		b := b.in(t)
		// A page on another origin of the same site (another port of
		// 127.0.0.1): the browser attaches the SameSite=Lax cookie to its
		// form post, so only the Origin check stands between it and the
		// app.
		evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, `<!doctype html><form method="post" action="%s/api/items"><input name="x" value="1"><button id="go">go</button></form>`, e.gw.URL)
		}))
		t.Cleanup(evil.Close)
		n := e.up.count()
		b.open(evil.URL)
		b.clickAndWait("#go")
		if txt := b.text(); !strings.Contains(txt, "cross-site request refused") {
			t.Fatalf("cross-site post answered %q, want the 403", txt)
		}
		if e.up.count() != n {
			t.Fatal("the upstream saw the cross-site post")
		}
	})

	t.Run("sign out", func(t *testing.T) {
		b := b.in(t)
		b.open(e.gw.URL + "/auth/sign_out")
		if !strings.Contains(b.text(), "signed in as alice") {
			t.Fatalf("sign-out page: %q", b.text())
		}
		b.clickAndWait(`button[value=this]`)
		if !strings.Contains(b.text(), "You are signed out") {
			t.Fatalf("after sign-out: %q", b.text())
		}
		if left := b.cookie(e.gw.URL, session.DefaultCookieName); left != nil {
			t.Fatalf("session cookie still in the browser after sign-out")
		}
		// The old id is dead server side too, not only forgotten.
		resp, _ := e.do("GET", "/admin/users", "Cookie", session.DefaultCookieName+"="+c.Value)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("the signed-out id answered %d, want 401", resp.StatusCode)
		}
		b.open(e.gw.URL + "/admin/users")
		if loc := pathOf(e.gw.URL, b.location()); !strings.HasPrefix(loc, "/auth/sign_in") {
			t.Fatalf("after sign-out a protected page went to %q, want the sign-in page", loc)
		}
	})

	t.Run("open redirect fails", func(t *testing.T) {
		b := b.in(t)
		for _, rd := range []string{"//evil.example/x", "/%2F%2Fevil.example", "/\\evil.example", "https://evil.example/"} {
			b.open(e.gw.URL + "/auth/sign_in?rd=" + strings.ReplaceAll(rd, "\\", "%5C"))
			if c := b.cookie(e.gw.URL, session.DefaultCookieName); c != nil {
				b.open(e.gw.URL + "/auth/sign_out")
				b.clickAndWait(`button[value=this]`)
				b.open(e.gw.URL + "/auth/sign_in?rd=" + strings.ReplaceAll(rd, "\\", "%5C"))
			}
			b.signIn("alice", "alice-password-1")
			if loc := b.location(); loc != e.gw.URL+"/" {
				t.Fatalf("rd=%q: after sign-in the browser is at %q, want %s/", rd, loc, e.gw.URL)
			}
			b.open(e.gw.URL + "/auth/sign_out")
			b.clickAndWait(`button[value=this]`)
		}
	})
}

// TestBrowserSessionEnds: a session unused past its idle timeout, and one
// whose user changed password, sends the browser back to the sign-in page.
func TestBrowserSessionEnds(t *testing.T) {
	e := newEnv(t, "", nil, withSessions, func(c *config.Config) { c.Sessions.IdleTimeout = 3 * time.Second })
	b := newBrowser(t)
	protected := e.gw.URL + "/api/items"
	signedIn := func() bool {
		t.Helper()
		b.open(protected)
		return pathOf(e.gw.URL, b.location()) == "/api/items"
	}

	t.Run("expired session redirects again", func(t *testing.T) {
		b := b.in(t)
		b.open(protected)
		b.signIn("alice", "alice-password-1")
		if !signedIn() {
			t.Fatal("not signed in")
		}
		time.Sleep(4 * time.Second) // past the 3s idle timeout
		if signedIn() {
			t.Fatal("an idle session outlived its idle timeout")
		}
		if !strings.Contains(b.text(), "Password") {
			t.Fatalf("expired session: page %q, want the sign-in form", b.text())
		}
	})

	t.Run("password change ends the session", func(t *testing.T) {
		b := b.in(t)
		b.open(protected)
		b.signIn("alice", "alice-password-1")
		if !signedIn() {
			t.Fatal("not signed in")
		}
		before := counterValue(t, e.app.Registry(), "authgate_sessions_ended_total", map[string]string{"reason": "credentials"})
		old, _ := e.app.Users().Load().Lookup("alice")
		writeFile(t, filepath.Join(e.dir, "users.yaml"), testUsers(t, "alice-password-2"))
		deadline := time.Now().Add(30 * time.Second)
		for {
			if u, _ := e.app.Users().Load().Lookup("alice"); u.Ver() != old.Ver() {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("users file not reloaded")
			}
			time.Sleep(20 * time.Millisecond)
		}
		if signedIn() {
			t.Fatal("the session survived the password change")
		}
		if after := counterValue(t, e.app.Registry(), "authgate_sessions_ended_total", map[string]string{"reason": "credentials"}); after != before+1 {
			t.Fatalf("sessions ended for credentials: %v -> %v, want one more", before, after)
		}
		// The new password signs in again.
		b.signIn("alice", "alice-password-2")
		if pathOf(e.gw.URL, b.location()) != "/api/items" {
			t.Fatalf("sign-in with the new password went to %q", b.location())
		}
	})
}

// TestBrowserSignInPageScreenshots renders the sign-in page at desktop and
// phone width, saves a screenshot of each (test/e2e/artifacts), checks that
// the form's fields and button are on screen and large enough to use, and
// signs in with the keyboard alone at phone width.
func TestBrowserSignInPageScreenshots(t *testing.T) {
	e := newEnv(t, "", nil, withSessions)
	b := newBrowser(t)
	dir := artifactsDir(t)
	type box struct{ X, Y, W, H float64 }
	for _, vp := range []struct {
		name          string
		width, height int64
		mobile        bool
	}{
		{"desktop", 1280, 800, false},
		{"phone", 390, 844, true},
	} {
		t.Run(vp.name, func(t *testing.T) {
			b := b.in(t)
			opts := []chromedp.EmulateViewportOption{}
			if vp.mobile {
				opts = append(opts, chromedp.EmulateMobile, chromedp.EmulateTouch, chromedp.EmulateScale(3))
			}
			if err := chromedp.Do(b.ctx, chromedp.EmulateViewport(vp.width, vp.height, opts...)); err != nil {
				t.Fatal(err)
			}
			b.open(e.gw.URL + "/auth/sign_in?rd=%2Fapi%2Fitems")
			for _, id := range []string{"username", "password", "submit"} {
				sel := "#" + id
				if id == "submit" {
					sel = "button[type=submit]"
				}
				bx, err := chromedp.Run(b.ctx, chromedp.Evaluate[box](`(() => { const r = document.querySelector("`+sel+`").getBoundingClientRect(); return {X: r.x, Y: r.y, W: r.width, H: r.height}; })()`))
				if err != nil {
					t.Fatal(err)
				}
				// On screen, inside the width (no sideways scrolling), and
				// at least a 44px touch target high on a phone (WCAG 2.5.5).
				if bx.X < 0 || bx.X+bx.W > float64(vp.width)+0.5 || bx.Y+bx.H > float64(vp.height) || bx.W < 100 || bx.H < 40 {
					t.Errorf("%s at %s: box %+v does not fit a %dx%d screen usably", id, vp.name, bx, vp.width, vp.height)
				}
			}
			focused, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.activeElement.id`))
			if err != nil || focused != "username" {
				t.Errorf("focused element = %q (%v), want username (autofocus)", focused, err)
			}
			p := b.screenshot(dir, "sign-in-"+vp.name+".png")
			t.Logf("screenshot: %s", p)
		})
	}
	t.Run("keyboard only", func(t *testing.T) {
		b := b.in(t)
		b.open(e.gw.URL + "/auth/sign_in?rd=%2Fapi%2Fitems")
		// Autofocus lands once the page has rendered; type only then.
		if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool](`document.activeElement !== null && document.activeElement.id === "username"`)); err != nil {
			t.Fatalf("username never got the focus: %v", err)
		}
		if _, err := chromedp.RunResponse(b.ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			for _, k := range []string{"alice", "\t", "alice-password-1", "\r"} {
				if _, err := chromedp.KeyEvent(k)(ctx, tg); err != nil {
					return err
				}
			}
			return nil
		})); err != nil {
			t.Fatal(err)
		}
		if loc := pathOf(e.gw.URL, b.location()); loc != "/api/items" {
			t.Fatalf("keyboard sign-in landed on %q, want /api/items; page %q", loc, b.text())
		}
	})
}

// TestBrowserSessionsAcrossReplicas: with Redis, a session made through
// replica A works through replica B, and a sign-out on B ends it on A
// within A's cache TTL (the reload interval). The cookie is host-scoped,
// not port-scoped, so one browser presents it to both replicas on
// 127.0.0.1, as it would to one host name behind a load balancer.
func TestBrowserSessionsAcrossReplicas(t *testing.T) {
	chromium(t)
	srv := statetest.StartServer(t)
	usersFile := filepath.Join(t.TempDir(), "users.yaml")
	writeFile(t, usersFile, replicaUsers(t, "alice"))
	reps := newReplicas(t, 2, srv.URL(2), "browser:", usersFile, func(c *config.Config) { c.Sessions.Enabled = true })
	a, bRep := reps[0], reps[1]
	b := newBrowser(t)

	b.open(a.gw.URL + "/api/items")
	b.signIn("alice", replicaPassword)
	if loc := pathOf(a.gw.URL, b.location()); loc != "/api/items" {
		t.Fatalf("sign-in on A landed on %q", loc)
	}
	b.open(bRep.gw.URL + "/api/items")
	if loc := pathOf(bRep.gw.URL, b.location()); loc != "/api/items" || bRep.up.count() != 1 || bRep.up.last(t).Header.Get("X-Auth-Subject") != "alice" {
		t.Fatalf("the session from A did not work on B: at %q, B's upstream saw %d requests", loc, bRep.up.count())
	}
	c := b.cookie(a.gw.URL, session.DefaultCookieName)
	if c == nil {
		t.Fatal("no session cookie")
	}
	registerSecret(c.Value)
	viaA := func() int {
		resp, _ := a.do("GET", "/api/items", "Cookie", c.Name+"="+c.Value)
		return resp.StatusCode
	}
	if viaA() != 200 { // now in A's cache
		t.Fatal("the session does not work on A")
	}

	// A keeps answering from its cache while B signs out: poll A all the
	// time, so the lag measured is the cache's worst case.
	b.open(bRep.gw.URL + "/auth/sign_out")
	done := make(chan time.Time, 1)
	go func() {
		_, err := chromedp.RunResponse(b.ctx, chromedp.Click(chromedp.CSS(`button[value=this]`)))
		if err != nil {
			t.Errorf("sign out on B: %v", err)
		}
		done <- time.Now()
	}()
	var signedOut time.Time
	for {
		code := viaA()
		if signedOut.IsZero() {
			select {
			case signedOut = <-done:
			default:
			}
		}
		if code == http.StatusUnauthorized {
			if signedOut.IsZero() {
				signedOut = <-done
			}
			break
		}
		if !signedOut.IsZero() && time.Since(signedOut) > 10*time.Second {
			t.Fatal("the session signed out on B still works on A after 10s")
		}
		time.Sleep(time.Millisecond)
	}
	lag := time.Since(signedOut)
	t.Logf("sign-out on B ended the session on A after %s (cache TTL %s)", lag.Round(time.Millisecond), a.app.Config().ReloadInterval)
	b.open(a.gw.URL + "/api/items")
	if loc := pathOf(a.gw.URL, b.location()); !strings.HasPrefix(loc, "/auth/sign_in") {
		t.Fatalf("after sign-out on B, A sent the browser to %q, want the sign-in page", loc)
	}
}
