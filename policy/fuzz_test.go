package policy

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

const fuzzPolicy = `
rules:
  - {id: admin, path: /admin/**, roles: [admin]}
  - {id: all, path: /**, authenticated: true}
  - {id: public, path: /public/**, public: true}
  - {id: no-secret, path: /public/secret/**, deny: true}
  - {id: no-admin-delete, path: /admin/**, methods: [DELETE], deny: true}
`

var fuzzCallers = []struct {
	name  string
	req   Request
	admin bool
}{
	{"anonymous", Request{Method: "GET"}, false},
	{"no roles", Request{Method: "GET", Authenticated: true}, false},
	{"user", Request{Method: "GET", Authenticated: true, Roles: []string{"user"}}, false},
	{"admin", Request{Method: "GET", Authenticated: true, Roles: []string{"admin"}}, true},
	{"admin deleting", Request{Method: "DELETE", Authenticated: true, Roles: []string{"admin"}}, true},
}

// variants returns mutations of the canonical path c that an attacker could
// send hoping to reach the same upstream resource under another rule.
func variants(c string) []string {
	var out []string
	for i := 0; i < len(c); i++ {
		if c[i] == '%' {
			continue
		}
		out = append(out,
			c[:i]+fmt.Sprintf("%%%02X", c[i])+c[i+1:],
			c[:i]+fmt.Sprintf("%%%02x", c[i])+c[i+1:])
		if c[i] == '/' {
			out = append(out,
				c[:i]+"/"+c[i:],
				c[:i]+"/."+c[i:],
				c[:i]+"/../x/.."+c[i:],
				c[:i]+";x"+c[i:],
				c[:i]+`\`+c[i+1:],
				c[:i]+`\`+c[i:])
		}
	}
	out = append(out, c+"/", c+";x", c+"/.", c+"/..", strings.TrimSuffix(c, "/"), "//"+c)
	return append(out, lenientVariants(c)...)
}

// lenientVariants are mutations of c that a lenient upstream reads as c:
// overlong UTF-8 and fullwidth (NFKC) spellings of each ASCII character,
// a trailing "." or space, an NTFS stream or an 8.3 short-name suffix on
// each segment, and an encoded "#" or "?" that an app splits off after
// decoding.
func lenientVariants(c string) []string {
	var out []string
	for i := 0; i < len(c); i++ {
		b := c[i]
		if b == '%' || b >= 0x80 {
			continue
		}
		overlong := fmt.Sprintf("%%%02X%%%02X", 0xC0|b>>6, 0x80|b&0x3F)
		overlong3 := fmt.Sprintf("%%E0%%%02X%%%02X", 0x80|b>>6, 0x80|b&0x3F)
		out = append(out, c[:i]+overlong+c[i+1:], c[:i]+overlong3+c[i+1:])
		if 0x21 <= b && b <= 0x7E {
			full := string(rune(0xFF01 + int(b) - 0x21))
			out = append(out, c[:i]+escapeAll(full)+c[i+1:])
		}
		if b == '/' && i > 0 {
			for _, suffix := range []string{".", "%20", "%2E", ". .", "::$DATA", ":$i30:$INDEX_ALLOCATION", "~1", "%23x", "%3Fx", "%E2%80%8B"} {
				out = append(out, c[:i]+suffix+c[i:])
			}
		}
	}
	for _, suffix := range []string{".", "%20", "::$DATA", "~1", "%23", "%3F", "%C2%A0"} {
		out = append(out, strings.TrimSuffix(c, "/")+suffix)
	}
	return out
}

func escapeAll(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&b, "%%%02X", s[i])
	}
	return b.String()
}

// lenientInvariant fails t when the accepted canonical path c holds a form
// a lenient upstream reads as another path: bytes that are not UTF-8,
// text NFKC changes, a segment ending in "." or a space, an NTFS stream,
// an 8.3 short name, or an encoded "#" or "?".
func lenientInvariant(t *testing.T, p, c string) {
	t.Helper()
	dec, err := url.PathUnescape(c)
	if err != nil {
		t.Fatalf("Canonicalize(%q) = %q, which does not unescape: %v", p, c, err)
	}
	switch {
	case !utf8.ValidString(dec):
		t.Fatalf("Canonicalize(%q) = %q, which decodes to invalid UTF-8", p, c)
	case !norm.NFKC.IsNormalString(dec):
		t.Fatalf("Canonicalize(%q) = %q, which NFKC changes", p, c)
	case strings.ContainsAny(dec, "#?"):
		t.Fatalf("Canonicalize(%q) = %q, which decodes to a # or ?", p, c)
	}
	for _, seg := range strings.Split(dec, "/") {
		if strings.HasSuffix(seg, ".") || strings.HasSuffix(seg, " ") || strings.Contains(seg, ":$") {
			t.Fatalf("Canonicalize(%q) = %q: segment %q is read differently by Windows", p, c, seg)
		}
	}
}

func caseVariants(c string) []string {
	var toggled strings.Builder
	for i := 0; i < len(c); i++ {
		b := c[i]
		switch {
		case i%2 == 0 && 'a' <= b && b <= 'z':
			b -= 'a' - 'A'
		case i%2 == 1 && 'A' <= b && b <= 'Z':
			b += 'a' - 'A'
		}
		toggled.WriteByte(b)
	}
	return []string{strings.ToUpper(c), strings.ToLower(c), toggled.String()}
}

func FuzzCanonicalDecide(f *testing.F) {
	for _, seed := range []string{
		"/", "/x", "/admin", "/admin/", "/admin/users", "/ADMIN/users", "/%61dmin", "/adm%69n/x",
		"/public/x", "/public/../admin", "/public/%2e%2e/admin", "/public/%2E%2E/admin", "/public/..%2fadmin",
		"/public/%2fadmin", "//admin", "/./admin", "/admin;x/", "/admin%3bx/", `/public\..\admin`,
		"/public/%5c../admin", "/admin%00", "/public/%252e%252e/admin", "/admin%2f", "/public//..//admin",
		"/admin/%C3%A9", "/Admin", "/admin!/x", "/public/a%3Ab",
		"/admin./x", "/admin%20/x", "/admin::$DATA", "/ADMINI~1/x", "/admin%23/x", "/admin%3F/x",
		"/public/%C0%AE%C0%AE/admin", "/%EF%BD%81dmin", "/public/%E2%80%A4%E2%80%A4/admin", "/public/..%EF%BC%8Fadmin",
		"/public/caf%C3%A9", "/public/%E6%97%A5",
		"/public/secret", "/public/secret/x", "/public/SECRET/x", "/public/secre%74/x", "/public//secret/x",
		"/public/secret;x/y", "/public/./secret/x", "/public/x/../secret/y", "/public/secret%2fx",
	} {
		f.Add(seed)
	}
	s, err := Load("fuzz.yaml", []byte(fuzzPolicy))
	if err != nil {
		f.Fatal(err)
	}
	ci, err := Load("fuzz.yaml", []byte("case_insensitive: true\n"+fuzzPolicy))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, p string) {
		c, err := Canonicalize(p)
		if err != nil {
			if !errors.Is(err, ErrBadPath) {
				t.Fatalf("Canonicalize(%q) error %v does not wrap ErrBadPath", p, err)
			}
			return
		}
		if again, err := Canonicalize(c); err != nil || again != c {
			t.Fatalf("Canonicalize(%q) = %q, but Canonicalize(%q) = %q, %v", p, c, c, again, err)
		}
		lenientInvariant(t, p, c)
		underAdmin := func(set *Set, path string) bool {
			keys := pathKeys(path, set.ci)
			return len(keys) > 0 && keys[0] == "admin"
		}
		// deniedByRule reports whether a deny rule covers path for r:
		// /public/secret/** always, /admin/** for DELETE.
		deniedByRule := func(set *Set, path string, r Request) bool {
			keys := pathKeys(path, set.ci)
			return len(keys) >= 2 && keys[0] == "public" && keys[1] == "secret" ||
				len(keys) >= 1 && keys[0] == "admin" && r.Method == "DELETE"
		}
		check := func(set *Set, base string, vs []string) {
			for _, caller := range fuzzCallers {
				r := caller.req
				r.Path = base
				want := set.Decide(r)
				if underAdmin(set, base) && !caller.admin && want.Allow {
					t.Fatalf("Decide(%q as %s) = %+v; /admin must need role admin", base, caller.name, want)
				}
				if deniedByRule(set, base, r) && (want.Allow || want.Reason != ReasonDenyRule) {
					t.Fatalf("Decide(%q as %s) = %+v; a deny rule covers it", base, caller.name, want)
				}
				for _, v := range vs {
					cv, err := Canonicalize(v)
					if err != nil {
						continue
					}
					r.Path = cv
					got := set.Decide(r)
					if want.Reason == ReasonDenyRule && got.Allow {
						t.Fatalf("variant %q of %q (denied by deny rule %s) canonicalizes to %q and is allowed as %s: %+v",
							v, base, want.RuleID, cv, caller.name, got)
					}
					if got.Allow != want.Allow || got.RuleID != want.RuleID {
						t.Fatalf("variant %q of %q canonicalizes to %q and decides %+v as %s; %q decides %+v",
							v, base, cv, got, caller.name, base, want)
					}
				}
			}
		}
		if len(c) > 128 {
			check(s, c, nil)
			return
		}
		check(s, c, variants(c))
		check(ci, c, append(caseVariants(c), variants(strings.ToUpper(c))...))
	})
}
