package issuer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"github.com/authgate/authgate/authn/state"
)

// Limits are the rate limits of the issuer's endpoints (auth.limits). A zero
// field takes its default from DefaultLimits; a partly set Limit is invalid,
// and no value ever means "unlimited".
//
// Login has two kinds of limit. LoginPerIP counts every attempt of one
// client, whatever the username. The per-username limits count only failed
// attempts (a success refunds its charge) and follow the "per (user, client)
// plus per user" pattern: each client has a strict budget of its own on
// each username, and all clients share the username's budget. Once that is
// spent, two reserves stay open so that failures from elsewhere cannot lock
// the user out: one for clients the user logged in from within
// LoginKnownFor, one for clients with no failure on the username within
// LoginCleanAfter. A guesser that owns no address the user logged in from
// gets at most LoginPerUser plus LoginCleanClient on one username, however
// many addresses it spreads over.
type Limits struct {
	// LoginPerIP limits login attempts per client (IPv4 address or IPv6
	// /64). Default: one every 6s, burst 20.
	LoginPerIP state.Limit `yaml:"login_per_ip"`
	// LoginPerUserClient limits failed logins on one username from one
	// client. Default: one every 1m, burst 5.
	LoginPerUserClient state.Limit `yaml:"login_per_user_client"`
	// LoginPerUser limits failed logins on one username from all clients
	// together. Default: one every 1m, burst 10.
	LoginPerUser state.Limit `yaml:"login_per_user"`
	// LoginKnownClient limits, once LoginPerUser is spent, failed logins
	// from the username's known clients. Default: one every 10m, burst 5.
	LoginKnownClient state.Limit `yaml:"login_known_client"`
	// LoginCleanClient limits, once LoginPerUser is spent, failed logins
	// from clients with no recent failure on the username. Default: one
	// every 10m, burst 5.
	LoginCleanClient state.Limit `yaml:"login_clean_client"`
	// LoginCleanAfter is how long a failure keeps a client from
	// LoginCleanClient on that username. Default: 24h.
	LoginCleanAfter time.Duration `yaml:"login_clean_after"`
	// LoginKnownFor is how long a successful login makes its client known
	// for the username (the state.MaxKnownClients latest). Default: 720h.
	LoginKnownFor time.Duration `yaml:"login_known_for"`
	// RefreshPerIP limits refresh and logout requests per client.
	// Default: one every 1s, burst 30.
	RefreshPerIP state.Limit `yaml:"refresh_per_ip"`
}

// DefaultLimits returns the default Limits.
func DefaultLimits() Limits {
	return Limits{
		LoginPerIP:         state.Limit{Every: 6 * time.Second, Burst: 20},
		LoginPerUserClient: state.Limit{Every: time.Minute, Burst: 5},
		LoginPerUser:       state.Limit{Every: time.Minute, Burst: 10},
		LoginKnownClient:   state.Limit{Every: 10 * time.Minute, Burst: 5},
		LoginCleanClient:   state.Limit{Every: 10 * time.Minute, Burst: 5},
		LoginCleanAfter:    24 * time.Hour,
		LoginKnownFor:      30 * 24 * time.Hour,
		RefreshPerIP:       state.Limit{Every: time.Second, Burst: 30},
	}
}

// limitFields returns the Limit fields of l by their YAML names.
func (l *Limits) limitFields() []struct {
	name string
	l    *state.Limit
} {
	return []struct {
		name string
		l    *state.Limit
	}{
		{"login_per_ip", &l.LoginPerIP},
		{"login_per_user_client", &l.LoginPerUserClient},
		{"login_per_user", &l.LoginPerUser},
		{"login_known_client", &l.LoginKnownClient},
		{"login_clean_client", &l.LoginCleanClient},
		{"refresh_per_ip", &l.RefreshPerIP},
	}
}

// durationFields returns the duration fields of l by their YAML names.
func (l *Limits) durationFields() []struct {
	name string
	d    *time.Duration
} {
	return []struct {
		name string
		d    *time.Duration
	}{{"login_clean_after", &l.LoginCleanAfter}, {"login_known_for", &l.LoginKnownFor}}
}

// WithDefaults returns l with every zero field replaced by its default.
func (l Limits) WithDefaults() Limits {
	d := DefaultLimits()
	dl, dd := d.limitFields(), d.durationFields()
	for i, f := range l.limitFields() {
		if *f.l == (state.Limit{}) {
			*f.l = *dl[i].l
		}
	}
	for i, f := range l.durationFields() {
		if *f.d == 0 {
			*f.d = *dd[i].d
		}
	}
	return l
}

// Validate reports every invalid field. A zero field is valid: it takes its
// default, so a config that names only some limits keeps the others; a
// partly set Limit or a negative duration is an error.
func (l Limits) Validate() error {
	l = l.WithDefaults()
	var errs []error
	for _, f := range l.limitFields() {
		if err := f.l.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("issuer: limits: %s: %w", f.name, err))
		}
	}
	for _, f := range l.durationFields() {
		if *f.d <= 0 || *f.d > state.MaxWindow {
			errs = append(errs, fmt.Errorf("issuer: limits: %s: must be in (0s, %s], got %s", f.name, state.MaxWindow, *f.d))
		}
	}
	return errors.Join(errs...)
}

