package proxy_test

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/authgate/authgate/internal/attackpaths"
	"github.com/authgate/authgate/policy"
)

// TestProxyPathAttacks sends every attack path through the gateway in
// proxy mode, on a real listener, anonymously and with a non-admin key.
// Whatever reaches the upstream is the canonical path that was authorized
// and no reading an upstream may apply turns it into /admin.
//
// Under "catch-all" every authenticated caller may reach any path but
// /admin, so a form the policy reads as another path while the upstream
// reads /admin is a bypass for the user key.
func TestProxyPathAttacks(t *testing.T) {
	for _, pol := range []struct{ name, text string }{
		{"exact", faPolicy},
		// Case-insensitive, as it must be for an upstream that folds case.
		{"catch-all", "case_insensitive: true\n" + faPolicy + "  - id: rest\n    path: /**\n    authenticated: true\n"},
	} {
		t.Run(pol.name, func(t *testing.T) { proxyPathAttacks(t, pol.text) })
	}
}

func proxyPathAttacks(t *testing.T, policyText string) {
	up := startGoUpstream(t)
	e := newGatewayEnv(t, policyText, up.srv.URL, nil)
	srv := httptest.NewServer(e.gw)
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")
	reached := 0
	for _, caller := range []struct{ name, hdr string }{{"anonymous", ""}, {"user", "X-API-Key: " + userKey + "\r\n"}} {
		for _, target := range attackpaths.Admin {
			t.Run(caller.name+"/"+target, func(t *testing.T) {
				before, _ := up.snapshot()
				resp, body := roundTrip(t, addr, "GET "+target+" HTTP/1.1\r\nHost: app.example\r\n"+caller.hdr+"Connection: close\r\n\r\n")
				reqs, _ := up.snapshot()
				got := reqs[len(before):]
				if len(got) == 0 {
					if resp.StatusCode != 400 && resp.StatusCode != 401 && resp.StatusCode != 403 {
						t.Errorf("GET %s = %d %q, want 400, 401 or 403", target, resp.StatusCode, body)
					}
					return
				}
				reached++
				fwd, _, _ := strings.Cut(got[0].Path, "?")
				if canon, err := policy.Canonicalize(fwd); err != nil || canon != fwd {
					t.Errorf("GET %s reached the upstream as %q, which is not canonical (%q, %v)", target, fwd, canon, err)
				}
				if p, bad := attackpaths.ReadsAsAdmin(fwd); bad {
					t.Errorf("GET %s reached the upstream as %q, which an upstream may read as %q", target, fwd, p)
				}
			})
		}
	}
	t.Logf("%d of %d attack requests reached the upstream (none as /admin)", reached, 2*len(attackpaths.Admin))
}
