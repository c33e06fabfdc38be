package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/authn/apikey"
	"github.com/authgate/authgate/authn/issuer"
	"github.com/authgate/authgate/authn/jwks"
	"github.com/authgate/authgate/authn/state"
	"github.com/authgate/authgate/authn/token"
	"github.com/authgate/authgate/authn/users"
	"github.com/authgate/authgate/internal/clientip"
	"github.com/authgate/authgate/internal/filewatch"
	"github.com/authgate/authgate/policy"
	"github.com/authgate/authgate/proxy"
)

// deps are the collaborators injected into the app; tests replace them.
type deps struct {
	Logger    *zap.Logger
	Now       func() time.Time
	Transport http.RoundTripper
	// State replaces the store chosen from the config (tests).
	State state.Store
}

// app is the wired gateway: the parts built from the config, with no
// listeners yet.
type app struct {
	cfg      *Config
	log      *zap.Logger
	reg      *prometheus.Registry
	policy   *policy.Store
	shadow   *policy.Store // candidate policy (shadow_policy_file)
	keys     *apikey.Store
	watcher  *filewatch.Watcher
	gateway  *proxy.Gateway
	handler  http.Handler // the main listener's handler: the gateway, or the mode router
	verifier *token.Verifier
	signer   *token.Signer
	external *jwks.Set // nil without external issuers
	users    *users.Store
	state    state.Store
	issuer   *issuer.Issuer // nil without a users file
	ready    atomic.Bool
	draining atomic.Bool

	cert        atomic.Pointer[tls.Certificate] // nil without TLS
	upHealth    func(ctx context.Context) error // nil without upstream.health_path
	reloads     *prometheus.CounterVec
	lastReload  prometheus.Gauge
	policyInfo  *prometheus.GaugeVec
	fileReloads *prometheus.CounterVec
}

