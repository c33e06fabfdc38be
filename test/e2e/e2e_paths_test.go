package e2e

import (
	"strings"
	"testing"

	"github.com/authgate/authgate/internal/attackpaths"
	"github.com/authgate/authgate/policy"
)

func TestE2EPathConfusionNeverReachesDeniedPath(t *testing.T) {
	if len(attackpaths.Admin) < 30 {
		t.Fatalf("only %d attack paths", len(attackpaths.Admin))
	}
	e := newEnv(t, "", nil)
	for _, target := range attackpaths.Admin {
		t.Run(target, func(t *testing.T) {
			before := e.up.count()
			code, body := raw(t, e.addr(), "GET "+target+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			reached := e.up.count() > before
			if !reached {
				if code != 400 && code != 401 {
					t.Errorf("GET %s = %d %s, want 400 or 401", target, code, body)
				}
				return
			}
			got := e.up.last(t)
			// The forwarded path is the canonical one that was authorized.
			if canon, err := policy.Canonicalize(got.RawPath); err != nil || canon != got.RawPath {
				t.Errorf("upstream got %q, which is not canonical (%q, %v)", got.RawPath, canon, err)
			}
			for _, p := range attackpaths.Readings(got.RawPath) {
				if !strings.HasPrefix(p, "/public") {
					t.Errorf("GET %s reached the upstream as %q, which an upstream may read as %q", target, got.RawPath, p)
					break
				}
			}
		})
	}
}

// TestE2EForwardedPathIsAuthorizedPath checks that accepted paths reach the
// upstream exactly in their canonical form.
func TestE2EForwardedPathIsAuthorizedPath(t *testing.T) {
	e := newEnv(t, "", nil)
	tests := []struct{ sent, want string }{
		{"/public/a", "/public/a"},
		{"/public//a///b", "/public/a/b"},
		{"/public/%7euser", "/public/~user"},
		{"/public/%41", "/public/A"},
		{"/public/a%20b", "/public/a%20b"},
		{"/public/caf%c3%a9", "/public/caf%C3%A9"},
		{"/public/a/", "/public/a/"},
		{"/public/it's(1)", "/public/it%27s%281%29"},
	}
	for _, tc := range tests {
		t.Run(tc.sent, func(t *testing.T) {
			code, body := raw(t, e.addr(), "GET "+tc.sent+"?q=%2e%2e HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			if code != 200 {
				t.Fatalf("GET %s = %d %s", tc.sent, code, body)
			}
			got := e.up.last(t)
			if got.RawPath != tc.want || got.RawQuery != "q=%2e%2e" {
				t.Errorf("upstream got %q?%s, want %q?q=%%2e%%2e", got.RawPath, got.RawQuery, tc.want)
			}
		})
	}
}
