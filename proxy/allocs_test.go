package proxy_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/authgate/authgate/authn/state"
	"github.com/authgate/authgate/proxy"
)

// allocCeilings are the allocations per request of each benchmarked mode,
// as measured: one in-process pass through the gateway's benchmark setup
// (bench_test.go and the *_bench_test.go files), including the request
// copy, the recorder and the no-op upstream's response, which are the
// same in every mode. A change that adds an allocation to a mode's path
// fails TestAllocationsPinned; one that removes some should lower the
// ceiling in the same commit.
var allocCeilings = map[string]int{
	"public":                  34,
	"apikey":                  41,
	"hs256":                   41,
	"eddsa":                   41,
	"eddsa+assertion/cached":  41,
	"eddsa+assertion/nocache": 64,
	"session":                 50,
	"ratelimit/none":          41,
	"ratelimit/per_subject":   43,
	"ratelimit/per_client_ip": 43,
	"ratelimit/conditions":    41,
	"traced/public":           90,
	"traced/hs256":            97,
	"traced/hs256-unsampled":  57,
}

// TestAllocationsPinned holds every benchmarked mode to its ceiling in
// allocCeilings, counted by testing.AllocsPerRun (every goroutine's
// allocations, averaged and rounded down, so a rare background one does
// not make it flaky).
func TestAllocationsPinned(t *testing.T) {
	if raceEnabled {
		// The race detector allocates for its own bookkeeping and makes
		// sync.Pool drop items at random: the counts differ from a
		// normal build's and vary between runs.
		t.Skip("allocation counts differ under the race detector")
	}
	if testing.Short() {
		t.Skip("builds every benchmark gateway; skipped with -short")
	}
	modes := map[string]func() func(){}
	gw, tok := benchGateway(t)
	bearer := []string{"Authorization", "Bearer " + tok}
	modes["public"] = func() func() { return serveOnce(t, gw, "/public/x") }
	modes["apikey"] = func() func() { return serveOnce(t, gw, "/admin/x", "X-API-Key", "bench-key") }
	modes["hs256"] = func() func() { return serveOnce(t, gw, "/admin/x", bearer...) }

	assertion, etok := assertionBenchGateways(t)
	eddsa := []string{"Authorization", "Bearer " + etok}
	modes["eddsa"] = func() func() { return serveOnce(t, assertion(0, false), "/admin/x", eddsa...) }
	modes["eddsa+assertion/cached"] = func() func() { return serveOnce(t, assertion(10000, true), "/admin/x", eddsa...) }
	modes["eddsa+assertion/nocache"] = func() func() { return serveOnce(t, assertion(0, true), "/admin/x", eddsa...) }

	modes["session"] = func() func() {
		mem, err := state.NewMemory(state.MemoryOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = mem.Close() })
		gw, _, cookie := sessionBenchGateway(t, mem, 0)
		return serveOnce(t, gw, "/admin/x", "Cookie", cookie)
	}

	for name, rule := range map[string]string{
		"none":          "",
		"per_subject":   "\n    rate_limit: {per: subject, every: 1ns, burst: 1000000000}",
		"per_client_ip": "\n    rate_limit: {per: client_ip, every: 1ns, burst: 1000000000}",
		"conditions":    "\n    auth_methods: [apikey]\n    key_names: [bot]\n    source_cidrs: [192.0.2.0/24]\n    hosts: [example.com]",
	} {
		modes["ratelimit/"+name] = func() func() {
			mem, err := state.NewMemory(state.MemoryOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = mem.Close() })
			gw, _ := benchGatewayWith(t, "rules:\n  - path: /admin/**\n    roles: [admin]"+rule+"\n",
				func(o *proxy.Options) { o.RateLimits = mem })
			return serveOnce(t, gw, "/admin/x", "X-API-Key", "bench-key")
		}
	}

	traced := func(sampler sdktrace.Sampler) (*proxy.Gateway, string) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discard{}), sdktrace.WithSampler(sampler))
		t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		return benchGateway(t, func(o *proxy.Options) { o.TracerProvider = tp })
	}
	modes["traced/public"] = func() func() {
		gw, _ := traced(sdktrace.AlwaysSample())
		return serveOnce(t, gw, "/public/x")
	}
	modes["traced/hs256"] = func() func() {
		gw, tok := traced(sdktrace.AlwaysSample())
		return serveOnce(t, gw, "/admin/x", "Authorization", "Bearer "+tok)
	}
	modes["traced/hs256-unsampled"] = func() func() {
		gw, tok := traced(sdktrace.ParentBased(sdktrace.NeverSample()))
		return serveOnce(t, gw, "/admin/x", "Authorization", "Bearer "+tok)
	}

	for name := range allocCeilings {
		if modes[name] == nil {
			t.Errorf("ceiling for %q, which no mode measures", name)
		}
	}
	for name, mode := range modes {
		t.Run(name, func(t *testing.T) {
			ceiling, ok := allocCeilings[name]
			if !ok {
				t.Fatalf("mode %q has no ceiling in allocCeilings", name)
			}
			serve := mode()
			got := testing.AllocsPerRun(200, serve)
			if got > float64(ceiling) {
				t.Errorf("one %s request allocates %.0f times, ceiling %d: remove the new allocation, or raise the ceiling with its reason", name, got, ceiling)
			} else if got < float64(ceiling) {
				t.Logf("one %s request allocates %.0f times, below its ceiling %d: lower the ceiling", name, got, ceiling)
			}
		})
	}
}
