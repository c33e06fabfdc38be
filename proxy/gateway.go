// Package proxy joins authentication and policy around an
// httputil.ReverseProxy. One request passes through these steps, in order:
// request id, method and target checks, path canonicalization (or 400),
// stripping of reserved headers, authentication (a bad credential is 401,
// never anonymous), one policy snapshot and one decision (401 anonymous,
// 403 authenticated), and forwarding by Rewrite, which sets the identity
// headers and forwards exactly the canonical path that was authorized.
package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/internal/clientip"
	"github.com/authgate/authgate/internal/logsafe"
	"github.com/authgate/authgate/policy"
)

// Options configure a Gateway. Upstream, Policy and Authenticator are
// required; every other field has a documented default.
type Options struct {
	// Upstream is the one upstream URL (scheme, host and optional base
	// path). Nil means there is no upstream (forward-auth mode): gateway
	// endpoints are served and every other request gets 404.
	Upstream *url.URL
	// PreserveHost forwards the client's Host header (the default in the
	// config file). When false the upstream URL's host is sent.
	PreserveHost bool
	// ForwardAuthorization forwards the client's Authorization header.
	// Off by default: the upstream should trust the identity headers, not
	// re-validate a token it may log.
	ForwardAuthorization bool
	// Trusted are the proxies whose X-Forwarded-* headers are believed.
	Trusted clientip.Trusted
	// Headers names the identity headers; empty fields take defaults.
	Headers IdentityHeaders
	// APIKeyHeader is the API key header, never forwarded; default X-API-Key.
	APIKeyHeader string
	// RequestIDHeader carries the request id both ways; default X-Request-Id.
	RequestIDHeader string
	// Transport sends requests upstream; nil means NewTransport(TransportOptions{}).
	Transport http.RoundTripper
	// Policy holds the current compiled policy.
	Policy *policy.Store
	// ShadowPolicy, if set and loaded, is a candidate policy decided beside
	// the enforced one: disagreements are logged and counted, never
	// enforced. It takes the place of the enforced policy's shadow rules.
	ShadowPolicy *policy.Store
	// Authenticator identifies the caller.
	Authenticator authn.Authenticator
	// Owned are gateway endpoints (login, refresh, logout, the published
	// keys) by exact canonical path. They are served before the policy and
	// never proxied.
	Owned map[string]http.Handler
	// OwnedPrefix is a path prefix owned by the gateway: any path under it
	// that is not in Owned gets 404 rather than reaching the upstream.
	OwnedPrefix string
	// Assertion, if set, signs the identity assertion sent upstream on
	// every admitted request (see assertion.go).
	Assertion Asserter
	// AssertionHeader carries the assertion; default X-Auth-Assertion.
	// It is reserved whether or not Assertion is set: a client's copy is
	// always removed.
	AssertionHeader string
	// Logger receives one line per decision; nil means no logging.
	Logger *zap.Logger
	// Metrics records requests; nil records nothing.
	Metrics *Metrics
	// LogAllowedSample is the fraction of allowed requests logged, in
	// [0,1]; zero logs none. Denied requests and errors are always logged.
	LogAllowedSample float64
	// RetryRefusedDelay is the wait before the one retry of a request
	// whose upstream connection was refused (nothing was sent, so any
	// method may be retried). Zero means no retry.
	RetryRefusedDelay time.Duration
	// MaxInFlight caps concurrent proxied requests; beyond it clients get
	// 503 with Retry-After. Zero means no cap.
	MaxInFlight int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// BodyReadTimeout bounds the wait for each read of a request body
	// while proxying; a client that stalls longer is cut off, so a stalled
	// upload cannot hold an in-flight slot forever. Zero means no bound.
	BodyReadTimeout time.Duration
	// Limits bound what one client can hold; see Limits.
	Limits Limits
	// AllowBodiesOn names the methods without body semantics (GET, HEAD,
	// OPTIONS, DELETE) on which a request body is forwarded, for APIs
	// that take one (Elasticsearch-style search). Such a request goes
	// upstream with "Connection: close", on a connection that is not
	// reused. Empty means a body on any of them is refused with 400; see
	// body.go for why.
	AllowBodiesOn []string
	// SignIn, when set, sends anonymous browser navigations that a rule
	// denies to the sign-in page instead of answering 401.
	SignIn *SignIn
	// Cookies are the gateway's own cookies (the session, CSRF): never
	// forwarded upstream, and never accepted from the upstream's
	// Set-Cookie.
	Cookies []string
	// TunnelRecheck is how often an open WebSocket tunnel is authorized
	// again (see tunnel.go); it should be the reload interval. Zero means
	// DefaultTunnelRecheck.
	TunnelRecheck time.Duration
	// RateLimits holds the buckets of the policy's per-route rate limits
	// (see ratelimit.go): the embedded or the Redis state store. Nil lets
	// every request of a rate-limited rule through, counted as
	// store_error, like a store that is down.
	RateLimits RateLimitStore
	// TracerProvider records a span per request (see trace.go); nil means
	// no tracing, and the client's trace context passes through untouched.
	TracerProvider trace.TracerProvider
}

