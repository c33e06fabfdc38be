package proxy

import (
	"net/http"
	"strings"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/policy"
)

// policyRequest is what snap decides for (method, canon) from caller p:
// the principal's credential fields and, only when some rule reads them,
// the canonical host and the client address behind trusted proxies (both
// cost a parse). The host is the request's Host (the authority the
// upstream serves), never X-Forwarded-Host from the client; a forward-auth
// check passes the original host it read from its ingress as host.
func (g *Gateway) policyRequest(r *http.Request, method, canon string, p authn.Principal, ok bool, snap *policy.Set, fwdHost string) policy.Request {
	req := policy.Request{Method: method, Path: canon, Authenticated: ok}
	if ok {
		req.Roles, req.Subject, req.Issuer, req.KeyName = p.Roles, p.Subject, p.Issuer, p.KeyName
		req.AuthMethod = string(p.Method)
		req.Claims, req.Scopes, req.Email = p.Claims, p.Scopes, p.Email
	}
	if snap.NeedsHost() || g.o.ShadowPolicy != nil {
		host := r.Host
		if fwdHost != "" {
			host = fwdHost
		}
		req.Host = policy.CanonicalHost(host)
	}
	if snap.NeedsClientAddr() || g.o.ShadowPolicy != nil {
		req.ClientAddr = g.o.Trusted.ClientIP(r)
	}
	return req
}

// forwardedHost returns the original request's host of a forward-auth
// check, which comes from a trusted ingress: X-Forwarded-Host (Traefik,
// Envoy, ingress-nginx), else the host of X-Original-URL (ingress-nginx),
// else "".
func forwardedHost(r *http.Request) string {
	if h := r.Header.Get("X-Forwarded-Host"); h != "" {
		return h
	}
	ourl := r.Header.Get("X-Original-Url")
	for _, scheme := range []string{"https://", "http://"} {
		if rest, ok := strings.CutPrefix(ourl, scheme); ok {
			host, _, _ := strings.Cut(rest, "/")
			return host
		}
	}
	return ""
}

// denyCode is the answer to a denied decision: 401 when an anonymous
// caller could be admitted by authenticating (no rule, or a rule that
// needs an identity), 403 otherwise, since a deny rule or a condition on
// the request refuses whoever asks.
func denyCode(d policy.Decision, authenticated bool) int {
	if !authenticated && (d.Reason == policy.ReasonDenyNoRule || d.Reason == policy.ReasonDenyUnauthenticated) {
		return http.StatusUnauthorized
	}
	return http.StatusForbidden
}
