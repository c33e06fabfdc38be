package app

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"

	"github.com/authgate/authgate/internal/config"
)

// StartBackground starts the file watcher, the users' not-before
// synchronisation and, with external issuers, the key refresh; all stop
// when ctx ends. The returned function releases the
// key sets. Run calls it; so do tests that serve the handlers themselves.
func (a *App) StartBackground(ctx context.Context) (stop func()) {
	go a.watcher.Run(ctx)
	go a.users.Run(ctx)
	if a.external != nil {
		a.external.Start(ctx)
		return a.external.Close
	}
	return func() {}
}

// CheckFiles polls every watched file once now, as a reload tick would.
func (a *App) CheckFiles() { a.watcher.Check(false) }

// Listeners are the gateway's two listeners: Main serves proxied traffic
// and the auth endpoints, Admin serves health, readiness and metrics.
type Listeners struct {
	Main, Admin net.Listener
}

// Listen opens the listeners the config names.
func Listen(l config.ListenConfig) (Listeners, error) {
	mainLn, err := net.Listen("tcp", l.Address)
	if err != nil {
		return Listeners{}, fmt.Errorf("listen.address %s: %w", l.Address, err)
	}
	adminLn, err := net.Listen("tcp", l.AdminAddress)
	if err != nil {
		mainLn.Close()
		return Listeners{}, fmt.Errorf("listen.admin_address %s: %w", l.AdminAddress, err)
	}
	return Listeners{Main: mainLn, Admin: adminLn}, nil
}

// Run serves both listeners until ctx ends, then shuts down gracefully:
// readiness turns false first, connections are retired during the
// configured delay (so that endpoint controllers and clients move their
// traffic), then the main listener closes and in-flight requests drain up
// to the shutdown timeout; then the state store is closed and, last, the
// queued trace spans are exported (see shutdown).
func (a *App) Run(ctx context.Context, ls Listeners) error {
	mainLn, adminLn := ls.Main, ls.Admin
	l := a.cfg.Listen
	errLog := zap.NewStdLog(a.log.With(zap.String("component", "http")))
	srv := &http.Server{Handler: a.handler, ReadHeaderTimeout: l.ReadHeaderTimeout, IdleTimeout: l.IdleTimeout, MaxHeaderBytes: l.MaxHeaderBytes, ErrorLog: errLog}
	admin := &http.Server{Handler: a.AdminHandler(), ReadHeaderTimeout: l.ReadHeaderTimeout, IdleTimeout: l.IdleTimeout, ErrorLog: errLog}
	a.configureHTTP2(srv)
	drain := newDrainer(a.log.With(zap.String("component", "drain")), a.requestKind)
	drain.attach(srv)

	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	stopBackground := a.StartBackground(watchCtx)
	defer stopBackground()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-hup:
				a.log.Info("SIGHUP: reloading files")
				a.watcher.Trigger()
			case <-watchCtx.Done():
				return
			}
		}
	}()

	mainLn, adminLn = a.limitConnections(mainLn, adminLn)
	go a.releaseMemory(watchCtx)
	if a.cfg.Listen.TLS.CertFile != "" {
		srv.TLSConfig = &tls.Config{
			MinVersion: tls.VersionTLS12,
			NextProtos: nextProtos(l),
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				return a.cert.Load(), nil
			},
		}
		mainLn = tls.NewListener(mainLn, srv.TLSConfig)
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(mainLn) }()
	go func() { errc <- admin.Serve(adminLn) }()
	a.log.Info("authgate started", zap.String("version", a.version), zap.String("address", mainLn.Addr().String()),
		zap.String("admin_address", adminLn.Addr().String()), zap.String("upstream", a.cfg.Upstream.URL))
	go a.probeUpstream(watchCtx)

	select {
	case err := <-errc:
		srv.Close()
		admin.Close()
		a.closeTracing()
		return err
	case <-ctx.Done():
	}
	// The stop order is written down in drain.go.
	return a.shutdown(drain, srv, admin, mainLn, errc)
}

// probeUpstream warns once at start when the upstream does not accept
// connections: the gateway serves anyway (the app may still be starting),
// but every proxied request gets 502 until it does.
func (a *App) probeUpstream(ctx context.Context) {
	u := a.cfg.Upstream.URL
	if u == "" {
		return
	}
	pu, err := url.Parse(u)
	if err != nil {
		return
	}
	host := pu.Host
	if pu.Port() == "" {
		host = net.JoinHostPort(pu.Hostname(), map[string]string{"http": "80", "https": "443"}[pu.Scheme])
	}
	d := net.Dialer{Timeout: a.cfg.Upstream.DialTimeout}
	c, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		if ctx.Err() == nil {
			a.log.Warn("upstream not reachable at start; proxied requests get 502 until it is", zap.String("upstream", u), zap.Error(err))
		}
		return
	}
	_ = c.Close()
}