// Gateway is the authenticating reverse proxy. It is safe for concurrent use.
type Gateway struct {
	o       Options
	headers IdentityHeaders
	// identity are every header setIdentity owns (headers.names()).
	identity []string
	strip    stripper
	// credentials are the API key header spellings removed upstream.
	credentials stripper
	rp          *httputil.ReverseProxy
	basePath    string
	baseRaw     string
	sem         chan struct{}
	tunnels     chan struct{}
	perClient   *clientSlots
	log         *zap.Logger
	sample      sampler
	states      sync.Pool
	bodies      bodyPolicy
	cookies     map[string]bool
	limiter     *routeLimiter
	tracer      trace.Tracer // nil: tracing off
}

// New returns a gateway.
func New(o Options) (*Gateway, error) {
	if o.Upstream != nil && (o.Upstream.Host == "" || (o.Upstream.Scheme != "http" && o.Upstream.Scheme != "https")) {
		return nil, errors.New("proxy: upstream must be an http or https URL with a host")
	}
	if o.Policy == nil || o.Authenticator == nil {
		return nil, errors.New("proxy: policy and authenticator are required")
	}
	if o.APIKeyHeader == "" {
		o.APIKeyHeader = "X-API-Key"
	}
	if o.RequestIDHeader == "" {
		o.RequestIDHeader = "X-Request-Id"
	}
	o.APIKeyHeader = http.CanonicalHeaderKey(o.APIKeyHeader)
	o.RequestIDHeader = http.CanonicalHeaderKey(o.RequestIDHeader)
	if o.Transport == nil {
		o.Transport = NewTransport(TransportOptions{})
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.AssertionHeader == "" {
		o.AssertionHeader = DefaultAssertionHeader
	}
	g := &Gateway{o: o, headers: o.Headers.withDefaults(), log: o.Logger, tracer: newTracer(o.TracerProvider)}
	g.headers.assertion = http.CanonicalHeaderKey(o.AssertionHeader)
	g.identity = g.headers.names()
	if g.log == nil {
		g.log = zap.NewNop()
	}
	g.sample = newSampler(o.LogAllowedSample)
	g.limiter = &routeLimiter{store: o.RateLimits, log: g.log}
	if o.Metrics != nil {
		g.limiter.count = o.Metrics.rateLimits
	}
	bodies, err := newBodyPolicy(o.AllowBodiesOn)
	if err != nil {
		return nil, err
	}
	g.bodies = bodies
	// The identity headers and the request id are ours on every request,
	// public paths included; the forwarded headers only from trusted peers.
	always := append(append(append(slices.Clone(g.identity), o.RequestIDHeader), overrideHeaders...), foreignIdentityHeaders...)
	g.strip = newStripper(always, forwardedHeaders, foreignIdentityPrefixes)
	g.credentials = newStripper([]string{o.APIKeyHeader, "X-Api-Key"}, nil, nil)
	if o.MaxInFlight > 0 {
		g.sem = make(chan struct{}, o.MaxInFlight)
	}
	if o.Limits.MaxTunnels > 0 {
		g.tunnels = make(chan struct{}, o.Limits.MaxTunnels)
	}
	if o.Limits.BodyRateWindow <= 0 {
		o.Limits.BodyRateWindow = 10 * time.Second
		g.o.Limits.BodyRateWindow = o.Limits.BodyRateWindow
	}
	g.perClient = newClientSlots(o.Limits.MaxPerClient)
	if len(o.Cookies) > 0 {
		g.cookies = make(map[string]bool, len(o.Cookies))
		for _, c := range o.Cookies {
			g.cookies[c] = true
		}
	}
	g.states.New = func() any { return new(reqState) }
	if o.Upstream == nil {
		return g, nil
	}
	g.basePath = strings.TrimSuffix(o.Upstream.Path, "/")
	g.baseRaw = strings.TrimSuffix(o.Upstream.EscapedPath(), "/")
	retry := func(rt http.RoundTripper) http.RoundTripper { return withRetry(rt, o.RetryRefusedDelay, o.Metrics) }
	g.rp = &httputil.ReverseProxy{
		Rewrite:        g.rewrite,
		Transport:      &timedTransport{next: retry(o.Transport), calls: newLongCalls(o.Transport, retry), tracer: g.tracer, metrics: o.Metrics},
		BufferPool:     newBufferPool(),
		ErrorHandler:   g.upstreamError,
		ModifyResponse: g.modifyResponse,
		ErrorLog:       zap.NewStdLog(g.log.With(zap.String("component", "reverseproxy"))),
	}
	return g, nil
}

// reqState is the per-request record shared by ServeHTTP, Rewrite, the
// transport and the error handler.
type reqState struct {
	w         statusWriter
	principal authn.Principal
	canon     string
	requestID string
	upstream  time.Duration
	errKind   string
	pace      sendPacer
	tunnel    *tunnel      // set for upgrade requests
	cors      *policy.CORS // the CORS policy of an upstream answer; nil when none
	span      trace.Span   // the server span; nil when tracing is off
	// closeUpstream sends the request upstream with Connection: close,
	// on a connection that is never reused (an allowed body on a method
	// without body semantics).
	closeUpstream bool
	// assertion is the signed identity assertion for this request.
	assertion string
	// hdr backs the values of the headers the gateway writes for this
	// request: the request id on the response (hdr[0]), then the
	// forwarded and identity headers upstream (see rewrite). One
	// allocation per request instead of one per header; it is never
	// pooled, as both header maps keep referring to it.
	hdr []string

	// What became of the request, for its log line and metrics.
	start    time.Time
	method   string
	decision Decision
	reason   Reason
	ruleID   string
	code     int
	err      error
	security bool
	shadow   *policy.Decision
	snapshot *policy.Set
	onUnauth policy.OnUnauthenticated
	// host is the original host of a forward-auth check ("" on the
	// proxy, which reads r.Host).
	host string
	// limit is the decision's rate limit (cors above is its CORS policy).
	limit *policy.RateLimit
}

// hdrSlots is the length of reqState.hdr.
const hdrSlots = 10

type stateKey struct{}

func stateOf(ctx context.Context) *reqState {
	st, _ := ctx.Value(stateKey{}).(*reqState)
	return st
}

// ServeHTTP implements http.Handler.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.track(w, r, g.serve)
}

