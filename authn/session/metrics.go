package session

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	created prometheus.Counter
	ended   *prometheus.CounterVec
}

// newMetrics builds the session metrics and registers them, with the
// active-sessions gauge read from the store, when reg is non-nil.
func newMetrics(reg prometheus.Registerer, mg *Manager) (*metrics, error) {
	m := &metrics{
		created: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "authgate_sessions_created_total",
			Help: "Browser sessions started (sign-ins).",
		}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authgate_sessions_ended_total",
			Help: "Browser sessions ended, by reason (sign_out, sign_out_everywhere, replaced, expired, credentials, refresh_failed, provider_logout).",
		}, []string{"reason"}),
	}
	for _, r := range endReasons {
		m.ended.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	active := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "authgate_sessions_active",
		Help: "Browser sessions alive in the state store (all replicas with Redis); -1 when the store cannot answer.",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		n, err := mg.o.Store.SessionCount(ctx)
		if err != nil {
			return -1
		}
		return float64(n)
	})
	for _, c := range []prometheus.Collector{m.created, m.ended, active} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("session: register metrics: %w", err)
		}
	}
	return m, nil
}
