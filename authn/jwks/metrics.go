package jwks

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics holds the collectors of one Set. A nil *metrics records nothing.
type metrics struct {
	fetch *prometheus.CounterVec
	keys  *prometheus.GaugeVec
	cache *prometheus.CounterVec
}

// ageCollector reports the age of each issuer's key set at scrape time.
// Issuers without a key set yet report no sample.
type ageCollector struct {
	desc    *prometheus.Desc
	sources []*keySource
	now     func() time.Time
}

func (c *ageCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *ageCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.now()
	for _, s := range c.sources {
		if st := s.state.Load(); st != nil {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, now.Sub(st.fetched).Seconds(), s.issuer)
		}
	}
}

// newMetrics registers the collectors with reg; a nil reg disables metrics.
// Label values come from configuration (issuer) or closed sets (result), so
// cardinality is bounded.
func newMetrics(reg prometheus.Registerer, sources []*keySource, now func() time.Time) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		fetch: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authgate_jwks_fetch_total",
			Help: "JWKS fetches per external issuer, by result (ok or error).",
		}, []string{"issuer", "result"}),
		keys: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "authgate_jwks_keys",
			Help: "Usable keys in the last fetched JWKS per external issuer.",
		}, []string{"issuer"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authgate_token_cache_total",
			Help: "Verified-token cache lookups for external tokens, by result (hit or miss).",
		}, []string{"result"}),
	}
	age := &ageCollector{
		desc: prometheus.NewDesc("authgate_jwks_age_seconds",
			"Seconds since the last successful JWKS fetch per external issuer.", []string{"issuer"}, nil),
		sources: sources,
		now:     now,
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.fetch, m.keys, m.cache, age} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, errors.Join(errors.New("jwks: register metrics"), err)
	}
	for _, s := range sources {
		m.fetch.WithLabelValues(s.issuer, "ok")
		m.fetch.WithLabelValues(s.issuer, "error")
	}
	m.cache.WithLabelValues("hit")
	m.cache.WithLabelValues("miss")
	return m, nil
}

func (m *metrics) fetched(issuer, result string) {
	if m != nil {
		m.fetch.WithLabelValues(issuer, result).Inc()
	}
}

func (m *metrics) setKeys(issuer string, n int) {
	if m != nil {
		m.keys.WithLabelValues(issuer).Set(float64(n))
	}
}

func (m *metrics) cacheLookup(result string) {
	if m != nil {
		m.cache.WithLabelValues(result).Inc()
	}
}
