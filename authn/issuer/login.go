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
	"github.com/authgate/authgate/internal/logsafe"
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
	reasonLimitUserClient  = "rate_limited_user_client"
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

// auditEntry is one audit line of the token endpoints.
type auditEntry struct {
	event   string
	who     string // the field that names the caller: "username" (as typed) or "subject"
	name    string
	ip      netip.Addr
	outcome string
	reason  string
	family  string // the refresh family, on reuse
}

// audit logs e with the request's id, which the gateway set on r, so the
// line joins the gateway's own line for the same request.
func (is *Issuer) audit(r *http.Request, e auditEntry) {
	fields := []zap.Field{
		zap.String("event", e.event),
		zap.String("request_id", r.Header.Get("X-Request-Id")),
		zap.String(e.who, logsafe.String(e.name)),
		zap.String("client_ip", e.ip.String()),
		zap.String("outcome", e.outcome),
	}
	if e.reason != "" {
		fields = append(fields, zap.String("reason", e.reason))
	}
	if e.family != "" {
		fields = append(fields, zap.String("family", e.family))
	}
	lvl := zap.InfoLevel
	switch {
	case e.event == eventReuse:
		lvl = zap.ErrorLevel
	case e.outcome != outcomeSuccess:
		lvl = zap.WarnLevel
	}
	is.log.Log(lvl, "issuer "+e.event, fields...)
}

func unavailable(retry time.Duration) *oauthError {
	return &oauthError{Code: http.StatusServiceUnavailable, OAuth: codeTemporarilyUnavailable,
		Msg: "the service is temporarily unavailable; retry later", RetryAfter: retry}
}

func invalidGrant(desc string) *oauthError {
	return &oauthError{Code: http.StatusBadRequest, OAuth: codeInvalidGrant, Msg: desc}
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
		is.audit(r, auditEntry{event: eventLogin, who: "username", name: name, ip: ip, outcome: outcome, reason: reason})
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
		fail("", outcomeFailure, reasonUnsupportedGrant, &oauthError{Code: http.StatusBadRequest,
			OAuth: codeUnsupportedGrantType, Msg: "grant_type must be password"})
		return
	}
	name, password := users.Normalize(p["username"]), p["password"]
	if name == "" || password == "" {
		fail(name, outcomeFailure, reasonInvalidRequest, badRequest("username and password are required"))
		return
	}

	u, e, outcome, reason := is.checkPassword(r.Context(), name, password, ip)
	if e != nil {
		fail(name, outcome, reason, e)
		return
	}
	ctx := r.Context()
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
	is.audit(r, auditEntry{event: eventLogin, who: "username", name: name, ip: ip, outcome: outcomeSuccess})
	writeJSON(w, http.StatusOK, resp)
}

// checkPassword runs one password check for the username name from ip:
// every limit first, then exactly one bcrypt compare, then the settlement
// of the limiter's charge. It returns the user, or the answer for the
// client with the outcome and audit reason. The API login and the sign-in
// page share it, so both have the same limits, tarpit, timing and answers.
func (is *Issuer) checkPassword(ctx context.Context, name, password string, ip netip.Addr) (*users.User, *oauthError, string, string) {
	// Every limit is checked before any bcrypt work. Per IP slows one
	// client guessing many accounts; the per-username limits slow many
	// clients (a botnet) guessing one account, without letting them lock
	// the user out (see Limits). The IP is taken from X-Forwarded-For only
	// when the socket peer is a trusted proxy, so a client cannot get a
	// fresh quota by writing the header itself.
	if e, outcome := is.limit(ctx, endpointLogin, keyIP, limitKey(ip), is.limits.LoginPerIP); e != nil {
		return nil, e, outcome, reasonFor(outcome, reasonLimitIP)
	}
	set := is.users.Load()
	u, found := set.Lookup(name)
	attempt, e, outcome, reason := is.admitLogin(ctx, name, found, ip)
	if e != nil {
		return nil, e, outcome, reason
	}
	// notChecked answers an admitted attempt whose password was never
	// checked: it was no guess, so its charge is refunded.
	notChecked := func(reason string) (*users.User, *oauthError, string, string) {
		_ = is.settleLogin(ctx, attempt, state.LoginNotChecked) // a lost refund only errs strict
		return nil, unavailable(retryBcryptBusy), outcomeUnavailable, reason
	}

	if !is.acquire(ctx) {
		// A login flood must queue here, not on every CPU: bcrypt is
		// deliberately slow and would starve proxied traffic.
		return notChecked(reasonBcryptBusy)
	}
	dummy, err := is.dummyFor(set.MaxCost())
	if err != nil {
		is.release()
		return notChecked(reasonBcryptBusy)
	}
	hash := dummy
	reason = ""
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
	settled := state.LoginSucceeded
	if reason != "" {
		settled = state.LoginFailed
	}
	if err := is.settleLogin(ctx, attempt, settled); err != nil {
		// Fail closed either way: a failure that is not counted would be
		// a free guess, and success and failure answer alike here.
		return nil, unavailable(retryStateUnavailable), outcomeUnavailable, reasonStateUnavailable
	}
	if reason != "" {
		return nil, invalidGrant(descInvalidCredentials), outcomeFailure, reason
	}

	if e := is.awaitValidFrom(ctx, u); e != nil {
		return nil, e, outcomeUnavailable, reasonTokensRevoked
	}
	return u, nil, "", ""
}
