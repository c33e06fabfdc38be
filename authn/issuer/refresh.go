package issuer

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/authn/state"
	"github.com/authgate/authgate/authn/token"
	"github.com/authgate/authgate/authn/users"
)

const descInvalidRefresh = "refresh token is invalid, expired or revoked"

// bindingReason maps a token verification failure to an audit reason.
func bindingReason(err error) string {
	switch {
	case errors.Is(err, authn.ErrUnavailable):
		return reasonStateUnavailable
	case errors.Is(err, users.ErrStale):
		return reasonCredsChanged
	case errors.Is(err, users.ErrDisabled):
		return reasonDisabled
	case errors.Is(err, users.ErrRevoked):
		return reasonTokensRevoked
	case errors.Is(err, users.ErrUnknownUser), errors.Is(err, users.ErrNotService):
		return reasonUnknownUser
	}
	return reasonInvalidToken
}

// refusal is the answer to a refresh token that fails verification: 503
// while the user's standing cannot be confirmed (the client keeps its
// token and retries), invalid_grant otherwise.
func refusal(err error) (outcome string, e *oauthError) {
	if errors.Is(err, authn.ErrUnavailable) {
		return outcomeUnavailable, unavailable(retryStateUnavailable)
	}
	return outcomeFailure, invalidGrant(descInvalidRefresh)
}

// currentUser returns the user a refresh token was minted for, if the token
// is still bound to the user's current credentials. It checks the binding
// itself even when the Verifier already did, so a Verifier built without
// the users store cannot extend a token past a password change.
func (is *Issuer) currentUser(ctx context.Context, c *token.Claims) (*users.User, error) {
	if c.Ver == "" {
		// Refresh tokens are minted for users only; a service token has
		// no credentials to re-check.
		return nil, users.ErrNotService
	}
	if err := is.users.CheckBinding(ctx, c); err != nil {
		return nil, err
	}
	u, ok := is.users.Load().Lookup(c.Subject)
	if !ok {
		return nil, users.ErrUnknownUser
	}
	return u, nil
}

func (is *Issuer) serveRefresh(w http.ResponseWriter, r *http.Request) {
	ip := is.trusted.ClientIP(r)
	fail := func(subject, outcome, reason string, e *oauthError) {
		is.m.refreshes.WithLabelValues(outcome).Inc()
		is.audit(r, auditEntry{event: eventRefresh, who: "subject", name: subject, ip: ip, outcome: outcome, reason: reason})
		writeError(w, e)
	}
	p, oe := is.readParams(w, r)
	if oe != nil {
		fail("", outcomeFailure, reasonInvalidRequest, oe)
		return
	}
	switch p["grant_type"] {
	case "refresh_token":
	case "":
		fail("", outcomeFailure, reasonInvalidRequest, badRequest("grant_type refresh_token is required"))
		return
	default:
		fail("", outcomeFailure, reasonUnsupportedGrant, &oauthError{Code: http.StatusBadRequest,
			OAuth: codeUnsupportedGrantType, Msg: "grant_type must be refresh_token"})
		return
	}
	raw := p["refresh_token"]
	if raw == "" {
		fail("", outcomeFailure, reasonInvalidRequest, badRequest("refresh_token is required"))
		return
	}
	ctx := r.Context()
	if e, outcome := is.limit(ctx, endpointRefresh, keyIP, limitKey(ip), is.limits.RefreshPerIP); e != nil {
		fail("", outcome, reasonFor(outcome, reasonLimitIP), e)
		return
	}
	// Parse with TypeRefresh: an access token presented here is refused
	// (token-type confusion).
	c, err := is.verifier.Parse(ctx, raw, token.TypeRefresh)
	if err != nil {
		outcome, e := refusal(err)
		fail("", outcome, bindingReason(err), e)
		return
	}
	u, err := is.currentUser(ctx, c)
	if err != nil {
		outcome, e := refusal(err)
		fail(c.Subject, outcome, bindingReason(err), e)
		return
	}
	// A session has an absolute end: rotation renews the refresh token,
	// never the login it descends from (OWASP absolute session timeout).
	authTime, ok := sessionStart(c)
	if !ok || !is.now().Before(authTime.Add(is.refreshMaxAge)) {
		fail(c.Subject, outcomeFailure, reasonSessionExpired, invalidGrant(descInvalidRefresh))
		return
	}
	if e := is.awaitValidFrom(ctx, u); e != nil {
		fail(c.Subject, outcomeUnavailable, reasonTokensRevoked, e)
		return
	}
	// Roles come from the current users file, so a role change applies at
	// the next refresh.
	resp, rc, err := is.mintPair(u, c.Family, authTime)
	if err != nil {
		fail(c.Subject, outcomeUnavailable, reasonMintFailed, unavailable(retryStateUnavailable))
		return
	}
	sctx, cancel := is.stateCtx(ctx)
	err = is.state.Rotate(sctx, c.Family, c.ID, rc.ID, rc.ExpiresAt.Time)
	cancel()
	switch {
	case err == nil:
	case errors.Is(err, state.ErrReuse):
		// A rotated refresh token came back: the legitimate client or a
		// thief holds a copy (token theft). The store has revoked the
		// whole family; this is a security event.
		is.m.reuse.Inc()
		is.m.refreshes.WithLabelValues(outcomeReuse).Inc()
		is.audit(r, auditEntry{event: eventReuse, who: "subject", name: c.Subject, ip: ip, outcome: outcomeReuse, reason: reasonReuse, family: c.Family})
		writeError(w, invalidGrant(descInvalidRefresh))
		return
	case errors.Is(err, state.ErrRevoked):
		fail(c.Subject, outcomeFailure, reasonRevoked, invalidGrant(descInvalidRefresh))
		return
	default:
		// Any other store failure fails closed.
		fail(c.Subject, outcomeUnavailable, reasonStateUnavailable, unavailable(retryStateUnavailable))
		return
	}
	is.m.refreshes.WithLabelValues(outcomeSuccess).Inc()
	is.audit(r, auditEntry{event: eventRefresh, who: "subject", name: c.Subject, ip: ip, outcome: outcomeSuccess})
	writeJSON(w, http.StatusOK, resp)
}

