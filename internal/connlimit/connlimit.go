// Package connlimit bounds the connections a listener holds open, in total
// and per peer address. A connection over either bound is closed as soon as
// it is accepted, before a byte of it is read: every open connection costs
// memory whether or not it ever sends a request, so the bound has to hold
// at accept time, as nginx's worker_connections and Envoy's connection
// limit filter do.
package connlimit

import (
	"net"
	"net/netip"
	"sync"
)

// Reason says why a connection was refused. The set is closed.
type Reason string

// The reasons a connection is refused.
const (
	// ReasonTotal: the listener holds its maximum of connections.
	ReasonTotal Reason = "total"
	// ReasonPerClient: the peer address holds its maximum of connections.
	ReasonPerClient Reason = "per_client"
)

// Reasons returns every reason, for pre-creating metric series.
func Reasons() []Reason { return []Reason{ReasonTotal, ReasonPerClient} }

// Options configure a Listener. The zero value bounds nothing.
type Options struct {
	// Max bounds the connections open at once; 0 means no bound.
	Max int
	// MaxPerPeer bounds the connections open at once from one peer
	// address (one IPv6 /64); 0 means no bound.
	MaxPerPeer int
	// Exempt reports whether a peer is not bounded per address, such as a
	// trusted proxy that carries many clients' connections. Nil exempts
	// nobody. Exempt peers still count toward Max.
	Exempt func(netip.Addr) bool
	// OnRefuse, if set, is called for every refused connection.
	OnRefuse func(Reason)
}

// Listener is a net.Listener whose Accept enforces Options. It is safe for
// concurrent use.
type Listener struct {
	net.Listener
	o Options

	mu      sync.Mutex
	open    int
	perPeer map[netip.Addr]int
}

// Wrap returns ln with the bounds of o.
func Wrap(ln net.Listener, o Options) *Listener {
	return &Listener{Listener: ln, o: o, perPeer: make(map[netip.Addr]int)}
}

// Accept returns the next connection within the bounds; connections over
// them are closed and skipped.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key, counted := l.peerKey(c.RemoteAddr())
		if reason, ok := l.admit(key, counted); !ok {
			_ = c.Close()
			if l.o.OnRefuse != nil {
				l.o.OnRefuse(reason)
			}
			continue
		}
		return &conn{Conn: c, l: l, key: key, counted: counted}, nil
	}
}

// Open returns the number of connections open now.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// peerKey returns the per-peer bucket of addr, and whether it is bounded.
func (l *Listener) peerKey(addr net.Addr) (netip.Addr, bool) {
	if l.o.MaxPerPeer <= 0 {
		return netip.Addr{}, false
	}
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		// Not an IP peer (a Unix socket): bounded in total only.
		return netip.Addr{}, false
	}
	a := ap.Addr().Unmap()
	if l.o.Exempt != nil && l.o.Exempt(a) {
		return netip.Addr{}, false
	}
	return Bucket(a), true
}

// Bucket returns the address that stands for a's network in per-client
// bounds: a itself for IPv4, its /64 for IPv6, because one host is given a
// whole /64 and can use every address in it.
func Bucket(a netip.Addr) netip.Addr {
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

func (l *Listener) admit(key netip.Addr, counted bool) (Reason, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.o.Max > 0 && l.open >= l.o.Max {
		return ReasonTotal, false
	}
	if counted {
		if l.perPeer[key] >= l.o.MaxPerPeer {
			return ReasonPerClient, false
		}
		l.perPeer[key]++
	}
	l.open++
	return "", true
}

func (l *Listener) release(key netip.Addr, counted bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if counted {
		if n := l.perPeer[key] - 1; n > 0 {
			l.perPeer[key] = n
		} else {
			// Entries exist only while connections are open, so the map
			// is bounded by Max and shrinks back to nothing.
			delete(l.perPeer, key)
		}
	}
}

// conn releases its place in the bounds on its first Close.
type conn struct {
	net.Conn
	l       *Listener
	key     netip.Addr
	counted bool
	once    sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.key, c.counted) })
	return err
}

// Unwrap returns the accepted connection.
func (c *conn) Unwrap() net.Conn { return c.Conn }
