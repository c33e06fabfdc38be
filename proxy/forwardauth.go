package proxy

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/authgate/authgate/internal/clientip"
	"github.com/authgate/authgate/internal/logsafe"
	"github.com/authgate/authgate/policy"
)

// The headers an ingress uses to describe the original request on a
// forward-auth check. nginx auth_request sets the X-Original family with
// proxy_set_header; Traefik's ForwardAuth middleware sets the X-Forwarded
// family itself.
const (
	hdrOriginalMethod  = "X-Original-Method"
	hdrOriginalURI     = "X-Original-Uri"
	hdrForwardedMethod = "X-Forwarded-Method"
	hdrForwardedURI    = "X-Forwarded-Uri"
	// nginx does not pass Upgrade, Content-Length or Transfer-Encoding to
	// an auth subrequest (it sets its own), so the README snippet copies
	// them into these.
	hdrOriginalUpgrade          = "X-Original-Upgrade"
	hdrOriginalContentLength    = "X-Original-Content-Length"
	hdrOriginalTransferEncoding = "X-Original-Transfer-Encoding"
	// hdrReason names why a check was refused, from a closed set.
	hdrReason = "X-Authgate-Reason"
)

// ForwardAuthOptions configure the decision endpoint returned by
// Gateway.ForwardAuth. The zero value trusts no peer, so the endpoint it
// yields refuses every check with 403: it fails closed.
type ForwardAuthOptions struct {
	// TrustedPeers are the ingress controllers whose X-Original-* and
	// X-Forwarded-Method/-Uri/-Host headers describe the original request.
	// It must not be empty: believing those headers from anyone lets a
	// client name a public URI while requesting a protected one
	// (oauth2-proxy GHSA-7x63-xv5r-3p2x). Checks from other peers get 403
	// and are logged as security events.
	TrustedPeers clientip.Trusted
	// EnvoyPrefix, when non-empty, enables Envoy ext_authz HTTP mode for
	// request paths under it: the check request carries the original
	// method, EnvoyPrefix followed by the original path and query, and the
	// original headers; the prefix is stripped before deciding, and the
	// X-Original-* and X-Forwarded-Method/-Uri headers are ignored. "/"
	// makes every check an Envoy check. A prefix that does not start with
	// "/" never matches.
	EnvoyPrefix string
}

// forwardAuth is the decision endpoint. It is immutable and safe for
// concurrent use.
type forwardAuth struct {
	g        *Gateway
	peers    clientip.Trusted
	envoy    bool
	envoyPfx string // EnvoyPrefix without trailing slashes
	// exact are the reserved headers a check may carry in this exact
	// spelling, because the ingress overwrites them for the app (the
	// identity headers and the request id) or sets them itself (the
	// original method and URI).
	exact map[string]struct{}
}

// ForwardAuth returns the forward-auth decision endpoint for nginx
// auth_request, Traefik ForwardAuth and Envoy ext_authz (HTTP service). It
// takes the original method and URI from the ingress, canonicalizes the URI,
// authenticates the credentials the check request carries and decides
// exactly as the proxy does. An allowed request gets 200 with an empty body
// and the identity headers and X-Request-Id on the response, for the ingress
// to copy upstream; a denied one gets the proxy's JSON 401 (with
// WWW-Authenticate) or 403. Malformed or ambiguous checks get 400, and a
// disallowed method 403; none is ever 200.
//
// The handler may be mounted at any path; it ignores its own request path
// except for the Envoy prefix. It is safe for concurrent use.
func (g *Gateway) ForwardAuth(o ForwardAuthOptions) http.Handler {
	fa := &forwardAuth{g: g, peers: o.TrustedPeers, exact: map[string]struct{}{
		// X-Original-Url is checked against the original uri instead.
		hdrOriginalURI: {}, hdrForwardedURI: {}, "X-Original-Url": {}, g.o.RequestIDHeader: {},
	}}
	for _, k := range g.identity {
		fa.exact[k] = struct{}{}
	}
	if o.EnvoyPrefix != "" {
		fa.envoy = true
		fa.envoyPfx = strings.TrimRight(o.EnvoyPrefix, "/")
		if !strings.HasPrefix(o.EnvoyPrefix, "/") {
			// A relative prefix cannot be a request path: never match.
			fa.envoy = false
		}
	}
	return fa
}

