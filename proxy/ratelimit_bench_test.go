package proxy_test

import (
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/authn/apikey"
	"github.com/authgate/authgate/authn/state"
	"github.com/authgate/authgate/policy"
	"github.com/authgate/authgate/proxy"
)

// BenchmarkGatewayRateLimit is BenchmarkGatewayPass/apikey through the
// same rule without and with a rate limit on the embedded store (a bucket
// that never runs dry), and with a rule carrying structured conditions:
// the cost of a limit is the difference.
func BenchmarkGatewayRateLimit(b *testing.B) {
	for _, tc := range []struct{ name, rule string }{
		{"none", ""},
		{"per_subject", "\n    rate_limit: {per: subject, every: 1ns, burst: 1000000000}"},
		{"per_client_ip", "\n    rate_limit: {per: client_ip, every: 1ns, burst: 1000000000}"},
		{"conditions", "\n    auth_methods: [apikey]\n    key_names: [bot]\n    source_cidrs: [192.0.2.0/24]\n    hosts: [example.com]"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			src := "rules:\n  - path: /admin/**\n    roles: [admin]" + tc.rule + "\n"
			set, err := policy.Load("policy.yaml", []byte(src))
			if err != nil {
				b.Fatal(err)
			}
			keys, err := apikey.Parse("keys.yaml", []byte("keys:\n  - name: bot\n    sha256: "+apikey.Digest("bench-key")+"\n    roles: [admin]\n"))
			if err != nil {
				b.Fatal(err)
			}
			var ks apikey.Store
			ks.Swap(keys)
			mem, err := state.NewMemory(state.MemoryOptions{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { mem.Close() })
			up, _ := url.Parse("http://127.0.0.1:1")
			gw, err := proxy.New(proxy.Options{
				Upstream:      up,
				Policy:        policy.NewStore(set),
				Authenticator: authn.Chain{APIKey: apikey.NewAuthenticator(&ks, nil)},
				Transport:     noopTransport{},
				Logger:        zap.NewNop(),
				Metrics:       proxy.NewMetrics(prometheus.NewRegistry()),
				PreserveHost:  true,
				RateLimits:    mem,
				Now:           time.Now,
			})
			if err != nil {
				b.Fatal(err)
			}
			serveLoop(b, gw, "/admin/x", "X-API-Key", "bench-key")
		})
	}
}