type logoutResponse struct {
	Status string `json:"status"`
}

// serveLogout revokes the family of the presented refresh token (and with
// it, where access tokens are checked against the revocation list, every
// access token of the session) and, when an access token is sent as a
// bearer credential, that token too. Tokens are checked for signature,
// type and expiry but not against the user's current standing: a logout
// while the user is disabled, deleted or has a new password still revokes,
// or re-enabling the user would bring the session back. As in RFC 7009
// §2.2, a token that does not verify (forged, expired) is answered 200:
// there is nothing left to revoke, and the answer does not tell a prober
// which tokens are live.
func (is *Issuer) serveLogout(w http.ResponseWriter, r *http.Request) {
	ip := is.trusted.ClientIP(r)
	fail := func(subject, outcome, reason string, e *oauthError) {
		is.m.logouts.WithLabelValues(outcome).Inc()
		is.audit(r, auditEntry{event: eventLogout, who: "subject", name: subject, ip: ip, outcome: outcome, reason: reason})
		writeError(w, e)
	}
	p, oe := is.readParams(w, r)
	if oe != nil {
		fail("", outcomeFailure, reasonInvalidRequest, oe)
		return
	}
	raw := p["refresh_token"]
	if raw == "" {
		fail("", outcomeFailure, reasonInvalidRequest, badRequest("refresh_token is required"))
		return
	}
	ctx := r.Context()
	if e, outcome := is.limit(ctx, endpointLogout, keyIP, limitKey(ip), is.limits.RefreshPerIP); e != nil {
		fail("", outcome, reasonFor(outcome, reasonLimitIP), e)
		return
	}
	subject, reason := "", ""
	if c, err := is.verifier.ParseUnbound(raw, token.TypeRefresh); err != nil {
		reason = reasonInvalidToken
	} else {
		subject = c.Subject
		sctx, cancel := is.stateCtx(ctx)
		err := is.state.RevokeFamily(sctx, c.Family, c.ExpiresAt.Time)
		cancel()
		if err != nil {
			fail(subject, outcomeUnavailable, reasonStateUnavailable, unavailable(retryStateUnavailable))
			return
		}
	}
	if bearer, ok := bearerToken(r); ok {
		// Holding an access token is the right to revoke it.
		if c, err := is.verifier.ParseUnbound(bearer, token.TypeAccess); err == nil {
			sctx, cancel := is.stateCtx(ctx)
			err := is.state.Revoke(sctx, c.ID, c.ExpiresAt.Time)
			cancel()
			if err != nil {
				fail(c.Subject, outcomeUnavailable, reasonStateUnavailable, unavailable(retryStateUnavailable))
				return
			}
			if subject == "" {
				subject = c.Subject
			}
		}
	}
	is.m.logouts.WithLabelValues(outcomeSuccess).Inc()
	is.audit(r, auditEntry{event: eventLogout, who: "subject", name: subject, ip: ip, outcome: outcomeSuccess, reason: reason})
	writeJSON(w, http.StatusOK, logoutResponse{Status: "logged_out"})
}

// bearerToken returns the token of a single "Authorization: Bearer" header.
func bearerToken(r *http.Request) (string, bool) {
	vals := r.Header.Values("Authorization")
	if len(vals) != 1 {
		return "", false
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}
