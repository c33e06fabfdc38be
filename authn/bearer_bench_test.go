package authn

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkBearerToken measures reading the bearer token of a request,
// which runs on every request, cached token or not.
func BenchmarkBearerToken(b *testing.B) {
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+strings.Repeat("abcdefghij", 30)+"."+strings.Repeat("x", 300)+".sig")
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := BearerToken(r); err != nil {
			b.Fatal(err)
		}
	}
}
