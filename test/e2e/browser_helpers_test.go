package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/authgate/authgate/internal/config"
)

// browserTimeout bounds one browser test. The machine running the suite
// is shared and slow, and Chromium starts in seconds there, so the bound
// is generous; a test that works finishes far sooner.
const browserTimeout = 3 * time.Minute

// chromium returns the Chromium binary: $CHROMIUM, else chromium on PATH.
// Without one the test is skipped, or fails when CI is set.
func chromium(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("browser test: skipped under -short")
	}
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium not installed but CI is set: the browser tests must run in CI (apt-get install -y chromium)")
	}
	t.Skip("chromium not installed; apt-get install -y chromium")
	return ""
}

// browser is one headless Chromium with a fresh profile, stopped when
// the test ends.
type browser struct {
	t   *testing.T
	ctx context.Context
}

// newBrowser starts Chromium for t. Start it after the gateways it visits:
// cleanups run last first, so the browser, with its idle and speculative
// connections, is gone before a gateway drains.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	bin := chromium(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 800),
		// Without these Chromium reaches out to the network at start,
		// which this machine refuses.
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-default-browser-check", true),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, browserTimeout)
	t.Cleanup(func() {
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
	})
	return &browser{t: t, ctx: ctx}
}

// open navigates to url and waits for the page to load.
func (b *browser) open(url string) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, chromedp.Navigate(url)); err != nil {
		b.t.Fatalf("open %s: %v", url, err)
	}
}

// location returns the current URL.
func (b *browser) location() string {
	b.t.Helper()
	loc, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil {
		b.t.Fatalf("location: %v", err)
	}
	return loc
}

// in returns b reporting to t: a subtest's failures must end the subtest,
// not its parent.
func (b *browser) in(t *testing.T) *browser { return &browser{t: t, ctx: b.ctx} }

// text returns the text of the page body. A read that races the document
// being replaced (Chromium's "No node with given id found" for a node of
// the page before) is retried for up to ten seconds.
func (b *browser) text() string {
	b.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := b.tryText()
		if err == nil {
			return s
		}
		if time.Now().After(deadline) || b.ctx.Err() != nil {
			b.t.Fatalf("body text: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tryText is text for a page that may be navigating away while it is read
// (a redirect chain): a node that vanished mid-read is an error to retry,
// not a failure.
func (b *browser) tryText() (string, error) {
	return chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS("body")))
}

// signIn fills the sign-in form on the current page and submits it with
// a click, waiting for the page it leads to.
func (b *browser) signIn(user, password string) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx,
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), user),
		chromedp.SendKeys(chromedp.ID("password"), password),
	); err != nil {
		b.t.Fatalf("fill the sign-in form: %v", err)
	}
	b.clickAndWait(`button[type=submit]`)
}

// clickAndWait clicks the element matching css and waits for the
// navigation it starts.
func (b *browser) clickAndWait(css string) {
	b.t.Helper()
	if _, err := chromedp.RunResponse(b.ctx, chromedp.Click(chromedp.CSS(css))); err != nil {
		b.t.Fatalf("click %s: %v", css, err)
	}
}

// cookie returns the browser's cookie of that name for url, or nil.
func (b *browser) cookie(url, name string) *network.Cookie {
	b.t.Helper()
	res, err := chromedp.Call(b.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{url}})
	if err != nil {
		b.t.Fatalf("get cookies: %v", err)
	}
	for _, c := range res.Cookies {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// screenshot saves a PNG of the page to dir/name and returns its path.
func (b *browser) screenshot(dir, name string) string {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	return p
}

// artifactsDir is test/e2e/artifacts (git-ignored), made on demand.
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("artifacts")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// withSessions turns on browser sign-in with the users file.
func withSessions(c *config.Config) {
	withUsers(c)
	c.Sessions.Enabled = true
}

// pathOf returns the path and query of a URL on the gateway.
func pathOf(gwURL, loc string) string { return strings.TrimPrefix(loc, gwURL) }

// typeInto waits for the field matching css and types value into it.
func typeInto(b *browser, css, value string) error {
	return chromedp.Do(b.ctx, chromedp.WaitVisible(chromedp.CSS(css)), chromedp.SendKeys(chromedp.CSS(css), value))
}
