package state

import (
	"context"
	"crypto/tls"
	"net"
	"sync/atomic"
	"time"
)

const (
	// redisProbeInterval is how often a Redis that went away is dialed
	// while the client's pool waits for it, so that logins resume within
	// about this long of Redis answering again.
	redisProbeInterval = 20 * time.Millisecond
	// redisDialBudget is the dial timeout handed to go-redis. The dialer
	// bounds each attempt itself (by the store's timeout); this only keeps
	// the pool's recovery probe from being cut short, see redisDialer.
	redisDialBudget = time.Hour
)

// redisDialer dials Redis for the client's connection pool and makes the
// pool recover quickly when Redis comes back.
//
// go-redis counts failed dials. Once PoolSize of them have failed, the
// pool stops dialing (every Get fails at once with the last dial error)
// and a background probe calls the dialer, then sleeps a fixed second
// before trying again, until one dial succeeds. Logins and refreshes
// would stay refused for up to a second after Redis returned. The dialer
// keeps the same count: a call made once the pool has stopped dialing can
// only be that probe, and the dialer then dials every redisProbeInterval
// itself until Redis answers or the store is closed.
//
// Outside the probe every call makes one attempt bounded by timeout, as
// DialerRetries is 1: a failing operation fails fast and is never
// retried.
//
// The probe keeps dialing one address, which is right for one node only:
// a Sentinel or Cluster client resolves the primary anew on each of its
// own probes, so there the dialer makes one attempt per call (probe is
// false) and a failover is followed as soon as the sentinels report it. It
// is safe for concurrent use.
type redisDialer struct {
	dialer    net.Dialer
	tls       *tls.Config // nil for plain TCP
	timeout   time.Duration
	threshold uint32        // the pool's PoolSize
	failed    atomic.Uint32 // failed dials since the pool last reset its count
	done      chan struct{} // closed when the store closes
	probe     bool          // keep dialing in the pool's recovery probe (one node)
}

func newRedisDialer(timeout time.Duration, tlsConfig *tls.Config, poolSize int, probe bool) *redisDialer {
	return &redisDialer{tls: tlsConfig, timeout: timeout, threshold: uint32(poolSize), done: make(chan struct{}), probe: probe}
}

// dial implements redis.Options.Dialer.
func (d *redisDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if !d.probe || d.failed.Load() < d.threshold {
		c, err := d.once(ctx, network, addr)
		if err != nil {
			d.failed.Add(1)
		}
		return c, err
	}
	// The pool has stopped dialing: this is its recovery probe. A success
	// resets the pool's count, and ours with it.
	for {
		c, err := d.once(ctx, network, addr)
		if err == nil {
			d.failed.Store(0)
			return c, nil
		}
		t := time.NewTimer(redisProbeInterval)
		select {
		case <-d.done:
			t.Stop()
			return nil, err
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
	}
}

// once makes one dial attempt bounded by the store's timeout.
func (d *redisDialer) once(ctx context.Context, network, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	if d.tls == nil {
		return d.dialer.DialContext(ctx, network, addr)
	}
	td := &tls.Dialer{NetDialer: &d.dialer, Config: d.tls}
	return td.DialContext(ctx, network, addr)
}

// close ends a probe in progress.
func (d *redisDialer) close() { close(d.done) }
