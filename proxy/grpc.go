package proxy

import (
	"math"
	"net/http"
	"strconv"
	"time"
)

// gRPC through the gateway.
//
// A gRPC call is an HTTP/2 POST to /package.Service/Method with
// content-type application/grpc, so it is decided like any request: the
// canonical path is the method's path and policy patterns match it
// (/package.Service/* is every method of a service). What is gRPC-specific
// is the shape of the gateway's own answers and the life of a call:
//
//   - A refusal is a trailers-only response: HTTP 200, content-type
//     application/grpc, grpc-status and a percent-encoded grpc-message in
//     the headers and no body, as a gRPC server answers a call it rejects.
//     A gRPC client reading a 401 or 403 reports a protocol error
//     (UNKNOWN or INTERNAL) rather than UNAUTHENTICATED or
//     PERMISSION_DENIED. Envoy's ext_authz and gRPC-Gateway answer so too.
//     The log and the metrics still count the HTTP status the answer
//     stands for (401, 403...), so dashboards see denials as denials.
//   - The shape is chosen only where a gRPC client reads it: on the proxy
//     path, for application/grpc over HTTP/2 and for gRPC-Web. It is never
//     used on the forward-auth endpoint: an ingress reads 200 there as
//     "allow", and Traefik's forwardAuth copies the client's content-type
//     onto the check request.
//   - grpc-timeout bounds the upstream wait: the call's context ends at
//     the client's deadline, and past it the answer is DEADLINE_EXCEEDED.
//   - A call's request body is a stream of messages that may pause between
//     messages (client streaming, bidirectional streaming), so it is not
//     buffered before proxying (request_buffer_bytes would wait for 64 KiB
//     that never come) and the upload rate and idle bounds do not apply.
//     The call holds an in-flight slot and a per-client slot like any
//     request, and HTTP/2 bounds its streams per connection.
//   - Responses stream: gRPC responses carry no Content-Length, which the
//     reverse proxy flushes at once, and their trailers (grpc-status) are
//     forwarded after the body.

// grpcKind is how a request speaks gRPC, which decides the shape of the
// gateway's own answers to it. The zero value is not gRPC.
type grpcKind uint8

const (
	grpcNone    grpcKind = iota
	grpcNative           // application/grpc over HTTP/2
	grpcWeb              // application/grpc-web
	grpcWebText          // application/grpc-web-text
)

// grpcKindOf returns how r speaks gRPC, from its one Content-Type. Native
// gRPC exists only over HTTP/2; an HTTP/1 request claiming it is answered
// as HTTP (its client cannot be a gRPC client).
func grpcKindOf(r *http.Request) grpcKind {
	ct := r.Header["Content-Type"]
	if len(ct) != 1 {
		return grpcNone
	}
	switch v := ct[0]; {
	case mediaType(v, "application/grpc-web-text"):
		return grpcWebText
	case mediaType(v, "application/grpc-web"):
		return grpcWeb
	case mediaType(v, "application/grpc") && r.ProtoMajor == 2:
		return grpcNative
	}
	return grpcNone
}

// mediaType reports whether content type v is base, or base with a
// "+subtype" suffix or parameters, compared case-insensitively.
func mediaType(v, base string) bool {
	if len(v) < len(base) {
		return false
	}
	for i := 0; i < len(base); i++ {
		c := v[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != base[i] {
			return false
		}
	}
	if len(v) == len(base) {
		return true
	}
	switch v[len(base)] {
	case '+', ';', ' ', '\t':
		return true
	}
	return false
}

// gRPC status codes (google.golang.org/grpc/codes) the gateway answers with.
const (
	grpcInvalidArgument   = 3
	grpcDeadlineExceeded  = 4
	grpcPermissionDenied  = 7
	grpcResourceExhausted = 8
	grpcUnimplemented     = 12
	grpcInternal          = 13
	grpcUnavailable       = 14
	grpcUnauthenticated   = 16
)

// grpcCode maps the HTTP status of a gateway answer to its gRPC status,
// following gRPC's HTTP-to-gRPC status mapping
// (doc/http-grpc-status-mapping.md) where it has an entry and the cause
// where the gateway knows better: a request it refuses as malformed is
// INVALID_ARGUMENT, an upstream that timed out or a client deadline that
// passed is DEADLINE_EXCEEDED.
func grpcCode(httpCode int) int {
	switch httpCode {
	case http.StatusBadRequest:
		return grpcInvalidArgument
	case http.StatusUnauthorized:
		return grpcUnauthenticated
	case http.StatusForbidden:
		return grpcPermissionDenied
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		return grpcUnimplemented
	case http.StatusRequestTimeout, http.StatusGatewayTimeout:
		return grpcDeadlineExceeded
	case http.StatusRequestEntityTooLarge, http.StatusRequestHeaderFieldsTooLarge:
		return grpcResourceExhausted
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable:
		return grpcUnavailable
	}
	return grpcInternal
}

// grpcContentType is the content type of a trailers-only answer.
func (k grpcKind) contentType() string {
	switch k {
	case grpcWeb:
		return "application/grpc-web+proto"
	case grpcWebText:
		return "application/grpc-web-text+proto"
	}
	return "application/grpc"
}

// writeGRPCError renders e as a trailers-only gRPC response (see the top
// of this file). The status the answer stands for is what w records.
func writeGRPCError(w *statusWriter, e *Error) {
	h := w.Header()
	delete(h, "Content-Length")
	h.Set("Content-Type", w.grpc.contentType())
	h.Set("Cache-Control", "no-store")
	h.Set("Grpc-Status", strconv.Itoa(grpcCode(e.Code)))
	h.Set("Grpc-Message", grpcMessage(e.Msg))
	if e.Challenge != "" {
		h.Set("WWW-Authenticate", e.Challenge)
	}
	if w.status == 0 {
		w.status = e.Code
	}
	w.grpcCode = grpcCode(e.Code)
	w.WriteHeader(http.StatusOK)
}

// grpcMessage percent-encodes msg as the gRPC HTTP/2 protocol requires of
// grpc-message: every byte outside printable ASCII, and '%'.
func grpcMessage(msg string) string {
	clean := true
	for i := 0; i < len(msg); i++ {
		if c := msg[i]; c < 0x20 || c > 0x7e || c == '%' {
			clean = false
			break
		}
	}
	if clean {
		return msg
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(msg)+8)
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			b = append(b, '%', hex[c>>4], hex[c&15])
			continue
		}
		b = append(b, c)
	}
	return string(b)
}

