package issuer

import (
	"net/url"
	"strings"

	"github.com/authgate/authgate/policy"
)

// maxRedirectBytes bounds the rd parameter.
const maxRedirectBytes = 2048

// SafeRedirect returns rd when it is a same-origin relative reference the
// browser may be sent to after sign-in, and ok=false otherwise. Open
// redirects after sign-in are oauth2-proxy's most repeated advisory class
// (CVE-2020-4037, CVE-2020-5233, CVE-2021-21291, GHSA-j3p6-...): each was a
// form that one parser read as a path and the browser as another host.
// Only an absolute path (optionally with a query) of printable ASCII
// passes, checked on the raw value and again on every percent-decoding
// of it, so "//host", "/\host", "/%2F/host", "/%5Chost", "/\t/host" (the
// browser drops tabs and newlines), schemes and encoded variants fail; the
// path must also be canonical for the policy (no dot segments, encoded
// slashes or backslashes, controls, double encodings), and must not lead
// back into the gateway's own endpoints under prefix, whose pages would
// loop.
func SafeRedirect(rd, prefix string) (string, bool) {
	if rd == "" || len(rd) > maxRedirectBytes {
		return "", false
	}
	if !safeRelative(rd, true) {
		return "", false
	}
	s := rd
	for range 4 {
		if !safeRelative(s, false) {
			return "", false
		}
		d, err := url.PathUnescape(s)
		if err != nil {
			return "", false
		}
		if d == s {
			break
		}
		s = d
	}
	if !safeRelative(s, false) {
		return "", false
	}
	u, err := url.Parse(rd)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" || u.Fragment != "" {
		return "", false
	}
	canon, err := policy.Canonicalize(u.EscapedPath())
	if err != nil || canon != u.EscapedPath() {
		// Canonicalize collapses "//" runs: a path it changes is refused,
		// never rewritten into something the user did not ask for.
		return "", false
	}
	if prefix != "" && (canon == prefix || strings.HasPrefix(canon, prefix+"/")) {
		return "", false
	}
	return rd, true
}

// safeRelative reports whether s looks like an absolute path to every
// reader: it starts with one "/" not followed by "/" or "\", and holds no
// backslash, white space or control character, and (raw) only ASCII; a
// decoded form may hold UTF-8, which Canonicalize judges.
func safeRelative(s string, raw bool) bool {
	if len(s) == 0 || s[0] != '/' {
		return false
	}
	if len(s) > 1 && (s[1] == '/' || s[1] == '\\') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c == 0x7f || c == '\\' || raw && c >= 0x80 {
			return false
		}
	}
	return true
}
