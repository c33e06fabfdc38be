package proxy

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/authgate/authgate/authn"
)

// A WebSocket tunnel is a request that the reverse proxy turned into a raw
// byte stream once the upstream answered 101: after that no request of the
// tunnel meets the gateway again. Left alone it would outlive the token
// that opened it, a disabled user, a removed API key and a policy that no
// longer allows it. So every upgrade is watched while it runs: it is closed
// when its credential expires, and re-authorized each recheck interval as
// if it were a new request with the same credential, on the current users,
// keys, revocation list and policy. A tunnel whose credential no longer
// authenticates, names another subject, has lost a role it was opened with
// (the upstream authorized the tunnel by its identity headers, now stale),
// or is no longer allowed by the policy is closed. A credential that cannot
// be checked (a state store that does not answer, with the revocation list
// failing closed) closes it too.
//
// Closing cancels the proxied request's context, which makes the reverse
// proxy close the upstream connection and then the client's.

// DefaultTunnelRecheck is how often an open tunnel is re-authorized when
// Options.TunnelRecheck is zero: the default reload interval, so a tunnel
// ends within about one reload of the edit that ends its credential.
const DefaultTunnelRecheck = time.Second

// tunnelCheckTimeout bounds one re-authorization.
const tunnelCheckTimeout = 2 * time.Second

// Reasons a tunnel closed: the closed set of the tunnels-closed metric.
const (
	tunnelEnded       = "ended"       // the client or the upstream closed it
	tunnelExpired     = "expired"     // its credential expired
	tunnelCredential  = "credential"  // its credential no longer authenticates as it did
	tunnelPolicy      = "policy"      // the policy no longer allows it
	tunnelUnavailable = "unavailable" // its credential could not be checked
)

var tunnelReasons = []string{tunnelEnded, tunnelExpired, tunnelCredential, tunnelPolicy, tunnelUnavailable}

// errTunnelClosed is the cancel cause of a tunnel the gateway closed.
var errTunnelClosed = errors.New("proxy: tunnel closed by the gateway")

// tunnelMetrics count the upgraded connections.
type tunnelMetrics struct {
	open   prometheus.Gauge
	closed *prometheus.CounterVec
}

func newTunnelMetrics(reg prometheus.Registerer) *tunnelMetrics {
	m := &tunnelMetrics{
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "authgate_tunnels_open",
			Help: "WebSocket tunnels open now (upgraded connections being proxied).",
		}),
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authgate_tunnels_closed_total",
			Help: "WebSocket tunnels closed, by reason (ended, expired, credential, policy, unavailable).",
		}, []string{"reason"}),
	}
	reg.MustRegister(m.open, m.closed)
	for _, r := range tunnelReasons {
		m.closed.WithLabelValues(r)
	}
	return m
}

// tunnel is one watched upgrade request.
type tunnel struct {
	method, canon string
	creds         http.Header // the credential headers only
	principal     authn.Principal
	host          string        // the upgrade request's Host, for hosts conditions
	client        netip.Addr    // its client address, for source_cidrs
	opened        bool          // the upstream answered 101 (set by modifyResponse)
	reason        string        // why the watcher closed it; read after exited
	exited        chan struct{} // closed when the watcher returns
}

// watchTunnel starts watching the upgrade request r, authorized for
// st.principal on st.canon. It returns the context to proxy r with, which
// is canceled when the tunnel must close, and a function to call when
// proxying has returned: it stops the watcher and counts the tunnel.
func (g *Gateway) watchTunnel(ctx context.Context, r *http.Request, st *reqState) (context.Context, func()) {
	t := &tunnel{method: r.Method, canon: st.canon, principal: st.principal, creds: http.Header{}, exited: make(chan struct{}),
		host: r.Host, client: g.o.Trusted.ClientIP(r)}
	for _, k := range []string{"Authorization", g.o.APIKeyHeader} {
		if v, ok := r.Header[k]; ok {
			t.creds[k] = v
		}
	}
	st.tunnel = t
	ctx, cancel := context.WithCancelCause(ctx)
	go g.watch(ctx, t, cancel)
	return ctx, func() {
		cancel(nil)
		<-t.exited
		if !t.opened {
			return
		}
		reason := t.reason
		if reason == "" {
			reason = tunnelEnded
		}
		if m := g.o.Metrics; m != nil {
			m.tunnels.open.Dec()
			m.tunnels.closed.WithLabelValues(reason).Inc()
		}
		if reason != tunnelEnded {
			g.log.Warn("tunnel closed", zap.String("request_id", st.requestID), zap.String("path", t.canon),
				zap.String("subject", t.principal.Subject), zap.String("auth_method", string(t.principal.Method)),
				zap.String("reason", reason))
		}
	}
}

