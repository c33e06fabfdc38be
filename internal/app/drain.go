package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/authgate/authgate/internal/config"
)

// The stop order, from SIGTERM on. HTTP/1.1 has no way to tell a client
// that a kept-alive connection is going away except Connection: close on
// a response (RFC 9112 §9.6); closing an idle connection races the
// client's next request, and a POST written into that race fails without
// a retry. Closing the listener races new dials: a connection the kernel
// accepted but the server had not is reset when the listener closes. So
// the drain avoids both races:
//
//  1. Readiness turns false. For the first part of listen.shutdown_delay
//     every response carries Connection: close, so clients that reach the
//     pod through a Service or a load balancer reconnect, and their new
//     connections go to ready pods once the endpoints are updated.
//  2. For the last part of the delay (the settle) connections are kept
//     alive again: clients that dial this gateway directly stop opening
//     new connections, so none is in flight when the listener closes.
//  3. The listener closes. New dials are refused, which every client can
//     safely retry elsewhere, since nothing was sent.
//  4. Every response now carries Connection: close; a connection idle for
//     drainIdleGrace is closed (its client is not about to use it, and
//     clients reuse their most recent connection first).
//  5. The server's Shutdown waits for what is left, within
//     listen.shutdown_timeout of the listener closing. What it cuts is
//     logged (the requests in flight by kind, never their content), and
//     the exit status is 1.
//  6. The admin listener stops, and the state store is closed (flushed)
//     whatever happened before.
//  7. Last, the queued trace spans are exported: every drained request's
//     spans have ended by now.
//
// HTTP/2 connections follow the same steps: net/http turns Connection:
// close on a response into a GOAWAY, after which the client opens new
// streams on a new connection.
//
// The order was chosen by measurement (test/rollout, README "Gateway
// shutdown contract"). Keeping connections alive through the delay fails
// every request that still arrives for an app that exited with the pod;
// Connection: close until the listener closes has directly dialing
// clients reconnect at the instant of the close, and some are reset; and
// the server's own Shutdown closes idle connections at once, failing POSTs
// written on them.
const (
	// drainIdleGrace is how long a connection must have been idle, once
	// the listener is closed, before the gateway closes it.
	drainIdleGrace = time.Second
	// maxSettle bounds the keep-alive settle at the end of the delay.
	maxSettle = time.Second
	// drainTick is how often the drain looks at its connections.
	drainTick = 10 * time.Millisecond
)

// Drain phases, in order.
const (
	phaseServing  int32 = iota
	phaseRetiring       // readiness off: every response closes its connection
	phaseSettling       // end of the delay: connections are kept alive
	phaseClosing        // listener closed: every response closes its connection
)

// requestKind names what a request is, for the drain's log; it is never a
// security decision.
type requestKind int

const (
	kindProxy requestKind = iota
	kindAuth
	kindForwardAuth
	kindUpgrade
	numKinds
)

var kindNames = [numKinds]string{"requests_proxied", "requests_auth_endpoint", "requests_forward_auth", "requests_upgraded"}

// drainer retires the main listener's connections when the gateway stops,
// and counts the requests in flight by kind. Create it with newDrainer;
// its methods are safe for concurrent use.
type drainer struct {
	log      *zap.Logger
	kindOf   func(*http.Request) requestKind
	phase    atomic.Int32
	inflight [numKinds]atomic.Int64

	// conns are the connections seen since the drain began, with their
	// state and since when. Connections that changed no state since then
	// have been idle (or busy) for the whole delay; Shutdown takes them.
	mu    sync.Mutex
	conns map[net.Conn]connRecord
}

type connRecord struct {
	state http.ConnState
	since time.Time
}

func newDrainer(log *zap.Logger, kindOf func(*http.Request) requestKind) *drainer {
	return &drainer{log: log, kindOf: kindOf, conns: make(map[net.Conn]connRecord)}
}

// attach wraps srv's handler and connection-state hook (keeping any hook
// already set).
func (d *drainer) attach(srv *http.Server) {
	next := srv.Handler
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := d.kindOf(r)
		d.inflight[k].Add(1)
		defer d.inflight[k].Add(-1)
		if d.phase.Load() != phaseServing {
			w = &retiringWriter{ResponseWriter: w, d: d}
		}
		next.ServeHTTP(w, r)
	})
	prev := srv.ConnState
	srv.ConnState = func(c net.Conn, s http.ConnState) {
		d.connState(c, s)
		if prev != nil {
			prev(c, s)
		}
	}
}

func (d *drainer) connState(c net.Conn, s http.ConnState) {
	if d.phase.Load() == phaseServing {
		return
	}
	d.mu.Lock()
	switch s {
	case http.StateClosed, http.StateHijacked:
		delete(d.conns, c)
	default:
		d.conns[c] = connRecord{state: s, since: time.Now()}
	}
	d.mu.Unlock()
}

