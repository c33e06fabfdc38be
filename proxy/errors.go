package proxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Error is the one error type for client-facing failures. Msg is safe to
// show the client; Err is the private detail and goes only to the log.
type Error struct {
	// Code is the HTTP status.
	Code int
	// Msg is the public message.
	Msg string
	// Err is the private cause, logged and never sent.
	Err error
	// Challenge, when set, is sent as WWW-Authenticate.
	Challenge string
	// RetryAfter, when positive, is sent as Retry-After in whole seconds.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("proxy: %d %s: %v", e.Code, e.Msg, e.Err)
	}
	return fmt.Sprintf("proxy: %d %s", e.Code, e.Msg)
}

func (e *Error) Unwrap() error { return e.Err }

// errorBody is the JSON shape of every error the gateway writes.
type errorBody struct {
	Error     string `json:"error"`
	Message   string `json:"message"`
	RequestID string `json:"request_id,omitempty"`
}

// codeName returns the stable machine-readable name of a status.
func codeName(code int) string {
	switch code {
	case http.StatusBadRequest:
		return "bad_request"
	case http.StatusUnauthorized:
		return "unauthorized"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusNotFound:
		return "not_found"
	case http.StatusMethodNotAllowed:
		return "method_not_allowed"
	case http.StatusRequestEntityTooLarge:
		return "payload_too_large"
	case http.StatusTooManyRequests:
		return "too_many_requests"
	case http.StatusRequestHeaderFieldsTooLarge:
		return "headers_too_large"
	case http.StatusBadGateway:
		return "bad_gateway"
	case http.StatusServiceUnavailable:
		return "service_unavailable"
	case http.StatusGatewayTimeout:
		return "gateway_timeout"
	}
	return "error"
}

// WriteError renders e as JSON, or as a gRPC status for a gRPC client of
// the proxy (see grpc.go). It is the only writer of gateway errors.
func WriteError(w http.ResponseWriter, requestID string, e *Error) {
	if sw, ok := w.(*statusWriter); ok && sw.grpc != grpcNone {
		writeGRPCError(sw, e)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if e.Challenge != "" {
		h.Set("WWW-Authenticate", e.Challenge)
	}
	if e.RetryAfter > 0 {
		secs := int64((e.RetryAfter + time.Second - 1) / time.Second)
		h.Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	w.WriteHeader(e.Code)
	_ = json.NewEncoder(w).Encode(errorBody{Error: codeName(e.Code), Message: e.Msg, RequestID: requestID})
}
