package policy

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

const fuzzPolicy = `
rules:
  - {id: admin, path: /admin/**, roles: [admin]}
  - {id: all, path: /**, authenticated: true}
  - {id: public, path: /public/**, public: true}
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
	return out
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
		underAdmin := func(set *Set, path string) bool {
			keys := pathKeys(path, set.ci)
			return len(keys) > 0 && keys[0] == "admin"
		}
		check := func(set *Set, base string, vs []string) {
			for _, caller := range fuzzCallers {
				r := caller.req
				r.Path = base
				want := set.Decide(r)
				if underAdmin(set, base) && !caller.admin && want.Allow {
					t.Fatalf("Decide(%q as %s) = %+v; /admin must need role admin", base, caller.name, want)
				}
				for _, v := range vs {
					cv, err := Canonicalize(v)
					if err != nil {
						continue
					}
					r.Path = cv
					got := set.Decide(r)
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
