package proxy

import (
	"fmt"
	"net/http"
	"strings"
)

// Request smuggling through bodies the upstream ignores.
//
// GET, HEAD, OPTIONS, DELETE and TRACE have no defined content semantics
// (RFC 9110 §9.3). Many servers never read a body sent with them: Python's
// http.server with keep-alive, and many hand-written handlers, leave it
// in the connection and parse it as the NEXT request, with headers the
// gateway never saw as headers (X-Auth-Subject included). On a pooled
// upstream connection that next request is answered to whoever sends the
// next request on it: one client request has become two upstream
// requests, and the second was never authorized.
//
// So a request on one of these methods that announces content is refused
// with 400 before anything else happens, unless the method is named in
// AllowBodiesOn. What announces content is exactly what makes an HTTP/1.1
// peer read bytes after the header: Content-Length greater than zero, any
// Transfer-Encoding (a chunked body, trailers included, even an empty
// one: "0\r\n\r\n" is still bytes a lenient upstream parses as a request)
// and "Expect: 100-continue" (RFC 9110 §10.1.1: a client must not send it
// without content). An HTTP/2 request whose stream stays open without a
// Content-Length counts as content too. "Content-Length: 0" is not
// content: it frames zero bytes for every reader, so nothing can be left
// behind; it is accepted and not forwarded (Go's transport omits a zero
// length on these methods), as RFC 9110 §8.6 reads it and as nginx and
// Envoy accept it.
//
// When AllowBodiesOn forwards such a body (Elasticsearch-style search
// APIs), the upstream request carries "Connection: close" and its
// connection is never reused: whatever the upstream leaves unread dies
// with that connection instead of being read as another request. This is
// the upstream side of what nginx does by default (HTTP/1.0 and a fresh
// connection per request unless keepalive is configured).

// bodilessMethods have no content semantics. TRACE is listed although it
// is refused earlier: a body on it is never allowed.
func bodilessMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodDelete, http.MethodTrace:
		return true
	}
	return false
}

// bodyMethods are the methods AllowBodiesOn may name.
const bodyMethodsHelp = "GET, HEAD, OPTIONS or DELETE"

// CheckAllowBodiesOn reports an error unless every entry of methods is one
// of GET, HEAD, OPTIONS and DELETE, each named once. Other methods carry
// bodies anyway, and TRACE never may (RFC 9110 §9.3.8).
func CheckAllowBodiesOn(methods []string) error {
	seen := map[string]bool{}
	for i, m := range methods {
		switch {
		case m == http.MethodTrace:
			return fmt.Errorf("proxy: allow_bodies_on[%d]: TRACE must never carry a body", i)
		case !bodilessMethod(m):
			return fmt.Errorf("proxy: allow_bodies_on[%d]: %q is not a method without body semantics (want %s, upper case)", i, m, bodyMethodsHelp)
		case seen[m]:
			return fmt.Errorf("proxy: allow_bodies_on[%d]: %s is named twice", i, m)
		}
		seen[m] = true
	}
	return nil
}

// bodyPolicy decides bodies on methods without body semantics. The zero
// value refuses all of them. It is immutable.
type bodyPolicy struct {
	get, head, options, delete bool
}

func newBodyPolicy(methods []string) (bodyPolicy, error) {
	var b bodyPolicy
	if err := CheckAllowBodiesOn(methods); err != nil {
		return b, err
	}
	for _, m := range methods {
		switch m {
		case http.MethodGet:
			b.get = true
		case http.MethodHead:
			b.head = true
		case http.MethodOptions:
			b.options = true
		case http.MethodDelete:
			b.delete = true
		}
	}
	return b, nil
}

func (b bodyPolicy) allows(m string) bool {
	switch m {
	case http.MethodGet:
		return b.get
	case http.MethodHead:
		return b.head
	case http.MethodOptions:
		return b.options
	case http.MethodDelete:
		return b.delete
	}
	return false
}

// framing is what a request says about its content.
type framing struct {
	contentLength    int64    // -1 unknown
	transferEncoding []string // as sent
	expect           bool     // an Expect header is present
}

// hasContent reports whether the request announces content an HTTP/1.1
// reader would consume after the header.
func (f framing) hasContent() bool {
	return f.contentLength != 0 || len(f.transferEncoding) > 0 || f.expect
}

func framingOf(r *http.Request) framing {
	_, expect := r.Header["Expect"]
	return framing{contentLength: r.ContentLength, transferEncoding: r.TransferEncoding, expect: expect}
}

// errBodyNotAllowed is the answer to content on a method without body
// semantics.
var errBodyNotAllowed = &Error{Code: http.StatusBadRequest, Msg: "request body not allowed on this method"}

// check decides the content of a request with the given method and
// framing and upgrade. It returns closeUpstream when the request may pass
// only on an upstream connection that is not reused, or a non-nil *Error.
func (b bodyPolicy) check(method string, f framing, upgrade bool) (closeUpstream bool, e *Error) {
	if !f.hasContent() || !bodilessMethod(method) {
		return false, nil
	}
	if upgrade {
		// After a 101 the bytes that follow are the tunnel's: a body would
		// be read as WebSocket frames or as the upgraded protocol.
		return false, errBodyNotAllowed
	}
	if !b.allows(method) {
		return false, errBodyNotAllowed
	}
	return true, nil
}

// originalFraming reads the framing of the original request from the
// X-Original-Content-Length and X-Original-Transfer-Encoding headers of a
// forward-auth check (nginx sets them from $http_content_length and
// $http_transfer_encoding; an ingress that sets neither leaves the
// request described as having no content). Each may appear once; a length
// that is not a decimal number is refused, as a front server refuses it.
func originalFraming(h http.Header) (framing, *Error) {
	f := framing{}
	cl, clOK, bad1 := oneHeader(h, hdrOriginalContentLength)
	te, teOK, bad2 := oneHeader(h, hdrOriginalTransferEncoding)
	if bad1 || bad2 {
		return f, &Error{Code: http.StatusBadRequest, Msg: "forward-auth headers must appear once and not be empty"}
	}
	if clOK {
		n, ok := parseLength(cl)
		if !ok {
			return f, &Error{Code: http.StatusBadRequest, Msg: "malformed original content length"}
		}
		f.contentLength = n
	}
	if teOK {
		f.transferEncoding = []string{strings.TrimSpace(te)}
	}
	return f, nil
}

// parseLength parses a Content-Length value: 1 to 19 ASCII digits.
func parseLength(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}
