// Package attackpaths holds request targets that try to reach a protected
// path (/admin) while looking like something else, and the ways an upstream
// might read a forwarded path. The proxy and forward-auth tests share them
// so that both are held to the same list.
package attackpaths

import (
	"net/url"
	"path"
	"strings"
)

// Admin are request targets aimed at /admin (which needs the admin role)
// through path confusion: dot segments, encoded and double-encoded
// separators, backslashes, path parameters, NUL, case and overlong UTF-8.
var Admin = []string{
	"/admin/x",
	"/public/../admin/x",
	"/public/%2e%2e/admin/x",
	"/public/%2E%2E/admin/x",
	"/public/.%2e/admin/x",
	"/public/%2e./admin/x",
	"/public/..%2fadmin/x",
	"/public/%2e%2e%2fadmin/x",
	"/public%2f..%2fadmin/x",
	"/public/..%5cadmin/x",
	"/public/..\\admin/x",
	"/public\\..\\admin/x",
	"/public/%5c..%5cadmin/x",
	"/public/%252e%252e/admin/x",
	"/public/..%252fadmin/x",
	"/public/%25%32%65%25%32%65/admin/x",
	"/./admin/x",
	"//admin/x",
	"/public//../admin/x",
	"/public/./../admin/x",
	"/admin;/x",
	"/public/..;/admin/x",
	"/public/%2e%2e;/admin/x",
	"/public;/../admin/x",
	"/admin%3b/x",
	"/public/..%3b/admin/x",
	"/%61dmin/x",
	"/%61%64%6d%69%6e/x",
	"/ADMIN/x",
	"/Admin/x",
	"/admin%2fx",
	"/public/%00/../admin/x",
	"/public/..%00/admin/x",
	"/admin%00/x",
	"/public/%u002e%u002e/admin/x",
	"/public/%2e/admin/x",
	"/public/.../admin/x",
	"/\\admin/x",
	"/public/x/../../admin/x",
	"/public/%2E%2e%2F%2E%2E%2Fadmin/x",
	"/public/%c0%ae%c0%ae/admin/x",
	"/public/..%c0%afadmin/x",
	"/public/%zz/../admin/x",
	"/admin/",
	"/admin",
	"/public/..",
	"/public/.",
	"/public/%2e",
	"/public/%2e%2e%2f%2e%2e%2fadmin/x",
	"/public/a/..%2f..%2fadmin/x",
	"/public/%09/../admin/x",
	"/public/a?/../../admin/x",
	"/public/a#/../../admin/x",
}

// Readings are the ways some upstream might read a forwarded path: decoded
// once or twice, truncated at NUL, backslashes as slashes, ;parameters
// dropped, dot segments resolved, case folded. The query is ignored.
func Readings(raw string) []string {
	raw, _, _ = strings.Cut(raw, "?")
	var out []string
	once, err := url.PathUnescape(raw)
	if err != nil {
		once = raw
	}
	twice, err := url.PathUnescape(once)
	if err != nil {
		twice = once
	}
	for _, p := range []string{raw, once, twice} {
		p, _, _ = strings.Cut(p, "\x00")
		for _, q := range []string{p, strings.ReplaceAll(p, "\\", "/"), stripParams(p)} {
			out = append(out, q, path.Clean(q), strings.ToLower(path.Clean(q)))
		}
	}
	return out
}

func stripParams(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		s, _, _ = strings.Cut(s, ";")
		segs[i] = s
	}
	return strings.Join(segs, "/")
}

// ReadsAsAdmin reports whether some upstream could read raw as a path
// under /admin, and returns that reading.
func ReadsAsAdmin(raw string) (string, bool) {
	for _, p := range Readings(raw) {
		if lp := strings.ToLower(p); lp == "/admin" || strings.HasPrefix(lp, "/admin/") || strings.HasPrefix(lp, "/admin;") || strings.HasPrefix(lp, "/admin\x00") || strings.HasPrefix(lp, "//admin") {
			return p, true
		}
	}
	return "", false
}
