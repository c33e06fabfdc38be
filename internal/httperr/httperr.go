// Package httperr is the one error type for answers the gateway writes
// itself, and its one writer. Every refusal of the proxy, forward-auth,
// the token endpoints and the admin listener is an *Error rendered by
// Write: JSON with a stable machine-readable name, a public message and the
// request id, or the RFC 6749 §5.2 shape on the token endpoints. The
// private cause never leaves the process; it goes to the log.
package httperr

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Error is a client-facing failure. Msg is safe to show the client; Err is
// the private detail and goes only to the log. The zero value is not
// useful; Code must be set.
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
	// OAuth, when set, is the RFC 6749 §5.2 error code (invalid_grant,
	// invalid_request, ...): the body takes the OAuth shape, with Msg as
	// error_description.
	OAuth string
	// Allow, when set, is sent as Allow (with 405).
	Allow string
}

func (e *Error) Error() string {
	name := e.OAuth
	if name == "" {
		name = e.Msg
	}
	if e.Err != nil {
		return fmt.Sprintf("%d %s: %v", e.Code, name, e.Err)
	}
	return fmt.Sprintf("%d %s", e.Code, name)
}

// Unwrap returns the private cause.
func (e *Error) Unwrap() error { return e.Err }

// body is the JSON shape of every error the gateway writes.
type body struct {
	Error     string `json:"error"`
	Message   string `json:"message"`
	RequestID string `json:"request_id,omitempty"`
}

// oauthBody is the RFC 6749 §5.2 shape; request_id is an extension member,
// which the RFC allows.
type oauthBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
	RequestID   string `json:"request_id,omitempty"`
}

// Name returns the stable machine-readable name of a status.
func Name(code int) string {
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
	case http.StatusRequestTimeout:
		return "request_timeout"
	case http.StatusRequestEntityTooLarge:
		return "payload_too_large"
	case http.StatusUnsupportedMediaType:
		return "unsupported_media_type"
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

// Write renders e. The answer is never cached (RFC 6749 §5.1 asks for
// no-store and no-cache on token responses; every other refusal is
// per-request too).
func Write(w http.ResponseWriter, requestID string, e *Error) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	if e.Challenge != "" {
		h.Set("WWW-Authenticate", e.Challenge)
	}
	if e.RetryAfter > 0 {
		secs := int64((e.RetryAfter + time.Second - 1) / time.Second)
		h.Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	if e.Allow != "" {
		h.Set("Allow", e.Allow)
	}
	w.WriteHeader(e.Code)
	if e.OAuth != "" {
		_ = json.NewEncoder(w).Encode(oauthBody{Error: e.OAuth, Description: e.Msg, RequestID: requestID})
		return
	}
	_ = json.NewEncoder(w).Encode(body{Error: Name(e.Code), Message: e.Msg, RequestID: requestID})
}
