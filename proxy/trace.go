package proxy

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/internal/logsafe"
)

// Tracing. With Options.TracerProvider set, every request gets a server
// span, with child spans for authentication (and, below it, a JWKS fetch
// the request waited for), the policy decision and the upstream round
// trip; the upstream receives the W3C trace context of its round-trip
// span, so its own spans join the trace. The incoming traceparent is the
// parent, and a parent-based sampler follows its sampled flag.
//
// With no provider (the default) nothing of this runs: the hooks test one
// nil field, allocate nothing, and the client's traceparent and
// tracestate pass to the upstream untouched, as any other header.
//
// Spans never carry a credential: no header, no query string (tokens
// travel in query strings), no token claim but the method name. What they
// carry follows the OpenTelemetry semantic conventions (HTTP server and
// client spans, RPC spans for gRPC) plus the decision:
// authgate.decision, authgate.reason, authgate.rule_id and
// authgate.auth_method, from the same closed sets as the log and metrics.

// Span attribute keys of the gateway's own.
const (
	attrDecision   = attribute.Key("authgate.decision")
	attrReason     = attribute.Key("authgate.reason")
	attrRuleID     = attribute.Key("authgate.rule_id")
	attrAuthMethod = attribute.Key("authgate.auth_method")
)

// Span names of the gateway's internal spans.
const (
	spanAuthenticate = "authgate.authenticate"
	spanDecide       = "authgate.decide"
)

// tracerName is the instrumentation scope of the gateway's spans.
const tracerName = "github.com/authgate/authgate/proxy"

// newTracer returns the tracer of tp, or nil when tp is nil.
func newTracer(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		return nil
	}
	return tp.Tracer(tracerName, trace.WithSchemaURL(semconv.SchemaURL))
}

// w3c is the W3C Trace Context propagator (traceparent, tracestate). It is
// a stateless value: no global propagator is used.
var w3c propagation.TraceContext

// knownMethod returns the semantic-convention form of an HTTP method:
// itself when it is a standard one, "_OTHER" otherwise.
func knownMethod(m string) (string, bool) {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m, true
	}
	return "_OTHER", false
}

// methodAttrs returns the http.request.method attributes of m.
func methodAttrs(m string) []attribute.KeyValue {
	known, ok := knownMethod(m)
	attrs := []attribute.KeyValue{semconv.HTTPRequestMethodKey.String(known)}
	if !ok {
		attrs = append(attrs, semconv.HTTPRequestMethodOriginal(logsafe.String(m)))
	}
	return attrs
}

// spanName is the semantic-convention name of an HTTP span: the method,
// or "HTTP" for a method outside the standard set.
func spanName(m string) string {
	if known, ok := knownMethod(m); ok {
		return known
	}
	return "HTTP"
}

// hostPort splits a Host header or URL host into address and port (0
// when absent), capping the client-controlled address.
func hostPort(h string) (string, int) {
	host, port, err := net.SplitHostPort(h)
	if err != nil {
		return logsafe.String(h), 0
	}
	p, _ := strconv.Atoi(port)
	return logsafe.String(host), p
}

