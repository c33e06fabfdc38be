package policy

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// ErrBadPath is wrapped by every error Canonicalize returns. The wrapping
// error adds a short reason and never echoes the rejected input.
var ErrBadPath = errors.New("policy: bad path")

// The rejection reasons are immutable, so rejecting a path does not allocate.
var (
	errPathEmpty       = fmt.Errorf("%w: empty", ErrBadPath)
	errPathNotAbsolute = fmt.Errorf("%w: does not start with /", ErrBadPath)
	errPathBadEscape   = fmt.Errorf("%w: invalid percent-encoding", ErrBadPath)
	errPathEncSlash    = fmt.Errorf("%w: encoded slash", ErrBadPath)
	errPathBackslash   = fmt.Errorf("%w: backslash", ErrBadPath)
	errPathControl     = fmt.Errorf("%w: control character", ErrBadPath)
	errPathNonASCII    = fmt.Errorf("%w: raw non-ascii byte", ErrBadPath)
	errPathSemicolon   = fmt.Errorf("%w: semicolon", ErrBadPath)
	errPathDotSegment  = fmt.Errorf("%w: dot segment", ErrBadPath)
	errPathInvalidChar = fmt.Errorf("%w: invalid character", ErrBadPath)
	errPathDoubleEnc   = fmt.Errorf("%w: double percent-encoding", ErrBadPath)
	errPathEncDelim    = fmt.Errorf("%w: encoded # or ?", ErrBadPath)
	errPathBadUTF8     = fmt.Errorf("%w: percent-encoded bytes are not valid utf-8", ErrBadPath)
	errPathNotNFKC     = fmt.Errorf("%w: unicode not in nfkc form", ErrBadPath)
	errPathUniSymbol   = fmt.Errorf("%w: unicode other than letters, marks and digits", ErrBadPath)
	errPathTrailingDot = fmt.Errorf("%w: segment ends in a dot or a space", ErrBadPath)
	errPathNTFSStream  = fmt.Errorf("%w: ntfs stream name", ErrBadPath)
	errPathShortName   = fmt.Errorf("%w: 8.3 short name", ErrBadPath)
)

const upperHex = "0123456789ABCDEF"

