package issuer

import (
	"context"
	"net/http"
	"net/netip"
	"time"

	"go.uber.org/zap"

	"github.com/authgate/authgate/authn/state"
	"github.com/authgate/authgate/authn/token"
	"github.com/authgate/authgate/authn/users"
)

// Audit reasons: a closed set of snake_case values for the "reason" field.
const (
	reasonInvalidRequest   = "invalid_request"
	reasonUnsupportedGrant = "unsupported_grant_type"
	reasonUnknownUser      = "unknown_user"
	reasonDisabled         = "user_disabled"
	reasonBadPassword      = "bad_password"
	reasonPasswordTooLong  = "password_too_long"
	reasonLimitIP          = "rate_limited_ip"
	reasonLimitUser        = "rate_limited_user"
	reasonStateUnavailable = "state_unavailable"
	reasonBcryptBusy       = "bcrypt_busy"
	reasonMintFailed       = "mint_failed"
	reasonInvalidToken     = "invalid_token"
	reasonCredsChanged     = "credentials_changed"
	reasonRevoked          = "family_revoked"
	reasonReuse            = "refresh_token_reuse"
)

// Audit event names.
const (
	eventLogin   = "login"
	eventRefresh = "refresh"
	eventReuse   = "refresh_token_reuse"
	eventLogout  = "logout"
)

// maxLoggedName bounds a client-supplied username written to the log.
const maxLoggedName = 64

// audit writes one audit event. who is "username" for login attempts (the
// name the client typed, normalized) and "subject" for token operations.
// Passwords and tokens are never passed here.
func (is *Issuer) audit(event, who, name string, ip netip.Addr, outcome, reason string) {
	if len(name) > maxLoggedName {
		name = name[:maxLoggedName]
	}
	fields := []zap.Field{
		zap.String("event", event),
		zap.String(who, name),
		zap.String("client_ip", ip.String()),
		zap.String("outcome", outcome),
	}
	if reason != "" {
		fields = append(fields, zap.String("reason", reason))
	}
	lvl := zap.InfoLevel
	switch {
	case event == eventReuse:
		lvl = zap.ErrorLevel
	case outcome != outcomeSuccess:
		lvl = zap.WarnLevel
	}
	is.log.Log(lvl, "issuer "+event, fields...)
}

// reuseFields are the fields of a refresh-token reuse event.
func reuseFields(event, subject, family, ip string) []zap.Field {
	return []zap.Field{
		zap.String("event", event),
		zap.String("subject", subject),
		zap.String("family", family),
		zap.String("client_ip", ip),
		zap.String("outcome", outcomeReuse),
		zap.String("reason", reasonReuse),
	}
}

// limit takes one token from the bucket named key. It returns nil when the
// request may proceed, a 429 when the bucket is empty, and a 503 when the
// store cannot answer: the limiter fails closed, because skipping it when
// the store is down would hand brute force an open window.
// limit takes a token from the bucket "endpoint:kind:id" (kind is keyIP or
// keyUser) and counts a refusal. A refusal of a per-client bucket is held
// by tarpit first: that client is the one looping. A refusal of a
// per-username bucket is not, since many clients may share it.
func (is *Issuer) limit(ctx context.Context, endpoint, kind, id string, l state.Limit) (*oauthError, string) {
	sctx, cancel := is.stateCtx(ctx)
	defer cancel()
	ok, retry, err := is.state.Allow(sctx, endpoint+":"+kind+":"+id, l)
	if err != nil {
		return unavailable(retryStateUnavailable), outcomeUnavailable
	}
	if ok {
		return nil, ""
	}
	is.m.rateLimited.WithLabelValues(endpoint, kind).Inc()
	if retry <= 0 {
		retry = time.Second
	}
	if kind == keyIP {
		is.tarpit(ctx)
	}
	return &oauthError{status: http.StatusTooManyRequests, code: codeTooManyRequests,
		desc: "too many requests; retry later", retryAfter: retry}, outcomeRateLimited
}

func unavailable(retry time.Duration) *oauthError {
	return &oauthError{status: http.StatusServiceUnavailable, code: codeTemporarilyUnavailable,
		desc: "the service is temporarily unavailable; retry later", retryAfter: retry}
}

