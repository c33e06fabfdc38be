package proxy_test

import (
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/authn/token"
	"github.com/authgate/authgate/policy"
	"github.com/authgate/authgate/proxy"
)

// BenchmarkGatewayAssertion is BenchmarkGatewayPass with the gateway's own
// EdDSA tokens, without and with the identity assertion: "cached" repeats
// one request (its assertion is reused while half its life is left), and
// "nocache" signs every request (one Ed25519 signature each), which is
// also the cost of a request to a path not seen in the last TTL/2.
func BenchmarkGatewayAssertion(b *testing.B) {
	gateway, tok := assertionBenchGateways(b)
	auth := []string{"Authorization", "Bearer " + tok}
	b.Run("eddsa", func(b *testing.B) { serveLoop(b, gateway(0, false), "/admin/x", auth...) })
	b.Run("eddsa+assertion/cached", func(b *testing.B) { serveLoop(b, gateway(10000, true), "/admin/x", auth...) })
	b.Run("eddsa+assertion/nocache", func(b *testing.B) { serveLoop(b, gateway(0, true), "/admin/x", auth...) })
	b.Run("public+assertion/cached", func(b *testing.B) { serveLoop(b, gateway(10000, true), "/public/x") })
}

// assertionBenchGateways returns a constructor of gateways on the
// gateway's own EdDSA tokens, with an assertion cache of the given size
// when assert is set, and a token for them.
func assertionBenchGateways(b testing.TB) (func(cache int, assert bool) *proxy.Gateway, string) {
	b.Helper()
	priv, _ := token.GenerateKey(token.AlgEdDSA)
	ks, err := token.NewKeySetFrom(token.Material{Signing: priv})
	if err != nil {
		b.Fatal(err)
	}
	set, _ := policy.Load("policy.yaml", []byte(benchPolicy))
	settings := token.Settings{Issuer: "authgate", Audience: "authgate", Leeway: time.Second}
	bearer, _ := authn.NewBearer(token.NewVerifier(ks, settings, token.Options{CacheSize: 1000}))
	tok, _, _ := token.NewSigner(ks, settings, token.Options{}).Mint(token.Grant{Subject: "svc", Roles: []string{"admin"}, Type: token.TypeAccess, TTL: time.Hour})
	up, _ := url.Parse("http://127.0.0.1:1")
	gateway := func(cache int, assert bool) *proxy.Gateway {
		o := proxy.Options{Upstream: up, Policy: policy.NewStore(set), Authenticator: authn.Chain{Bearer: bearer},
			Transport: noopTransport{}, Logger: zap.NewNop(), Metrics: proxy.NewMetrics(prometheus.NewRegistry()), PreserveHost: true}
		if assert {
			a, err := token.NewAsserter(ks, token.AssertionSettings{Issuer: "authgate", Audience: "http://127.0.0.1:1", TTL: 30 * time.Second, CacheSize: cache})
			if err != nil {
				b.Fatal(err)
			}
			o.Assertion = a
		}
		gw, err := proxy.New(o)
		if err != nil {
			b.Fatal(err)
		}
		return gw
	}
	return gateway, tok
}
