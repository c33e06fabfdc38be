package connlimit

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// serve accepts on l until it is closed, holding every connection open
// until the peer closes it.
func serve(t *testing.T, l *Listener) {
	t.Helper()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				_, _ = io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
}

// dialFrom connects to addr from the loopback address src.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// assertRefused checks that the listener closed c at accept.
func assertRefused(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("connection still open, want it closed at accept")
	}
}

// refusals records the reasons a listener refused connections.
type refusals struct {
	mu      sync.Mutex
	reasons []Reason
}

func (r *refusals) add(x Reason) { r.mu.Lock(); r.reasons = append(r.reasons, x); r.mu.Unlock() }

func (r *refusals) get() []Reason {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Reason(nil), r.reasons...)
}

func newListener(t *testing.T, o Options) (*Listener, *refusals) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rs := &refusals{}
	o.OnRefuse = rs.add
	l := Wrap(ln, o)
	t.Cleanup(func() { l.Close() })
	serve(t, l)
	return l, rs
}

func waitOpen(t *testing.T, l *Listener, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for l.Open() != want {
		if time.Now().After(deadline) {
			t.Fatalf("Open() = %d, want %d", l.Open(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestBounds(t *testing.T) {
	tests := []struct {
		name    string
		o       Options
		from    []string // source address of each connection, in order
		refused []bool
		reasons []Reason
	}{
		{"no bounds", Options{}, []string{"127.0.0.1", "127.0.0.1", "127.0.0.1"}, []bool{false, false, false}, nil},
		{"total", Options{Max: 2}, []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}, []bool{false, false, true}, []Reason{ReasonTotal}},
		{"per peer", Options{MaxPerPeer: 2}, []string{"127.0.0.1", "127.0.0.1", "127.0.0.1", "127.0.0.2"}, []bool{false, false, true, false}, []Reason{ReasonPerClient}},
		{"exempt peer counts in total only", Options{Max: 4, MaxPerPeer: 1, Exempt: func(a netip.Addr) bool { return a == netip.MustParseAddr("127.0.0.9") }},
			[]string{"127.0.0.9", "127.0.0.9", "127.0.0.1", "127.0.0.1", "127.0.0.9", "127.0.0.9"}, []bool{false, false, false, true, false, true}, []Reason{ReasonPerClient, ReasonTotal}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, rs := newListener(t, tc.o)
			open := 0
			for i, src := range tc.from {
				c := dialFrom(t, src, l.Addr().String())
				if tc.refused[i] {
					assertRefused(t, c)
				} else {
					open++
				}
				waitOpen(t, l, open)
			}
			// The accept loop reports a refusal after it closed the
			// connection, so the last report can trail what the client saw.
			deadline := time.Now().Add(5 * time.Second)
			for fmt.Sprint(rs.get()) != fmt.Sprint(tc.reasons) && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if got := rs.get(); fmt.Sprint(got) != fmt.Sprint(tc.reasons) {
				t.Fatalf("refusal reasons %v, want %v", got, tc.reasons)
			}
		})
	}
}

// A closed connection gives its place back, in total and per peer, once
// even when closed twice.
func TestCloseReleases(t *testing.T) {
	l, _ := newListener(t, Options{Max: 1, MaxPerPeer: 1})
	for range 5 {
		c := dialFrom(t, "127.0.0.1", l.Addr().String())
		waitOpen(t, l, 1) // accepted: the previous connection gave its place back
		c.Close()
		waitOpen(t, l, 0)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.perPeer); n != 0 {
		t.Fatalf("per-peer map holds %d entries with no connection open, want 0", n)
	}
}

func TestServerSideDoubleCloseReleasesOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := Wrap(ln, Options{Max: 2})
	defer l.Close()
	accepted := make(chan net.Conn, 2)
	go func() {
		for range 2 {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dialFrom(t, "127.0.0.1", l.Addr().String())
	dialFrom(t, "127.0.0.1", l.Addr().String())
	a, b := <-accepted, <-accepted
	a.Close()
	a.Close()
	if n := l.Open(); n != 1 {
		t.Fatalf("Open() = %d after one connection closed twice, want 1", n)
	}
	b.Close()
}

func TestBucketGroupsIPv6By64(t *testing.T) {
	tests := []struct{ a, want string }{
		{"192.0.2.1", "192.0.2.1"},
		{"2001:db8:1:2:aaaa::1", "2001:db8:1:2::"},
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::"},
	}
	for _, tc := range tests {
		if got := Bucket(netip.MustParseAddr(tc.a)); got != netip.MustParseAddr(tc.want) {
			t.Errorf("Bucket(%s) = %s, want %s", tc.a, got, tc.want)
		}
	}
}