// Canonicalize returns the canonical escaped form of escapedPath (the value
// of r.URL.EscapedPath()), or an error wrapping ErrBadPath. The rules are
// listed in the package documentation. The result is the string to authorize
// and to forward; Canonicalize is idempotent on its output. It is safe for
// concurrent use and does not allocate when the input is already canonical
// ASCII (percent-encoded non-ASCII text costs one allocation for its NFKC
// check).
func Canonicalize(escapedPath string) (string, error) {
	p := escapedPath
	if p == "" {
		return "", errPathEmpty
	}
	if p[0] != '/' {
		// Opaque or relative request targets ("http:admin/users") would be
		// forwarded verbatim by a reverse proxy: path confusion.
		return "", errPathNotAbsolute
	}
	var out []byte // nil while the output equals p[:i]
	n := 0         // length of the output so far
	high := false  // a percent-encoded byte >= 0x80 was seen
	segStart := 0  // output index just after the last '/'
	emit := func(i int, b ...byte) {
		if out == nil {
			out = make([]byte, 0, len(p))
			out = append(out, p[:i]...)
		}
		out = append(out, b...)
	}
	last := func() byte {
		if out != nil {
			return out[n-1]
		}
		return p[n-1]
	}
	seg := func() string {
		if out != nil {
			return string(out[segStart:n])
		}
		return p[segStart:n]
	}
	for i := 0; i < len(p); {
		c := p[i]
		switch {
		case c == '/':
			if n > 0 && last() == '/' {
				// Collapse "//": upstreams disagree on empty segments.
				if out == nil {
					emit(i)
				}
				i++
				continue
			}
			if s := seg(); n > 0 && (s == "." || s == "..") {
				return "", errPathDotSegment
			}
			if out != nil {
				emit(i, '/')
			}
			n++
			segStart = n
			i++
		case c == '%':
			if i+2 >= len(p) || unhex(p[i+1]) < 0 || unhex(p[i+2]) < 0 {
				return "", errPathBadEscape
			}
			v := byte(unhex(p[i+1])<<4 | unhex(p[i+2]))
			switch {
			case v == '/':
				// An encoded slash is one segment to us and two to an
				// upstream that decodes before routing: path confusion.
				return "", errPathEncSlash
			case v == '\\':
				// IIS and some frameworks treat "\" as "/".
				return "", errPathBackslash
			case v < 0x20 || v == 0x7f:
				// NUL truncation and header/log injection.
				return "", errPathControl
			case v == ';':
				return "", errPathSemicolon
			case v == '#' || v == '?':
				// An app that decodes the path and then splits off a
				// fragment or a query ("/admin%3F/x" read as "/admin")
				// sees another path than the one decided.
				return "", errPathEncDelim
			case v >= 0x80:
				high = true
				enc := [3]byte{'%', upperHex[v>>4], upperHex[v&15]}
				if out != nil || p[i+1] != enc[1] || p[i+2] != enc[2] {
					emit(i, enc[:]...)
				}
				n += 3
			case isUnreserved(v):
				// Decoded so that "/adm%69n" and "/admin" are one path.
				emit(i, v)
				n++
			default:
				enc := [3]byte{'%', upperHex[v>>4], upperHex[v&15]}
				if out == nil && p[i+1] == enc[1] && p[i+2] == enc[2] {
					// Already canonical.
				} else {
					emit(i, enc[:]...)
				}
				n += 3
			}
			i += 3
		case c == '\\':
			return "", errPathBackslash
		case c < 0x20 || c == 0x7f:
			return "", errPathControl
		case c >= 0x80:
			return "", errPathNonASCII
		case c == ';':
			// Matrix parameters: Tomcat and Spring route "/admin;x/" to
			// "/admin/", so "admin;x" must not be a distinct segment.
			return "", errPathSemicolon
		case isPathChar(c):
			if out != nil {
				emit(i, c)
			}
			n++
			i++
		default:
			return "", errPathInvalidChar
		}
	}
	if s := seg(); s == "." || s == ".." {
		return "", errPathDotSegment
	}
	res := p
	if out != nil {
		res = string(out)
	}
	if doubleEncoded(res) {
		return "", errPathDoubleEnc
	}
	if err := checkSegments(res); err != nil {
		return "", err
	}
	if high {
		if err := checkUnicode(res); err != nil {
			return "", err
		}
	}
	return res, nil
}

// checkSegments rejects segments of the canonical path canon that Windows,
// IIS and NTFS read as another name: a trailing "." or space (trimmed, so
// "/admin./x" is "/admin/x"), an NTFS stream ("admin::$DATA",
// "admin:$i30:$INDEX_ALLOCATION" names the directory admin) and an 8.3
// short name ("ADMINI~1" is "administration"). It does not allocate.
func checkSegments(canon string) error {
	start := 1
	for i := 1; i <= len(canon); i++ {
		if i < len(canon) && canon[i] != '/' {
			continue
		}
		if seg := canon[start:i]; seg != "" {
			if seg[len(seg)-1] == '.' || strings.HasSuffix(seg, "%20") {
				return errPathTrailingDot
			}
			if ntfsStream(seg) {
				return errPathNTFSStream
			}
			if shortName(seg) {
				return errPathShortName
			}
		}
		start = i + 1
	}
	return nil
}

// ntfsStream reports whether seg holds ":" followed by "$", raw or
// percent-encoded (":$DATA", "%3A%24DATA").
func ntfsStream(seg string) bool {
	colon := false
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if c == '%' && i+2 < len(seg) {
			switch seg[i+1 : i+3] {
			case "3A":
				c = ':'
			case "24":
				c = '$'
			}
			i += 2
		}
		if colon && c == '$' {
			return true
		}
		colon = c == ':'
	}
	return false
}

