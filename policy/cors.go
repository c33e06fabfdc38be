package policy

import (
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// CORS is a compiled cors block, of a rule or of the whole policy. The
// gateway answers a preflight (OPTIONS with Origin and
// Access-Control-Request-Method) for a path whose rule has one, without
// credentials, and adds the response headers for allowed origins. A CORS is
// immutable and safe for concurrent use.
type CORS struct {
	// Origins are the allowed origins: "https://app.example.com",
	// "https://*.example.com" (one more label) or "*" (any origin, not
	// with Credentials).
	Origins []string
	// Methods are the methods a preflight may ask for; empty means GET,
	// HEAD and POST.
	Methods []string
	// Headers are the request headers a preflight may ask for, lower-case;
	// "*" means any (not with Credentials).
	Headers []string
	// ExposeHeaders are the response headers a page may read.
	ExposeHeaders []string
	// Credentials allows cookies and Authorization on cross-origin
	// requests (Access-Control-Allow-Credentials: true).
	Credentials bool
	// MaxAge is how long a browser may cache a preflight answer; 0 sends
	// no Access-Control-Max-Age.
	MaxAge time.Duration
	// ForwardPreflight sends an allowed preflight to the upstream, still
	// without credentials, instead of answering it at the gateway.
	ForwardPreflight bool

	anyOrigin, anyHeader bool
	wild                 []wildOrigin
	allowMethods         string
	expose               string
	maxAge               string
}

// wildOrigin is "scheme://*.suffix".
type wildOrigin struct{ scheme, suffix string }

// AllowsOrigin reports whether a request's Origin header value is allowed.
// "null" (sandboxed frames, file: pages) is never allowed, not even by
// "*": any page can make itself a null origin.
func (c *CORS) AllowsOrigin(origin string) bool {
	if c == nil || origin == "" || origin == "null" {
		return false
	}
	if c.anyOrigin {
		return true
	}
	for _, o := range c.Origins {
		if strings.EqualFold(o, origin) {
			return true
		}
	}
	for _, w := range c.wild {
		rest, ok := cutPrefixFold(origin, w.scheme+"://")
		if !ok || len(rest) <= len(w.suffix) || !strings.EqualFold(rest[len(rest)-len(w.suffix):], w.suffix) {
			continue
		}
		if label := rest[:len(rest)-len(w.suffix)]; strings.IndexAny(label, ".:/@") < 0 {
			return true
		}
	}
	return false
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

// AllowsMethod reports whether a preflight may ask for method m.
func (c *CORS) AllowsMethod(m string) bool {
	if len(c.Methods) == 0 {
		return m == "GET" || m == "HEAD" || m == "POST"
	}
	return slices.Contains(c.Methods, m)
}

// AllowsHeaders reports whether every header of an
// Access-Control-Request-Headers value (comma-separated) is allowed.
func (c *CORS) AllowsHeaders(requested string) bool {
	if c.anyHeader {
		return true
	}
	for h := range strings.SplitSeq(requested, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if !slices.ContainsFunc(c.Headers, func(a string) bool { return strings.EqualFold(a, h) }) {
			return false
		}
	}
	return true
}

// AllowMethodsValue is the Access-Control-Allow-Methods value.
func (c *CORS) AllowMethodsValue() string { return c.allowMethods }

// ExposeHeadersValue is the Access-Control-Expose-Headers value, or "".
func (c *CORS) ExposeHeadersValue() string { return c.expose }

// MaxAgeValue is the Access-Control-Max-Age value in seconds, or "".
func (c *CORS) MaxAgeValue() string { return c.maxAge }

// compileCORS checks a cors block and fills the derived fields. It returns
// the problems found, each "key: message".
func compileCORS(c *CORS) []string {
	var errs []string
	if len(c.Origins) == 0 {
		errs = append(errs, "origins: at least one origin is required")
	}
	for _, o := range c.Origins {
		if o == "*" {
			c.anyOrigin = true
			continue
		}
		if msg := checkOrigin(o); msg != "" {
			errs = append(errs, "origins: "+msg)
			continue
		}
		if scheme, host, ok := strings.Cut(o, "://*."); ok {
			c.wild = append(c.wild, wildOrigin{scheme: scheme, suffix: "." + host})
		}
	}
	if c.anyOrigin && c.Credentials {
		// "*" with credentials would have to echo any origin, which lets
		// every site read a logged-in user's answers (the classic CORS
		// misconfiguration); browsers refuse a literal "*" with it too.
		errs = append(errs, `origins: "*" cannot be used with credentials: true; list the origins`)
	}
	for _, m := range c.Methods {
		if msg := checkMethod(m); msg != "" {
			errs = append(errs, "methods: "+msg)
		}
	}
	for i, h := range c.Headers {
		if h == "*" {
			c.anyHeader = true
			if c.Credentials {
				errs = append(errs, `headers: "*" cannot be used with credentials: true; list the headers`)
			}
			continue
		}
		if !validHeaderName(h) {
			errs = append(errs, "headers: "+strconv.Quote(h)+" is not a header name")
		}
		c.Headers[i] = strings.ToLower(h)
	}
	for _, h := range c.ExposeHeaders {
		if !validHeaderName(h) {
			errs = append(errs, "expose_headers: "+strconv.Quote(h)+" is not a header name")
		}
	}
	if c.MaxAge < 0 || c.MaxAge > 24*time.Hour {
		errs = append(errs, "max_age: must be between 0 and 24h")
	}
	methods := c.Methods
	if len(methods) == 0 {
		methods = []string{"GET", "HEAD", "POST"}
	}
	c.allowMethods = strings.Join(methods, ", ")
	c.expose = strings.Join(c.ExposeHeaders, ", ")
	if c.MaxAge > 0 {
		c.maxAge = strconv.FormatInt(int64(c.MaxAge/time.Second), 10)
	}
	return errs
}

// checkOrigin returns why o is not "scheme://host[:port]" (lower-case,
// nothing else) or "scheme://*.name", or "".
func checkOrigin(o string) string {
	if o == "null" {
		return `"null" cannot be allowed: any page can make itself a null origin`
	}
	u, err := url.Parse(strings.Replace(o, "://*.", "://wildcard.", 1))
	if err != nil || u.Scheme == "" || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil || u.Opaque != "" {
		return strconv.Quote(o) + ` is not an origin such as "https://app.example.com"`
	}
	if o != strings.ToLower(o) {
		return strconv.Quote(o) + " must be lower-case, as browsers send it"
	}
	if strings.Contains(o, "://*.") && strings.IndexByte(u.Host, ':') >= 0 {
		return strconv.Quote(o) + ": a wildcard origin takes no port"
	}
	return ""
}

// validHeaderName reports whether h is an RFC 9110 token.
func validHeaderName(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}
