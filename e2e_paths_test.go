package main

import (
	"net/url"
	"path"
	"strings"
	"testing"

	"github.com/authgate/authgate/policy"
)

// pathAttacks are request targets that try to reach /admin (which needs
// the admin role) while looking like something else. Sent anonymously, each
// must be rejected or reach the upstream only under /public.
var pathAttacks = []string{
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
}

// interpretations are the ways some upstream might read a forwarded path:
// decoded once or twice, backslashes as slashes, ;parameters dropped,
// dot segments resolved, case folded.
func interpretations(raw string) []string {
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

func TestE2EPathConfusionNeverReachesDeniedPath(t *testing.T) {
	if len(pathAttacks) < 30 {
		t.Fatalf("only %d attack paths", len(pathAttacks))
	}
	e := newEnv(t, "", nil)
	for _, target := range pathAttacks {
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
			for _, p := range interpretations(got.RawPath) {
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
		{"/public/a%3Fb", "/public/a%3Fb"},
		{"/public/a%23b", "/public/a%23b"},
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