// ServeHTTP implements http.Handler.
func (fa *forwardAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// A decision is about one request and one credential; no cache between
	// the ingress and the gateway may replay it for another.
	w.Header().Set("Cache-Control", "no-store")
	fa.g.track(w, r, fa.serve)
}

func (fa *forwardAuth) serve(w *statusWriter, r *http.Request, st *reqState) {
	g := fa.g
	// Every check is answered by the gateway itself: it has the
	// whole-request deadline, and a body (which a check never needs) is
	// never waited for.
	g.bound(w)
	if hasBody(r) {
		w.body = newBodyState(r.Body, w)
		r.Body = w.body
	}
	if !fa.peers.PeerTrusted(r) {
		// The original method and URI are headers here. Believed from any
		// peer, they let a client that reaches this endpoint directly (or
		// through a path that does not overwrite them) have a public URI
		// authorized while it requests a protected one: GHSA-7x63-xv5r-3p2x.
		st.security = true
		fa.refuse(w, st, ReasonUntrustedPeer, &Error{Code: http.StatusForbidden, Msg: "forward-auth checks are answered to trusted proxies only"})
		return
	}

	method, target, envoy, e := fa.original(r)
	if e != nil {
		st.security = true
		fa.refuse(w, st, ReasonBadForwardHeaders, e)
		return
	}
	st.method = method

	var u *url.URL
	if envoy {
		u = r.URL
	} else {
		// Parsed as the server parses a request line, so the decision sees
		// the same path the proxy would. Only origin-form is accepted: an
		// absolute URI would let a host we do not route stand in for ours.
		if !strings.HasPrefix(target, "/") {
			fa.refuse(w, st, ReasonBadRequest, &Error{Code: http.StatusBadRequest, Msg: "original uri must be an absolute path"})
			return
		}
		var err error
		u, err = url.ParseRequestURI(target)
		if err != nil {
			fa.refuse(w, st, ReasonBadRequest, &Error{Code: http.StatusBadRequest, Msg: "malformed original uri", Err: err})
			return
		}
	}
	// The original request as the proxy would have received it, checked by
	// the proxy's own rules (method allow-list, request target, upgrade,
	// content on methods without body semantics).
	orig := *r
	orig.Method, orig.URL = method, u
	orig.Header, e = fa.originalHeader(r, envoy)
	if e != nil {
		fa.refuse(w, st, ReasonBadForwardHeaders, e)
		return
	}
	if reason, e := checkRequest(&orig); e != nil {
		fa.refuse(w, st, reason, e)
		return
	}
	f := framingOf(r)
	if !envoy {
		// The check itself carries no body: the framing is the one the
		// ingress describes. Envoy's check request keeps the original
		// method and headers, and its own framing is that of the check.
		if f, e = originalFraming(r.Header); e != nil {
			fa.refuse(w, st, ReasonBadForwardHeaders, e)
			return
		}
	}
	// The ingress forwards the body to the app on a connection it may
	// reuse: a body the app ignores would be its next request, never
	// checked here. An allowed one is the ingress's to close (nginx does
	// unless an upstream keepalive is configured).
	if _, e := g.bodies.check(method, f, len(orig.Header["Upgrade"]) > 0); e != nil {
		fa.refuse(w, st, ReasonBodyNotAllowed, e)
		return
	}
	if ourl, ok, bad := oneHeader(r.Header, "X-Original-Url"); bad || (ok && !sameTarget(ourl, target, envoy, r)) {
		// ingress-nginx sets X-Original-URL to the full original URL on
		// every check, so it cannot be refused outright; a client-written
		// one that names another target would route Symfony, Zend or IIS
		// URL Rewrite apps there (CVE-2018-14773).
		st.security = true
		fa.refuse(w, st, ReasonReservedHeader, &Error{Code: http.StatusForbidden, Msg: "request carries a reserved header", Err: errors.New("proxy: X-Original-Url disagrees with the original uri")})
		return
	}
	if name, bad := fa.unsafeHeader(r.Header); bad {
		// The ingress forwards the client's headers to the app; only the
		// ones it overwrites with this answer are safe. Another spelling
		// of an identity header, another proxy's identity header or a
		// method/path override would reach the app as the client wrote
		// it, so the request is refused instead.
		st.security = true
		fa.refuse(w, st, ReasonReservedHeader, &Error{Code: http.StatusForbidden, Msg: "request carries a reserved header", Err: errors.New("proxy: reserved header " + logsafe.String(name))})
		return
	}
	escaped := u.EscapedPath()
	if envoy {
		target = r.RequestURI
	}
	if rawPath, _, _ := strings.Cut(target, "?"); rawPath != escaped {
		// The ingress forwards the raw target, not our reading of it. A
		// target Go re-encodes to parse ("#", "\", spaces, invalid
		// escapes) would be decided in one form and served in another.
		fa.refuse(w, st, ReasonBadPath, &Error{Code: http.StatusBadRequest, Msg: "malformed request path"})
		return
	}
	if envoy {
		escaped = strings.TrimPrefix(escaped, fa.envoyPfx)
	}
	canon, err := policy.Canonicalize(escaped)
	if err != nil {
		// nginx's $request_uri is the client's raw target, and the ingress
		// may forward either that or its own normalized form. Ambiguous paths (encoded dots or slashes, backslashes,
		// ";", NUL, double encoding) are refused rather than guessed, so
		// no normalization the ingress or the upstream applies can reach a
		// path other than the one decided.
		fa.refuse(w, st, ReasonBadPath, &Error{Code: http.StatusBadRequest, Msg: "malformed request path", Err: err})
		return
	}
	st.canon = canon

	// The check carries the client's headers: remove identity headers and
	// the request id before authenticating, as the proxy does. The peer is
	// a trusted proxy, so its X-Forwarded-* headers stay.
	g.strip.strip(r.Header, trustedPeer)
	r.Header.Set(g.o.RequestIDHeader, st.requestID)

	st.host = forwardedHost(r)
	p, e := g.decide(r, method, canon, st)
	st.principal = p
	if e != nil {
		if m := forIngress(e); m != e {
			// An unnamed method (405) or two credentials (400): a refusal
			// of the request's form, not a policy decision.
			w.Header().Set(hdrReason, string(st.reason))
			e = m
		}
		WriteError(w, st.requestID, e)
		return
	}
	h := w.Header()
	g.setIdentity(h, p, nil)
	if envoy {
		// Envoy's allowed_upstream_headers overwrite the client's copies
		// only for headers present on this response, and Traefik and nginx
		// clear absent ones themselves. Send every identity header, empty
		// when unknown, so a client-written X-Auth-Subject on a public
		// path cannot reach the upstream through Envoy.
		for _, k := range g.identity {
			if _, ok := h[k]; !ok {
				h[k] = []string{""}
			}
		}
	}
	w.WriteHeader(http.StatusOK)
}

