package app

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/authgate/authgate/proxy"
)

// trustRoots returns the system roots with the PEM bundle at caFile added,
// or nil (the system roots) when caFile is empty. A bundle that cannot be
// read or holds no certificate stops startup: silently falling back to the
// system roots would turn a private CA's endpoints into TLS failures at the
// first request instead of at start.
func trustRoots(caFile string) (*x509.CertPool, error) {
	if caFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("tls.ca_file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("tls.ca_file: " + caFile + ": no PEM certificate in the file")
	}
	return pool, nil
}

// fetchClient is the client for identity providers' discovery and key
// endpoints when a CA bundle is configured; nil lets the key sets build
// their own client on the system roots.
func fetchClient(roots *x509.CertPool, timeout time.Duration) *http.Client {
	if roots == nil {
		return nil
	}
	return &http.Client{Timeout: timeout, Transport: proxy.NewTransport(proxy.TransportOptions{DialTimeout: timeout, ResponseHeaderTimeout: timeout, MaxIdleConns: 4, RootCAs: roots})}
}
