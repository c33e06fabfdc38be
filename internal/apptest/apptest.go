// Package apptest runs the real gateway for tests: app.New and app.Run on
// loopback listeners, with the server settings, TLS, reloads, SIGHUP and
// the stop order exactly as in production. Only the addresses differ: the
// listeners are opened on 127.0.0.1 with ephemeral ports.
package apptest

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/authgate/authgate/internal/app"
	"github.com/authgate/authgate/internal/config"
)

// Gateway is a running gateway. Its fields are set once by Start and are
// safe to read from any goroutine.
type Gateway struct {
	// App is the running app.
	App *app.App
	// URL is the main listener's base URL: http://, or https:// when the
	// config enables TLS.
	URL string
	// Addr is the main listener's host:port.
	Addr string
	// AdminURL is the admin listener's base URL.
	AdminURL string

	cancel context.CancelFunc
	done   chan error
	wait   time.Duration
}

// Start builds the app from cfg and runs it until the test ends. The
// listen addresses in cfg are ignored.
func Start(t testing.TB, cfg *config.Config, sec config.Secrets, d app.Deps) *Gateway {
	t.Helper()
	a, err := app.New(cfg, sec, d)
	if err != nil {
		t.Fatalf("app.New: %v", err)
	}
	return Run(t, a)
}

// Run runs a built app on fresh loopback listeners until the test ends or
// Stop is called.
func Run(t testing.TB, a *app.App) *Gateway {
	t.Helper()
	mainLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("apptest: listen: %v", err)
	}
	return RunOn(t, a, mainLn)
}

// StartOn is Start with the main listener opened by the caller, for a
// config that must name the gateway's own URL (a redirect URI, or its
// jwt.issuer as a URL for discovery).
func StartOn(t testing.TB, cfg *config.Config, sec config.Secrets, d app.Deps, mainLn net.Listener) *Gateway {
	t.Helper()
	a, err := app.New(cfg, sec, d)
	if err != nil {
		mainLn.Close()
		t.Fatalf("app.New: %v", err)
	}
	return RunOn(t, a, mainLn)
}

// RunOn is Run on a main listener the test opened.
func RunOn(t testing.TB, a *app.App, mainLn net.Listener) *Gateway {
	t.Helper()
	adminLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		mainLn.Close()
		t.Fatalf("apptest: listen: %v", err)
	}
	cfg := a.Config()
	scheme := "http://"
	if cfg.Listen.TLS.CertFile != "" {
		scheme = "https://"
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &Gateway{
		App: a, URL: scheme + mainLn.Addr().String(), Addr: mainLn.Addr().String(),
		AdminURL: "http://" + adminLn.Addr().String(),
		cancel:   cancel, done: make(chan error, 1),
		wait: cfg.Listen.ShutdownDelay + cfg.Listen.ShutdownTimeout + 10*time.Second,
	}
	go func() { g.done <- a.Run(ctx, app.Listeners{Main: mainLn, Admin: adminLn}) }()
	t.Cleanup(func() {
		err := g.Stop()
		switch {
		case err == nil:
		case errors.Is(err, context.DeadlineExceeded):
			// A test that ends with a request still running (a client it
			// abandoned, a store it stopped) sees its drain cut: that is
			// the stop order working, not a failure of the test.
			t.Logf("apptest: drain cut at the end of the test: %v", err)
		default:
			t.Errorf("apptest: gateway stopped with: %v", err)
		}
	})
	return g
}

// Stop ends Run as SIGTERM would and returns what Run returned. Calling it
// again returns nil.
func (g *Gateway) Stop() error {
	g.cancel()
	select {
	case err, ok := <-g.done:
		if !ok {
			return nil
		}
		close(g.done)
		return err
	case <-time.After(g.wait):
		return context.DeadlineExceeded
	}
}