func invalidGrant(desc string) *oauthError {
	return &oauthError{status: http.StatusBadRequest, code: codeInvalidGrant, desc: desc}
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

// acquire takes a bcrypt slot, waiting at most bcryptWait.
func (is *Issuer) acquire(ctx context.Context) bool {
	select {
	case is.sem <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(is.bcryptWait)
	defer t.Stop()
	select {
	case is.sem <- struct{}{}:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

func (is *Issuer) release() { <-is.sem }

func (is *Issuer) serveLogin(w http.ResponseWriter, r *http.Request) {
	ip := is.trusted.ClientIP(r)
	fail := func(name, outcome, reason string, e *oauthError) {
		is.m.logins.WithLabelValues(outcome).Inc()
		is.audit(eventLogin, "username", name, ip, outcome, reason)
		writeError(w, e)
	}
	p, oe := is.readParams(w, r)
	if oe != nil {
		fail("", outcomeFailure, reasonInvalidRequest, oe)
		return
	}
	switch p["grant_type"] {
	case "", "password":
	default:
		fail("", outcomeFailure, reasonUnsupportedGrant, &oauthError{status: http.StatusBadRequest,
			code: codeUnsupportedGrantType, desc: "grant_type must be password"})
		return
	}
	name, password := users.Normalize(p["username"]), p["password"]
	if name == "" || password == "" {
		fail(name, outcomeFailure, reasonInvalidRequest, badRequest("username and password are required"))
		return
	}

	// Both limits are checked before any bcrypt work. Per IP slows one
	// client guessing many accounts; per username slows many clients (a
	// botnet) guessing one account. The IP is taken from X-Forwarded-For
	// only when the socket peer is a trusted proxy, so a client cannot get
	// a fresh quota by writing the header itself.
	ctx := r.Context()
	if e, outcome := is.limit(ctx, endpointLogin, keyIP, limitKey(ip), is.limits.LoginPerIP); e != nil {
		fail(name, outcome, reasonFor(outcome, reasonLimitIP), e)
		return
	}
	if e, outcome := is.limit(ctx, endpointLogin, keyUser, name, is.limits.LoginPerUser); e != nil {
		fail(name, outcome, reasonFor(outcome, reasonLimitUser), e)
		return
	}

	if !is.acquire(ctx) {
		// A login flood must queue here, not on every CPU: bcrypt is
		// deliberately slow and would starve proxied traffic.
		fail(name, outcomeUnavailable, reasonBcryptBusy, unavailable(retryBcryptBusy))
		return
	}
	set := is.users.Load()
	dummy, err := is.dummyFor(set.MaxCost())
	if err != nil {
		is.release()
		fail(name, outcomeUnavailable, reasonBcryptBusy, unavailable(retryBcryptBusy))
		return
	}
	u, found := set.Lookup(name)
	hash, reason := dummy, ""
	switch {
	case !found:
		reason = reasonUnknownUser
	case u.Disabled:
		reason = reasonDisabled
	default:
		hash = []byte(u.PasswordHash())
	}
	if len(password) > users.MaxPasswordBytes {
		// bcrypt would compare only the first 72 bytes, so "password" plus
		// any suffix would match. Refuse, with the same work and the same
		// answer as any other failure.
		hash, reason = dummy, reasonPasswordTooLong
	}
	// Exactly one compare per attempt, whatever the outcome, so the time
	// taken does not tell an unknown user from a wrong password.
	lowPriority(func() { err = is.compare(hash, []byte(password)) })
	is.release()
	if reason == "" && err != nil {
		reason = reasonBadPassword
	}
	if reason != "" {
		fail(name, outcomeFailure, reason, invalidGrant(descInvalidCredentials))
		return
	}

	if e := is.awaitValidFrom(ctx, u); e != nil {
		fail(name, outcomeUnavailable, reasonTokensRevoked, e)
		return
	}
	resp, rc, err := is.mintPair(u, token.NewID(), is.now())
	if err != nil {
		fail(name, outcomeUnavailable, reasonMintFailed, unavailable(retryStateUnavailable))
		return
	}
	sctx, cancel := is.stateCtx(ctx)
	err = is.state.StartFamily(sctx, rc.Family, rc.ID, rc.ExpiresAt.Time)
	cancel()
	if err != nil {
		fail(name, outcomeUnavailable, reasonStateUnavailable, unavailable(retryStateUnavailable))
		return
	}
	is.m.logins.WithLabelValues(outcomeSuccess).Inc()
	is.audit(eventLogin, "username", name, ip, outcomeSuccess, "")
	writeJSON(w, http.StatusOK, resp)
}

// reasonFor picks the audit reason of a refused limiter check.
func reasonFor(outcome, limited string) string {
	if outcome == outcomeUnavailable {
		return reasonStateUnavailable
	}
	return limited
}