// originalHeader returns the headers of the original request that
// checkRequest reads: Upgrade, which nginx never passes to an auth
// subrequest, so its snippet copies $http_upgrade into
// X-Original-Upgrade. A check carrying both, disagreeing, is refused.
func (fa *forwardAuth) originalHeader(r *http.Request, envoy bool) (http.Header, *Error) {
	h := http.Header{}
	if up, ok := r.Header["Upgrade"]; ok {
		h["Upgrade"] = up
	}
	if envoy {
		return h, nil
	}
	ou, ok, bad := oneHeader(r.Header, hdrOriginalUpgrade)
	switch {
	case bad:
		return nil, &Error{Code: http.StatusBadRequest, Msg: "forward-auth headers must appear once and not be empty"}
	case !ok:
		return h, nil
	}
	if up, dup := h["Upgrade"]; dup && (len(up) != 1 || up[0] != ou) {
		return nil, &Error{Code: http.StatusBadRequest, Msg: "conflicting original upgrade"}
	}
	h["Upgrade"] = []string{ou}
	return h, nil
}

// unsafeHeader returns the first header of a check that would reach the
// app as the client wrote it although the proxy would remove it: the
// ingress overwrites only the identity headers and X-Request-Id in their
// exact spelling (Traefik and Envoy pass "X_Auth_Subject" on, and CGI,
// WSGI and PHP stacks read it as X-Auth-Subject), and nothing else.
func (fa *forwardAuth) unsafeHeader(h http.Header) (string, bool) {
	for k := range h {
		for _, n := range fa.g.strip.always {
			if !sameHeader(k, n) {
				continue
			}
			if _, own := fa.exact[k]; !own {
				return k, true
			}
		}
		if fa.g.strip.prefixed(k) && k != "X-Auth-Request-Redirect" {
			// oauth2-proxy's redirect target, which ingress-nginx sets on
			// every check: not an identity.
			return k, true
		}
	}
	return "", false
}

