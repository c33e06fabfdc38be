package clientip

import (
	"net/netip"
	"strings"
	"testing"
)

func FuzzClientIP(f *testing.F) {
	f.Add("10.0.0.1:1234", "198.51.100.1")
	f.Add("10.0.0.1:1234", "1.1.1.1, 198.51.100.1, 10.0.0.2")
	f.Add("10.0.0.1:1234", "10.0.0.3,10.0.0.2")
	f.Add("10.0.0.1:1234", "198.51.100.1, garbage, 10.0.0.2")
	f.Add("10.0.0.1:1234", "1.1.1.1\n198.51.100.1, 10.0.0.2")
	f.Add("[::ffff:10.0.0.1]:1", "::ffff:198.51.100.1")
	f.Add("[2001:db8::1]:1", "2001:db9::7, 2001:db8::2, fe80::1%eth0")
	f.Add("203.0.113.9:1", "198.51.100.1")
	f.Add("garbage", "198.51.100.1")
	f.Add("10.0.0.1:1", "")
	f.Add("10.0.0.1:1", ",")

	tr := mustTrusted(f, "10.0.0.0/8", "2001:db8::/32", "192.0.2.1")
	f.Fuzz(func(t *testing.T, remote, xff string) {
		// A newline separates repeated X-Forwarded-For headers.
		vals := strings.Split(xff, "\n")
		r := req(remote, vals...)
		peer := Peer(r)
		got := tr.ClientIP(r)

		if !tr.PeerTrusted(r) {
			if got != peer {
				t.Fatalf("ClientIP(untrusted peer %q, XFF %q) = %v, want the peer %v", remote, vals, got, peer)
			}
			return
		}
		if got == peer {
			return
		}
		// Otherwise the result is a hop written in the header, and every
		// hop right of it parsed and is a trusted proxy: the client cannot
		// choose its address by adding entries on the left.
		var hops []string
		for _, v := range vals {
			hops = append(hops, strings.Split(v, ",")...)
		}
		for i := len(hops) - 1; i >= 0; i-- {
			a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				t.Fatalf("ClientIP(XFF %q) = %v, which is left of the garbled hop %q", vals, got, hops[i])
			}
			if a.Unmap() == got {
				return
			}
			if !tr.Contains(a) {
				t.Fatalf("ClientIP(XFF %q) = %v, which is left of the untrusted hop %v", vals, got, a)
			}
		}
		t.Fatalf("ClientIP(peer %q, XFF %q) = %v, which is neither the peer nor in the header", remote, vals, got)
	})
}
