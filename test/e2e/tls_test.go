package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authgate/authgate/internal/app"
	"github.com/authgate/authgate/internal/config"
)

// writeCert writes a self-signed certificate for 127.0.0.1 with the given
// common name and returns its paths.
func writeCert(t *testing.T, dir, cn string) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writeFile(t, certFile+".tmp", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, keyFile+".tmp", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})))
	if err := os.Rename(keyFile+".tmp", keyFile); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(certFile+".tmp", certFile); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestTLSListenerServesAndReloadsCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir, "first")
	e := newEnv(t, "", nil, func(c *config.Config) {
		c.Listen.TLS = config.TLSConfig{CertFile: certFile, KeyFile: keyFile}
	})
	if !strings.HasPrefix(e.gw.URL, "https://") {
		t.Fatalf("gateway URL %s, want https", e.gw.URL)
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	peerCN := func() string {
		resp, err := client.Get(e.gw.URL + "/public/x")
		if err != nil {
			t.Fatalf("https request: %v", err)
		}
		resp.Body.Close()
		client.CloseIdleConnections()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		return resp.TLS.PeerCertificates[0].Subject.CommonName
	}
	if cn := peerCN(); cn != "first" {
		t.Fatalf("served certificate %q, want first", cn)
	}
	writeCert(t, dir, "second")
	deadline := time.Now().Add(3 * time.Second)
	for peerCN() != "second" {
		if time.Now().After(deadline) {
			t.Fatal("rotated certificate not served within 3s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A broken key keeps the last good certificate.
	writeFile(t, keyFile, "not a key")
	time.Sleep(200 * time.Millisecond)
	if cn := peerCN(); cn != "second" {
		t.Fatalf("after a bad key the served certificate is %q, want second", cn)
	}
}

func TestReadyzChecksUpstreamHealth(t *testing.T) {
	var unhealthy atomic.Bool
	e := newEnv(t, "", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ready" && unhealthy.Load() {
			w.WriteHeader(503)
		}
	}), func(c *config.Config) { c.Upstream.HealthPath = "/ready" })
	waitReady(t, e, 200)
	unhealthy.Store(true)
	waitReady(t, e, 503)
}

// An https upstream signed by a private CA is reached once tls.ca_file
// names the CA, and refused (502) before: the gateway never skips
// verification.
func TestPrivateCAForHTTPSUpstream(t *testing.T) {
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "private upstream")
	}))
	t.Cleanup(up.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	writeFile(t, caFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw})))

	untrusted := newEnv(t, "", nil, func(c *config.Config) { c.Upstream.URL = up.URL })
	if resp, body := untrusted.do("GET", "/public/x"); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("without tls.ca_file: %d %q, want 502", resp.StatusCode, body)
	}
	trusted := newEnv(t, "", nil, func(c *config.Config) { c.Upstream.URL = up.URL; c.TLS.CAFile = caFile })
	if resp, body := trusted.do("GET", "/public/x"); resp.StatusCode != 200 || body != "private upstream" {
		t.Fatalf("with tls.ca_file: %d %q, want 200 from the upstream", resp.StatusCode, body)
	}
}

func TestBadCAFileStopsStartup(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	writeFile(t, notPEM, "not a certificate")
	for name, file := range map[string]string{"missing": filepath.Join(dir, "none.pem"), "not PEM": notPEM} {
		t.Run(name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Path = filepath.Join(dir, "config.yaml")
			cfg.Upstream.URL = "http://127.0.0.1:9"
			cfg.PolicyFile = filepath.Join(dir, "policy.yaml")
			writeFile(t, cfg.PolicyFile, testPolicy)
			cfg.TLS.CAFile = file
			_, err := app.New(&cfg, config.Secrets{JWT: []byte(testSecret)}, app.Deps{})
			if err == nil || !strings.Contains(err.Error(), "tls.ca_file") {
				t.Fatalf("app.New error = %v, want one naming tls.ca_file", err)
			}
		})
	}
}