// traceStart starts the server span of r, a child of the trace context r
// carries, and returns r with the span in its context.
func (g *Gateway) traceStart(r *http.Request, st *reqState) *http.Request {
	ctx := w3c.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	host, port := hostPort(r.Host)
	version := "2"
	if r.ProtoMajor != 2 {
		version = strconv.Itoa(r.ProtoMajor) + "." + strconv.Itoa(r.ProtoMinor)
	}
	attrs := append(methodAttrs(r.Method),
		semconv.URLScheme(scheme),
		semconv.ServerAddress(host),
		semconv.NetworkProtocolVersion(version),
		semconv.ClientAddress(g.o.Trusted.ClientIP(r).String()),
	)
	if port > 0 {
		attrs = append(attrs, semconv.ServerPort(port))
	}
	if ua := r.Header.Get("User-Agent"); ua != "" {
		attrs = append(attrs, semconv.UserAgentOriginal(logsafe.String(ua)))
	}
	ctx, span := g.tracer.Start(ctx, spanName(r.Method), trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
	st.span = span
	return r.WithContext(ctx)
}

// traceEnd ends the server span of a request with its outcome.
func (g *Gateway) traceEnd(st *reqState) {
	span := st.span
	if !span.IsRecording() {
		span.End()
		return
	}
	code := st.code
	if st.w.grpcCode != 0 {
		code = http.StatusOK // a trailers-only gRPC answer: the status is in grpc-status
	}
	method := string(st.principal.Method)
	if method == "" {
		method = string(authn.MethodNone)
	}
	attrs := []attribute.KeyValue{
		semconv.HTTPResponseStatusCode(code),
		attrDecision.String(string(st.decision)),
		attrReason.String(string(st.reason)),
		attrAuthMethod.String(method),
	}
	if st.canon != "" {
		attrs = append(attrs, semconv.URLPath(logsafe.String(st.canon)))
	}
	if st.ruleID != "" {
		attrs = append(attrs, attrRuleID.String(st.ruleID))
	}
	failed, errType := code >= 500, strconv.Itoa(code)
	if st.w.grpc == grpcNative {
		rpcMethod := "_OTHER"
		if st.decision == DecisionAllow {
			rpcMethod = logsafe.String(strings.TrimPrefix(st.canon, "/"))
		} else if st.canon != "" {
			attrs = append(attrs, semconv.RPCMethodOriginal(logsafe.String(strings.TrimPrefix(st.canon, "/"))))
		}
		span.SetName(rpcMethod)
		attrs = append(attrs, semconv.RPCSystemNameGRPC, semconv.RPCMethod(rpcMethod))
		if gc, ok := grpcStatusOf(st.w.Header(), st.w.grpcCode); ok {
			attrs = append(attrs, semconv.RPCResponseStatusCode(grpcCodeName(gc)))
			failed, errType = failed || grpcServerError(gc), grpcCodeName(gc)
		}
	}
	if failed {
		attrs = append(attrs, semconv.ErrorTypeKey.String(errType))
		span.SetStatus(codes.Error, string(st.reason))
	}
	span.SetAttributes(attrs...)
	span.End()
}

// authenticate runs the authenticator on r, in a child span when the
// request is traced.
func (g *Gateway) authenticate(r *http.Request) (authn.Principal, bool, error) {
	if g.tracer == nil || !trace.SpanFromContext(r.Context()).IsRecording() {
		return g.o.Authenticator.Authenticate(r)
	}
	return g.authenticateTraced(r)
}

// authenticateTraced is authenticate in a child span. It is kept out of
// line so that its frame (the span, the request copy, the attributes) is
// not on the stack of every untraced request: a connection's goroutine
// keeps the stack its deepest request grew until a collection shrinks it.
//
//go:noinline
func (g *Gateway) authenticateTraced(r *http.Request) (authn.Principal, bool, error) {
	ctx, span := g.tracer.Start(r.Context(), spanAuthenticate)
	p, ok, err := g.o.Authenticator.Authenticate(r.WithContext(ctx))
	method := authn.MethodNone
	if ok {
		method = p.Method
	}
	span.SetAttributes(attrAuthMethod.String(string(method)))
	if err != nil {
		reason := string(ReasonInvalidCredential)
		if errors.Is(err, authn.ErrUnavailable) {
			// A technical failure, not the caller's: the span is an error.
			reason = string(ReasonCredentialCheck)
			span.SetStatus(codes.Error, reason)
		}
		span.SetAttributes(semconv.ErrorTypeKey.String(reason))
	}
	span.End()
	return p, ok, err
}

// decideStart returns when the decision of a traced request starts, or
// the zero time when r is not traced.
func (g *Gateway) decideStart(r *http.Request) time.Time {
	if g.tracer == nil || !trace.SpanFromContext(r.Context()).IsRecording() {
		return time.Time{}
	}
	return time.Now()
}

// traceDecision records the decision made since start as a child span;
// it does nothing when start is zero.
func (g *Gateway) traceDecision(r *http.Request, st *reqState, start time.Time) {
	if start.IsZero() {
		return
	}
	attrs := []attribute.KeyValue{attrDecision.String(string(st.decision)), attrReason.String(string(st.reason))}
	if st.ruleID != "" {
		attrs = append(attrs, attrRuleID.String(st.ruleID))
	}
	_, span := g.tracer.Start(r.Context(), spanDecide, trace.WithTimestamp(start), trace.WithAttributes(attrs...))
	span.End()
}

// tracedRoundTrip sends r upstream in a client span and gives the upstream
// that span's trace context. The span ends with the response body, so a
// streamed response and its trailers (grpc-status) are in it. An
// untraced request (not sampled) still passes its own trace context on.
func (t *timedTransport) tracedRoundTrip(next http.RoundTripper, r *http.Request) (*http.Response, error) {
	parent := trace.SpanFromContext(r.Context())
	// The client's own tracestate is replaced with the span's.
	delete(r.Header, "Tracestate")
	if !parent.IsRecording() {
		if parent.SpanContext().IsValid() {
			w3c.Inject(r.Context(), propagation.HeaderCarrier(r.Header))
		}
		return next.RoundTrip(r)
	}
	host, port := hostPort(r.URL.Host)
	attrs := append(methodAttrs(r.Method),
		semconv.ServerAddress(host),
		semconv.URLFull(r.URL.Scheme+"://"+r.URL.Host+logsafe.String(r.URL.EscapedPath())),
	)
	if port > 0 {
		attrs = append(attrs, semconv.ServerPort(port))
	}
	st := stateOf(r.Context())
	isGRPC := st != nil && st.w.grpc == grpcNative
	if isGRPC {
		attrs = append(attrs, semconv.RPCSystemNameGRPC)
	}
	ctx, span := t.tracer.Start(r.Context(), spanName(r.Method), trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	w3c.Inject(ctx, propagation.HeaderCarrier(r.Header))
	resp, err := next.RoundTrip(r)
	if err != nil {
		span.SetAttributes(semconv.ErrorTypeKey.String(classify(r.Context(), err)))
		span.SetStatus(codes.Error, "upstream round trip failed")
		span.End()
		return nil, err
	}
	span.SetAttributes(semconv.HTTPResponseStatusCode(resp.StatusCode))
	if resp.StatusCode >= 500 {
		span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(resp.StatusCode)))
		span.SetStatus(codes.Error, "")
	}
	tb := &tracedBody{ReadCloser: resp.Body, span: span, resp: resp, grpc: isGRPC}
	if resp.StatusCode == http.StatusSwitchingProtocols || resp.Body == nil || resp.Body == http.NoBody {
		// An upgraded body is the tunnel itself, which the reverse proxy
		// needs unwrapped (it writes to it).
		tb.end(nil)
		return resp, nil
	}
	resp.Body = tb
	return resp, nil
}

