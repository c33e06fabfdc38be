package attackpaths

import (
	"strings"
	"testing"
)

// TestReadsAsAdmin checks the readings themselves: each lenient reading
// named in the list must turn its example into /admin.
func TestReadsAsAdmin(t *testing.T) {
	for _, raw := range []string{
		"/admin./x", "/admin%20/x", "/admin::$INDEX_ALLOCATION/x", "/ADMIN~1/x",
		"/public/%c0%ae%c0%ae/admin/x", "/public/..%c0%afadmin/x", "/public/..%e0%80%afadmin/x",
		"/public/%ef%bc%8e%ef%bc%8e/admin/x", "/%ef%bd%81dmin/x", "/public/%e2%80%a4%e2%80%a4/admin/x",
		"/public/..%e2%88%95admin/x", "/admin%23/x", "/admin%3F/x", "/%u0061dmin/x", "/adm%e2%80%8bin/x",
		"/public/%e3%80%82%e3%80%82/admin/x", "/admin%c2%a0/x",
	} {
		if _, ok := ReadsAsAdmin(raw); !ok {
			t.Errorf("ReadsAsAdmin(%q) = false; the list says some upstream reads it as /admin", raw)
		}
	}
	for _, raw := range []string{"/public/a", "/public/admin", "/public/caf%C3%A9", "/public/a.b"} {
		if p, ok := ReadsAsAdmin(raw); ok {
			t.Errorf("ReadsAsAdmin(%q) = %q, true; want false", raw, p)
		}
	}
}

func TestAdminListHasNoDuplicates(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range Admin {
		if seen[p] {
			t.Errorf("%q is listed twice", p)
		}
		seen[p] = true
		if !strings.HasPrefix(p, "/") {
			t.Errorf("%q is not an origin-form target", p)
		}
	}
	if len(Admin) < 83 {
		t.Errorf("only %d attack paths", len(Admin))
	}
}
