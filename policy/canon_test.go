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
		{in: "/a/.b/..c", want: "/a/.b/..c"},
		{in: "/%c3%a9t%C3%A9", want: "/%C3%A9t%C3%A9"},
		{in: "/%e6%97%a5%e6%9c%ac", want: "/%E6%97%A5%E6%9C%AC"},
		{in: "/wiki/%ce%b1%cf%81", want: "/wiki/%CE%B1%CF%81"},
		{in: "/a.b/c.d", want: "/a.b/c.d"},
		{in: "/~user/x", want: "/~user/x"},
		{in: "/v1/x:get", want: "/v1/x:get"},
		{in: "/a$b", want: "/a$b"},
		{in: "/file~v2", want: "/file~v2"},
		{in: "/a%20b", want: "/a%20b"},
		{in: "/%25", want: "/%25"},
		{in: "/100%25", want: "/100%25"},
		{in: "/100%25off", want: "/100%25off"},
		{in: "/a%21b", want: "/a%21b"},
		{in: "/a!$&'()*+,=:@b", want: "/a!$&'()*+,=:@b"},
		{in: "/[v1]", want: "/[v1]"},
		{in: "/a%7Bb%7d", want: "/a%7Bb%7D"},
		// Rejected.
		{in: "/a%2ea%2e/", wantErr: errPathTrailingDot},
		{in: "/a/...", wantErr: errPathTrailingDot},
		{in: "/admin./x", wantErr: errPathTrailingDot},
		{in: "/admin%2e/x", wantErr: errPathTrailingDot},
		{in: "/admin%20/x", wantErr: errPathTrailingDot},
		{in: "/admin/x.", wantErr: errPathTrailingDot},
		{in: "/admin.%20./x", wantErr: errPathTrailingDot},
		{in: "/a%3fb", wantErr: errPathEncDelim},
		{in: "/a%3Fb", wantErr: errPathEncDelim},
		{in: "/a%23b", wantErr: errPathEncDelim},
		{in: "/admin::$DATA", wantErr: errPathNTFSStream},
		{in: "/admin:$i30:$INDEX_ALLOCATION/x", wantErr: errPathNTFSStream},
		{in: "/admin%3a%3a%24DATA", wantErr: errPathNTFSStream},
		{in: "/ADMINI~1/x", wantErr: errPathShortName},
		{in: "/web~12.con", wantErr: errPathShortName},
		{in: "/%c0%ae%c0%ae/admin", wantErr: errPathBadUTF8},
		{in: "/%c0%af", wantErr: errPathBadUTF8},
		{in: "/%c1%9c", wantErr: errPathBadUTF8},
		{in: "/%e0%80%ae", wantErr: errPathBadUTF8},
		{in: "/%f0%80%80%ae", wantErr: errPathBadUTF8},
		{in: "/%ed%a0%80", wantErr: errPathBadUTF8},
		{in: "/%c3", wantErr: errPathBadUTF8},
		{in: "/%80", wantErr: errPathBadUTF8},
		{in: "/%ef%bc%8e%ef%bc%8e/admin", wantErr: errPathUniSymbol},
		{in: "/%ef%bd%81dmin", wantErr: errPathNotNFKC},
		{in: "/%e2%80%a4%e2%80%a4/admin", wantErr: errPathUniSymbol},
		{in: "/%ef%bc%8f", wantErr: errPathUniSymbol},
		{in: "/%ef%bc%bc", wantErr: errPathUniSymbol},
		{in: "/%e2%88%95", wantErr: errPathUniSymbol},
		{in: "/%c2%a5", wantErr: errPathUniSymbol},
		{in: "/%e2%80%8b", wantErr: errPathUniSymbol},
		{in: "/%e2%80%ae", wantErr: errPathUniSymbol},
		{in: "/%e2%82%ac", wantErr: errPathUniSymbol},
		{in: "/%ef%ac%81le", wantErr: errPathNotNFKC},
		{in: "/cafe%cc%81", wantErr: errPathNotNFKC},
		{in: "/%c2%b2", wantErr: errPathNotNFKC},
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
	// Non-ASCII paths pay one allocation for the NFKC check.
	for _, p := range []string{"/", "/api/v1/users/42", "/a%20b/c.d"} {
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
