package proxy

import (
	"net/http/httptest"
	"testing"

	"github.com/authgate/authgate/internal/clientip"
)

// TestPeerTextMatchesFormatting checks that the X-Forwarded-For value taken
// from RemoteAddr without formatting is exactly the formatted peer address,
// for every form a listener or a test may put there.
func TestPeerTextMatchesFormatting(t *testing.T) {
	for _, addr := range []string{
		"192.0.2.7:1234", "127.0.0.1:80", "0.0.0.0:1", "255.255.255.255:65535",
		"[::1]:443", "[2001:db8::1]:80", "[::ffff:192.0.2.7]:80", "[fe80::1%eth0]:80",
		"[2001:0db8:0000::1]:80", "192.0.2.7", "", "garbage", "1.2.3.4:x", "01.2.3.4:80",
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = addr
		if got, want := peerText(r), clientip.Peer(r).String(); got != want {
			t.Errorf("peerText(RemoteAddr=%q) = %q, want %q", addr, got, want)
		}
	}
}
