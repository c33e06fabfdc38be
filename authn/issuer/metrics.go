package issuer

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcome label values. Labels come from these closed sets only, never from
// usernames or addresses (unbounded cardinality).
const (
	outcomeSuccess     = "success"
	outcomeFailure     = "failure"
	outcomeRateLimited = "rate_limited"
	outcomeUnavailable = "unavailable"
	outcomeReuse       = "reuse"
)

// Endpoint and limiter-key label values.
const (
	endpointLogin   = "login"
	endpointRefresh = "refresh"
	endpointLogout  = "logout"
	keyIP           = "ip"
	keyUserClient   = "user_client"
	keyUser         = "user"
)

type metrics struct {
	logins      *prometheus.CounterVec
	refreshes   *prometheus.CounterVec
	reuse       prometheus.Counter
	rateLimited *prometheus.CounterVec
	logouts     *prometheus.CounterVec
}

// newMetrics builds the issuer's counters and registers them with reg when
// it is non-nil.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authgate_logins_total",
			Help: "Login attempts by outcome (success, failure, rate_limited, unavailable).",
		}, []string{"outcome"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authgate_refreshes_total",
			Help: "Refresh attempts by outcome (success, failure, reuse, rate_limited, unavailable).",
		}, []string{"outcome"}),
		reuse: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "authgate_token_reuse_total",
			Help: "Rotated refresh tokens presented again; each revoked its family.",
		}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authgate_rate_limited_total",
			Help: "Issuer requests refused by a rate limit, by endpoint and limiter key (ip, user_client, user).",
		}, []string{"endpoint", "key"}),
		logouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authgate_logouts_total",
			Help: "Logout requests by outcome (success, failure, rate_limited, unavailable).",
		}, []string{"outcome"}),
	}
	// Pre-create every label combination so dashboards see zeros.
	for _, o := range []string{outcomeSuccess, outcomeFailure, outcomeRateLimited, outcomeUnavailable} {
		m.logins.WithLabelValues(o)
		m.refreshes.WithLabelValues(o)
		m.logouts.WithLabelValues(o)
	}
	m.refreshes.WithLabelValues(outcomeReuse)
	m.rateLimited.WithLabelValues(endpointLogin, keyIP)
	m.rateLimited.WithLabelValues(endpointLogin, keyUserClient)
	m.rateLimited.WithLabelValues(endpointLogin, keyUser)
	m.rateLimited.WithLabelValues(endpointRefresh, keyIP)
	m.rateLimited.WithLabelValues(endpointLogout, keyIP)
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.logins, m.refreshes, m.reuse, m.rateLimited, m.logouts} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("issuer: register metrics: %w", err)
		}
	}
	return m, nil
}