func newApp(cfg *Config, sec Secrets, d deps) (*app, error) {
	if d.Logger == nil {
		d.Logger = zap.NewNop()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	a := &app{cfg: cfg, log: d.Logger, reg: prometheus.NewRegistry(), policy: &policy.Store{}, keys: &apikey.Store{}, users: &users.Store{}}
	a.registerMetrics()
	a.watcher = filewatch.New(cfg.ReloadInterval, a.onReload, filewatch.WithSettle(cfg.ReloadSettle))

	// Load every file before anything serves; each failure is reported.
	var errs []error
	if err := a.watcher.Add(cfg.PolicyFile, a.loadPolicy); err != nil {
		errs = append(errs, err)
	}
	if cfg.ShadowPolicy != "" {
		a.shadow = &policy.Store{}
		if err := a.watcher.Add(cfg.ShadowPolicy, a.loadShadow); err != nil {
			errs = append(errs, err)
		}
	}
	if cfg.APIKeysFile != "" {
		if err := a.watcher.Add(cfg.APIKeysFile, a.loadKeys); err != nil {
			errs = append(errs, err)
		}
	}
	if cfg.UsersFile != "" {
		if err := a.watcher.Add(cfg.UsersFile, a.loadUsers); err != nil {
			errs = append(errs, err)
		}
	}
	keys, err := sec.keySet(cfg)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	settings := token.Settings{Issuer: cfg.JWT.Issuer, Audience: cfg.JWT.Audience, Leeway: cfg.JWT.Leeway}
	// Every gateway token is bound to its user's current credentials: a
	// password change, disable or delete in the users file ends it.
	a.verifier = token.NewVerifier(keys, settings, token.Options{Now: d.Now, Binding: a.users, CacheSize: cfg.JWT.CacheSize})
	a.signer = token.NewSigner(keys, settings, token.Options{Now: d.Now})
	if d.State != nil {
		a.state = d.State
	} else if a.state, err = openState(cfg, sec, d); err != nil {
		return nil, err
	}
	a.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "authgate_state_store_up", Help: "1 if the shared state store (embedded or Redis) answers, else 0.",
	}, func() float64 {
		if a.stateHealthy(context.Background()) {
			return 1
		}
		return 0
	}))
	var own authn.TokenVerifier = a.verifier
	if rc := cfg.Auth.AccessRevocation; rc.Enabled {
		own = &authn.RevocationChecked{Next: a.verifier, Revoker: a.state, Timeout: cfg.Auth.StateTimeout, FailOpen: rc.FailOpen,
			OnError: func(err error) {
				a.log.Warn("revocation list unavailable", zap.Error(err), zap.Bool("fail_open", rc.FailOpen))
			}}
	}
	verifiers := []authn.TokenVerifier{own}
	if len(cfg.Issuers) > 0 {
		a.external, err = jwks.New(cfg.Issuers, cfg.JWKS, jwks.Options{Now: d.Now, Logger: a.log.With(zap.String("component", "jwks")), Registerer: a.reg})
		if err != nil {
			return nil, err
		}
		verifiers = append(verifiers, a.external.Verifiers()...)
	}
	bearer, err := authn.NewBearer(verifiers...)
	if err != nil {
		return nil, err
	}
	chain := authn.Chain{Bearer: bearer, APIKeyHeader: http.CanonicalHeaderKey(cfg.APIKeyHeader)}
	if cfg.APIKeysFile != "" {
		chain.APIKey = apikey.NewAuthenticator(a.keys, d.Now).WithHeader(cfg.APIKeyHeader)
	}
	trusted, err := clientip.Parse(cfg.TrustedProxies)
	if err != nil {
		return nil, err
	}
	var up *url.URL
	if cfg.Upstream.URL != "" {
		up, _ = url.Parse(cfg.Upstream.URL) // validated
	}
	transport := d.Transport
	if transport == nil {
		transport = proxy.NewTransport(proxy.TransportOptions{
			DialTimeout:           cfg.Upstream.DialTimeout,
			ResponseHeaderTimeout: cfg.Upstream.ResponseHeaderTimeout,
			IdleConnTimeout:       cfg.Upstream.IdleConnTimeout,
			MaxIdleConns:          cfg.Upstream.MaxIdleConns,
		})
	}
	var owned map[string]http.Handler
	ownedPrefix := ""
	if cfg.UsersFile != "" {
		a.issuer, err = issuer.New(issuer.Options{
			Users: a.users, Signer: a.signer, Verifier: a.verifier, State: a.state,
			AccessTTL: cfg.JWT.AccessTTL, RefreshTTL: cfg.JWT.RefreshTTL, Limits: cfg.Auth.Limits, Trusted: trusted,
			MaxBodyBytes: cfg.Auth.MaxBodyBytes, BcryptConcurrency: cfg.Auth.BcryptConcurrency, StateTimeout: cfg.Auth.StateTimeout,
			LimitedDelay: cfg.Auth.LimitedDelay, Now: d.Now, Logger: a.log.With(zap.String("component", "issuer")), Registerer: a.reg,
		})
		if err != nil {
			return nil, err
		}
		owned, ownedPrefix = a.issuer.Handlers(cfg.Auth.Prefix), cfg.Auth.Prefix
	}
	a.gateway, err = proxy.New(proxy.Options{
		Owned:                owned,
		OwnedPrefix:          ownedPrefix,
		Upstream:             up,
		PreserveHost:         cfg.Upstream.HostHeader == "preserve",
		ForwardAuthorization: cfg.Upstream.ForwardAuthorization,
		Trusted:              trusted,
		Headers:              cfg.IdentityHeaders,
		APIKeyHeader:         cfg.APIKeyHeader,
		Transport:            transport,
		Policy:               a.policy,
		ShadowPolicy:         a.shadow,
		Authenticator:        chain,
		Logger:               a.log.With(zap.String("component", "proxy")),
		Metrics:              proxy.NewMetrics(a.reg),
		LogAllowedSample:     cfg.Logging.AllowedSampleRate,
		MaxInFlight:          cfg.Listen.MaxInFlight,
		BodyReadTimeout:      cfg.Listen.BodyReadTimeout,
		Now:                  d.Now,
	})
	if err != nil {
		return nil, err
	}
	if cfg.Listen.TLS.CertFile != "" {
		load := func([]byte) error { return a.loadCert() }
		if err := a.watcher.Add(cfg.Listen.TLS.CertFile, load); err != nil {
			return nil, err
		}
		if err := a.watcher.Add(cfg.Listen.TLS.KeyFile, load); err != nil {
			return nil, err
		}
	}
	a.handler = a.gateway
	if cfg.Mode != ModeProxy {
		peers, _ := clientip.Parse(cfg.ForwardAuth.TrustedPeers) // validated
		a.handler = &modeRouter{
			verifyPath:  cfg.ForwardAuth.Path,
			envoyPrefix: cfg.ForwardAuth.EnvoyPrefix,
			verify:      a.gateway.ForwardAuth(proxy.ForwardAuthOptions{TrustedPeers: peers, EnvoyPrefix: cfg.ForwardAuth.EnvoyPrefix}),
			next:        a.gateway,
		}
	}
	if hp := cfg.Upstream.HealthPath; hp != "" && up != nil {
		client := &http.Client{Transport: transport, Timeout: 2 * time.Second}
		target := strings.TrimSuffix(up.String(), "/") + hp
		a.upHealth = func(ctx context.Context) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
			if err != nil {
				return err
			}
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			if resp.StatusCode >= 400 {
				return fmt.Errorf("upstream health: status %d", resp.StatusCode)
			}
			return nil
		}
	}
	a.ready.Store(true)
	return a, nil
}