// sameTarget reports whether the absolute URL ourl (X-Original-URL, as
// ingress-nginx sets it: scheme://host/path?query) names the request
// target being decided.
func sameTarget(ourl, target string, envoy bool, r *http.Request) bool {
	if envoy {
		target = r.RequestURI
	}
	rest, ok := strings.CutPrefix(ourl, "http://")
	if !ok {
		if rest, ok = strings.CutPrefix(ourl, "https://"); !ok {
			return false
		}
	}
	i := strings.IndexByte(rest, '/')
	return i >= 0 && rest[i:] == target
}

// refuse answers a check whose original request is refused before any
// policy decision, with the reason in X-Authgate-Reason.
func (fa *forwardAuth) refuse(w *statusWriter, st *reqState, reason Reason, e *Error) {
	w.Header().Set(hdrReason, string(reason))
	fa.g.reject(w, st, reason, forIngress(e))
}

// forIngress returns the answer an ingress turns into the same client
// error. nginx auth_request passes 401 and 403 to the client and turns
// every other status into 500, so a malformed path, an unnamed method, a
// body, an upgrade or a bad forward-auth header would look like a server
// failure; Traefik and Envoy pass any status through. Every client error
// is therefore 401 or 403 (the reason travels in X-Authgate-Reason); 5xx
// stays 5xx, since the gateway could not decide. A challenge belongs to
// 401 only.
func forIngress(e *Error) *Error {
	if e.Code == http.StatusUnauthorized || e.Code == http.StatusForbidden || e.Code >= 500 {
		return e
	}
	return &Error{Code: http.StatusForbidden, Msg: e.Msg, Err: e.Err}
}

// original returns the method and request target of the request being
// checked, and whether it came in Envoy form.
//
// In Envoy form they are the check request's own. Otherwise they come from
// the X-Original-Method/-URI pair (nginx) or the X-Forwarded-Method/-Uri
// pair (Traefik). Each header may appear once; a pair must be complete; if
// both pairs are present they must agree. A proxy overwrites the pair it
// sets but passes the other through from the client, so a disagreement is
// a client trying to describe a different request: it is refused, never
// resolved in either direction.
func (fa *forwardAuth) original(r *http.Request) (method, target string, envoy bool, e *Error) {
	if fa.envoy {
		if rest, ok := strings.CutPrefix(r.URL.EscapedPath(), fa.envoyPfx); ok && strings.HasPrefix(rest, "/") {
			return r.Method, "", true, nil
		}
	}
	bad := func(msg string) (string, string, bool, *Error) {
		return "", "", false, &Error{Code: http.StatusBadRequest, Msg: msg}
	}
	om, omOK, err1 := oneHeader(r.Header, hdrOriginalMethod)
	ou, ouOK, err2 := oneHeader(r.Header, hdrOriginalURI)
	fm, fmOK, err3 := oneHeader(r.Header, hdrForwardedMethod)
	fu, fuOK, err4 := oneHeader(r.Header, hdrForwardedURI)
	if err1 || err2 || err3 || err4 {
		return bad("forward-auth headers must appear once and not be empty")
	}
	nginx, traefik := omOK || ouOK, fmOK || fuOK
	switch {
	case !nginx && !traefik:
		return bad("missing original method and uri")
	case nginx && !(omOK && ouOK), traefik && !(fmOK && fuOK):
		// A half-set pair means the proxy sets one header and the client
		// may supply the other: refuse it so the misconfiguration shows.
		return bad("incomplete original method and uri")
	case nginx && traefik && (om != fm || ou != fu):
		return bad("conflicting original method or uri")
	case nginx:
		return om, ou, false, nil
	}
	return fm, fu, false, nil
}

// oneHeader returns the value of header k. present reports whether it was
// sent; bad whether it was sent more than once or empty.
func oneHeader(h http.Header, k string) (v string, present, bad bool) {
	vs := h[k]
	switch {
	case len(vs) == 0:
		return "", false, false
	case len(vs) > 1 || vs[0] == "":
		return "", true, true
	}
	return vs[0], true, false
}