// closing reports whether responses must close their connection now.
func (d *drainer) closing() bool {
	p := d.phase.Load()
	return p == phaseRetiring || p == phaseClosing
}

// reap closes the connections idle for at least grace and reports how many
// are left that a client is using or may be about to use.
func (d *drainer) reap(grace time.Duration) (left int) {
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	for c, rec := range d.conns {
		if (rec.state == http.StateIdle || rec.state == http.StateNew) && now.Sub(rec.since) >= grace {
			_ = c.Close()
			delete(d.conns, c)
			continue
		}
		left++
	}
	return left
}

// cut logs what a drain cut by the shutdown timeout leaves behind: the
// requests still in flight, each holding its connection, by kind. Nothing
// of their content is logged.
func (d *drainer) cut(timeout time.Duration) {
	fields := []zap.Field{zap.Duration("shutdown_timeout", timeout)}
	var total int64
	for k := range numKinds {
		n := d.inflight[k].Load()
		total += n
		fields = append(fields, zap.Int64(kindNames[k], n))
	}
	fields = append(fields, zap.Int64("requests_in_flight", total))
	d.log.Error("shutdown timeout: cutting requests that did not finish", fields...)
}

// retiringWriter adds Connection: close to the response while the drain
// wants connections closed, decided when the status is written. Unwrap
// gives http.ResponseController the real writer (flush, deadlines).
type retiringWriter struct {
	http.ResponseWriter
	d     *drainer
	wrote bool
}

func (w *retiringWriter) WriteHeader(code int) {
	// 1xx responses (100 Continue, 103 Early Hints) precede the real one.
	if !w.wrote && code >= 200 {
		w.wrote = true
		if w.d.closing() {
			w.Header().Set("Connection", "close")
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *retiringWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

func (w *retiringWriter) Flush() {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *retiringWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// requestKind classifies r for the drain's counts.
func (a *App) requestKind(r *http.Request) requestKind {
	if r.Header.Get("Upgrade") != "" {
		return kindUpgrade
	}
	p := r.URL.Path
	if a.issuer != nil {
		if pre := a.cfg.Auth.Prefix; p == pre || strings.HasPrefix(p, pre+"/") {
			return kindAuth
		}
	}
	if fa := a.cfg.ForwardAuth; a.cfg.Mode != config.ModeProxy {
		if p == fa.Path || (fa.EnvoyPrefix != "" && strings.HasPrefix(p, fa.EnvoyPrefix)) {
			return kindForwardAuth
		}
	}
	return kindProxy
}

// settleFor is the keep-alive settle at the end of a shutdown delay: a
// fifth of it, at most maxSettle.
func settleFor(delay time.Duration) time.Duration {
	return min(delay/5, maxSettle)
}

// shutdown runs the stop order above once ctx of Run has ended. serveErr
// receives what the main server's Serve returned.
func (a *App) shutdown(d *drainer, srv, admin *http.Server, mainLn net.Listener, serveErr <-chan error) error {
	l := a.cfg.Listen
	a.draining.Store(true)
	settle := settleFor(l.ShutdownDelay)
	d.phase.Store(phaseRetiring)
	a.log.Info("shutting down: readiness off, retiring connections", zap.Duration("delay", l.ShutdownDelay), zap.Duration("settle", settle))
	time.Sleep(l.ShutdownDelay - settle)
	d.phase.Store(phaseSettling)
	time.Sleep(settle)

	d.phase.Store(phaseClosing)
	_ = mainLn.Close()
	// Serve returns once the listener is closed; Shutdown then finds no
	// listener of its own to close.
	select {
	case <-serveErr:
	case <-time.After(time.Second):
	}
	deadline := time.Now().Add(l.ShutdownTimeout)
	a.log.Info("shutting down: listener closed, draining", zap.Duration("timeout", l.ShutdownTimeout))
	tick := time.NewTicker(drainTick)
	for d.reap(min(drainIdleGrace, l.ShutdownTimeout/2)) > 0 && time.Now().Before(deadline) {
		<-tick.C
	}
	tick.Stop()
	sctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	if err != nil {
		d.cut(l.ShutdownTimeout)
		_ = srv.Close()
	} else if n := d.inflight[kindUpgrade].Load(); n > 0 {
		// Upgraded connections (WebSocket) left the server when they were
		// upgraded; they end with the process.
		a.log.Warn("stopping with upgraded connections open", zap.Int64(kindNames[kindUpgrade], n))
	}
	actx, acancel := context.WithTimeout(context.Background(), time.Second)
	_ = admin.Shutdown(actx)
	acancel()
	// Flush revocations even when draining timed out: losing them would
	// make revoked refresh tokens valid again after a restart.
	if cerr := a.state.Close(); cerr != nil {
		a.log.Error("closing state store", zap.Error(cerr))
	}
	// Last: the spans of every drained request are ended by now.
	a.closeTracing()
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	a.log.Info("authgate stopped")
	return nil
}