// modeRouter sends forward-auth checks to the decision endpoint and every
// other request to the gateway (which in forward-auth mode serves only the
// auth endpoints). It matches exact paths itself rather than through
// http.ServeMux, whose path cleaning would redirect requests the gateway
// must see and refuse.
type modeRouter struct {
	verifyPath, envoyPrefix string
	verify, next            http.Handler
}

func (m *modeRouter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if p == m.verifyPath || (m.envoyPrefix != "" && (p == m.envoyPrefix || strings.HasPrefix(p, m.envoyPrefix+"/"))) {
		m.verify.ServeHTTP(w, r)
		return
	}
	m.next.ServeHTTP(w, r)
}

// loadCert loads the TLS key pair and swaps it in; a bad pair keeps the
// last good one.
func (a *app) loadCert() error {
	c, err := tls.LoadX509KeyPair(a.cfg.Listen.TLS.CertFile, a.cfg.Listen.TLS.KeyFile)
	if err != nil {
		// The error names the files, never key material.
		return fmt.Errorf("tls: %w", err)
	}
	a.cert.Store(&c)
	return nil
}

func (a *app) registerMetrics() {
	a.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authgate_policy_reload_total", Help: "Policy reload attempts by result.",
	}, []string{"result"})
	a.lastReload = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "authgate_policy_last_reload_success", Help: "1 if the last policy reload succeeded, 0 if it was rejected.",
	})
	a.policyInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "authgate_policy_info", Help: "The active policy: its content hash as a label, its rule count as the value.",
	}, []string{"hash"})
	a.fileReloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authgate_file_reload_total", Help: "Reloads of the API keys and users files by file and result.",
	}, []string{"file", "result"})
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "authgate_build_info", Help: "Build information.",
	}, []string{"version"})
	buildInfo.WithLabelValues(version).Set(1)
	for _, r := range []string{"success", "failure"} {
		a.reloads.WithLabelValues(r)
		for _, f := range []string{"api_keys", "users", "shadow_policy"} {
			a.fileReloads.WithLabelValues(f, r)
		}
	}
	a.reg.MustRegister(a.reloads, a.lastReload, a.policyInfo, a.fileReloads, buildInfo,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}

// loadPolicy parses, validates and compiles a policy and swaps it in only
// when every step succeeded: a bad edit never opens access, and requests in
// flight keep the snapshot they started with.
func (a *app) loadPolicy(data []byte) error {
	set, err := policy.Load(a.cfg.PolicyFile, data)
	if err != nil {
		a.reloads.WithLabelValues("failure").Inc()
		a.lastReload.Set(0)
		return err
	}
	a.policy.Swap(set)
	a.reloads.WithLabelValues("success").Inc()
	a.lastReload.Set(1)
	a.policyInfo.Reset()
	a.policyInfo.WithLabelValues(set.Hash()).Set(float64(set.Len()))
	a.log.Info("policy loaded", zap.String("file", a.cfg.PolicyFile), zap.String("policy_hash", set.Hash()), zap.Int("policy_rules", set.Len()))
	return nil
}

// loadShadow loads the candidate policy that is decided beside the
// enforced one without affecting traffic.
func (a *app) loadShadow(data []byte) error {
	set, err := policy.Load(a.cfg.ShadowPolicy, data)
	if err != nil {
		a.fileReloads.WithLabelValues("shadow_policy", "failure").Inc()
		return err
	}
	a.shadow.Swap(set)
	a.fileReloads.WithLabelValues("shadow_policy", "success").Inc()
	a.log.Info("shadow policy loaded", zap.String("file", a.cfg.ShadowPolicy), zap.String("policy_hash", set.Hash()), zap.Int("policy_rules", set.Len()))
	return nil
}

func (a *app) loadKeys(data []byte) error {
	set, err := apikey.Parse(a.cfg.APIKeysFile, data)
	if err != nil {
		a.fileReloads.WithLabelValues("api_keys", "failure").Inc()
		return err
	}
	a.keys.Swap(set)
	a.fileReloads.WithLabelValues("api_keys", "success").Inc()
	a.log.Info("api keys loaded", zap.String("file", a.cfg.APIKeysFile), zap.Int("keys", set.Len()))
	return nil
}

