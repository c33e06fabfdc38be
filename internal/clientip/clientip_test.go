package clientip

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

func mustTrusted(t testing.TB, cidrs ...string) Trusted {
	t.Helper()
	tr, err := Parse(cidrs)
	if err != nil {
		t.Fatalf("Parse(%q) error = %v", cidrs, err)
	}
	return tr
}

func req(remote string, xff ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = remote
	for _, v := range xff {
		r.Header.Add("X-Forwarded-For", v)
	}
	return r
}

func TestParse(t *testing.T) {
	tests := []struct {
		name     string
		cidrs    []string
		wantErr  bool
		trusted  []string
		untrustd []string
	}{
		{name: "none", trusted: nil, untrustd: []string{"10.0.0.1", "::1"}},
		{name: "v4 CIDR", cidrs: []string{"10.0.0.0/8"}, trusted: []string{"10.0.0.1", "10.255.255.255", "::ffff:10.1.2.3"}, untrustd: []string{"11.0.0.1", "::1"}},
		{name: "host bits are masked", cidrs: []string{"192.168.1.77/24"}, trusted: []string{"192.168.1.1"}, untrustd: []string{"192.168.2.1"}},
		{name: "bare v4", cidrs: []string{"192.0.2.1"}, trusted: []string{"192.0.2.1"}, untrustd: []string{"192.0.2.2"}},
		{name: "bare v6", cidrs: []string{"2001:db8::1"}, trusted: []string{"2001:db8::1"}, untrustd: []string{"2001:db8::2"}},
		{name: "v6 CIDR", cidrs: []string{"2001:db8::/32"}, trusted: []string{"2001:db8:1::5"}, untrustd: []string{"2001:db9::1", "10.0.0.1"}},
		{name: "bare v4-mapped v6 is unmapped", cidrs: []string{"::ffff:192.0.2.1"}, trusted: []string{"192.0.2.1"}, untrustd: []string{"192.0.2.2"}},
		{name: "garbage", cidrs: []string{"proxy.local"}, wantErr: true},
		{name: "empty string", cidrs: []string{""}, wantErr: true},
		{name: "prefix too long", cidrs: []string{"10.0.0.0/33"}, wantErr: true},
		{name: "bad prefix", cidrs: []string{"10.0.0/8"}, wantErr: true},
		{name: "one bad among good", cidrs: []string{"10.0.0.0/8", "nope/8"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := Parse(tt.cidrs)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Parse(%q) error = nil, want an error", tt.cidrs)
				}
				if len(tr.prefixes) != 0 {
					t.Errorf("Parse(%q) returned prefixes %v with an error", tt.cidrs, tr.prefixes)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q) error = %v", tt.cidrs, err)
			}
			for _, a := range tt.trusted {
				if !tr.Contains(netip.MustParseAddr(a)) {
					t.Errorf("Parse(%q).Contains(%s) = false, want true", tt.cidrs, a)
				}
			}
			for _, a := range tt.untrustd {
				if tr.Contains(netip.MustParseAddr(a)) {
					t.Errorf("Parse(%q).Contains(%s) = true, want false", tt.cidrs, a)
				}
			}
		})
	}
}

func TestPeer(t *testing.T) {
	tests := []struct {
		remote string
		want   string
	}{
		{"192.0.2.1:1234", "192.0.2.1"},
		{"[2001:db8::1]:443", "2001:db8::1"},
		{"[::ffff:192.0.2.1]:443", "192.0.2.1"},
		{"192.0.2.1", "invalid IP"},
		{"", "invalid IP"},
		{"@", "invalid IP"},
	}
	for _, tt := range tests {
		t.Run(tt.remote, func(t *testing.T) {
			if got := Peer(req(tt.remote)).String(); got != tt.want {
				t.Errorf("Peer(RemoteAddr %q) = %s, want %s", tt.remote, got, tt.want)
			}
		})
	}
}

