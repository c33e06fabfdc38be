package policy

import (
	"errors"
	"testing"
)

func TestCanonicalize(t *testing.T) {
	tests := []struct {
		in      string
		want    string // "" means rejected
		wantErr error
	}{
		// Accepted.
		{in: "/", want: "/"},
		{in: "/a", want: "/a"},
		{in: "/a/b/c", want: "/a/b/c"},
		{in: "/a/", want: "/a/"},
		{in: "//", want: "/"},
		{in: "//a///b", want: "/a/b"},
		{in: "/a//", want: "/a/"},
		{in: "/Admin/Users", want: "/Admin/Users"},
		{in: "/%61dmin", want: "/admin"},
		{in: "/%41%5a%30%2d%2E%5f%7e", want: "/AZ0-._~"},
		{in: "/a/%2ea", want: "/a/.a"},
		{in: "/a/...", want: "/a/..."},
		{in: "/a/.b/..c", want: "/a/.b/..c"},
		{in: "/%c3%a9t%C3%A9", want: "/%C3%A9t%C3%A9"},
		{in: "/%e2%82%ac", want: "/%E2%82%AC"},
		{in: "/a%20b", want: "/a%20b"},
		{in: "/%25", want: "/%25"},
		{in: "/100%25", want: "/100%25"},
		{in: "/100%25off", want: "/100%25off"},
		{in: "/a%3fb", want: "/a%3Fb"},
		{in: "/a%23b", want: "/a%23b"},
		{in: "/a%21b", want: "/a%21b"},
		{in: "/a!$&'()*+,=:@b", want: "/a!$&'()*+,=:@b"},
		{in: "/[v1]", want: "/[v1]"},
		{in: "/a%7Bb%7d", want: "/a%7Bb%7D"},
		{in: "/a%2ea%2e/", want: "/a.a./"},
		// Rejected.
		{in: "/a%2520b", wantErr: errPathDoubleEnc},
		{in: "/%252e%252e/admin", wantErr: errPathDoubleEnc},
		{in: "/%25%32%65%25%32%65/admin", wantErr: errPathDoubleEnc},
		{in: "/..%252fadmin", wantErr: errPathDoubleEnc},
		{in: "/%25Ab", wantErr: errPathDoubleEnc},
		{in: "", wantErr: errPathEmpty},
		{in: "a/b", wantErr: errPathNotAbsolute},
		{in: "admin/users", wantErr: errPathNotAbsolute},
		{in: "/a/../b", wantErr: errPathDotSegment},
		{in: "/a/..", wantErr: errPathDotSegment},
		{in: "/..", wantErr: errPathDotSegment},
		{in: "/a/./b", wantErr: errPathDotSegment},
		{in: "/.", wantErr: errPathDotSegment},
		{in: "/a/.", wantErr: errPathDotSegment},
		{in: "/a/%2e%2e/b", wantErr: errPathDotSegment},
		{in: "/a/%2E%2E/b", wantErr: errPathDotSegment},
		{in: "/a/.%2e/b", wantErr: errPathDotSegment},
		{in: "/a/%2E/b", wantErr: errPathDotSegment},
		{in: "/a/%2e/", wantErr: errPathDotSegment},
		{in: "//..//admin", wantErr: errPathDotSegment},
		{in: "/a%2fb", wantErr: errPathEncSlash},
		{in: "/a%2Fb", wantErr: errPathEncSlash},
		{in: "/a%5cb", wantErr: errPathBackslash},
		{in: "/a%5Cb", wantErr: errPathBackslash},
		{in: `/a\b`, wantErr: errPathBackslash},
		{in: `/admin\..\public`, wantErr: errPathBackslash},
		{in: "/a%00", wantErr: errPathControl},
		{in: "/a%0a", wantErr: errPathControl},
		{in: "/a%7f", wantErr: errPathControl},
		{in: "/a\x00", wantErr: errPathControl},
		{in: "/a\tb", wantErr: errPathControl},
		{in: "/a\x7f", wantErr: errPathControl},
		{in: "/admin;x/", wantErr: errPathSemicolon},
		{in: "/admin/;jsessionid=1", wantErr: errPathSemicolon},
		{in: "/admin%3bx", wantErr: errPathSemicolon},
		{in: "/admin%3Bx", wantErr: errPathSemicolon},
		{in: "/caf\xc3\xa9", wantErr: errPathNonASCII},
		{in: "/a%", wantErr: errPathBadEscape},
		{in: "/a%2", wantErr: errPathBadEscape},
		{in: "/a%zz", wantErr: errPathBadEscape},
		{in: "/a%g0", wantErr: errPathBadEscape},
		{in: "/a b", wantErr: errPathInvalidChar},
		{in: "/a?b", wantErr: errPathInvalidChar},
		{in: "/a#b", wantErr: errPathInvalidChar},
		{in: "/a<b>", wantErr: errPathInvalidChar},
		{in: "/a|b", wantErr: errPathInvalidChar},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Canonicalize(tt.in)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !errors.Is(err, ErrBadPath) {
					t.Fatalf("Canonicalize(%q) = %q, %v; want error %v", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Canonicalize(%q) = %q, %v; want %q, nil", tt.in, got, err, tt.want)
			}
			again, err := Canonicalize(got)
			if err != nil || again != got {
				t.Fatalf("Canonicalize(%q) = %q, %v; want it idempotent", got, again, err)
			}
		})
	}
}

func TestCanonicalizeNoAllocWhenCanonical(t *testing.T) {
	for _, p := range []string{"/", "/api/v1/users/42", "/a%20b/%C3%A9"} {
		t.Run(p, func(t *testing.T) {
			if n := testing.AllocsPerRun(100, func() { _, _ = Canonicalize(p) }); n != 0 {
				t.Errorf("Canonicalize(%q) allocates %v times, want 0", p, n)
			}
		})
	}
}

func BenchmarkCanonicalize(b *testing.B) {
	for _, bc := range []struct{ name, path string }{
		{"canonical", "/api/v1/users/42/orders"},
		{"rewrite", "//api/%76%31/users//%34%32/orders%c3%a9"},
		{"rejected", "/api/v1/%2e%2e/admin"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = Canonicalize(bc.path)
			}
		})
	}
}
