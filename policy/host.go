package policy

import (
	"net/netip"
	"strings"
)

// CanonicalHost returns the host of a Host header value (or URL host) in
// the one form `hosts` conditions compare: without the port, without one
// trailing dot, ASCII lower-case, an IPv6 literal without brackets. It
// returns "" for anything else (a non-ASCII name, a bad port, stray bytes),
// which no hosts condition matches: an unreadable host is never mistaken
// for an allowed one. It allocates only to lower-case.
func CanonicalHost(hostport string) string {
	h := hostport
	if strings.HasPrefix(h, "[") {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return ""
		}
		if rest := h[end+1:]; rest != "" && !validPort(rest) {
			return ""
		}
		a, err := netip.ParseAddr(h[1:end])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return ""
		}
		return strings.ToLower(h[1:end])
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		if strings.IndexByte(h[:i], ':') >= 0 {
			return "" // an IPv6 literal must be bracketed
		}
		if !validPort(h[i:]) {
			return ""
		}
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return ""
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		// DNS names (as punycode), IPv4 literals and "_" (some service
		// names); everything else, including "%", "\" and non-ASCII, is
		// refused rather than normalised differently from the upstream.
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return ""
		}
	}
	if strings.Contains(h, "..") || h[0] == '.' {
		return ""
	}
	return strings.ToLower(h)
}

// validPort reports whether p is ":" followed by 1-5 digits.
func validPort(p string) bool {
	if len(p) < 2 || len(p) > 6 || p[0] != ':' {
		return false
	}
	for i := 1; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return true
}

// hostPattern is one entry of a rule's hosts: an exact canonical host, or
// "*.example.com", which matches exactly one more label (a.example.com,
// not example.com, not a.b.example.com), as a TLS certificate wildcard
// does (RFC 6125 §6.4.3).
type hostPattern struct {
	raw    string
	exact  string
	suffix string // ".example.com" for a wildcard
}

func (p hostPattern) matches(host string) bool {
	if p.suffix == "" {
		return host == p.exact
	}
	label, ok := strings.CutSuffix(host, p.suffix)
	return ok && label != "" && strings.IndexByte(label, '.') < 0
}

func hostIn(host string, pats []hostPattern) bool {
	if host == "" {
		return false
	}
	for _, p := range pats {
		if p.matches(host) {
			return true
		}
	}
	return false
}

// parseHostPattern parses an entry of hosts.
func parseHostPattern(raw string) (hostPattern, string) {
	if rest, ok := strings.CutPrefix(raw, "*."); ok {
		c := CanonicalHost(rest)
		if c == "" || c != rest || strings.IndexByte(c, '.') < 0 || strings.IndexByte(c, ':') >= 0 {
			return hostPattern{}, "wildcard host must be *. and a lower-case name with at least two labels, without port"
		}
		return hostPattern{raw: raw, suffix: "." + c}, ""
	}
	c := CanonicalHost(raw)
	if c == "" || c != raw {
		return hostPattern{}, "host must be a lower-case name or address without port or trailing dot (or *.example.com)"
	}
	return hostPattern{raw: raw, exact: c}, ""
}
