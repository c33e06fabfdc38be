package proxy

import (
	"net/http"
	"strings"

	"github.com/authgate/authgate/policy"
)

// preflightOutcome is what the gateway did with a possible CORS preflight.
type preflightOutcome uint8

const (
	notPreflight      preflightOutcome = iota // decide the request as usual
	preflightAnswered                         // answered (204 or 403)
	preflightForward                          // forward without credentials
)

// preflight answers a CORS preflight (OPTIONS with Origin and
// Access-Control-Request-Method) for a path whose rule, or the policy,
// has a cors block. Browsers send preflights without credentials, so
// deciding one like the request it announces would answer 401 and break
// every cross-origin call; it is answered here instead, from the CORS
// policy of the rule that will decide the real request, which is still
// authorized on its own when it comes. A path without CORS is decided as
// usual.
func (g *Gateway) preflight(w *statusWriter, r *http.Request, st *reqState, canon string) preflightOutcome {
	origin, method := r.Header.Get("Origin"), r.Header.Get("Access-Control-Request-Method")
	if r.Method != http.MethodOptions || origin == "" || method == "" {
		return notPreflight
	}
	snap := g.o.Policy.Load()
	if snap == nil || !policy.ValidMethod(method) {
		return notPreflight
	}
	c := snap.CORSFor(canon, method)
	if c == nil {
		return notPreflight
	}
	st.snapshot, st.cors = snap, c
	reqHeaders := strings.Join(r.Header.Values("Access-Control-Request-Headers"), ",")
	if !c.AllowsOrigin(origin) || !c.AllowsMethod(method) || !c.AllowsHeaders(reqHeaders) {
		g.reject(w, st, ReasonCORSRefused, &Error{Code: http.StatusForbidden, Msg: "cross-origin request not allowed"})
		return preflightAnswered
	}
	if c.ForwardPreflight {
		// Forwarded unauthenticated, so it goes without credentials too:
		// a browser sends none, and one a client added was never checked
		// (forward_authorization would otherwise pass a forged token).
		for _, k := range []string{"Authorization", "Cookie", g.o.APIKeyHeader} {
			r.Header.Del(k)
		}
		st.decision, st.reason = DecisionAllow, ReasonCORSPreflight
		return preflightForward
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	h.Add("Vary", "Access-Control-Request-Method")
	h.Add("Vary", "Access-Control-Request-Headers")
	h.Set("Access-Control-Allow-Methods", c.AllowMethodsValue())
	if reqHeaders != "" {
		// Only headers AllowsHeaders accepted are echoed.
		h.Set("Access-Control-Allow-Headers", reqHeaders)
	}
	if c.Credentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	if v := c.MaxAgeValue(); v != "" {
		h.Set("Access-Control-Max-Age", v)
	}
	h.Set("Cache-Control", "no-store")
	st.decision, st.reason = DecisionAllow, ReasonCORSPreflight
	g.bound(w)
	w.WriteHeader(http.StatusNoContent)
	return preflightAnswered
}

// corsHeaders adds the CORS response headers of an actual cross-origin
// request whose origin c allows, to gateway answers and (via
// modifyResponse) upstream answers alike, so a page can read a 401 or a
// 429 too. It reports whether c applies to the request, in which case the
// upstream's own Access-Control-* headers are replaced.
func corsHeaders(h http.Header, r *http.Request, c *policy.CORS) bool {
	if c == nil {
		return false
	}
	origin := r.Header.Get("Origin")
	h.Add("Vary", "Origin")
	if !c.AllowsOrigin(origin) {
		return true
	}
	h.Set("Access-Control-Allow-Origin", origin)
	if c.Credentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	if v := c.ExposeHeadersValue(); v != "" {
		h.Set("Access-Control-Expose-Headers", v)
	}
	return true
}

// dropUpstreamCORS removes the upstream's Access-Control-* headers from
// an answer whose CORS the gateway owns: two Allow-Origin values make
// browsers refuse the answer, and an upstream's "*" must not widen the
// policy's list.
func dropUpstreamCORS(h http.Header) {
	for k := range h {
		if strings.HasPrefix(k, "Access-Control-") {
			delete(h, k)
		}
	}
}