// track runs serve for one request with what the proxy and the
// forward-auth endpoint share: the in-flight gauge, the pooled per-request
// state, the request id (kept when valid, returned to the client) and the
// decision log and metrics at the end.
func (g *Gateway) track(w http.ResponseWriter, r *http.Request, serve func(*statusWriter, *http.Request, *reqState)) {
	start := g.o.Now()
	if m := g.o.Metrics; m != nil {
		m.inflight.Inc()
		defer m.inflight.Dec()
	}
	st := g.states.Get().(*reqState)
	// Cleared in place, then filled: a composite literal of the whole
	// record would be built on this frame first, which every request's
	// stack would carry.
	*st = reqState{}
	st.w.ResponseWriter, st.w.dl, st.w.h2 = w, deadlinerOf(w), r.ProtoMajor == 2
	defer g.states.Put(st)
	st.requestID = RequestID(r.Header.Get(g.o.RequestIDHeader))
	st.hdr = make([]string, hdrSlots)
	st.hdr[0] = st.requestID
	w.Header()[g.o.RequestIDHeader] = st.hdr[0:1:1] // canonical since New
	if g.tracer != nil {
		r = g.traceStart(r, st)
	}

	st.start, st.method = start, r.Method
	serve(&st.w, r, st)
	retire(&st.w)
	st.code = st.w.code()
	g.finish(r, st)
	if st.span != nil {
		g.traceEnd(st)
	}
}

func (g *Gateway) serve(w *statusWriter, r *http.Request, st *reqState) {
	f, ok := g.admit(w, r, st)
	if !ok {
		return
	}
	g.forward(w, r, st, f)
}

// forwarding is what admit hands to forward about an admitted request.
type forwarding struct {
	trusted     bool          // the peer is a trusted proxy
	hasTimeout  bool          // a gRPC call with a grpc-timeout
	callTimeout time.Duration // the grpc-timeout, when hasTimeout
}

// admit runs a request's checks, authentication and decision, and
// answers it when it must not be forwarded (ok false). It and forward
// are two functions, not one, so that the frames of the checks and of
// the decision are off the stack while the request is proxied: a
// connection's goroutine keeps the stack its deepest request grew until
// a collection shrinks it, and every idle keep-alive connection pays
// for it.
//
//go:noinline
func (g *Gateway) admit(w *statusWriter, r *http.Request, st *reqState) (forwarding, bool) {
	if len(r.TransferEncoding) > 0 {
		// Go drops a Content-Length sent beside Transfer-Encoding and keeps
		// the connection, although RFC 9112 §6.1 says to close it: a front
		// proxy that framed the request by Content-Length would then read
		// bytes hidden after the chunked body as a second request
		// (smuggling). Closing after the response discards them.
		w.Header().Set("Connection", "close")
	}
	if hasBody(r) {
		// Followed from here on: an answer written before the body was read
		// to its end closes the connection instead of draining the rest.
		w.body = newBodyState(r.Body, w)
		r.Body = w.body
	}
	// Answers take the gRPC shape for gRPC clients of the proxy, never on
	// the forward-auth endpoint (see grpc.go).
	w.grpc = grpcKindOf(r)
	if reason, e := checkRequest(r); e != nil {
		g.reject(w, st, reason, e)
		return forwarding{}, false
	}
	var callTimeout time.Duration
	hasTimeout := false
	if w.grpc == grpcNative {
		var e *Error
		if callTimeout, hasTimeout, e = grpcTimeout(r); e != nil {
			g.reject(w, st, ReasonBadRequest, e)
			return forwarding{}, false
		}
	}
	closeUp, e := g.bodies.check(r.Method, framingOf(r), len(r.Header["Upgrade"]) > 0)
	if e != nil {
		// Refused before authentication, and the connection is closed
		// after the answer: the unread body is discarded, never parsed.
		w.Header().Set("Connection", "close")
		g.reject(w, st, ReasonBodyNotAllowed, e)
		return forwarding{}, false
	}
	st.closeUpstream = closeUp
	canon, err := policy.Canonicalize(r.URL.EscapedPath())
	if err != nil {
		// Ambiguous paths are refused, not guessed: the path we authorize
		// must be the path the upstream serves.
		g.reject(w, st, ReasonBadPath, &Error{Code: http.StatusBadRequest, Msg: "malformed request path", Err: err})
		return forwarding{}, false
	}
	st.canon = canon
	trusted := g.o.Trusted.PeerTrusted(r)
	// Strip before authenticating, so nothing downstream can read a
	// client-written identity header, on public paths too.
	g.strip.strip(r.Header, peer(trusted))

	if h, ok := g.owned(canon); ok {
		r.Header.Set(g.o.RequestIDHeader, st.requestID)
		g.bound(w)
		h.ServeHTTP(w, r)
		// The endpoint decided: a failed login is not an allowed request.
		st.reason = ReasonGatewayEndpoint
		switch code := w.code(); {
		case code >= 500:
			st.decision = DecisionError
		case code >= 400:
			st.decision = DecisionDeny
		default:
			st.decision = DecisionAllow
		}
		return forwarding{}, false
	}

	if g.rp == nil {
		g.reject(w, st, ReasonNoUpstream, &Error{Code: http.StatusNotFound, Msg: "not found"})
		return forwarding{}, false
	}
	p, e := authn.Principal{Method: authn.MethodNone}, (*Error)(nil)
	switch g.preflight(w, r, st, canon) {
	case preflightAnswered:
		return forwarding{}, false
	case notPreflight:
		p, e = g.decide(r, r.Method, canon, st)
	}
	st.principal = p
	if e == nil && st.limit != nil {
		e = g.limiter.take(r, w.Header(), st.limit, p, g.o.Trusted)
		if e != nil {
			st.decision, st.reason = DecisionDeny, ReasonRateLimited
		}
	}
	if e != nil {
		corsHeaders(w.Header(), r, st.cors)
		g.bound(w)
		if e.Code == http.StatusUnauthorized && st.reason == Reason(policy.ReasonDenyUnauthenticated.String()) && g.o.SignIn.wants(r, st.onUnauth) {
			st.reason = ReasonSignInRedirect
			g.o.SignIn.redirect(w, r, canon)
			return forwarding{}, false
		}
		WriteError(w, st.requestID, e)
		return forwarding{}, false
	}
	return forwarding{trusted: trusted, hasTimeout: hasTimeout, callTimeout: callTimeout}, true
}

