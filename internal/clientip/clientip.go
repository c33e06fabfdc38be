// Package clientip finds the address of the client behind trusted proxies.
package clientip

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// Trusted is a set of proxy networks whose X-Forwarded-* headers are
// believed. The zero value trusts nobody. It is immutable and safe for
// concurrent use.
type Trusted struct {
	prefixes []netip.Prefix
}

// Parse builds a Trusted set from CIDRs or bare addresses.
func Parse(cidrs []string) (Trusted, error) {
	var t Trusted
	for _, c := range cidrs {
		if !strings.Contains(c, "/") {
			a, err := netip.ParseAddr(c)
			if err != nil {
				return Trusted{}, fmt.Errorf("clientip: %q is not an address or CIDR", c)
			}
			t.prefixes = append(t.prefixes, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return Trusted{}, fmt.Errorf("clientip: %q is not a CIDR", c)
		}
		t.prefixes = append(t.prefixes, p.Masked())
	}
	return t, nil
}

// Contains reports whether a is a trusted proxy address.
func (t Trusted) Contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range t.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Peer returns the address of the socket peer of r.
func Peer(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// PeerTrusted reports whether r came straight from a trusted proxy.
func (t Trusted) PeerTrusted(r *http.Request) bool {
	return len(t.prefixes) > 0 && t.Contains(Peer(r))
}

// ClientIP returns the client address of r. X-Forwarded-For is read only
// when the socket peer is trusted, and then from the right: the first
// address that is not itself a trusted proxy is the client. Anything left of
// it was written by the client and may be forged, so a client cannot get a
// fresh rate-limit quota by inventing addresses.
func (t Trusted) ClientIP(r *http.Request) netip.Addr {
	peer := Peer(r)
	if !t.PeerTrusted(r) {
		return peer
	}
	vals := r.Header.Values("X-Forwarded-For")
	client := peer
	for i := len(vals) - 1; i >= 0; i-- {
		parts := strings.Split(vals[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				// A garbled hop ends the trusted chain.
				return client
			}
			client = a.Unmap()
			if !t.Contains(client) {
				return client
			}
		}
	}
	return client
}
