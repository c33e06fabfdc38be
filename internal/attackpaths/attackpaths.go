// Package attackpaths holds request targets that try to reach a protected
// path (/admin) while looking like something else, and the ways an upstream
// might read a forwarded path. The proxy and forward-auth tests share them
// so that both are held to the same list.
package attackpaths

import (
	"net/url"
	"path"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
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

	// Invalid UTF-8: overlong encodings of ".", "/" and "\" that old IIS,
	// Tomcat and PHP decoders read as the character they spell.
	"/public/%e0%80%ae%e0%80%ae/admin/x",
	"/public/%c0%ae%c0%ae%c0%afadmin/x",
	"/public/..%c1%9cadmin/x",
	"/public/..%e0%80%afadmin/x",
	"/public/%f0%80%80%ae%f0%80%80%ae/admin/x",
	"/public/%c0%2e%c0%2e/admin/x",
	"/%c1%a1dmin/x",
	// Code points NFKC maps to ".", "/", "\" or letters of "admin".
	"/public/%ef%bc%8e%ef%bc%8e/admin/x",
	"/public/..%ef%bc%8fadmin/x",
	"/public/..%ef%bc%bcadmin/x",
	"/public/%e2%80%a4%e2%80%a4/admin/x",
	"/public/%e2%80%a5/admin/x",
	"/public/%ef%b9%92%ef%b9%92/admin/x",
	"/%ef%bd%81dmin/x",
	"/%ef%bd%81%ef%bd%84%ef%bd%8d%ef%bd%89%ef%bd%8e/x",
	"/%e1%b5%83dmin/x",
	"/%f0%9d%90%9admin/x",
	"/admin%ef%bc%8fx",
	// Best-fit lookalikes NFKC keeps, spaces and invisible characters.
	"/public/..%e2%88%95admin/x",
	"/public/..%e2%81%84admin/x",
	"/public/..%c2%a5admin/x",
	"/public/..%e2%82%a9admin/x",
	"/public/%e3%80%82%e3%80%82/admin/x",
	"/admin%c2%a0/x",
	"/admin%e3%80%80/x",
	"/adm%e2%80%8bin/x",
	"/adm%c2%adin/x",
	"/admin%e2%80%ae/x",
	// Encoded "#" and "?": an app that decodes, then splits them off.
	"/admin%23/x",
	"/admin%3F/x",
	"/admin%3fx=/x",
	"/public/a%23/../../admin/x",
	"/public/a%3F/../../admin/x",
	// Windows and IIS: trailing dots and spaces are trimmed, NTFS streams
	// name the file or directory, 8.3 short names alias long ones.
	"/admin./x",
	"/admin%2e/x",
	"/admin%20/x",
	"/admin.%20/x",
	"/admin%09/x",
	"/admin::$INDEX_ALLOCATION/x",
	"/admin:$i30:$INDEX_ALLOCATION/x",
	"/admin%3a%3a%24DATA/x",
	"/admin/x::$DATA",
	"/ADMIN~1/x",
	"/admini~1/x",
	// IIS %u escapes.
	"/public/..%u2215admin/x",
	"/%u0061dmin/x",
}

// bestFit maps the non-ASCII characters that Windows "best fit" code
// page conversion turns into path separators or dots.
var bestFit = strings.NewReplacer(
	"\u2215", "/", "\u2044", "/", "\u00a5", "\\", "\u20a9", "\\", "\u3002", ".", "\uff61", ".",
	"\u200b", "", "\u00ad", "", "\u202e", "", "\u00a0", " ", "\u3000", " ",
)

// Readings are the ways some upstream might read a forwarded path: decoded
// once or twice (also leniently: overlong UTF-8 and IIS %u escapes),
// truncated at NUL, "#" or "?" after decoding, normalised with NFKC or
// Windows best fit, trailing dots and spaces trimmed, NTFS streams and
// 8.3 short names resolved, backslashes as slashes, ;parameters dropped,
// dot segments resolved, case folded. The query is ignored.
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
	lenient := lenientUnescape(raw)
	for _, p := range []string{raw, once, twice, lenient} {
		p, _, _ = strings.Cut(p, "\x00")
		cut, _, _ := strings.Cut(p, "#")
		cut, _, _ = strings.Cut(cut, "?")
		nf := norm.NFKC.String(p)
		for _, q := range []string{p, cut, nf, bestFit.Replace(nf), windows(p), windows(bestFit.Replace(nf))} {
			for _, r := range []string{q, strings.ReplaceAll(q, "\\", "/"), stripParams(q)} {
				out = append(out, r, path.Clean(r), strings.ToLower(path.Clean(r)))
			}
		}
	}
	return out
}

// lenientUnescape decodes %XX and IIS %uXXXX escapes, and reads overlong
// UTF-8 sequences as the ASCII character they spell, as old decoders did.
func lenientUnescape(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b = append(b, s[i])
			continue
		}
		if i+5 < len(s) && (s[i+1] == 'u' || s[i+1] == 'U') {
			if v, err := strconv.ParseUint(s[i+2:i+6], 16, 32); err == nil {
				b = utf8.AppendRune(b, rune(v))
				i += 5
				continue
			}
		}
		if i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b = append(b, byte(v))
				i += 2
				continue
			}
		}
		b = append(b, s[i])
	}
	// Overlong forms: 2, 3 and 4 bytes whose payload is ASCII.
	var out []byte
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case (c == 0xc0 || c == 0xc1) && i+1 < len(b):
			out = append(out, (c&0x1f)<<6|b[i+1]&0x3f)
			i++
		case c == 0xe0 && i+2 < len(b) && b[i+1] < 0xa0:
			out = append(out, (b[i+1]&0x3f)<<6|b[i+2]&0x3f)
			i += 2
		case c == 0xf0 && i+3 < len(b) && b[i+1] < 0x90:
			out = append(out, (b[i+2]&0x3f)<<6|b[i+3]&0x3f)
			i += 3
		default:
			out = append(out, c)
		}
	}
	return string(out)
}

// windows reads p as Windows and IIS resolve file names: each segment
// loses trailing dots and spaces and any NTFS stream suffix (":$DATA",
// ":$i30:$INDEX_ALLOCATION"), and an 8.3 short name ("ADMINI~1") stands
// for the long name it abbreviates, read here as its stem.
func windows(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		s, _, _ = strings.Cut(s, ":")
		if j := strings.IndexByte(s, '~'); j > 0 {
			s = s[:j]
		}
		segs[i] = strings.TrimRight(s, ". ")
	}
	return strings.Join(segs, "/")
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