// forward takes the request's slots and deadlines and sends it upstream.
func (g *Gateway) forward(w *statusWriter, r *http.Request, st *reqState, f forwarding) {
	trusted, hasTimeout, callTimeout := f.trusted, f.hasTimeout, f.callTimeout
	if g.perClient != nil && (trusted || w.h2) {
		// Behind a trusted proxy every client shares the proxy's
		// connections, and an HTTP/2 connection carries many requests,
		// so the per-client bound is on requests.
		client := clientBucket(g.o.Trusted.ClientIP(r))
		if !g.perClient.acquire(client) {
			g.reject(w, st, ReasonClientLimit, &Error{Code: http.StatusTooManyRequests, Msg: "too many concurrent requests from this client", RetryAfter: time.Second})
			return
		}
		defer g.perClient.release(client)
	}
	if b := w.body; b != nil && w.grpc != grpcNative {
		// A gRPC call's body is a message stream that may pause between
		// messages: neither buffered nor held to a rate (see grpc.go).
		b.idle, b.minRate, b.window = g.o.BodyReadTimeout, int64(g.o.Limits.BodyMinRate), g.o.Limits.BodyRateWindow
		if n := g.o.Limits.RequestBuffer; n > 0 {
			if err := buffer(r, b, n); err != nil {
				g.bodyError(w, st, err)
				return
			}
		}
	}
	tunnel := r.Header.Get("Upgrade") != "" // checkRequest let only WebSocket through
	slots, full := g.sem, ReasonOverloaded
	if tunnel {
		slots, full = g.tunnels, ReasonTunnelsFull
	}
	if slots != nil {
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
		default:
			g.reject(w, st, full, &Error{Code: http.StatusServiceUnavailable, Msg: "gateway at capacity", RetryAfter: time.Second})
			return
		}
	}
	if w.dl != nil {
		// A deadline left by an earlier answer on this connection must
		// not cut this one; a tunnel has none (its lifetime is its
		// credential's), a response one per write.
		st.pace = sendPacer{idle: g.o.Limits.WriteIdleTimeout, minRate: int64(g.o.Limits.WriteMinRate), window: g.o.Limits.BodyRateWindow}
		var pace *sendPacer
		if !tunnel && st.pace.active() {
			pace = &st.pace
		}
		w.begin(pace)
	}
	if g.o.Assertion != nil {
		// Signed last, once the request is sure to go upstream.
		if e := g.assert(r, st); e != nil {
			g.reject(w, st, ReasonAssertionFailed, e)
			return
		}
	}
	ctx := context.WithValue(r.Context(), stateKey{}, st)
	if hasTimeout {
		// The client's deadline bounds the upstream wait.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, callTimeout)
		defer cancel()
	}
	if len(r.Header["Upgrade"]) > 0 {
		// A WebSocket tunnel ends with its credential (see tunnel.go).
		var done func()
		ctx, done = g.watchTunnel(ctx, r, st)
		defer done()
	}
	g.rp.ServeHTTP(w, r.WithContext(ctx))
}

