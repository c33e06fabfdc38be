package proxy_test

import (
	"testing"

	"github.com/authgate/authgate/authn/state"
	"github.com/authgate/authgate/proxy"
)

// BenchmarkGatewayRateLimit is BenchmarkGatewayPass/apikey through one
// rule without and with a rate limit on the embedded store (a bucket that
// never runs dry), and with structured conditions on the rule: the cost of
// a limit is the difference to "none".
func BenchmarkGatewayRateLimit(b *testing.B) {
	for _, tc := range []struct{ name, rule string }{
		{"none", ""},
		{"per_subject", "\n    rate_limit: {per: subject, every: 1ns, burst: 1000000000}"},
		{"per_client_ip", "\n    rate_limit: {per: client_ip, every: 1ns, burst: 1000000000}"},
		{"conditions", "\n    auth_methods: [apikey]\n    key_names: [bot]\n    source_cidrs: [192.0.2.0/24]\n    hosts: [example.com]"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			mem, err := state.NewMemory(state.MemoryOptions{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { mem.Close() })
			gw, _ := benchGatewayWith(b, "rules:\n  - path: /admin/**\n    roles: [admin]"+tc.rule+"\n",
				func(o *proxy.Options) { o.RateLimits = mem })
			serveLoop(b, gw, "/admin/x", "X-API-Key", "bench-key")
		})
	}
}
