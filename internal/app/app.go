// Package app is the one owner of the gateway's startup and shutdown: New
// builds every part from the config (and reports every load error at
// once), Run serves the listeners, the file reloads and SIGHUP until its
// context ends and then stops in a written-down order.
package app

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/authn/apikey"
	"github.com/authgate/authgate/authn/issuer"
	"github.com/authgate/authgate/authn/jwks"
	"github.com/authgate/authgate/authn/state"
	"github.com/authgate/authgate/authn/token"
	"github.com/authgate/authgate/authn/users"
	"github.com/authgate/authgate/internal/clientip"
	"github.com/authgate/authgate/internal/config"
	"github.com/authgate/authgate/internal/connlimit"
	"github.com/authgate/authgate/internal/filewatch"
	"github.com/authgate/authgate/internal/telemetry"
	"github.com/authgate/authgate/policy"
	"github.com/authgate/authgate/proxy"
)

// Deps are the collaborators injected into the app; tests replace them.
type Deps struct {
	Logger    *zap.Logger
	Now       func() time.Time
	Transport http.RoundTripper
	// State replaces the store chosen from the config (tests).
	State state.Store
	// Version is the build version reported in metrics and logs.
	Version string
	// Revision is the source revision the binary was built from; empty
	// means the one recorded by the Go toolchain, else "unknown".
	Revision string
	// BcryptConcurrency, when non-zero, replaces auth.bcrypt_concurrency:
	// serve derives it when it gives bcrypt processors of its own, and
	// passes it here instead of writing it into the config.
	BcryptConcurrency int
	// Environ is the process environment (KEY=VALUE), read for the
	// OTEL_* tracing settings; nil means tracing off.
	Environ []string
}

// App is the wired gateway: the parts built from the config, with no
// listeners yet. Its methods are safe for concurrent use.
type App struct {
	cfg      *config.Config
	version  string
	revision string
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
	policyRules prometheus.Gauge
	connRefused *prometheus.CounterVec
	conns       atomic.Pointer[connlimit.Listener] // the main listener, once Run opened it
	h2Errors    *prometheus.CounterVec
	tracing     *telemetry.Provider // nil when tracing is off
}