// bodyError answers a request whose body could not be read: 408 when it
// came too slowly, 400 otherwise. The connection is closed after it.
func (g *Gateway) bodyError(w *statusWriter, st *reqState, err error) {
	if errors.Is(err, errSlowBody) {
		g.reject(w, st, ReasonSlowBody, &Error{Code: http.StatusRequestTimeout, Msg: "request body too slow", Err: err})
		return
	}
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		g.reject(w, st, ReasonBodyTooLarge, &Error{Code: http.StatusRequestEntityTooLarge, Msg: "request body too large", Err: err})
		return
	}
	g.reject(w, st, ReasonBadBody, &Error{Code: http.StatusBadRequest, Msg: "malformed request body", Err: err})
}

// clientBucket is the per-client key of a: IPv6 clients by /64.
func clientBucket(a netip.Addr) netip.Addr {
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// privateCC is a shared, never modified header value.
var privateCC = []string{"private"}

// modifyResponse keeps answers to authenticated callers out of shared
// caches: a CDN knows Authorization is personal but not X-API-Key, so a
// cacheable answer for one API key could be served to the next caller.
// Unless the upstream already said private, no-store, public or s-maxage,
// "private" is added to Cache-Control.
func (g *Gateway) modifyResponse(resp *http.Response) error {
	st := stateOf(resp.Request.Context())
	if st != nil && resp.StatusCode == http.StatusSwitchingProtocols {
		g.tunnelOpened(st)
	}
	if g.cookies != nil {
		dropSetCookies(resp.Header, g.cookies)
	}
	if st != nil && st.cors != nil {
		dropUpstreamCORS(resp.Header)
		corsHeaders(resp.Header, resp.Request, st.cors)
	}
	if st == nil || !st.principal.Authenticated() {
		return nil
	}
	cc := resp.Header.Get("Cache-Control")
	lc := strings.ToLower(cc)
	for _, d := range []string{"private", "no-store", "public", "s-maxage"} {
		if strings.Contains(lc, d) {
			return nil
		}
	}
	if cc == "" {
		resp.Header["Cache-Control"] = privateCC
	} else {
		resp.Header.Set("Cache-Control", "private, "+cc)
	}
	return nil
}

// decide authenticates r and decides (method, canon) against one policy
// snapshot. It returns the caller, and a non-nil *Error when the request
// must not pass: 401 for a bad credential or an anonymous caller, 403 for
// an authenticated one, 503 when no policy is loaded. st records the
// outcome for the log and metrics. It is shared by the proxy and the
// forward-auth endpoint, so both decide the same way.
func (g *Gateway) decide(r *http.Request, method, canon string, st *reqState) (authn.Principal, *Error) {
	p, ok, err := g.authenticate(r)
	if err != nil {
		return authn.Principal{Method: authn.MethodNone}, refuseCredential(st, err)
	}
	return g.decidePolicy(r, method, canon, st, p, ok)
}

// refuseCredential records a credential that failed in st and returns
// its answer (see credentialError).
//
//go:noinline
func refuseCredential(st *reqState, err error) *Error {
	st.security = true
	e := credentialError(err)
	st.decision, st.reason, st.err = DecisionDeny, ReasonInvalidCredential, err
	if e.Code == http.StatusForbidden {
		st.reason = ReasonCrossSite
	}
	if e.Code >= 500 {
		st.decision, st.reason = DecisionError, ReasonCredentialCheck
	}
	return e
}

// decidePolicy is the second half of decide: the policy decision for the
// caller p (authenticated when ok). It is kept out of line so that its
// frame (the policy request, the decisions) is not on the stack while the
// authenticators run, which keeps the stack a request grows, and that its
// connection's goroutine keeps while idle, small.
//
//go:noinline
func (g *Gateway) decidePolicy(r *http.Request, method, canon string, st *reqState, p authn.Principal, ok bool) (authn.Principal, *Error) {
	defer g.traceDecision(r, st, g.decideStart(r))
	if !ok {
		p = authn.Principal{Method: authn.MethodNone}
	}
	snap := g.o.Policy.Load()
	st.snapshot = snap
	if snap == nil {
		st.decision, st.reason = DecisionError, ReasonNoPolicy
		return p, &Error{Code: http.StatusServiceUnavailable, Msg: "policy not loaded", RetryAfter: time.Second}
	}
	if !policy.StandardMethod(method) && !snap.NamesMethod(method) {
		// Only methods the policy names pass: WebDAV MOVE/COPY carry a
		// second target in Destination that the policy never sees.
		st.decision, st.reason = DecisionDeny, ReasonMethodNotAllowed
		return p, &Error{Code: http.StatusMethodNotAllowed, Msg: "method not allowed"}
	}
	req := g.policyRequest(r, method, canon, p, ok, snap, st.host)
	d := snap.Decide(req)
	st.limit, st.cors = d.RateLimit, d.CORS
	if method == http.MethodHead && d.Allow {
		// Upstreams answer HEAD with their GET handler, so HEAD passes only
		// where GET would too: a GET-only rule must not be skirted by a
		// broader any-method rule.
		req.Method = http.MethodGet
		if gd := snap.Decide(req); !gd.Allow {
			d = gd
		}
		req.Method = http.MethodHead
	}
	st.ruleID, st.reason = d.RuleID, policyReason(d)
	sh := snap.Shadow()
	if g.o.ShadowPolicy != nil {
		if cand := g.o.ShadowPolicy.Load(); cand != nil {
			sh = cand
		}
	}
	if sh != nil {
		if sd := sh.Decide(req); sd.Allow != d.Allow {
			st.shadow = &sd
		}
	}
	if g.o.Metrics != nil && d.RuleID != "" {
		g.o.Metrics.ruleHits.WithLabelValues(d.RuleID, allowWord(d.Allow)).Inc()
	}
	if !d.Allow {
		st.decision, st.security, st.onUnauth, st.limit = DecisionDeny, true, d.OnUnauthenticated, nil
		if denyCode(d, ok) == http.StatusUnauthorized {
			return p, &Error{Code: http.StatusUnauthorized, Msg: "authentication required", Challenge: `Bearer realm="authgate"`}
		}
		return p, &Error{Code: http.StatusForbidden, Msg: "access denied"}
	}
	st.decision = DecisionAllow
	if p.Method == authn.MethodAPIKey && g.o.Metrics != nil {
		g.o.Metrics.apiKeyUse.WithLabelValues(p.KeyName).Inc()
	}
	return p, nil
}

func allowWord(allow bool) string { return string(decisionOf(allow)) }

func (g *Gateway) reject(w *statusWriter, st *reqState, reason Reason, e *Error) {
	st.decision, st.reason, st.err = DecisionDeny, reason, e.Err
	if e.Code >= 500 {
		st.decision = DecisionError
	}
	g.bound(w)
	WriteError(w, st.requestID, e)
}

func credentialError(err error) *Error {
	if errors.Is(err, authn.ErrAmbiguous) {
		return &Error{Code: http.StatusBadRequest, Msg: "send one credential: a bearer token or an API key, not both", Err: err,
			Challenge: `Bearer realm="authgate", error="invalid_request"`}
	}
	if errors.Is(err, authn.ErrCrossSite) {
		return &Error{Code: http.StatusForbidden, Msg: "cross-site request refused", Err: err}
	}
	if errors.Is(err, authn.ErrUnavailable) {
		return &Error{Code: http.StatusServiceUnavailable, Msg: "credential check unavailable", Err: err, RetryAfter: time.Second}
	}
	challenge := `Bearer realm="authgate"`
	if errors.Is(err, authn.ErrInvalidToken) || errors.Is(err, authn.ErrMalformed) {
		challenge = `Bearer realm="authgate", error="invalid_token"`
	}
	return &Error{Code: http.StatusUnauthorized, Msg: "invalid credentials", Err: err, Challenge: challenge}
}

// owned returns the gateway endpoint for canon, if it is one.
func (g *Gateway) owned(canon string) (http.Handler, bool) {
	if h, ok := g.o.Owned[strings.TrimSuffix(canon, "/")]; ok && canon != "/" {
		// An owned path outside the prefix (the /.well-known documents):
		// that path only; the rest of /.well-known stays the app's.
		return h, true
	}
	if !underPrefix(canon, g.o.OwnedPrefix) {
		return nil, false
	}
	if h, ok := g.o.Owned[strings.TrimSuffix(canon, "/")]; ok {
		return h, true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, RequestID(r.Header.Get(g.o.RequestIDHeader)), &Error{Code: http.StatusNotFound, Msg: "no such gateway endpoint"})
	}), true
}

