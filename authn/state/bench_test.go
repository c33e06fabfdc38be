package state

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authgate/authgate/authn/state/statetest"
)

// BenchmarkAllow measures parallel Allow calls spread over 1024 keys with a
// limit that always allows, so every call takes the full update path.
func BenchmarkAllow(b *testing.B) {
	l := Limit{Every: time.Nanosecond, Burst: 1 << 30}
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "bench:" + strconv.Itoa(i)
	}
	run := func(b *testing.B, s Store) {
		var next atomic.Uint64
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			ctx := context.Background()
			for pb.Next() {
				k := keys[next.Add(1)%uint64(len(keys))]
				if _, _, err := s.Allow(ctx, "t", k, l); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	}
	b.Run("memory", func(b *testing.B) {
		m, err := NewMemory(MemoryOptions{})
		if err != nil {
			b.Fatal(err)
		}
		defer m.Close()
		run(b, m)
	})
	b.Run("redis", func(b *testing.B) {
		srv := statetest.StartServer(b)
		r, err := NewRedis(context.Background(), RedisOptions{URL: srv.URL(0)})
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close()
		run(b, r)
	})
}

// BenchmarkLoginAttempt measures one failed login's limiter work, CheckLogin
// then SettleLogin, spread over 1024 accounts and as many clients, with
// limits that always admit.
func BenchmarkLoginAttempt(b *testing.B) {
	loose := Limit{Every: time.Nanosecond, Burst: 1 << 30}
	l := LoginLimits{PerClient: loose, User: loose, Known: loose, Clean: loose, CleanAfter: time.Nanosecond, KnownFor: time.Hour}
	run := func(b *testing.B, s Store) {
		var next atomic.Uint64
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			ctx := context.Background()
			for pb.Next() {
				n := next.Add(1) % 1024
				k := LoginKey{Account: "user" + strconv.FormatUint(n, 10), Known: true, Client: "10.0.0." + strconv.FormatUint(n%256, 10)}
				v, err := s.CheckLogin(ctx, k, l)
				if err == nil {
					err = s.SettleLogin(ctx, k, l, v.Tier, LoginFailed)
				}
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "attempts/s")
	}
	b.Run("memory", func(b *testing.B) {
		m, err := NewMemory(MemoryOptions{})
		if err != nil {
			b.Fatal(err)
		}
		defer m.Close()
		run(b, m)
	})
	b.Run("redis", func(b *testing.B) {
		srv := statetest.StartServer(b)
		r, err := NewRedis(context.Background(), RedisOptions{URL: srv.URL(0), Timeout: 2 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close()
		run(b, r)
	})
}