func (a *app) loadUsers(data []byte) error {
	set, err := users.Parse(a.cfg.UsersFile, data)
	if err != nil {
		a.fileReloads.WithLabelValues("users", "failure").Inc()
		return err
	}
	a.users.Swap(set)
	a.fileReloads.WithLabelValues("users", "success").Inc()
	a.log.Info("users loaded", zap.String("file", a.cfg.UsersFile), zap.Int("users", set.Len()))
	return nil
}

func (a *app) stateHealthy(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.Auth.StateTimeout)
	defer cancel()
	return a.state.Ping(ctx) == nil
}

// openState opens the shared state: Redis when AUTHGATE_REDIS_URL is set,
// otherwise the embedded store (optionally persisted to auth.state_file).
func openState(cfg *Config, sec Secrets, d deps) (state.Store, error) {
	if sec.RedisURL != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return state.NewRedis(ctx, state.RedisOptions{URL: sec.RedisURL, Password: sec.RedisPass, KeyPrefix: cfg.Redis.KeyPrefix, Timeout: cfg.Redis.Timeout})
	}
	return state.NewMemory(state.MemoryOptions{Now: d.Now, Path: cfg.Auth.StateFile})
}

func (a *app) onReload(r filewatch.Result) {
	if r.Err != nil {
		// The last good state stays in force; the error names file and line.
		a.log.Error("reload rejected, keeping the last good version", zap.String("file", r.Path), zap.Error(r.Err))
		if !r.Changed && r.Path == a.cfg.PolicyFile {
			a.reloads.WithLabelValues("failure").Inc()
			a.lastReload.Set(0)
		}
	}
}

// adminHandler serves /healthz, /readyz and /metrics.
func (a *app) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`+"\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if !a.ready.Load() || a.draining.Load() || a.policy.Load() == nil || (a.external != nil && !a.external.Ready()) {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"status":"not ready"}`+"\n")
			return
		}
		if a.upHealth != nil {
			if err := a.upHealth(r.Context()); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = io.WriteString(w, `{"status":"upstream not ready"}`+"\n")
				return
			}
		}
		// A store outage fails login, refresh and logout closed but leaves
		// proxied traffic with valid access tokens flowing, so it is
		// reported here without taking the pod out of rotation.
		if !a.stateHealthy(r.Context()) {
			_, _ = io.WriteString(w, `{"status":"ready","state_store":"down"}`+"\n")
			return
		}
		_, _ = io.WriteString(w, `{"status":"ready","state_store":"up"}`+"\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg}))
	// /explain?method=GET&path=/admin/x&role=admin[&anonymous=true] shows
	// how the active policy decides a request, like `authgate explain`.
	// It is on the admin listener only, which must stay off the ingress.
	mux.HandleFunc("GET /explain", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		method, path := q.Get("method"), q.Get("path")
		anon := q.Get("anonymous") == "true"
		if method == "" || path == "" || (anon && len(q["role"]) > 0) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":"bad_request","message":"want method and path, and role or anonymous=true (not both)"}`+"\n")
			return
		}
		set := a.policy.Load()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "policy: %s (hash %s)\n", a.cfg.PolicyFile, set.Hash())
		_, _ = io.WriteString(w, set.Explain(policy.Request{Method: method, Path: path, Authenticated: !anon, Roles: token.NormalizeRoles(q["role"])}).String())
	})
	return mux
}