// login returns the per-username limits in the store's terms.
func (l Limits) login() state.LoginLimits {
	return state.LoginLimits{
		PerClient:  l.LoginPerUserClient,
		User:       l.LoginPerUser,
		Known:      l.LoginKnownClient,
		Clean:      l.LoginCleanClient,
		CleanAfter: l.LoginCleanAfter,
		KnownFor:   l.LoginKnownFor,
	}
}

// limit takes a token from the bucket id of scope "endpoint:kind" (kind is
// keyIP) and answers nil when the request may proceed, a 429 when the
// bucket is empty, and a 503 when the store cannot answer: the limiter fails
// closed, because skipping it when the store is down would hand brute force
// an open window.
func (is *Issuer) limit(ctx context.Context, endpoint, kind, id string, l state.Limit) (*oauthError, string) {
	sctx, cancel := is.stateCtx(ctx)
	defer cancel()
	ok, retry, err := is.state.Allow(sctx, state.Scope(endpoint+":"+kind), id, l)
	if err != nil {
		return unavailable(retryStateUnavailable), outcomeUnavailable
	}
	if ok {
		return nil, ""
	}
	return is.refuse(ctx, endpoint, kind, retry), outcomeRateLimited
}

// refuse counts a limiter refusal and builds its 429. A refusal by a
// per-client bucket (keyIP, keyUserClient) is held by tarpit first: that
// client is the one looping. A refusal by a username's shared budget is
// not, since a user waiting out an attack shares it.
func (is *Issuer) refuse(ctx context.Context, endpoint, kind string, retry time.Duration) *oauthError {
	is.m.rateLimited.WithLabelValues(endpoint, kind).Inc()
	if retry <= 0 {
		retry = time.Second
	}
	if kind == keyIP || kind == keyUserClient {
		is.tarpit(ctx)
	}
	return &oauthError{Code: http.StatusTooManyRequests, OAuth: codeTooManyRequests,
		Msg: "too many requests; retry later", RetryAfter: retry}
}

// loginAttempt is the limiter's hold on one admitted login attempt.
type loginAttempt struct {
	key  state.LoginKey
	tier state.LoginTier
}

// admitLogin checks an attempt on the username name from ip against the
// per-username limits, before any bcrypt work. known reports whether name
// is in the users file: names that are not get buckets of their own that
// behave the same (the answers do not tell which usernames exist), kept
// apart so that inventing millions of names cannot evict a real user's
// buckets. It returns the refusal's error, outcome and audit reason.
func (is *Issuer) admitLogin(ctx context.Context, name string, known bool, ip netip.Addr) (loginAttempt, *oauthError, string, string) {
	k := state.LoginKey{Account: name, Known: known, Client: limitKey(ip)}
	sctx, cancel := is.stateCtx(ctx)
	defer cancel()
	v, err := is.state.CheckLogin(sctx, k, is.login)
	switch {
	case err != nil:
		return loginAttempt{}, unavailable(retryStateUnavailable), outcomeUnavailable, reasonStateUnavailable
	case v.Allowed:
		return loginAttempt{key: k, tier: v.Tier}, nil, "", ""
	case v.Refused == state.RefusedClient:
		return loginAttempt{}, is.refuse(ctx, endpointLogin, keyUserClient, v.RetryAfter), outcomeRateLimited, reasonLimitUserClient
	}
	return loginAttempt{}, is.refuse(ctx, endpointLogin, keyUser, v.RetryAfter), outcomeRateLimited, reasonLimitUser
}

// settleLogin reports what became of an admitted attempt. It runs even when
// the client has gone away: a guesser that hangs up before its answer must
// not escape the failure being counted.
func (is *Issuer) settleLogin(ctx context.Context, a loginAttempt, o state.LoginOutcome) error {
	sctx, cancel := is.stateCtx(context.WithoutCancel(ctx))
	defer cancel()
	return is.state.SettleLogin(sctx, a.key, is.login, a.tier, o)
}

// tarpit holds a rate-limited answer for the configured delay before it is
// sent. The request is refused either way — it is never queued for a token
// — but a client hammering the endpoint in a closed loop now sends a few
// requests a second instead of thousands, so a login flood costs almost no
// CPU and proxied traffic keeps its share. At most maxTarpitted answers
// are held at once; beyond that they go out at once.
func (is *Issuer) tarpit(ctx context.Context) {
	if is.limitedDelay <= 0 {
		return
	}
	select {
	case is.tarpitted <- struct{}{}:
		defer func() { <-is.tarpitted }()
	default:
		return
	}
	t := time.NewTimer(is.limitedDelay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// reasonFor picks the audit reason of a refused limiter check.
func reasonFor(outcome, limited string) string {
	if outcome == outcomeUnavailable {
		return reasonStateUnavailable
	}
	return limited
}