// tunnelOpened records that the upstream switched protocols.
func (g *Gateway) tunnelOpened(st *reqState) {
	if st.tunnel == nil || st.tunnel.opened {
		return
	}
	st.tunnel.opened = true
	if m := g.o.Metrics; m != nil {
		m.tunnels.open.Inc()
	}
}

// watch closes t at its credential's expiry or at the first recheck that
// fails, whichever comes first, and returns when ctx ends.
func (g *Gateway) watch(ctx context.Context, t *tunnel, cancel context.CancelCauseFunc) {
	defer close(t.exited)
	every := g.o.TunnelRecheck
	if every <= 0 {
		every = DefaultTunnelRecheck
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	expiry := time.NewTimer(time.Hour)
	defer expiry.Stop()
	setExpiry := func(at time.Time) {
		expiry.Stop()
		if at.IsZero() {
			return // API keys without an expiry, anonymous callers
		}
		expiry.Reset(max(at.Sub(g.o.Now()), 0))
	}
	setExpiry(t.principal.ExpiresAt)
	closeAs := func(reason string) {
		t.reason = reason
		cancel(errTunnelClosed)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-expiry.C:
			closeAs(tunnelExpired)
			return
		case <-tick.C:
			reason, exp := g.reauthorize(ctx, t)
			if reason != "" {
				closeAs(reason)
				return
			}
			if !exp.Equal(t.principal.ExpiresAt) {
				// A key's expiry may have been edited; the tunnel ends
				// at the credential's current expiry.
				t.principal.ExpiresAt = exp
				setExpiry(exp)
			}
		}
	}
}

// reauthorize authenticates t's credential and decides its request again,
// on the current stores and policy. It returns why the tunnel must close,
// or "" and the credential's current expiry.
func (g *Gateway) reauthorize(ctx context.Context, t *tunnel) (string, time.Time) {
	ctx, cancel := context.WithTimeout(ctx, tunnelCheckTimeout)
	defer cancel()
	req := (&http.Request{Method: t.method, URL: &url.URL{Path: t.canon}, Header: t.creds}).WithContext(ctx)
	p, ok, err := g.o.Authenticator.Authenticate(req)
	was := t.principal
	switch {
	case ctx.Err() != nil && err != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded):
		return "", was.ExpiresAt // the tunnel is ending anyway
	case errors.Is(err, authn.ErrUnavailable):
		return tunnelUnavailable, time.Time{}
	case err != nil, ok != was.Authenticated():
		return tunnelCredential, time.Time{}
	case ok && (p.Subject != was.Subject || p.Method != was.Method || !containsAll(p.Roles, was.Roles)):
		return tunnelCredential, time.Time{}
	}
	snap := g.o.Policy.Load()
	if snap == nil {
		return tunnelPolicy, time.Time{}
	}
	// The same request as at the upgrade: a rule's conditions (hosts,
	// source_cidrs, claims) are decided again, not dropped.
	preq := g.policyRequest(req, t.method, t.canon, p, ok, snap, t.host)
	preq.ClientAddr = t.client
	if !snap.Decide(preq).Allow {
		return tunnelPolicy, time.Time{}
	}
	return "", p.ExpiresAt
}

// containsAll reports whether have holds every role of want.
func containsAll(have, want []string) bool {
	for _, r := range want {
		if !slices.Contains(have, r) {
			return false
		}
	}
	return true
}