// allowedMethods are the request methods accepted without configuration.
// CONNECT would open a tunnel and TRACE reflects headers (cross-site
// tracing); both get 405. Methods are case-sensitive tokens (RFC 9110
// §9.1): "get" is not GET and is refused instead of being matched loosely.
//
// checkRequest returns the reason (for the log and metrics) and the
// answer when r must be refused.
func checkRequest(r *http.Request) (Reason, *Error) {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
	case http.MethodConnect, http.MethodTrace:
		return ReasonMethodNotAllowed, &Error{Code: http.StatusMethodNotAllowed, Msg: "method not allowed"}
	default:
		// One method grammar with the policy (policy.ValidMethod), so a
		// method a rule names is never refused here.
		if !policy.ValidMethod(r.Method) {
			return ReasonMethodNotAllowed, &Error{Code: http.StatusMethodNotAllowed, Msg: "method not allowed"}
		}
	}
	// "GET http:admin/users" parses with an opaque URL and an empty path,
	// and would be forwarded as is: refuse anything but an absolute path.
	if r.URL.Opaque != "" || r.URL.User != nil || !strings.HasPrefix(r.URL.Path, "/") {
		return ReasonBadRequest, &Error{Code: http.StatusBadRequest, Msg: "malformed request target"}
	}
	if up, ok := r.Header["Upgrade"]; ok {
		// The reverse proxy splices any upgraded connection into a raw
		// tunnel that never meets the gateway again (h2c smuggling). Only
		// WebSocket is let through, only on GET (RFC 6455 §4.1), and only
		// after this request is authorized like any other.
		if len(up) != 1 || !strings.EqualFold(strings.TrimSpace(up[0]), "websocket") || r.Method != http.MethodGet {
			return ReasonUnsupportedUpgrade, &Error{Code: http.StatusBadRequest, Msg: "unsupported upgrade"}
		}
	}
	return "", nil
}

