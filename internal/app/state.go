package app

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authgate/authgate/authn/state"
	"github.com/authgate/authgate/internal/config"
)

// redisOptions are the Redis store's options from the config and secrets:
// one node (AUTHGATE_REDIS_URL), Sentinel or Cluster.
func redisOptions(cfg *config.Config, sec config.Secrets) state.RedisOptions {
	rc := cfg.Redis
	o := state.RedisOptions{
		URL: sec.RedisURL, Password: sec.RedisPass, KeyPrefix: rc.KeyPrefix, Timeout: rc.Timeout,
		Username: rc.Username, DB: rc.DB, WaitReplicas: rc.WaitReplicas,
	}
	if rc.Sentinel.MasterName != "" || len(rc.Sentinel.Addresses) > 0 {
		o.Sentinel = state.RedisSentinel{MasterName: rc.Sentinel.MasterName, Addrs: slices.Clone(rc.Sentinel.Addresses),
			Username: rc.Sentinel.Username, Password: sec.RedisSentinelPass}
	}
	if len(rc.Cluster.Addresses) > 0 {
		o.Cluster = state.RedisCluster{Addrs: slices.Clone(rc.Cluster.Addresses)}
	}
	if rc.TLS {
		o.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return o
}

// topologyReporter is a store that knows its Redis topology.
type topologyReporter interface {
	Topology() state.RedisTopology
}

// stateTopologyCollector exports what the Redis store knows of the
// deployment it writes to. The primary label's values are the primaries'
// host:port: the deployment's own nodes, never request data, so the series
// are bounded by the number of primaries (one, or one per cluster shard),
// and a failover replaces the series rather than adding one.
type stateTopologyCollector struct {
	store                  topologyReporter
	primary, changes, when *prometheus.Desc
}

func newStateTopologyCollector(s topologyReporter) *stateTopologyCollector {
	return &stateTopologyCollector{
		store: s,
		primary: prometheus.NewDesc("authgate_state_store_primary_info",
			"The Redis primary (or, on a cluster, every primary) the state store writes to; always 1.",
			[]string{"topology", "primary"}, nil),
		changes: prometheus.NewDesc("authgate_state_store_topology_changes_total",
			"How often the Redis primaries the state store writes to changed (failovers) since the gateway started.",
			[]string{"topology"}, nil),
		when: prometheus.NewDesc("authgate_state_store_topology_changed_timestamp_seconds",
			"When the state store's current Redis primaries were first seen (the last failover, or the first connection).",
			[]string{"topology"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *stateTopologyCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.primary
	ch <- c.changes
	ch <- c.when
}

// Collect implements prometheus.Collector.
func (c *stateTopologyCollector) Collect(ch chan<- prometheus.Metric) {
	t := c.store.Topology()
	for _, p := range t.Primaries {
		ch <- prometheus.MustNewConstMetric(c.primary, prometheus.GaugeValue, 1, t.Kind, p)
	}
	ch <- prometheus.MustNewConstMetric(c.changes, prometheus.CounterValue, float64(t.Changes), t.Kind)
	if !t.Since.IsZero() {
		ch <- prometheus.MustNewConstMetric(c.when, prometheus.GaugeValue, float64(t.Since.UnixMilli())/1000, t.Kind)
	}
}

// registerStateMetrics registers the topology metrics of a Redis store.
func (a *App) registerStateMetrics() {
	if tr, ok := a.state.(topologyReporter); ok {
		a.reg.MustRegister(newStateTopologyCollector(tr))
	}
}

// readyBody is the /readyz answer of a ready gateway. Beside the state
// store's health it names, for Redis, the topology, the primaries and when
// they took over.
type readyBody struct {
	Status          string     `json:"status"`
	StateStore      string     `json:"state_store"`
	Topology        string     `json:"state_topology,omitempty"`
	Primaries       []string   `json:"state_primaries,omitempty"`
	TopologyChanged *time.Time `json:"state_topology_changed,omitempty"`
}

// writeReady writes the body of a ready /readyz with the state store's
// health (storeUp).
func (a *App) writeReady(w http.ResponseWriter, storeUp bool) {
	b := readyBody{Status: "ready", StateStore: "down"}
	if storeUp {
		b.StateStore = "up"
	}
	if tr, ok := a.state.(topologyReporter); ok {
		t := tr.Topology()
		b.Topology, b.Primaries = t.Kind, t.Primaries
		if !t.Since.IsZero() {
			since := t.Since.UTC()
			b.TopologyChanged = &since
		}
	}
	out, _ := json.Marshal(b)
	_, _ = io.WriteString(w, string(out)+"\n")
}
