package jose

import "testing"

// BenchmarkDecode measures the strict structural step alone on a typical
// gateway access token.
func BenchmarkDecode(b *testing.B) {
	raw := tok(okHeader, okClaims)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(raw); err != nil {
			b.Fatal(err)
		}
	}
}
