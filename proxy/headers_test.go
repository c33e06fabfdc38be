package proxy_test

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/authgate/authgate/internal/logsafe"
	"github.com/authgate/authgate/proxy"
)

// TestForeignIdentityHeadersStripped: the identity headers of other
// authenticating proxies never reach the upstream, in any spelling, on a
// public path or an authenticated one.
func TestForeignIdentityHeadersStripped(t *testing.T) {
	up := startGoUpstream(t)
	e := newGatewayEnv(t, faPolicy, up.srv.URL, nil)
	srv := httptest.NewServer(e.gw)
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")
	foreign := []string{
		"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Preferred-Username", "X-Forwarded-Groups",
		"X-Forwarded-Access-Token", "Remote-User", "Remote-Groups", "Remote-Email", "Remote-Name", "X-Remote-User",
		"X-Auth-Request-User", "X-Auth-Request-Email", "X-Auth-Request-Groups", "X-Auth-Request-Access-Token",
		"X-Pomerium-Jwt-Assertion", "X-Pomerium-Claim-Email", "X-Authentik-Username", "X-Webauth-User",
		"Cf-Access-Authenticated-User-Email", "X-Goog-Authenticated-User-Email", "X-Amzn-Oidc-Identity",
		"X-Ms-Client-Principal-Name", "X-Forwarded-Client-Cert", "X-Ssl-Client-S-Dn",
		"x_forwarded_user", "REMOTE_USER", "x-auth-request_user", "X_Pomerium_Claim_Groups",
	}
	var hdr strings.Builder
	for _, k := range foreign {
		hdr.WriteString(k + ": admin\r\n")
	}
	for _, tc := range []struct{ name, path, extra string }{
		{"public", "/public/a", ""},
		{"authenticated", "/api/items", "X-API-Key: " + userKey + "\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := up.snapshot()
			resp, body := roundTrip(t, addr, "GET "+tc.path+" HTTP/1.1\r\nHost: app.example\r\n"+tc.extra+hdr.String()+"Connection: close\r\n\r\n")
			if resp.StatusCode != 200 {
				t.Fatalf("GET %s = %d %q", tc.path, resp.StatusCode, body)
			}
			reqs, _ := up.snapshot()
			got := reqs[len(before):]
			if len(got) != 1 {
				t.Fatalf("upstream got %d requests", len(got))
			}
			for k, v := range got[0].Header {
				for _, f := range foreign {
					if strings.EqualFold(strings.ReplaceAll(k, "_", "-"), strings.ReplaceAll(f, "_", "-")) {
						t.Errorf("upstream got %s: %q", k, v)
					}
				}
			}
		})
	}
}

// TestLoggedClientStringsAreCapped: a long path or method lands in the
// log cut to logsafe.Max.
func TestLoggedClientStringsAreCapped(t *testing.T) {
	e := newFAEnv(t, faPolicy)
	long := "/admin/" + strings.Repeat("a", 40<<10)
	serve(e.gw, httptest.NewRequest("GET", long, nil))
	h := e.gw.ForwardAuth(proxyFAOptions(t))
	serve(h, nginxCheck(ingressAddr, strings.Repeat("M", 40<<10), "/public/a"))
	n := 0
	for _, l := range e.logs.All() {
		for k, v := range l.ContextMap() {
			if s, ok := v.(string); ok && len(s) > logsafe.Max+40 {
				t.Errorf("log field %s is %d bytes", k, len(s))
			}
		}
		n++
	}
	if n != 2 {
		t.Fatalf("logged %d lines, want 2", n)
	}
}

func proxyFAOptions(t *testing.T) proxy.ForwardAuthOptions {
	return proxy.ForwardAuthOptions{TrustedPeers: mustTrusted(t, "10.0.0.0/24")}
}