func (g *Gateway) rewrite(pr *httputil.ProxyRequest) {
	st := stateOf(pr.In.Context())
	in, out := pr.In, pr.Out
	out.URL.Scheme = g.o.Upstream.Scheme
	out.URL.Host = g.o.Upstream.Host
	// Forward exactly the canonical path that was authorized.
	out.URL.Path, out.URL.RawPath = g.forwardPath(st.canon)
	out.URL.RawQuery = in.URL.RawQuery
	if st.closeUpstream {
		// A body on a method without body semantics: the upstream may
		// leave it unread, so its connection must not carry another
		// request (see body.go).
		out.Close = true
	}
	if g.o.PreserveHost {
		out.Host = in.Host
	} else {
		out.Host = ""
	}

	// Forwarded headers: Rewrite starts with them removed from Out. Incoming
	// values are kept only from trusted proxies. The header values share
	// the request's one backing array (st.hdr): slot 0 is the request id,
	// 1-3 the forwarded headers, 4-8 the identity headers, 9 the
	// assertion.
	vals := st.hdr
	if len(vals) < hdrSlots {
		vals = make([]string, hdrSlots)
		vals[0] = st.requestID
	}
	trusted := g.o.Trusted.PeerTrusted(in)
	vals[1] = peerText(in)
	if trusted {
		if prior := in.Header["X-Forwarded-For"]; len(prior) > 0 {
			vals[1] = strings.Join(prior, ", ") + ", " + vals[1]
		}
	}
	vals[2] = "http"
	if in.TLS != nil {
		vals[2] = "https"
	}
	if v := in.Header.Get("X-Forwarded-Proto"); trusted && v != "" {
		vals[2] = v
	}
	vals[3] = in.Host
	if v := in.Header.Get("X-Forwarded-Host"); trusted && v != "" {
		vals[3] = v
	}
	out.Header["X-Forwarded-For"] = vals[1:2:2]
	out.Header["X-Forwarded-Proto"] = vals[2:3:3]
	out.Header["X-Forwarded-Host"] = vals[3:4:4]

	// Credentials stop here unless forwarding is opted into. API keys go
	// in every spelling ("X_API_Key" reaches CGI-style stacks as the key).
	g.credentials.strip(out.Header, untrustedPeer)
	// Trailers are headers too: a client may declare reserved names there.
	g.strip.strip(out.Trailer, untrustedPeer)
	g.credentials.strip(out.Trailer, untrustedPeer)
	if !g.o.ForwardAuthorization {
		out.Header.Del("Authorization")
	}
	if g.cookies != nil {
		// The session cookie is a credential like a token: it stops
		// here, so the app can neither log it nor replay it.
		stripCookies(out.Header, g.cookies)
	}
	// Identity headers are set here, after the reverse proxy removed the
	// hop-by-hop headers a client may name in Connection, so a client
	// cannot have them dropped (see the Director doc).
	out.Header[g.o.RequestIDHeader] = vals[0:1:1]
	g.setIdentity(out.Header, st.principal, vals[4:9:9])
	if st.assertion != "" {
		vals[9] = st.assertion
		out.Header[g.headers.assertion] = vals[9:10:10]
	}
}

// peerText is clientip.Peer(r).String() without formatting: for an IPv4
// peer the host part of RemoteAddr already is that text when it parses
// back to the same address (netip accepts only the dotted-decimal form
// without leading zeros, which is what String writes). Any other form
// (IPv6, an IPv4-mapped address, a zone) is formatted.
func peerText(r *http.Request) string {
	a := clientip.Peer(r)
	if i := strings.LastIndexByte(r.RemoteAddr, ':'); i > 0 && a.Is4() {
		if host := r.RemoteAddr[:i]; strings.IndexByte(host, ':') < 0 {
			if h, err := netip.ParseAddr(host); err == nil && h == a {
				return host
			}
		}
	}
	return a.String()
}

// setIdentity replaces the identity headers in h with those of p; an
// anonymous caller gets none. vals, if it has room for 5, backs the
// header values.
func (g *Gateway) setIdentity(h http.Header, p authn.Principal, vals []string) {
	n := g.headers
	for _, k := range g.identity {
		delete(h, k)
	}
	if !p.Authenticated() {
		return
	}
	// The values share one backing array, vals when the caller has room.
	if len(vals) < 5 {
		vals = make([]string, 5)
	}
	vals[0], vals[1], vals[2], vals[3], vals[4] = p.Subject, strings.Join(p.Roles, ","), string(p.Method), p.KeyName, p.Issuer
	h[n.Subject] = vals[0:1:1]
	h[n.Roles] = vals[1:2:2]
	h[n.Method] = vals[2:3:3]
	if p.KeyName != "" {
		h[n.KeyName] = vals[3:4:4]
	}
	if p.Issuer != "" {
		// Two issuers may use the same subject; the issuer tells them apart.
		h[n.Issuer] = vals[4:5:5]
	}
	g.setClaims(h, p)
}

