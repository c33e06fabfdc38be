package issuer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/netip"
	"net/url"

	"github.com/authgate/authgate/internal/httperr"
)

// OAuth 2.0 error codes (RFC 6749 §5.2) and the gateway's own codes for the
// failures OAuth does not name.
const (
	codeInvalidRequest         = "invalid_request"
	codeInvalidGrant           = "invalid_grant"
	codeUnsupportedGrantType   = "unsupported_grant_type"
	codeTemporarilyUnavailable = "temporarily_unavailable"
	codeTooManyRequests        = "too_many_requests"
	codeMethodNotAllowed       = "method_not_allowed"
	codePayloadTooLarge        = "payload_too_large"
)

// descInvalidCredentials is the one answer to every failed login. Unknown
// user, wrong password, disabled user and an over-long password all get
// these exact bytes so the answer does not reveal which usernames exist
// (user enumeration).
const descInvalidCredentials = "invalid username or password"

// oauthError is a client-facing error of the issuer endpoints: the
// gateway's one error type, in the RFC 6749 shape (its OAuth field is set).
type oauthError = httperr.Error

// noStore sets the headers RFC 6749 §5.1 requires on token responses; they
// are sent on errors too, so no intermediary caches either.
func noStore(h http.Header) {
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	noStore(w.Header())
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, e *oauthError) {
	if e.Code == http.StatusMethodNotAllowed {
		e.Allow = http.MethodPost
	}
	// The gateway put the request id on the answer before calling the
	// endpoint.
	httperr.Write(w, w.Header().Get("X-Request-Id"), e)
}

func badRequest(desc string) *oauthError {
	return &oauthError{Code: http.StatusBadRequest, OAuth: codeInvalidRequest, Msg: desc}
}

// tokenResponse is the RFC 6749 §5.1 success body.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
}

// params are the parameters of a request body, each present at most once.
type params map[string]string

// sensitiveQuery are parameters that must never travel in the URL, where
// access logs and browser history keep them.
var sensitiveQuery = []string{"password", "refresh_token", "access_token"}

// readParams reads the POST body of r as a form or a JSON object. It
// enforces the method, the content type, the body cap and RFC 6749 §3.2:
// parameters must not be included more than once.
func (is *Issuer) readParams(w http.ResponseWriter, r *http.Request) (params, *oauthError) {
	if r.Method != http.MethodPost {
		return nil, &oauthError{Code: http.StatusMethodNotAllowed, OAuth: codeMethodNotAllowed, Msg: "use POST"}
	}
	q := r.URL.Query()
	for _, k := range sensitiveQuery {
		if q.Has(k) {
			return nil, badRequest("credentials must be sent in the request body")
		}
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return nil, badRequest("content type must be application/x-www-form-urlencoded or application/json")
	}
	// The cap is applied before reading anything: an unbounded body is a
	// memory exhaustion attack on an unauthenticated endpoint.
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, is.maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &oauthError{Code: http.StatusRequestEntityTooLarge, OAuth: codePayloadTooLarge,
				Msg: fmt.Sprintf("request body exceeds %d bytes", is.maxBody)}
		}
		return nil, badRequest("cannot read request body")
	}
	switch mt {
	case "application/x-www-form-urlencoded":
		return parseForm(body)
	case "application/json":
		return parseJSON(body)
	default:
		return nil, badRequest("content type must be application/x-www-form-urlencoded or application/json")
	}
}

func parseForm(body []byte) (params, *oauthError) {
	vals, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, badRequest("malformed form body")
	}
	p := make(params, len(vals))
	for k, vs := range vals {
		if len(vs) != 1 {
			return nil, badRequest(fmt.Sprintf("parameter %q included more than once", k))
		}
		p[k] = vs[0]
	}
	return p, nil
}

// parseJSON reads one JSON object of string values. encoding/json would let
// the last of duplicate keys win and match keys case-insensitively, so the
// object is walked token by token: keys are exact and a duplicate is an
// error (parameter smuggling).
func parseJSON(body []byte) (params, *oauthError) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	malformed := badRequest("body must be one JSON object of string values")
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, malformed
	}
	p := params{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, malformed
		}
		k, ok := t.(string)
		if !ok {
			return nil, malformed
		}
		if _, dup := p[k]; dup {
			return nil, badRequest(fmt.Sprintf("parameter %q included more than once", k))
		}
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, malformed
		}
		s, ok := v.(string)
		if !ok {
			return nil, malformed
		}
		p[k] = s
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return nil, malformed
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, malformed
	}
	return p, nil
}

// limitKey is the rate-limit bucket of a client address: the address
// itself for IPv4, its /64 for IPv6. Every IPv6 client holds at least a
// /64, so keying on single addresses would hand it endless fresh quotas.
func limitKey(ip netip.Addr) string {
	if ip.Is6() && !ip.Is4In6() {
		return netip.PrefixFrom(ip, 64).Masked().String()
	}
	return ip.Unmap().String()
}
