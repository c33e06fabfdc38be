package jwks

import (
	"context"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// BenchmarkVerify measures Verify for one token: cold re-verifies the
// signature on every call (token cache disabled), cached serves it from the
// token cache.
func BenchmarkVerify(b *testing.B) {
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		b.Run(alg, func(b *testing.B) {
			for _, mode := range []string{"cold", "cached"} {
				b.Run(mode, func(b *testing.B) {
					f := newFixture(b, func(_ *IssuerConfig, cc *CacheConfig) {
						if mode == "cold" {
							cc.TokenCacheSize = 0
						}
					})
					tok := f.idp.Sign(f.claims(jwt.MapClaims{"roles": []string{"user", "admin"}}), alg)
					ctx := context.Background()
					if _, err := f.v.Verify(ctx, tok); err != nil {
						b.Fatal(err)
					}
					b.ReportAllocs()
					b.ResetTimer()
					for b.Loop() {
						if _, err := f.v.Verify(ctx, tok); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		})
	}
}