func TestClientIP(t *testing.T) {
	tr := mustTrusted(t, "10.0.0.0/8", "2001:db8::/32")
	tests := []struct {
		name   string
		remote string
		xff    []string
		want   string
	}{
		{name: "untrusted peer without XFF", remote: "203.0.113.9:1", want: "203.0.113.9"},
		{name: "untrusted peer ignores XFF", remote: "203.0.113.9:1", xff: []string{"198.51.100.1"}, want: "203.0.113.9"},
		{name: "trusted peer without XFF", remote: "10.0.0.1:1", want: "10.0.0.1"},
		{name: "trusted peer, one hop", remote: "10.0.0.1:1", xff: []string{"198.51.100.1"}, want: "198.51.100.1"},
		{name: "forged entries left of the client are ignored", remote: "10.0.0.1:1", xff: []string{"1.1.1.1, 8.8.8.8, 198.51.100.1"}, want: "198.51.100.1"},
		{name: "trusted hops skipped from the right", remote: "10.0.0.1:1", xff: []string{"1.1.1.1, 198.51.100.1, 10.0.0.3, 10.0.0.2"}, want: "198.51.100.1"},
		{name: "every hop trusted", remote: "10.0.0.1:1", xff: []string{"10.0.0.3,10.0.0.2"}, want: "10.0.0.3"},
		{name: "no spaces", remote: "10.0.0.1:1", xff: []string{"1.1.1.1,198.51.100.1"}, want: "198.51.100.1"},
		{name: "garbled hop ends the chain", remote: "10.0.0.1:1", xff: []string{"198.51.100.1, garbage, 10.0.0.2"}, want: "10.0.0.2"},
		{name: "garbled last hop", remote: "10.0.0.1:1", xff: []string{"198.51.100.1, unknown"}, want: "10.0.0.1"},
		{name: "hop with a port is garbled", remote: "10.0.0.1:1", xff: []string{"198.51.100.1:80"}, want: "10.0.0.1"},
		{name: "empty XFF", remote: "10.0.0.1:1", xff: []string{""}, want: "10.0.0.1"},
		{name: "trailing comma", remote: "10.0.0.1:1", xff: []string{"198.51.100.1,"}, want: "10.0.0.1"},
		{name: "multiple XFF headers read right to left", remote: "10.0.0.1:1", xff: []string{"1.1.1.1", "198.51.100.1, 10.0.0.2"}, want: "198.51.100.1"},
		{name: "client in an earlier XFF header", remote: "10.0.0.1:1", xff: []string{"1.1.1.1, 198.51.100.1", "10.0.0.2"}, want: "198.51.100.1"},
		{name: "later header wins over earlier", remote: "10.0.0.1:1", xff: []string{"1.1.1.1", "198.51.100.1"}, want: "198.51.100.1"},
		{name: "v4-mapped trusted peer", remote: "[::ffff:10.0.0.1]:1", xff: []string{"198.51.100.1"}, want: "198.51.100.1"},
		{name: "v4-mapped untrusted peer", remote: "[::ffff:203.0.113.9]:1", xff: []string{"198.51.100.1"}, want: "203.0.113.9"},
		{name: "v4-mapped hop is unmapped", remote: "10.0.0.1:1", xff: []string{"::ffff:198.51.100.1"}, want: "198.51.100.1"},
		{name: "v4-mapped trusted hop is skipped", remote: "10.0.0.1:1", xff: []string{"198.51.100.1, ::ffff:10.0.0.2"}, want: "198.51.100.1"},
		{name: "v6 trusted peer and hop", remote: "[2001:db8::1]:1", xff: []string{"2001:db9::7, 2001:db8::2"}, want: "2001:db9::7"},
		{name: "unparseable peer", remote: "garbage", xff: []string{"198.51.100.1"}, want: "invalid IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tr.ClientIP(req(tt.remote, tt.xff...)).String(); got != tt.want {
				t.Errorf("ClientIP(peer %s, XFF %q) = %s, want %s", tt.remote, tt.xff, got, tt.want)
			}
		})
	}
}

func TestZeroTrustedTrustsNobody(t *testing.T) {
	var tr Trusted
	r := req("127.0.0.1:1", "198.51.100.1")
	if tr.PeerTrusted(r) {
		t.Error("Trusted{}.PeerTrusted(loopback) = true, want false")
	}
	if got := tr.ClientIP(r).String(); got != "127.0.0.1" {
		t.Errorf("Trusted{}.ClientIP() = %s, want the peer 127.0.0.1", got)
	}
}