// upstreamError answers a failed upstream round trip: 504 for a timeout,
// 502 otherwise, both as JSON. A client that went away gets nothing.
func (g *Gateway) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	st := stateOf(r.Context())
	if st != nil && st.w.body != nil && st.w.body.slow.Load() {
		// The client, not the upstream, failed: its upload stalled.
		st.w.Header().Set("Connection", "close")
		WriteError(w, st.requestID, &Error{Code: http.StatusRequestTimeout, Msg: "request body too slow", Err: err})
		return
	}
	kind := classify(r.Context(), err)
	if st != nil {
		st.errKind = kind
	}
	rid := ""
	if st != nil {
		rid = st.requestID
	}
	switch kind {
	case "canceled":
		// The client closed the request; there is no one to answer.
		w.WriteHeader(499)
		return
	case "timeout":
		g.countUpstreamError(kind)
		WriteError(w, rid, &Error{Code: http.StatusGatewayTimeout, Msg: "upstream timed out", Err: err})
	default:
		g.countUpstreamError(kind)
		WriteError(w, rid, &Error{Code: http.StatusBadGateway, Msg: "upstream unavailable", Err: err})
	}
}

func (g *Gateway) countUpstreamError(kind string) {
	if g.o.Metrics != nil {
		g.o.Metrics.upstreamErrors.WithLabelValues(kind).Inc()
	}
}

// classify names the kind of a failed upstream round trip from the error's
// type and wrapped cause, never from its text.
func classify(ctx context.Context, err error) string {
	if errors.Is(ctx.Err(), context.Canceled) {
		return "canceled"
	}
	var ne net.Error
	// A request whose own deadline passed (a gRPC call's grpc-timeout)
	// timed out, whatever error the transport reported for it. The
	// deadline is read as well as the context's error: the upstream was
	// told the same deadline, and a gRPC server resets the stream
	// (RST_STREAM CANCEL) when it passes, which can arrive before the
	// gateway's own timer has ended the context. The deadline is on the
	// runtime's clock, as context.WithTimeout set it.
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || deadlinePassed(ctx) ||
		errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return "timeout"
	}
	var oe *net.OpError
	if (errors.As(err, &oe) && oe.Op == "dial") || errors.Is(err, syscall.ECONNREFUSED) {
		return "refused"
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "reset"
	}
	return "other"
}

// deadlinePassed reports whether ctx has a deadline that is not in the
// future.
func deadlinePassed(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

func (g *Gateway) finish(r *http.Request, st *reqState) {
	elapsed := g.o.Now().Sub(st.start)
	if st.decision == "" {
		st.decision = DecisionError
	}
	if st.errKind != "" && st.errKind != "canceled" {
		st.decision, st.reason = DecisionError, upstreamReason(st.errKind)
	}
	method := string(st.principal.Method)
	if method == "" {
		method = string(authn.MethodNone)
	}
	if m := g.o.Metrics; m != nil {
		m.requests.WithLabelValues(string(st.decision), string(st.reason), method, codeClass(st.code)).Inc()
		overhead := elapsed - st.upstream
		if overhead < 0 {
			overhead = 0
		}
		m.overhead.Observe(overhead.Seconds())
		if st.shadow != nil {
			m.shadow.WithLabelValues(string(st.decision), allowWord(st.shadow.Allow)).Inc()
		}
	}
	logIt := st.decision != DecisionAllow || st.security || st.shadow != nil || st.code >= 500 || g.sample.take()
	if !logIt {
		return
	}
	msg := "request"
	if st.shadow != nil {
		msg = "shadow policy disagrees"
	}
	level := zap.WarnLevel
	if st.decision == DecisionAllow {
		level = zap.InfoLevel
	}
	ce := g.log.Check(level, msg)
	if ce == nil {
		return
	}
	// Every client-controlled string is capped (logsafe.Max): a path, a
	// method named by an ingress, a token's kid inside an error.
	fields := []zap.Field{
		zap.String("request_id", st.requestID),
		zap.String("method", logsafe.String(st.method)),
		zap.String("path", logsafe.String(st.canon)),
		zap.String("decision", string(st.decision)),
		zap.String("reason", string(st.reason)),
		zap.String("rule_id", st.ruleID),
		zap.String("subject", logsafe.String(st.principal.Subject)),
		zap.String("auth_method", method),
		zap.Int("status", st.code),
		zap.String("client_ip", g.o.Trusted.ClientIP(r).String()),
		zap.Duration("duration", elapsed),
	}
	if st.principal.KeyName != "" {
		fields = append(fields, zap.String("key_name", logsafe.String(st.principal.KeyName)))
	}
	if st.snapshot != nil {
		fields = append(fields, zap.String("policy_hash", st.snapshot.Hash()), zap.Int("policy_rules", st.snapshot.Len()))
	}
	if st.err != nil {
		fields = append(fields, zap.String("error", logsafe.String(st.err.Error())))
	}
	if st.shadow != nil {
		fields = append(fields, zap.String("shadow_decision", allowWord(st.shadow.Allow)), zap.String("shadow_rule_id", st.shadow.RuleID))
	}
	ce.Write(fields...)
}

// RequestID returns id when it is a plausible request id (1-128 characters
// of [A-Za-z0-9._:-]), otherwise a new random one. Validating keeps a
// client from writing arbitrary text into logs and upstream headers.
func RequestID(id string) string {
	if len(id) > 0 && len(id) <= 128 {
		ok := true
		for i := 0; i < len(id); i++ {
			c := id[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
				ok = false
				break
			}
		}
		if ok {
			return id
		}
	}
	return newRequestID()
}
