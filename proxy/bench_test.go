package proxy_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/authn/apikey"
	"github.com/authgate/authgate/authn/token"
	"github.com/authgate/authgate/policy"
	"github.com/authgate/authgate/proxy"
)

// noopTransport answers every request with a small fixed response, so the
// benchmarks measure the proxy path and not a network.
type noopTransport struct{}

func (noopTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		r.Body.Close()
	}
	return &http.Response{
		StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"text/plain"}},
		Body:          io.NopCloser(strings.NewReader("hello, world\n")),
		ContentLength: 13, Request: r,
	}, nil
}

const benchPolicy = `rules:
  - path: /public/**
    public: true
  - path: /api/**
    authenticated: true
  - path: /admin/**
    roles: [admin]
`

const benchSecret = "bench-secret-0123456789abcdefghijklmnopqrstuvwxyz"

func benchGateway(b testing.TB, mod ...func(*proxy.Options)) (*proxy.Gateway, string) {
	return benchGatewayWith(b, benchPolicy, mod...)
}

// benchGatewayWith is benchGateway on policyText, with mod adjusting the
// options.
func benchGatewayWith(b testing.TB, policyText string, mod ...func(*proxy.Options)) (*proxy.Gateway, string) {
	b.Helper()
	set, err := policy.Load("policy.yaml", []byte(policyText))
	if err != nil {
		b.Fatal(err)
	}
	keys, err := apikey.Parse("keys.yaml", []byte("keys:\n  - name: bot\n    sha256: "+apikey.Digest("bench-key")+"\n    roles: [admin]\n"))
	if err != nil {
		b.Fatal(err)
	}
	var ks apikey.Store
	ks.Swap(keys)
	kset, _ := token.NewKeySet(token.Key{ID: "k1", Secret: []byte(benchSecret)})
	settings := token.Settings{Issuer: "authgate", Audience: "authgate", Leeway: time.Second}
	bearer, _ := authn.NewBearer(token.NewVerifier(kset, settings, token.Options{CacheSize: 1000}))
	tok, _, _ := token.NewSigner(kset, settings, token.Options{}).Mint(token.Grant{Subject: "svc", Roles: []string{"admin"}, Type: token.TypeAccess, TTL: time.Hour})
	up, _ := url.Parse("http://127.0.0.1:1")
	o := proxy.Options{
		Upstream:      up,
		Policy:        policy.NewStore(set),
		Authenticator: authn.Chain{Bearer: bearer, APIKey: apikey.NewAuthenticator(&ks, nil)},
		Transport:     noopTransport{},
		Logger:        zap.NewNop(),
		Metrics:       proxy.NewMetrics(prometheus.NewRegistry()),
		PreserveHost:  true,
	}
	for _, m := range mod {
		m(&o)
	}
	gw, err := proxy.New(o)
	if err != nil {
		b.Fatal(err)
	}
	return gw, tok
}

// serveLoop runs h for one request per iteration with fresh recorders.
func serveLoop(b *testing.B, h http.Handler, path string, hdr ...string) {
	b.Helper()
	serve := serveOnce(b, h, path, hdr...)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		serve()
	}
}

// serveOnce returns a function that passes one GET of path, with the
// header pairs hdr, through h with a fresh request copy and recorder, and
// fails t unless the answer is 200. It is one iteration of serveLoop and
// of TestAllocationsPinned.
func serveOnce(t testing.TB, h http.Handler, path string, hdr ...string) func() {
	t.Helper()
	req := httptest.NewRequest("GET", path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return func() {
		r := req.Clone(req.Context())
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 200 {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

// BenchmarkGatewayPass is one in-process pass through the gateway to a
// no-op upstream; BenchmarkBareReverseProxy is the same pass through an
// untouched httputil.ReverseProxy. The difference in allocs/op is what the
// gateway adds.
func BenchmarkGatewayPass(b *testing.B) {
	gw, tok := benchGateway(b)
	b.Run("public", func(b *testing.B) { serveLoop(b, gw, "/public/x") })
	b.Run("apikey", func(b *testing.B) { serveLoop(b, gw, "/admin/x", "X-API-Key", "bench-key") })
	b.Run("hs256", func(b *testing.B) { serveLoop(b, gw, "/admin/x", "Authorization", "Bearer "+tok) })
}

func BenchmarkBareReverseProxy(b *testing.B) {
	up, _ := url.Parse("http://127.0.0.1:1")
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(up); pr.SetXForwarded() }, Transport: noopTransport{}}
	serveLoop(b, rp, "/public/x")
}

func BenchmarkCanonicalize(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := policy.Canonicalize("/api/v1/items/12345/detail"); err != nil {
			b.Fatal(err)
		}
	}
}
