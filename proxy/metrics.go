package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the proxy's Prometheus collectors. Every label takes values
// from a closed set (never a raw path or subject), so cardinality is
// bounded. A nil *Metrics records nothing. It is safe for concurrent use.
type Metrics struct {
	requests         *prometheus.CounterVec
	overhead         prometheus.Histogram
	upstreamDuration prometheus.Histogram
	upstreamErrors   *prometheus.CounterVec
	upstreamRetries  *prometheus.CounterVec
	inflight         prometheus.Gauge
	ruleHits         *prometheus.CounterVec
	shadow           *prometheus.CounterVec
	apiKeyUse        *prometheus.CounterVec
	tunnels          *tunnelMetrics
	rateLimits       *prometheus.CounterVec
}

// NewMetrics registers the proxy metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authgate_requests_total",
			Help: "Requests handled by the gateway, by decision, reason, auth method and response code class.",
		}, []string{"decision", "reason", "auth_method", "code_class"}),
		overhead: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "authgate_request_duration_seconds",
			Help:    "Time the gateway itself spent on a request, excluding the upstream round trip.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		upstreamDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "authgate_upstream_duration_seconds",
			Help:    "Time from sending a request upstream to receiving its response headers.",
			Buckets: prometheus.DefBuckets,
		}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authgate_upstream_errors_total",
			Help: "Failed upstream round trips by kind.",
		}, []string{"kind"}),
		upstreamRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authgate_upstream_retries_total",
			Help: "Upstream requests sent a second time, by reason (refused: the connection was refused, so nothing had been sent).",
		}, []string{"reason"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "authgate_requests_in_flight",
			Help: "Requests being handled now.",
		}),
		ruleHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authgate_policy_rule_hits_total",
			Help: "Decisions by the policy rule that made them (bounded by the policy).",
		}, []string{"rule_id", "decision"}),
		shadow: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authgate_policy_shadow_disagreements_total",
			Help: "Requests where the shadow policy decided differently from the enforced one.",
		}, []string{"enforced", "shadow"}),
		apiKeyUse: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authgate_api_key_requests_total",
			Help: "Requests authenticated by API key, by key name (bounded by the keys file).",
		}, []string{"key"}),
	}
	reg.MustRegister(m.requests, m.overhead, m.upstreamDuration, m.upstreamErrors, m.upstreamRetries, m.inflight, m.ruleHits, m.shadow, m.apiKeyUse)
	m.tunnels = newTunnelMetrics(reg)
	m.rateLimits = newRateLimitMetrics(reg)
	for _, k := range upstreamErrorKinds {
		m.upstreamErrors.WithLabelValues(k)
	}
	m.upstreamRetries.WithLabelValues("refused")
	return m
}

var upstreamErrorKinds = []string{"refused", "timeout", "reset", "other"}

func codeClass(code int) string {
	switch {
	case code < 200:
		return "1xx"
	case code < 300:
		return "2xx"
	case code < 400:
		return "3xx"
	case code < 500:
		return "4xx"
	}
	return "5xx"
}