// New builds the gateway from the config and secrets. Every file is loaded
// before anything serves, and every load error is reported.
func New(cfg *config.Config, sec config.Secrets, d Deps) (*App, error) {
	if d.Logger == nil {
		d.Logger = zap.NewNop()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	a := &App{cfg: cfg, version: d.Version, revision: revisionOf(d.Revision), log: d.Logger, reg: prometheus.NewRegistry(), policy: &policy.Store{}, keys: &apikey.Store{}, users: &users.Store{}}
	a.registerMetrics()
	a.registerConnMetrics()
	a.registerHTTP2Metrics()
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
	keys, err := a.loadSigningKeys(sec, d.Now)
	if err != nil {
		errs = append(errs, err)
	}
	claims, err := cfg.ClaimPaths()
	if err != nil {
		errs = append(errs, err)
	}
	roots, err := trustRoots(cfg.TLS.CAFile)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if keys.Keys().Algorithm() == token.AlgHS256 {
		a.log.Warn("tokens are signed with a shared secret (HS256): every service that verifies them can also mint them, and no app can verify an identity assertion; " +
			"create a key with `authgate gen-signing-key` and set AUTHGATE_JWT_SIGNING_KEY_FILE (README \"Upgrading\")")
	}
	settings := token.Settings{Issuer: cfg.JWT.Issuer, Audience: cfg.JWT.Audience, Leeway: cfg.JWT.Leeway}
	// Every gateway token is bound to its user's current credentials: a
	// password change, disable or delete in the users file ends it.
	a.verifier = token.NewVerifier(keys, settings, token.Options{Now: d.Now, Binding: a.users, CacheSize: cfg.JWT.CacheSize, Claims: claims})
	a.signer = token.NewSigner(keys, settings, token.Options{Now: d.Now})
	asserter, err := a.newAsserter(keys, d.Now)
	if err != nil {
		return nil, err
	}
	if d.State != nil {
		a.state = d.State
	} else if a.state, err = openState(cfg, sec, d, roots); err != nil {
		return nil, err
	}
	// Disables, deletes and password changes are recorded in the state
	// store, so old tokens stay dead after an undo, a restart and on every
	// replica; a record outlives every token it refuses.
	if err := a.users.Track(a.state, users.TrackOptions{Keep: max(cfg.JWT.AccessTTL, cfg.JWT.RefreshTTL, issuer.MaxAdminTokenTTL) + cfg.JWT.Leeway,
		Timeout: cfg.Auth.StateTimeout, Interval: cfg.ReloadInterval, Now: d.Now,
		OnError: func(err error) { a.log.Warn("users: state store", zap.Error(err)) }}); err != nil {
		a.log.Warn("users: not-before records not synchronized; affected users are refused until they are", zap.Error(err))
	}
	a.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "authgate_state_store_up", Help: "1 if the shared state store answers (embedded; Redis: the primary, or every cluster primary), else 0.",
	}, func() float64 {
		if a.stateHealthy(context.Background()) {
			return 1
		}
		return 0
	}))
	a.registerStateMetrics()
	var own authn.TokenVerifier = a.verifier
	if rc := cfg.Auth.AccessRevocation; rc.Enabled {
		own = &authn.RevocationChecked{Next: a.verifier, Revoker: a.state, Timeout: cfg.Auth.StateTimeout, FailOpen: rc.FailOpen,
			OnError: func(err error) {
				a.log.Warn("revocation list unavailable", zap.Error(err), zap.Bool("fail_open", rc.FailOpen))
			}}
	}
	verifiers := []authn.TokenVerifier{own}
	if len(cfg.Issuers) > 0 {
		a.external, err = jwks.New(cfg.Issuers, cfg.JWKS, jwks.Options{Client: fetchClient(roots, cfg.JWKS.FetchTimeout), Now: d.Now, Logger: a.log.With(zap.String("component", "jwks")), Registerer: a.reg, Claims: claims})
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
			RootCAs:               roots,
			Protocol:              proxy.Protocol(cfg.Upstream.Protocol),
		})
	}
	owned := a.wellKnown(keys)
	ownedPrefix := ""
	if cfg.UsersFile != "" {
		a.issuer, err = issuer.New(issuer.Options{
			Users: a.users, Signer: a.signer, Verifier: a.verifier, State: a.state,
			AccessTTL: cfg.JWT.AccessTTL, RefreshTTL: cfg.JWT.RefreshTTL, RefreshMaxAge: cfg.JWT.RefreshMaxAge, Limits: cfg.Auth.Limits, Trusted: trusted,
			MaxBodyBytes: cfg.Auth.MaxBodyBytes, BcryptConcurrency: cmp.Or(d.BcryptConcurrency, cfg.Auth.BcryptConcurrency), StateTimeout: cfg.Auth.StateTimeout,
			LimitedDelay: cfg.Auth.LimitedDelay, Now: d.Now, Logger: a.log.With(zap.String("component", "issuer")), Registerer: a.reg,
		})
		if err != nil {
			return nil, err
		}
		maps.Copy(owned, a.issuer.Handlers(cfg.Auth.Prefix))
		ownedPrefix = cfg.Auth.Prefix
	}
	browser, err := a.newBrowser(cfg, sec, trusted, d)
	if err != nil {
		return nil, err
	}
	if browser.sessions != nil {
		chain.Session = browser.sessions
		if owned == nil {
			owned = map[string]http.Handler{}
		}
		for p, h := range browser.handlers {
			owned[p] = h
		}
		ownedPrefix = cfg.Auth.Prefix
	}
	if err := a.openTracing(d); err != nil {
		return nil, err
	}
	defer func() {
		if !a.ready.Load() { // New failed after this point
			a.closeTracing()
		}
	}()
	a.gateway, err = proxy.New(proxy.Options{
		Owned:                owned,
		OwnedPrefix:          ownedPrefix,
		Assertion:            asserter,
		AssertionHeader:      cfg.Assertion.Header,
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
		RetryRefusedDelay:    cfg.Upstream.RetryRefusedDelay,
		BodyReadTimeout:      cfg.Listen.BodyReadTimeout,
		AllowBodiesOn:        cfg.Upstream.AllowBodiesOn,
		TunnelRecheck:        cfg.ReloadInterval,
		SignIn:               browser.signIn,
		Cookies:              browser.cookies,
		RateLimits:           a.state, // per-route rate limits share the login limiter's store
		TracerProvider:       a.tracing.TracerProvider(),
		Limits: proxy.Limits{
			MaxPerClient:     cfg.Listen.MaxConnectionsPerClient,
			MaxTunnels:       cfg.Listen.MaxTunnels,
			EndpointTimeout:  cfg.Listen.EndpointTimeout,
			BodyMinRate:      cfg.Listen.BodyMinRate,
			BodyRateWindow:   cfg.Listen.BodyRateWindow,
			WriteIdleTimeout: cfg.Listen.WriteIdleTimeout,
			WriteMinRate:     cfg.Listen.WriteMinRate,
			RequestBuffer:    cfg.Listen.RequestBufferBytes,
		},
		Now: d.Now,
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
	if cfg.Mode != config.ModeProxy {
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

// openState opens the shared state: Redis when AUTHGATE_REDIS_URL,
// redis.sentinel or redis.cluster is set, otherwise the embedded store
// (optionally persisted to auth.state_file).
func openState(cfg *config.Config, sec config.Secrets, d Deps, roots *x509.CertPool) (state.Store, error) {
	if cfg.UsesRedis(sec) {
		if err := cfg.CheckRedis(sec); err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		o := redisOptions(cfg, sec)
		o.RootCAs = roots
		return state.NewRedis(ctx, o)
	}
	return state.NewMemory(state.MemoryOptions{Now: d.Now, Path: cfg.Auth.StateFile})
}

// Handler is the main listener's handler: the gateway, or the mode router
// in forward-auth and both modes.
func (a *App) Handler() http.Handler { return a.handler }

// Config is the configuration the app was built from.
func (a *App) Config() *config.Config { return a.cfg }

// Signer signs the gateway's own tokens.
func (a *App) Signer() *token.Signer { return a.signer }

// Users is the users file's store.
func (a *App) Users() *users.Store { return a.users }

// Registry is the app's own metrics registry.
func (a *App) Registry() *prometheus.Registry { return a.reg }

// State is the shared state store (embedded or Redis).
func (a *App) State() state.Store { return a.state }

// revisionOf returns r, else the VCS revision the Go toolchain recorded in
// the binary, else "unknown".
func revisionOf(r string) string {
	if r != "" {
		return r
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}
