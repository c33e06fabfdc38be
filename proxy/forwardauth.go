package proxy

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/authgate/authgate/internal/clientip"
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
	fa := &forwardAuth{g: g, peers: o.TrustedPeers}
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

func (fa *forwardAuth) serve(w *statusWriter, r *http.Request, st *reqState, ev *event) {
	g := fa.g
	// Every check is answered by the gateway itself: it has the
	// whole-request deadline, and a body (which a check never needs) is
	// never waited for.
	g.bound(w)
	if hasBody(r) {
		st.body.ReadCloser, st.body.dl = r.Body, w.dl
		r.Body, w.body = &st.body, &st.body
	}
	if !fa.peers.PeerTrusted(r) {
		// The original method and URI are headers here. Believed from any
		// peer, they let a client that reaches this endpoint directly (or
		// through a path that does not overwrite them) have a public URI
		// authorized while it requests a protected one: GHSA-7x63-xv5r-3p2x.
		ev.security = true
		g.reject(w, st, ev, "untrusted_peer", &Error{Code: http.StatusForbidden, Msg: "forward-auth checks are answered to trusted proxies only"})
		return
	}

	method, target, envoy, e := fa.original(r)
	if e != nil {
		ev.security = true
		g.reject(w, st, ev, "bad_forward_headers", e)
		return
	}
	ev.method = method

	var u *url.URL
	if envoy {
		u = r.URL
	} else {
		// Parsed as the server parses a request line, so the decision sees
		// the same path the proxy would. Only origin-form is accepted: an
		// absolute URI would let a host we do not route stand in for ours.
		if !strings.HasPrefix(target, "/") {
			g.reject(w, st, ev, "bad_request", &Error{Code: http.StatusBadRequest, Msg: "original uri must be an absolute path"})
			return
		}
		var err error
		u, err = url.ParseRequestURI(target)
		if err != nil {
			g.reject(w, st, ev, "bad_request", &Error{Code: http.StatusBadRequest, Msg: "malformed original uri", Err: err})
			return
		}
	}
	// The original request as the proxy would have received it, checked by
	// the proxy's own rules (method allow-list, request target, upgrade).
	orig := *r
	orig.Method, orig.URL = method, u
	if e := checkRequest(&orig); e != nil {
		if e.Code == http.StatusMethodNotAllowed {
			// nginx passes only 401 and 403 through (anything else
			// becomes 500), and 405 would describe this endpoint, not the
			// original resource: refuse with 403.
			e = &Error{Code: http.StatusForbidden, Msg: e.Msg, Err: e.Err}
		}
		g.reject(w, st, ev, "bad_request", e)
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
		g.reject(w, st, ev, "bad_path", &Error{Code: http.StatusBadRequest, Msg: "malformed request path"})
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
		g.reject(w, st, ev, "bad_path", &Error{Code: http.StatusBadRequest, Msg: "malformed request path", Err: err})
		return
	}
	st.canon = canon

	// The check carries the client's headers: remove identity headers and
	// the request id before authenticating, as the proxy does. The peer is
	// a trusted proxy, so its X-Forwarded-* headers stay.
	g.strip.strip(r.Header, true)
	r.Header.Set(g.o.RequestIDHeader, st.requestID)

	p, e := g.decide(r, method, canon, ev)
	st.principal = p
	if e != nil {
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
		for _, k := range g.headers.names() {
			if _, ok := h[k]; !ok {
				h[k] = []string{""}
			}
		}
	}
	w.WriteHeader(http.StatusOK)
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
