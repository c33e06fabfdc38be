package proxy

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/authgate/authgate/authn"
)

// DefaultAssertionHeader is the default header of the identity assertion.
const DefaultAssertionHeader = "X-Auth-Assertion"

// Asserter signs the identity assertion of one admitted request: a short
// JWT that names the caller (p, the anonymous caller on a public path) and
// binds it to the request exactly as the upstream receives it: its method,
// its Host header and its path on the request line (escaped, without the
// query). Implementations must be safe for concurrent use.
type Asserter interface {
	Assert(p authn.Principal, method, host, path string) (string, error)
}

// assert signs st's assertion for r. A failure refuses the request: an
// upstream that checks assertions would refuse it anyway, and one that
// does not must not get a request the gateway could not vouch for.
func (g *Gateway) assert(r *http.Request, st *reqState) *Error {
	a, err := g.o.Assertion.Assert(st.principal, r.Method, g.upstreamHost(r), g.wirePath(st.canon))
	if err != nil {
		return &Error{Code: http.StatusInternalServerError, Msg: "internal error", Err: err}
	}
	st.assertion = a
	return nil
}

// upstreamHost is the Host header the upstream receives for r, lower-case:
// the client's with PreserveHost, else the upstream URL's (which the
// transport sends when Rewrite leaves Out.Host empty).
func (g *Gateway) upstreamHost(r *http.Request) string {
	h := g.o.Upstream.Host
	if g.o.PreserveHost && r.Host != "" {
		h = r.Host
	}
	return lowerASCII(h)
}

func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// forwardPath returns the URL path and raw path Rewrite forwards for the
// canonical path canon, below the upstream's base path.
func (g *Gateway) forwardPath(canon string) (path, raw string) {
	if strings.IndexByte(canon, '%') < 0 && g.baseRaw == g.basePath {
		return g.basePath + canon, ""
	}
	p, _ := url.PathUnescape(canon) // canon is valid by construction
	return g.basePath + p, g.baseRaw + canon
}

// wirePath is the path on the request line the upstream receives for
// canon: what the transport writes for forwardPath (url.URL.EscapedPath).
func (g *Gateway) wirePath(canon string) string {
	p, raw := g.forwardPath(canon)
	if raw != "" {
		// RawPath is a valid encoding of Path by construction, so it is
		// what goes on the wire.
		return raw
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; !pathSafe(c) {
			u := url.URL{Path: p}
			return u.EscapedPath()
		}
	}
	return p
}

// pathSafe reports whether url.URL.EscapedPath keeps c as is in a path.
func pathSafe(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '-', '_', '.', '~', '$', '&', '+', ',', '/', ':', ';', '=', '@':
		return true
	}
	return false
}

// underPrefix reports whether canon is prefix or below it.
func underPrefix(canon, prefix string) bool {
	return prefix != "" && (canon == prefix || strings.HasPrefix(canon, prefix+"/"))
}

// setClaims sets the claim headers of p in h.
func (g *Gateway) setClaims(h http.Header, p authn.Principal) {
	if len(p.ClaimValues) == 0 {
		return
	}
	for _, c := range g.headers.claims {
		if v, ok := p.ClaimValues[c.path]; ok {
			h[c.name] = []string{v}
		}
	}
}