// shortName reports whether seg looks like a Windows 8.3 short name: one
// or more characters, "~", one or more digits, then the end of the
// segment or a ".".
func shortName(seg string) bool {
	for i := 1; i < len(seg); i++ {
		if seg[i] != '~' {
			continue
		}
		j := i + 1
		for j < len(seg) && '0' <= seg[j] && seg[j] <= '9' {
			j++
		}
		if j > i+1 && (j == len(seg) || seg[j] == '.') {
			return true
		}
	}
	return false
}

// checkUnicode checks the percent-encoded non-ASCII text of canon. A
// lenient upstream reads these differently from their bytes:
//   - Bytes that are not valid UTF-8 ("%C0%AE", an overlong "."; "%C0%AF"
//     and "%E0%80%AF", overlong "/"; "%C1%9C", overlong "") are decoded
//     by old IIS, Tomcat and PHP stacks into the character they spell
//     (CVE-2000-0884, CVE-2008-2938).
//   - Text that Unicode compatibility normalisation (NFKC) changes is read
//     as its normal form by Java, Python and .NET stacks that normalise
//     paths: the fullwidth "．．／" and U+2024 ONE DOT LEADER become
//     "../", "ａｄｍｉｎ" becomes "admin". Such a path must arrive in
//     NFKC already.
//   - Everything but letters, combining marks and digits is refused:
//     punctuation, symbols, spaces and format characters that NFKC keeps
//     are mapped to ASCII by Windows "best fit" conversion (U+2215
//     DIVISION SLASH to "/", U+00A5 YEN SIGN to "" in code page 932) or
//     are invisible (U+200B, bidi controls); names in any script still pass.
func checkUnicode(canon string) error {
	dec := make([]byte, 0, len(canon))
	for i := 0; i < len(canon); i++ {
		if c := canon[i]; c == '%' && i+2 < len(canon) {
			dec = append(dec, byte(unhex(canon[i+1])<<4|unhex(canon[i+2])))
			i += 2
			continue
		}
		dec = append(dec, canon[i])
	}
	if !utf8.Valid(dec) {
		return errPathBadUTF8
	}
	for i := 0; i < len(dec); {
		r, size := utf8.DecodeRune(dec[i:])
		i += size
		if r >= utf8.RuneSelf && !unicode.In(r, unicode.L, unicode.M, unicode.N) {
			return errPathUniSymbol
		}
	}
	if !norm.NFKC.IsNormal(dec) {
		return errPathNotNFKC
	}
	return nil
}

// doubleEncoded reports whether canon holds an encoded "%" followed by two
// hex digits ("%252e"). We never decode twice, but an upstream or framework
// that does would read "/public/%252e%252e/admin" as "/admin": refuse it.
func doubleEncoded(canon string) bool {
	for i := 0; i+4 < len(canon); i++ {
		if canon[i] == '%' && canon[i+1] == '2' && canon[i+2] == '5' && unhex(canon[i+3]) >= 0 && unhex(canon[i+4]) >= 0 {
			return true
		}
	}
	return false
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// isUnreserved reports whether c is an RFC 3986 unreserved character.
func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// isFoldable reports whether c may appear raw in a canonical path although it
// is not unreserved. Its percent-encoded form compares equal to it when
// matching.
func isFoldable(c byte) bool {
	switch c {
	case '!', '$', '&', '\'', '(', ')', '*', '+', ',', '=', ':', '@', '[', ']':
		return true
	}
	return false
}

// isPathChar reports whether c may appear raw in a canonical path segment.
func isPathChar(c byte) bool { return isUnreserved(c) || isFoldable(c) }

// foldInto appends the matching key of the canonical path fragment s to dst:
// percent-encoded foldable characters are decoded and, when ci is set, ASCII
// letters are lower-cased. The key is only used for comparison.
func foldInto(dst []byte, s string, ci bool) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' && i+2 < len(s) {
			h, l := unhex(s[i+1]), unhex(s[i+2])
			if h >= 0 && l >= 0 {
				if v := byte(h<<4 | l); isFoldable(v) {
					dst = append(dst, v)
					i += 2
					continue
				}
			}
		}
		if ci && 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

func foldString(s string, ci bool) string { return string(foldInto(nil, s, ci)) }
