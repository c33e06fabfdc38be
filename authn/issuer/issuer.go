// Package issuer makes the gateway an OAuth 2.0 token issuer for the users
// in its users file: POST {prefix}/login (resource owner password grant,
// RFC 6749 §4.3), POST {prefix}/refresh (refresh with rotation and reuse
// detection, RFC 6749 §6) and POST {prefix}/logout (revocation, in the
// spirit of RFC 7009).
//
// Brute force is slowed by per-IP and per-username token buckets in the
// shared state store, checked before any bcrypt work; the limiter fails
// closed when the store is unavailable. The per-username limits count only
// failures and keep reserves for the user's own clients, so an attacker's
// failures cannot lock the user out (see Limits). Every attempt costs
// exactly one bcrypt compare, against a dummy hash when the user is unknown
// or disabled, so timing does not reveal which usernames exist, and
// compares run on a bounded semaphore so a login flood cannot take every
// CPU from proxied traffic.
package issuer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

	"github.com/authgate/authgate/authn/state"
	"github.com/authgate/authgate/authn/token"
	"github.com/authgate/authgate/authn/users"
	"github.com/authgate/authgate/internal/clientip"
)

// Defaults applied by New to zero-valued Options fields.
const (
	DefaultAccessTTL  = 15 * time.Minute
	DefaultRefreshTTL = 24 * time.Hour
	// DefaultRefreshMaxAge is the absolute lifetime of a session: a week
	// after the login, however often it is refreshed, the user logs in
	// again. It is oauth2-proxy's cookie_expire default; Keycloak's SSO
	// Session Max (10h) suits browser SSO, where a new login is one
	// redirect away, and Auth0's 30 days suits consumer apps. A stolen
	// refresh token that keeps rotating is bounded by it.
	DefaultRefreshMaxAge = 7 * 24 * time.Hour
	DefaultMaxBodyBytes  = 4096
	DefaultStateTimeout  = 500 * time.Millisecond
	// DefaultBcryptWait is how long a login waits for a bcrypt slot before
	// it is answered 503.
	DefaultBcryptWait = 2 * time.Second
)

// Retry-After values sent with 503 answers.
const (
	retryStateUnavailable = 5 * time.Second
	retryBcryptBusy       = 2 * time.Second
)

// Options configure New. Users, Signer, Verifier and State are required.
type Options struct {
	// Users is the users file. Required.
	Users *users.Store
	// Signer mints access and refresh tokens. Required.
	Signer *token.Signer
	// Verifier verifies presented refresh and access tokens. Required. It
	// should be built with Users as its Binding; the issuer checks the
	// binding of refresh tokens itself as well.
	Verifier *token.Verifier
	// State holds the limiter buckets, refresh families and revocations.
	// Required.
	State state.Store
	// AccessTTL is the access token lifetime; zero means DefaultAccessTTL.
	AccessTTL time.Duration
	// RefreshTTL is the refresh token lifetime, renewed on every rotation
	// (an idle timeout); zero means DefaultRefreshTTL.
	RefreshTTL time.Duration
	// RefreshMaxAge is the absolute lifetime of a session since its login:
	// no refresh is granted after it and no token outlives it. Zero means
	// DefaultRefreshMaxAge; it must not be shorter than RefreshTTL.
	RefreshMaxAge time.Duration
	// Limits are the rate limits; zero fields take DefaultLimits.
	Limits Limits
	// Trusted are the proxies whose X-Forwarded-For is believed. The zero
	// value trusts nobody and limits by socket peer.
	Trusted clientip.Trusted
	// MaxBodyBytes caps request bodies; zero means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// BcryptConcurrency bounds concurrent bcrypt compares; zero means
	// max(1, GOMAXPROCS/2).
	BcryptConcurrency int
	// BcryptWait is how long a login waits for a bcrypt slot; zero means
	// DefaultBcryptWait.
	BcryptWait time.Duration
	// StateTimeout bounds every state store call; zero means
	// DefaultStateTimeout.
	StateTimeout time.Duration
	// LimitedDelay holds each rate-limited answer this long before sending
	// it (a tarpit), so a client hammering login in a loop is slowed to a
	// few attempts a second. Zero sends 429 at once.
	LimitedDelay time.Duration
	// Now is the clock; nil means time.Now. It should be the clock of
	// Signer and Verifier.
	Now func() time.Time
	// Logger receives the audit events; nil means no logging.
	Logger *zap.Logger
	// Registerer, if non-nil, receives the issuer's metrics.
	Registerer prometheus.Registerer
}

// Issuer serves login, refresh and logout. Create it with New; the zero
// value is not usable. It is safe for concurrent use.
type Issuer struct {
	users      *users.Store
	signer     *token.Signer
	verifier   *token.Verifier
	state      state.Store
	accessTTL  time.Duration
	refreshTTL time.Duration
	// refreshMaxAge is the absolute session lifetime.
	refreshMaxAge time.Duration
	limits        Limits
	login         state.LoginLimits // limits.login()
	trusted       clientip.Trusted
	maxBody       int64
	bcryptWait    time.Duration
	stateTO       time.Duration
	now           func() time.Time
	log           *zap.Logger
	m             *metrics

	sem chan struct{}

	limitedDelay time.Duration
	tarpitted    chan struct{} // bounds the answers held by tarpit

	// dummies are dummy hashes by bcrypt cost, one for the cost of the
	// current users file (it changes on reload).
	dummyMu  sync.Mutex
	dummies  map[int][]byte
	generate func(password []byte, cost int) ([]byte, error)
	compare  func(hash, password []byte) error
}

