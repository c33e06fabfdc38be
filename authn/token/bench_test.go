package token_test

import (
	"context"
	"testing"
	"time"

	"github.com/authgate/authgate/authn/token"
)

// BenchmarkVerify measures Verify of one access token: cold decodes and
// checks it on every call (cache disabled), cached serves it from the
// verified-token cache.
func BenchmarkVerify(b *testing.B) {
	ks, err := token.NewKeySet(keyA)
	if err != nil {
		b.Fatal(err)
	}
	raw, _, err := token.NewSigner(ks, settings, token.Options{Now: at(t0)}).Mint(token.Grant{
		Subject: "alice", Roles: []string{"admin", "user"}, Type: token.TypeAccess, TTL: time.Hour, Ver: "0123456789abcdef",
	})
	if err != nil {
		b.Fatal(err)
	}
	for _, mode := range []struct {
		name string
		size int
	}{{"cold", 0}, {"cached", 100}} {
		b.Run(mode.name, func(b *testing.B) {
			v := token.NewVerifier(ks, settings, token.Options{Now: at(t0), CacheSize: mode.size})
			ctx := context.Background()
			if _, err := v.Verify(ctx, raw); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(ctx, raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