// errBadGRPCTimeout answers a grpc-timeout the gateway cannot read: the
// call's deadline would otherwise be lost on the way to the upstream.
var errBadGRPCTimeout = &Error{Code: http.StatusBadRequest, Msg: "malformed grpc-timeout"}

// grpcTimeout returns the deadline a native gRPC call asks for in its
// grpc-timeout header: ok is false without one, e is set when it is
// malformed or repeated.
func grpcTimeout(r *http.Request) (d time.Duration, ok bool, e *Error) {
	v, present := r.Header["Grpc-Timeout"]
	if !present {
		return 0, false, nil
	}
	if len(v) != 1 {
		return 0, false, errBadGRPCTimeout
	}
	d, valid := ParseGRPCTimeout(v[0])
	if !valid {
		return 0, false, errBadGRPCTimeout
	}
	return d, true, nil
}

// ParseGRPCTimeout parses a grpc-timeout value as the gRPC HTTP/2 protocol
// defines it: 1 to 8 ASCII digits followed by one unit, H, M, S, m
// (milliseconds), u (microseconds) or n (nanoseconds). A value beyond the
// range of time.Duration is clamped to its maximum. It reports whether v
// was well-formed.
func ParseGRPCTimeout(v string) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	var n int64
	for i := 0; i < len(v)-1; i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0') // at most 8 digits: no overflow
	}
	if n > int64(math.MaxInt64/unit) {
		return math.MaxInt64, true
	}
	return time.Duration(n) * unit, true
}

// longCalls sends the gRPC calls whose deadline outlasts the upstream
// response-header timeout through a copy of the transport without that
// timeout: the client chose how long the call may take, and a gRPC server
// sends its response headers with its first message, which a slow unary
// method or a server stream may send late. Calls without a deadline keep
// the timeout. It is immutable.
type longCalls struct {
	transport     http.RoundTripper
	headerTimeout time.Duration
}

// newLongCalls returns the long-call route for rt, or nil when rt is not
// an HTTP/2 *http.Transport with a response-header timeout. wrap adds to
// the long-call transport what rt's own callers add to rt (the retry of
// refused connections).
func newLongCalls(rt http.RoundTripper, wrap func(http.RoundTripper) http.RoundTripper) *longCalls {
	t, ok := rt.(*http.Transport)
	if !ok || t.ResponseHeaderTimeout <= 0 || t.Protocols == nil || (!t.Protocols.HTTP2() && !t.Protocols.UnencryptedHTTP2()) {
		return nil
	}
	long := t.Clone()
	long.ResponseHeaderTimeout = 0
	return &longCalls{transport: wrap(long), headerTimeout: t.ResponseHeaderTimeout}
}

// pick returns the transport for r: the long-call one for a native gRPC
// call whose deadline is further away than the header timeout, else next.
func (l *longCalls) pick(r *http.Request, next http.RoundTripper) http.RoundTripper {
	st := stateOf(r.Context())
	if st == nil || st.w.grpc != grpcNative {
		return next
	}
	if dl, ok := r.Context().Deadline(); ok && time.Until(dl) > l.headerTimeout {
		return l.transport
	}
	return next
}