// New validates o and returns an Issuer. It generates the dummy hash used
// for unknown users, at the highest cost in the current users file (or
// users.DefaultCost), which takes one bcrypt hashing.
func New(o Options) (*Issuer, error) {
	return newIssuer(o, hooks{})
}

// hooks replace the bcrypt primitives in tests; zero fields mean the real
// ones.
type hooks struct {
	compare  func(hash, password []byte) error
	generate func(password []byte, cost int) ([]byte, error)
}

func newIssuer(o Options, h hooks) (*Issuer, error) {
	if h.compare == nil {
		h.compare = bcrypt.CompareHashAndPassword
	}
	if h.generate == nil {
		h.generate = bcrypt.GenerateFromPassword
	}
	var errs []error
	if o.Users == nil {
		errs = append(errs, errors.New("issuer: users store is required"))
	}
	if o.Signer == nil {
		errs = append(errs, errors.New("issuer: signer is required"))
	}
	if o.Verifier == nil {
		errs = append(errs, errors.New("issuer: verifier is required"))
	}
	if o.State == nil {
		errs = append(errs, errors.New("issuer: state store is required"))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"access ttl", o.AccessTTL}, {"refresh ttl", o.RefreshTTL}, {"refresh max age", o.RefreshMaxAge}, {"state timeout", o.StateTimeout}, {"bcrypt wait", o.BcryptWait}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("issuer: %s must not be negative, got %s", d.name, d.v))
		}
	}
	if rt, ma := orDefault(o.RefreshTTL, DefaultRefreshTTL), orDefault(o.RefreshMaxAge, DefaultRefreshMaxAge); rt > ma {
		errs = append(errs, fmt.Errorf("issuer: refresh ttl %s is longer than the refresh max age %s", rt, ma))
	}
	if o.MaxBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("issuer: max body bytes must not be negative, got %d", o.MaxBodyBytes))
	}
	if o.BcryptConcurrency < 0 {
		errs = append(errs, fmt.Errorf("issuer: bcrypt concurrency must not be negative, got %d", o.BcryptConcurrency))
	}
	limits := o.Limits.WithDefaults()
	if err := limits.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	is := &Issuer{
		users:         o.Users,
		signer:        o.Signer,
		verifier:      o.Verifier,
		state:         o.State,
		accessTTL:     orDefault(o.AccessTTL, DefaultAccessTTL),
		refreshTTL:    orDefault(o.RefreshTTL, DefaultRefreshTTL),
		refreshMaxAge: orDefault(o.RefreshMaxAge, DefaultRefreshMaxAge),
		limits:        limits,
		login:         limits.login(),
		trusted:       o.Trusted,
		maxBody:       orDefault(o.MaxBodyBytes, DefaultMaxBodyBytes),
		bcryptWait:    orDefault(o.BcryptWait, DefaultBcryptWait),
		stateTO:       orDefault(o.StateTimeout, DefaultStateTimeout),
		now:           o.Now,
		log:           o.Logger,
		compare:       h.compare,
	}
	if is.now == nil {
		is.now = time.Now
	}
	if is.log == nil {
		is.log = zap.NewNop()
	}
	n := o.BcryptConcurrency
	if n == 0 {
		n = max(1, runtime.GOMAXPROCS(0)/2)
	}
	is.sem = make(chan struct{}, n)
	is.limitedDelay = o.LimitedDelay
	is.tarpitted = make(chan struct{}, maxTarpitted)
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	is.m = m

	cost := o.Users.Load().MaxCost()
	if cost == 0 {
		cost = users.DefaultCost
	}
	is.generate = h.generate
	is.dummies = map[int][]byte{}
	if _, err := is.dummyFor(cost); err != nil {
		return nil, err
	}
	return is, nil
}

// maxTarpitted bounds how many rate-limited answers are held at once.
const maxTarpitted = 10000

// dummyFor returns the dummy hash of the given cost, making it once. The
// dummy makes an unknown user cost the same bcrypt work as a known one
// (username enumeration by timing); the users file has one cost for all.
// Its password is random and discarded, so nothing matches it.
func (is *Issuer) dummyFor(cost int) ([]byte, error) {
	if cost == 0 {
		cost = users.DefaultCost
	}
	is.dummyMu.Lock()
	defer is.dummyMu.Unlock()
	if d, ok := is.dummies[cost]; ok {
		return d, nil
	}
	d, err := is.generate([]byte(token.NewID()), cost)
	if err != nil {
		return nil, fmt.Errorf("issuer: dummy hash: %w", err)
	}
	is.dummies[cost] = d
	return d, nil
}

func orDefault[T comparable](v, d T) T {
	var zero T
	if v == zero {
		return d
	}
	return v
}

// Endpoint paths below the prefix.
const (
	PathLogin   = "/login"
	PathRefresh = "/refresh"
	PathLogout  = "/logout"
)

// Handlers returns the login, refresh and logout handlers keyed by their
// exact paths: prefix+"/login", prefix+"/refresh" and prefix+"/logout". A
// trailing slash on prefix is ignored.
func (is *Issuer) Handlers(prefix string) map[string]http.Handler {
	prefix = strings.TrimRight(prefix, "/")
	return map[string]http.Handler{
		prefix + PathLogin:   http.HandlerFunc(is.serveLogin),
		prefix + PathRefresh: http.HandlerFunc(is.serveRefresh),
		prefix + PathLogout:  http.HandlerFunc(is.serveLogout),
	}
}

// stateCtx bounds one state store call.
func (is *Issuer) stateCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, is.stateTO)
}