func newLogger(c LoggingConfig, w zapcore.WriteSyncer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(c.Level)
	if err != nil {
		return nil, err
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey = "ts"
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if c.Format == "console" {
		enc = zapcore.NewConsoleEncoder(encCfg)
	} else {
		enc = zapcore.NewJSONEncoder(encCfg)
	}
	return zap.New(zapcore.NewCore(enc, w, lvl)), nil
}

func cmdServe(ctx context.Context, args, environ []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgFlag := fs.String("config", "", "config file (default $AUTHGATE_CONFIG)")
	demo := fs.String("demo-upstream", "", "also run the built-in demo upstream on this address (for trying authgate out)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, sec, err := loadConfigAndSecrets(*cfgFlag, environ)
	if err != nil {
		return err
	}
	log, err := newLogger(cfg.Logging, zapcore.Lock(zapcore.AddSync(stderr)))
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	if cfg.UsersFile != "" {
		// bcrypt runs on threads of the lowest OS priority, but while it
		// runs it still holds one of Go's processors. Giving it processors
		// of its own leaves the CPUs' worth of processors to proxied
		// traffic, and the OS scheduler, not Go's, lets bcrypt have only
		// what proxying leaves over.
		procs := runtime.GOMAXPROCS(0)
		if cfg.Auth.BcryptConcurrency == 0 {
			cfg.Auth.BcryptConcurrency = max(1, procs/2)
		}
		runtime.GOMAXPROCS(procs + cfg.Auth.BcryptConcurrency)
	}
	if sec.RedisURL != "" {
		// go-redis logs through a process-wide logger; route it into ours
		// so its lines are structured JSON like every other.
		redis.SetLogger(redisLogger{log.With(zap.String("component", "redis"))})
	}
	if *demo != "" {
		stopDemo, err := startDemoUpstream(*demo, log)
		if err != nil {
			return err
		}
		defer stopDemo()
	}
	a, err := newApp(cfg, sec, deps{Logger: log})
	if err != nil {
		return err
	}
	return a.serve(ctx)
}

// redisLogger adapts zap to go-redis's logger.
type redisLogger struct{ log *zap.Logger }

func (l redisLogger) Printf(_ context.Context, format string, v ...any) {
	l.log.Warn(fmt.Sprintf(format, v...))
}

// serve runs both listeners until ctx ends, then shuts down gracefully:
// readiness turns false first, and after the configured delay (so that
// endpoint controllers stop sending traffic) the listeners close and
// in-flight requests drain up to the shutdown timeout.
func (a *app) serve(ctx context.Context) error {
	l := a.cfg.Listen
	mainLn, err := net.Listen("tcp", l.Address)
	if err != nil {
		return fmt.Errorf("listen %s: %w", l.Address, err)
	}
	adminLn, err := net.Listen("tcp", l.AdminAddress)
	if err != nil {
		mainLn.Close()
		return fmt.Errorf("listen %s: %w", l.AdminAddress, err)
	}
	return a.serveOn(ctx, mainLn, adminLn)
}

// serveOn is serve on listeners the caller opened.
func (a *app) serveOn(ctx context.Context, mainLn, adminLn net.Listener) error {
	l := a.cfg.Listen
	errLog := zap.NewStdLog(a.log.With(zap.String("component", "http")))
	srv := &http.Server{Handler: a.handler, ReadHeaderTimeout: l.ReadHeaderTimeout, IdleTimeout: l.IdleTimeout, MaxHeaderBytes: l.MaxHeaderBytes, ErrorLog: errLog}
	admin := &http.Server{Handler: a.adminHandler(), ReadHeaderTimeout: l.ReadHeaderTimeout, IdleTimeout: l.IdleTimeout, ErrorLog: errLog}

	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	go a.watcher.Run(watchCtx)
	if a.external != nil {
		a.external.Start(watchCtx)
		defer a.external.Close()
	}
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

	if a.cfg.Listen.TLS.CertFile != "" {
		srv.TLSConfig = &tls.Config{
			MinVersion: tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				return a.cert.Load(), nil
			},
		}
		mainLn = tls.NewListener(mainLn, srv.TLSConfig)
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(mainLn) }()
	go func() { errc <- admin.Serve(adminLn) }()
	a.log.Info("authgate started", zap.String("version", version), zap.String("address", mainLn.Addr().String()),
		zap.String("admin_address", adminLn.Addr().String()), zap.String("upstream", a.cfg.Upstream.URL))

	select {
	case err := <-errc:
		srv.Close()
		admin.Close()
		return err
	case <-ctx.Done():
	}
	a.draining.Store(true)
	// Keep-alives stay on during the delay: turning them off makes every
	// client dial anew, and dials racing the listener's close are reset
	// from the accept backlog. With them on, only a request written on an
	// idle connection at the instant Shutdown closes it can fail, and
	// clients retry idempotent requests on such connections.
	a.log.Info("shutting down: readiness off", zap.Duration("delay", l.ShutdownDelay))
	time.Sleep(l.ShutdownDelay)
	sctx, cancel := context.WithTimeout(context.Background(), l.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	_ = admin.Shutdown(sctx)
	if err != nil {
		_ = srv.Close() // cut what did not drain in time
	}
	// Flush revocations even when draining timed out: losing them would
	// make revoked refresh tokens valid again after a restart.
	if cerr := a.state.Close(); cerr != nil {
		a.log.Error("closing state store", zap.Error(cerr))
	}
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	a.log.Info("authgate stopped")
	return nil
}
