package proxy_test

import (
	"context"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/authn/session"
	"github.com/authgate/authgate/authn/state"
	"github.com/authgate/authgate/authn/state/statetest"
	"github.com/authgate/authgate/authn/token"
	"github.com/authgate/authgate/authn/users"
	"github.com/authgate/authgate/policy"
	"github.com/authgate/authgate/proxy"
)

// sessionBenchGateway is benchGateway's gateway with browser sessions on
// store, bound to a users file as in production, and a session cookie
// and a gateway access token for the same user.
func sessionBenchGateway(b testing.TB, store state.Store, cacheTTL time.Duration) (*proxy.Gateway, string, string) {
	b.Helper()
	set, err := policy.Load("policy.yaml", []byte(benchPolicy))
	if err != nil {
		b.Fatal(err)
	}
	hash, err := users.HashPassword([]byte("bench-password"), 10)
	if err != nil {
		b.Fatal(err)
	}
	us, err := users.Parse("users.yaml", []byte("users:\n  - username: alice\n    password_hash: \""+hash+"\"\n    roles: [admin]\n"))
	if err != nil {
		b.Fatal(err)
	}
	var ust users.Store
	ust.Swap(us)
	u, _ := us.Lookup("alice")
	kset, _ := token.NewKeySet(token.Key{ID: "k1", Secret: []byte(benchSecret)})
	settings := token.Settings{Issuer: "authgate", Audience: "authgate", Leeway: time.Second}
	bearer, _ := authn.NewBearer(token.NewVerifier(kset, settings, token.Options{CacheSize: 1000, Binding: &ust}))
	tok, _, err := token.NewSigner(kset, settings, token.Options{}).Mint(token.Grant{Subject: "alice", Roles: u.Roles, Ver: u.Ver(), Type: token.TypeAccess, TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	mg, err := session.New(session.Options{Store: store, Binding: &ust, CacheTTL: cacheTTL,
		Roles: func(sub string) ([]string, bool) {
			u, ok := ust.Load().Lookup(sub)
			if !ok {
				return nil, false
			}
			return u.Roles, true
		}})
	if err != nil {
		b.Fatal(err)
	}
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second))) // past the users' not-before second
	w := httptest.NewRecorder()
	if _, err := mg.Start(w, httptest.NewRequest("POST", "/auth/sign_in", nil), state.Session{Subject: "alice", Roles: u.Roles, Ver: u.Ver()}); err != nil {
		b.Fatal(err)
	}
	cookie := w.Result().Cookies()[0]
	up, _ := url.Parse("http://127.0.0.1:1")
	gw, err := proxy.New(proxy.Options{
		Upstream:      up,
		Policy:        policy.NewStore(set),
		Authenticator: authn.Chain{Bearer: bearer, Session: mg},
		Transport:     noopTransport{},
		Logger:        zap.NewNop(),
		Metrics:       proxy.NewMetrics(prometheus.NewRegistry()),
		PreserveHost:  true,
		Cookies:       []string{mg.CookieName()},
	})
	if err != nil {
		b.Fatal(err)
	}
	return gw, tok, cookie.Name + "=" + cookie.Value
}

// BenchmarkGatewaySession compares one pass authenticated by a session
// cookie with one authenticated by a gateway access token (hs256, its
// verified-token cache on), both bound to the users file: with the
// embedded store, and with Redis without and with the in-process cache.
func BenchmarkGatewaySession(b *testing.B) {
	mem, err := state.NewMemory(state.MemoryOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = mem.Close() })
	gw, tok, cookie := sessionBenchGateway(b, mem, 0)
	b.Run("hs256", func(b *testing.B) { serveLoop(b, gw, "/admin/x", "Authorization", "Bearer "+tok) })
	b.Run("session", func(b *testing.B) { serveLoop(b, gw, "/admin/x", "Cookie", cookie) })
	b.Run("redis", func(b *testing.B) {
		srv := statetest.StartServer(b)
		for _, tc := range []struct {
			name string
			ttl  time.Duration
		}{{"session", 0}, {"session-cached", time.Second}} {
			b.Run(tc.name, func(b *testing.B) {
				rs, err := state.NewRedis(context.Background(), state.RedisOptions{URL: srv.URL(3), KeyPrefix: "bench-" + tc.name + ":"})
				if err != nil {
					b.Fatal(err)
				}
				defer rs.Close()
				gw, _, cookie := sessionBenchGateway(b, rs, tc.ttl)
				serveLoop(b, gw, "/admin/x", "Cookie", cookie)
			})
		}
	})
}
