package app

import (
	"context"
	"net"
	"net/netip"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/authgate/authgate/internal/clientip"
	"github.com/authgate/authgate/internal/connlimit"
)

// adminMaxConnections bounds the admin listener, which only probes and
// scrapers use.
const adminMaxConnections = 256

// registerConnMetrics registers the main listener's connection metrics.
func (a *App) registerConnMetrics() {
	a.connRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authgate_connections_refused_total",
		Help: "Connections closed at accept because a connection bound was reached, by bound.",
	}, []string{"reason"})
	for _, r := range connlimit.Reasons() {
		a.connRefused.WithLabelValues(string(r))
	}
	open := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "authgate_connections_open",
		Help: "Connections open on the main listener.",
	}, func() float64 {
		if l := a.conns.Load(); l != nil {
			return float64(l.Open())
		}
		return 0
	})
	a.reg.MustRegister(a.connRefused, open)
}

// limitConnections applies listen.max_connections and
// listen.max_connections_per_client to the main listener, below TLS so
// that a refused connection costs no handshake. Trusted proxies and
// forward-auth peers carry many clients' connections and are bounded only
// in total; the clients behind them are bounded per request by the proxy.
func (a *App) limitConnections(mainLn, adminLn net.Listener) (net.Listener, net.Listener) {
	l := a.cfg.Listen
	trusted, _ := clientip.Parse(a.cfg.TrustedProxies)         // validated
	peers, _ := clientip.Parse(a.cfg.ForwardAuth.TrustedPeers) // validated
	limited := connlimit.Wrap(mainLn, connlimit.Options{
		Max:        l.MaxConnections,
		MaxPerPeer: l.MaxConnectionsPerClient,
		Exempt:     func(p netip.Addr) bool { return trusted.Contains(p) || peers.Contains(p) },
		OnRefuse:   func(r connlimit.Reason) { a.connRefused.WithLabelValues(string(r)).Inc() },
	})
	a.conns.Store(limited)
	return limited, connlimit.Wrap(adminLn, connlimit.Options{Max: adminMaxConnections})
}

// releaseMemory returns the memory of closed connections to the OS. Go
// frees it only at the next garbage collection, which an idle gateway may
// not run for minutes, so after a burst of connections (an attack, a
// reconnect storm) the pod would keep its peak RSS and could be
// OOM-killed by the next burst. When the open connections have fallen to
// half their high-water mark, and by at least releaseDrop, the heap is
// collected and returned at once; at most once per releaseEvery.
func (a *App) releaseMemory(ctx context.Context) {
	const (
		tick         = 2 * time.Second
		releaseDrop  = 256
		releaseEvery = 10 * time.Second
	)
	t := time.NewTicker(tick)
	defer t.Stop()
	high, last := 0, time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l := a.conns.Load()
		if l == nil {
			continue
		}
		open := l.Open()
		high = max(high, open)
		if high-open >= releaseDrop && open <= high/2 && time.Since(last) >= releaseEvery {
			// Two collections: buffers pooled by net/http (sync.Pool)
			// survive the first in the pool's victim cache.
			runtime.GC()
			debug.FreeOSMemory()
			a.log.Info("returned the memory of closed connections", zap.Int("connections_high", high), zap.Int("connections_open", open))
			high, last = open, time.Now()
		}
	}
}