// tracedBody ends the upstream span when the response body ends.
type tracedBody struct {
	io.ReadCloser
	span  trace.Span
	resp  *http.Response
	grpc  bool
	ended atomic.Bool
}

func (b *tracedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == io.EOF:
		b.end(nil)
	case err != nil:
		b.end(err)
	}
	return n, err
}

func (b *tracedBody) Close() error {
	b.end(nil)
	return b.ReadCloser.Close()
}

// end ends the span once, with the gRPC status the upstream sent in its
// headers or trailers.
func (b *tracedBody) end(err error) {
	if !b.ended.CompareAndSwap(false, true) {
		return
	}
	if err != nil {
		b.span.SetAttributes(semconv.ErrorTypeKey.String("response_body"))
		b.span.SetStatus(codes.Error, "reading the upstream response failed")
	}
	if b.grpc {
		if gc, ok := grpcStatusIn(b.resp.Header, b.resp.Trailer); ok {
			b.span.SetAttributes(semconv.RPCResponseStatusCode(grpcCodeName(gc)))
			if gc != 0 {
				b.span.SetStatus(codes.Error, grpcCodeName(gc))
			}
		}
	}
	b.span.End()
}

// grpcStatusOf returns the gRPC status of a response written through a
// statusWriter: the one the gateway wrote (sent, when not 0), or the
// upstream's, which the reverse proxy copied into the header map as a
// header (trailers-only), a declared trailer or an undeclared one.
func grpcStatusOf(h http.Header, sent int) (int, bool) {
	if sent != 0 {
		return sent, true
	}
	if v, ok := h["Grpc-Status"]; ok && len(v) > 0 {
		return parseGRPCStatus(v[0])
	}
	if v, ok := h[http.TrailerPrefix+"Grpc-Status"]; ok && len(v) > 0 {
		return parseGRPCStatus(v[0])
	}
	return 0, false
}

// grpcStatusIn returns the grpc-status of an upstream response.
func grpcStatusIn(header, trailer http.Header) (int, bool) {
	if v := trailer.Get("Grpc-Status"); v != "" {
		return parseGRPCStatus(v)
	}
	if v := header.Get("Grpc-Status"); v != "" {
		return parseGRPCStatus(v)
	}
	return 0, false
}

func parseGRPCStatus(v string) (int, bool) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 16 {
		return 0, false
	}
	return n, true
}

// grpcCodeNames are the gRPC status names, by code.
var grpcCodeNames = [...]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
	"PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
	"UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
}

// grpcCodeName returns the name of gRPC status code c (0 to 16).
func grpcCodeName(c int) string { return grpcCodeNames[c] }

// grpcServerError reports whether a server span with gRPC status c is an
// error, as the RPC semantic conventions list them for servers.
func grpcServerError(c int) bool {
	switch c {
	case 2, 4, 12, 13, 14, 15: // UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS
		return true
	}
	return false
}
