package grpcbench

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"github.com/authgate/authgate/authn/token"
	"github.com/authgate/authgate/internal/app"
	"github.com/authgate/authgate/internal/apptest"
	"github.com/authgate/authgate/internal/config"
	"github.com/authgate/authgate/proxy"
)

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// stack is an upstream with the plain proxy and the gateway in front.
type stack struct {
	upstream, plain, gateway string // host:port
	token                    string
}

// startStack starts the upstream, the plain proxy and the gateway (with
// environ for tracing) on loopback.
func startStack(t testing.TB, environ []string) stack {
	t.Helper()
	upLn := listen(t)
	up := StartUpstream(upLn)
	t.Cleanup(up.Stop)
	upURL, _ := url.Parse("http://" + upLn.Addr().String())
	plainLn := listen(t)
	plain := ServeH2C(plainLn, PlainProxy(upURL, nil))
	t.Cleanup(func() { plain.Close() })

	dir := t.TempDir()
	policy := "rules:\n  - path: /grpc.testing.TestService/*\n    methods: [POST]\n    authenticated: true\n"
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Path, cfg.PolicyFile = filepath.Join(dir, "config.yaml"), filepath.Join(dir, "policy.yaml")
	cfg.Upstream.URL, cfg.Upstream.Protocol = upURL.String(), string(proxy.ProtocolH2C)
	cfg.Listen.H2C = true
	cfg.Listen.ShutdownDelay = 0
	cfg.Logging.AllowedSampleRate = 0.0001 // as in production: denials are logged, successes sampled
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	gw := apptest.Start(t, &cfg, config.Secrets{JWT: []byte("grpcbench-secret-0123456789abcdefghijklmnop")}, app.Deps{Environ: environ})
	tok, _, err := gw.App.Signer().Mint(token.Grant{Subject: "bench", Roles: []string{"user"}, Type: token.TypeAccess, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return stack{upstream: upLn.Addr().String(), plain: plainLn.Addr().String(), gateway: gw.Addr, token: tok}
}

// The harness works end to end: the plain proxy and the gateway both carry
// the unary load, and the gateway refuses it without the token.
func TestRunUnaryThroughBoth(t *testing.T) {
	s := startStack(t, nil)
	for name, addr := range map[string]string{"plain": s.plain, "authgate": s.gateway} {
		r, err := RunUnary(context.Background(), addr, LoadOptions{Token: s.token, Concurrency: 4, Duration: 300 * time.Millisecond})
		if err != nil || len(r.Errors) != 0 {
			t.Fatalf("%s: %v (%v)", name, r, err)
		}
		t.Logf("%s: %v", name, r)
	}
	r, err := RunUnary(context.Background(), s.gateway, LoadOptions{Concurrency: 2, Duration: 100 * time.Millisecond})
	if err == nil || r.Errors["Unauthenticated"] == 0 {
		t.Fatalf("without a token: %v (%v), want only UNAUTHENTICATED", r, err)
	}
}

// otlpSink accepts OTLP/HTTP exports and drops them.
func otlpSink(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/v1/traces"
}

// BenchmarkUnaryCall is one unary call with a bearer token through the
// plain gRPC reverse proxy, through the gateway, and through the gateway
// with every call traced and exported over OTLP/HTTP. All run in this
// process, so the absolute numbers include the client and the upstream;
// compare them with each other (bench/ runs each proxy in a process of its
// own).
func BenchmarkUnaryCall(b *testing.B) {
	run := func(b *testing.B, addr, tok string) {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		defer cc.Close()
		c := testpb.NewTestServiceClient(cc)
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
		req := &testpb.SimpleRequest{Payload: &testpb.Payload{Body: make([]byte, 64)}}
		b.ReportAllocs()
		b.SetParallelism(4)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := c.UnaryCall(ctx, req); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	s := startStack(b, nil)
	b.Run("plain", func(b *testing.B) { run(b, s.plain, s.token) })
	b.Run("authgate", func(b *testing.B) { run(b, s.gateway, s.token) })
	traced := startStack(b, []string{"OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=" + otlpSink(b)})
	b.Run("authgate-traced", func(b *testing.B) { run(b, traced.gateway, traced.token) })
}
