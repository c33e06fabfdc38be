package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/authgate/authgate/authn/token"
	"github.com/authgate/authgate/internal/app"
	"github.com/authgate/authgate/internal/config"
	"github.com/authgate/authgate/proxy"
)

// grpcEnv is a gateway in front of a real gRPC server, and a real gRPC
// client of the gateway.
type grpcEnv struct {
	*gwEnv
	up     *grpcUpstream
	client testpb.TestServiceClient
}

// newGRPCEnv starts the gRPC upstream and the gateway. With tlsFront the
// gateway's listener is TLS (h2 through ALPN), else plain with h2c; with
// tlsBack the upstream is TLS (upstream.protocol h2), else h2c.
func newGRPCEnv(t *testing.T, tlsFront, tlsBack bool, opts ...envOption) *grpcEnv {
	t.Helper()
	return newGRPCEnvDeps(t, tlsFront, tlsBack, app.Deps{}, opts...)
}

// newGRPCEnvDeps is newGRPCEnv with collaborators for app.New.
func newGRPCEnvDeps(t *testing.T, tlsFront, tlsBack bool, d app.Deps, opts ...envOption) *grpcEnv {
	t.Helper()
	dir := t.TempDir()
	var upTLS *tls.Config
	var upURL, protocol string
	if tlsBack {
		certFile, keyFile := writeCert(t, dir, "upstream")
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		upTLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		// The gateway trusts the upstream's certificate; the transport
		// is built as app.New builds it, with the protocol h2.
		d.Transport = proxy.NewTransport(proxy.TransportOptions{ResponseHeaderTimeout: 2 * time.Second,
			Protocol: proxy.ProtocolH2, TLSClientConfig: &tls.Config{RootCAs: certPool(t, certFile), MinVersion: tls.VersionTLS12}})
	}
	up := startGRPCUpstream(t, upTLS)
	if tlsBack {
		upURL, protocol = "https://"+up.addr, string(proxy.ProtocolH2)
	} else {
		upURL, protocol = "http://"+up.addr, string(proxy.ProtocolH2C)
	}
	var roots *x509.CertPool
	front := func(c *config.Config) {
		c.Upstream.URL, c.Upstream.Protocol = upURL, protocol
		if tlsFront {
			certFile, keyFile := writeCert(t, t.TempDir(), "gateway")
			c.Listen.TLS = config.TLSConfig{CertFile: certFile, KeyFile: keyFile}
			roots = certPool(t, certFile)
		} else {
			c.Listen.H2C = true
		}
	}
	e := newEnvDeps(t, config.Secrets{JWT: []byte(testSecret)}, d, grpcPolicy, nil, append([]envOption{front}, opts...)...)
	return &grpcEnv{gwEnv: e, up: up, client: dialGRPC(t, e.gw.Addr, roots)}
}

func callCtx(t *testing.T, kv ...string) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return withCreds(ctx, kv...)
}

// The bar: unary, server-streaming, client-streaming and bidirectional
// calls pass when the policy allows them; an anonymous call is
// UNAUTHENTICATED and a role-less one PERMISSION_DENIED, and the upstream
// sees neither; over h2c and over TLS, to an h2c and a TLS upstream.
func TestGRPCThroughGateway(t *testing.T) {
	for _, tc := range []struct {
		name              string
		tlsFront, tlsBack bool
	}{
		{"h2c to h2c", false, false},
		{"tls to h2c", true, false},
		{"tls to tls", true, true},
		{"h2c to tls", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newGRPCEnv(t, tc.tlsFront, tc.tlsBack)
			admin := callCtx(t, "x-api-key", testAPIKey, "x-auth-subject", "forged", "x-forwarded-user", "forged")

			t.Run("unary", func(t *testing.T) {
				resp, err := e.client.UnaryCall(admin, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("ping")}})
				if err != nil {
					t.Fatalf("UnaryCall: %v", err)
				}
				if string(resp.GetPayload().GetBody()) != "ping" || resp.GetUsername() != "admin-bot" {
					t.Fatalf("UnaryCall = %q as %q, want the echo as admin-bot", resp.GetPayload().GetBody(), resp.GetUsername())
				}
				md := e.up.last(t).MD
				if got := md.Get("x-auth-subject"); len(got) != 1 || got[0] != "admin-bot" {
					t.Errorf("upstream x-auth-subject = %q, want only the gateway's", got)
				}
				for _, k := range []string{"x-api-key", "x-forwarded-user"} {
					if v := md.Get(k); len(v) != 0 {
						t.Errorf("upstream got %s = %q", k, v)
					}
				}
			})
			t.Run("bearer token", func(t *testing.T) {
				tok, _, err := e.app.Signer().Mint(token.Grant{Subject: "svc-grpc", Roles: []string{"admin"}, Type: token.TypeAccess, TTL: time.Minute})
				if err != nil {
					t.Fatal(err)
				}
				registerSecret(tok)
				resp, err := e.client.UnaryCall(callCtx(t, "authorization", "Bearer "+tok), &testpb.SimpleRequest{})
				if err != nil || resp.GetUsername() != "svc-grpc" {
					t.Fatalf("UnaryCall with a bearer token = %v, %v; want svc-grpc", resp.GetUsername(), err)
				}
				if v := e.up.last(t).MD.Get("authorization"); len(v) != 0 {
					t.Errorf("the upstream got the token: %q", v)
				}
			})
			t.Run("server streaming", func(t *testing.T) {
				params := make([]*testpb.ResponseParameters, 5)
				for i := range params {
					params[i] = &testpb.ResponseParameters{Size: int32(100 * (i + 1)), IntervalUs: 20000}
				}
				stream, err := e.client.StreamingOutputCall(admin, &testpb.StreamingOutputCallRequest{ResponseParameters: params})
				if err != nil {
					t.Fatal(err)
				}
				for i := range params {
					m, err := stream.Recv()
					if err != nil {
						t.Fatalf("message %d: %v", i, err)
					}
					if len(m.GetPayload().GetBody()) != 100*(i+1) {
						t.Fatalf("message %d has %d bytes", i, len(m.GetPayload().GetBody()))
					}
				}
				if _, err := stream.Recv(); err != io.EOF {
					t.Fatalf("end of stream = %v, want EOF (status OK in the trailers)", err)
				}
			})
			t.Run("client streaming", func(t *testing.T) {
				stream, err := e.client.StreamingInputCall(admin)
				if err != nil {
					t.Fatal(err)
				}
				for _, n := range []int{1, 70000, 3} { // one message past the request buffer
					if err := stream.Send(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: make([]byte, n)}}); err != nil {
						t.Fatal(err)
					}
				}
				resp, err := stream.CloseAndRecv()
				if err != nil || resp.GetAggregatedPayloadSize() != 70004 {
					t.Fatalf("CloseAndRecv = %v, %v; want 70004 bytes", resp.GetAggregatedPayloadSize(), err)
				}
			})
			t.Run("bidirectional streaming", func(t *testing.T) {
				stream, err := e.client.FullDuplexCall(admin)
				if err != nil {
					t.Fatal(err)
				}
				// Each answer is awaited before the next message is sent:
				// a gateway that buffered the request stream would hang.
				for i := 1; i <= 4; i++ {
					req := &testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: int32(i)}}}
					if err := stream.Send(req); err != nil {
						t.Fatal(err)
					}
					m, err := stream.Recv()
					if err != nil || len(m.GetPayload().GetBody()) != i {
						t.Fatalf("answer %d: %v (%d bytes)", i, err, len(m.GetPayload().GetBody()))
					}
				}
				if err := stream.CloseSend(); err != nil {
					t.Fatal(err)
				}
				if _, err := stream.Recv(); err != io.EOF {
					t.Fatalf("end of stream = %v, want EOF", err)
				}
			})
			t.Run("upstream status and trailers pass", func(t *testing.T) {
				var trailer metadata.MD
				_, err := e.client.UnaryCall(admin, &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.NotFound), Message: "no such item: 100% gone"}}, grpc.Trailer(&trailer))
				if s := status.Convert(err); s.Code() != codes.NotFound || s.Message() != "no such item: 100% gone" {
					t.Fatalf("status = %v %q, want the upstream's NotFound", s.Code(), s.Message())
				}
				if first(trailer, "x-upstream-trailer") != "kept" {
					t.Errorf("trailers = %v, want the upstream's x-upstream-trailer", trailer)
				}
			})
			t.Run("public method, anonymous", func(t *testing.T) {
				if _, err := e.client.EmptyCall(callCtx(t), &testpb.Empty{}); err != nil {
					t.Fatalf("EmptyCall: %v", err)
				}
			})

			denials := []struct {
				name string
				ctx  context.Context
				code codes.Code
				msg  string
			}{
				{"anonymous", callCtx(t), codes.Unauthenticated, "authentication required"},
				{"role-less", callCtx(t, "x-api-key", testReaderKey), codes.PermissionDenied, "access denied"},
				{"invalid key", callCtx(t, "x-api-key", "agk_no_such_key_0123456789abcdef"), codes.Unauthenticated, "invalid credentials"},
				{"expired key", callCtx(t, "x-api-key", "agk_expired_key_0123456789"), codes.Unauthenticated, "invalid credentials"},
				{"two credentials", callCtx(t, "x-api-key", testAPIKey, "authorization", "Bearer x.y.z"), codes.InvalidArgument, "send one credential: a bearer token or an API key, not both"},
			}
			for _, d := range denials {
				t.Run("denied "+d.name, func(t *testing.T) {
					before := e.up.count()
					var header metadata.MD
					check := func(what string, err error) {
						t.Helper()
						s := status.Convert(err)
						// The exact message: grpc-go maps a bare 401 or 403 to
						// these codes too, with the body in the message.
						if s.Code() != d.code || s.Message() != d.msg {
							t.Fatalf("%s: status %v %q, want %v %q", what, s.Code(), s.Message(), d.code, d.msg)
						}
					}
					_, err := e.client.UnaryCall(d.ctx, &testpb.SimpleRequest{}, grpc.Header(&header))
					check("unary", err)
					stream, err := e.client.FullDuplexCall(d.ctx)
					if err == nil {
						_, err = stream.Recv()
					}
					check("bidi", err)
					if n := e.up.count(); n != before {
						t.Fatalf("the upstream saw %d denied calls", n-before)
					}
				})
			}
		})
	}
}

// A denied gRPC call is logged and counted under the HTTP status it stands
// for, not the 200 of its trailers-only answer.
func TestGRPCDenialCountsAsDenial(t *testing.T) {
	e := newGRPCEnv(t, false, false)
	_, err := e.client.UnaryCall(callCtx(t), &testpb.SimpleRequest{})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("status %v, want Unauthenticated", status.Code(err))
	}
	if v := counterValue(t, e.app.Registry(), "authgate_requests_total", map[string]string{"decision": "deny", "code_class": "4xx"}); v != 1 {
		t.Fatalf("denials counted as 4xx: %v, want 1", v)
	}
	found := false
	for _, l := range e.logs.FilterMessage("request").All() {
		if l.ContextMap()["status"] == int64(401) && l.ContextMap()["path"] == "/grpc.testing.TestService/UnaryCall" {
			found = true
		}
	}
	if !found {
		t.Fatal("no decision log line with status 401 for the denied call")
	}
}

// grpc-timeout bounds the upstream wait: a call past its deadline ends
// upstream too. A deadline longer than upstream.response_header_timeout
// is the client's to choose; a call without one keeps the timeout.
func TestGRPCDeadlines(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for upstream timeouts")
	}
	e := newGRPCEnv(t, false, false) // response_header_timeout 2s
	admin := withCreds(context.Background(), "x-api-key", testAPIKey)

	t.Run("deadline reaches the upstream", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(withCreds(admin, "x-sleep", "5s"), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := e.client.UnaryCall(ctx, &testpb.SimpleRequest{})
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("status %v, want DeadlineExceeded", err)
		}
		eventually(t, 3*time.Second, "the upstream call to end with its deadline", func() bool { return e.up.last(t).Canceled })
		if d := time.Since(start); d > 4*time.Second {
			t.Fatalf("call took %v", d)
		}
	})
	t.Run("a long deadline outlasts response_header_timeout", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(withCreds(admin, "x-sleep", "3s"), 20*time.Second)
		defer cancel()
		if _, err := e.client.UnaryCall(ctx, &testpb.SimpleRequest{}); err != nil {
			t.Fatalf("a 3s call with a 20s deadline: %v", err)
		}
	})
	t.Run("no deadline: response_header_timeout applies", func(t *testing.T) {
		_, err := e.client.UnaryCall(withCreds(admin, "x-sleep", "4s"), &testpb.SimpleRequest{})
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("status %v, want DeadlineExceeded from the gateway's 2s header timeout", err)
		}
	})
}

// The gateway itself ends a call at its grpc-timeout, even for a client
// that never cancels: the upstream call ends and the client gets
// DEADLINE_EXCEEDED from the gateway.
func TestGRPCTimeoutBoundsTheUpstreamWait(t *testing.T) {
	e := newGRPCEnv(t, false, false)
	h := dialH2(t, e.gw.Addr)
	grpcCall := func(timeout string) h2Result {
		t.Helper()
		fields := []string{":method", "POST", ":scheme", "http", ":authority", "a", ":path", "/grpc.testing.TestService/UnaryCall",
			"content-type", "application/grpc", "te", "trailers", "x-api-key", testAPIKey, "x-sleep", "10s"}
		if timeout != "" {
			fields = append(fields, "grpc-timeout", timeout)
		}
		id := h.request(false, fields...)
		_ = h.fr.WriteData(id, true, []byte{0, 0, 0, 0, 0}) // one empty message
		return h.await(id)
	}
	start := time.Now()
	res := grpcCall("300m")
	if res.Status != "200" || res.Header["grpc-status"] != "4" {
		// The request log names the kind of upstream failure (reason)
		// and when it came (duration).
		var reason, took any
		for _, l := range e.logs.FilterMessage("request").All() {
			m := l.ContextMap()
			reason, took = m["reason"], m["duration"]
		}
		t.Fatalf("a call past its 300ms grpc-timeout: %v %v (logged reason %v after %v, %v after the call), want grpc-status 4 (DEADLINE_EXCEEDED)",
			res, res.Header, reason, took, time.Since(start))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("answered after %v", d)
	}
	eventually(t, 3*time.Second, "the upstream call to end", func() bool { return e.up.last(t).Canceled })
	if !e.up.last(t).Deadline {
		t.Error("the upstream was not told the deadline")
	}

	before := e.up.count()
	for _, bad := range []string{"1", "S", "123456789S", "-1S", "1s", "1.5S", " 1S"} {
		if res := grpcCall(bad); res.Header["grpc-status"] != "3" {
			t.Errorf("grpc-timeout %q: %v %v, want INVALID_ARGUMENT", bad, res, res.Header)
		}
	}
	if e.up.count() != before {
		t.Fatal("a call with a malformed grpc-timeout reached the upstream")
	}
}

// A server stream whose messages come further apart than the write
// deadlines is not cut: under HTTP/2 a deadline only covers a write in
// progress, never the wait for the upstream's next message.
func TestGRPCStreamPausesOutlastWriteDeadlines(t *testing.T) {
	if testing.Short() {
		t.Skip("waits several seconds between messages")
	}
	e := newGRPCEnv(t, false, false, func(c *config.Config) {
		c.Listen.WriteIdleTimeout, c.Listen.BodyRateWindow, c.Listen.WriteMinRate = time.Second, time.Second, 1024
	})
	params := []*testpb.ResponseParameters{{Size: 10, IntervalUs: 2500000}, {Size: 10, IntervalUs: 2500000}}
	stream, err := e.client.StreamingOutputCall(callCtx(t, "x-api-key", testAPIKey), &testpb.StreamingOutputCallRequest{ResponseParameters: params})
	if err != nil {
		t.Fatal(err)
	}
	for i := range params {
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("message %d after a 2.5s pause: %v", i, err)
		}
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("end of stream: %v", err)
	}
}

// The forward-auth endpoint never answers in the gRPC shape: an ingress
// reads its 200 as "allow", and Traefik copies the client's content-type
// onto the check request.
func TestGRPCShapeNeverOnForwardAuth(t *testing.T) {
	e := newGRPCEnv(t, false, false, atkForwardAuthFrom("127.0.0.1/32", "::1/128"))
	resp, body := e.do("GET", "/_authgate/verify", "X-Original-Method", "POST", "X-Original-Uri", "/grpc.testing.TestService/UnaryCall",
		"Content-Type", "application/grpc")
	if resp.StatusCode != 401 || resp.Header.Get("Grpc-Status") != "" {
		t.Fatalf("HTTP/1 check of an anonymous gRPC call: %d %s, want 401 JSON", resp.StatusCode, body)
	}
	h := dialH2(t, e.gw.Addr)
	for _, ct := range []string{"application/grpc", "application/grpc-web", "application/grpc+proto"} {
		res := h.await(h.request(true, ":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/_authgate/verify",
			"x-original-method", "POST", "x-original-uri", "/grpc.testing.TestService/UnaryCall", "content-type", ct))
		if res.Status != "401" || res.Header["grpc-status"] != "" {
			t.Fatalf("HTTP/2 check with content-type %s: %v %v, want 401", ct, res, res.Header)
		}
	}
}

// A traced gRPC call carries the RPC semantic conventions: the method
// when it was let through, the gRPC status of the answer, the gateway's
// own or the upstream's.
func TestGRPCTracing(t *testing.T) {
	recv := startOTLP(t, "grpc")
	e := newGRPCEnvDeps(t, false, false, app.Deps{Environ: []string{"OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_PROTOCOL=grpc", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=" + recv.endpoint}})
	admin := callCtx(t, "x-api-key", testAPIKey)
	if _, err := e.client.UnaryCall(admin, &testpb.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	_, _ = e.client.UnaryCall(admin, &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.NotFound)}})
	_, _ = e.client.UnaryCall(callCtx(t), &testpb.SimpleRequest{})
	if err := e.gw.Stop(); err != nil {
		t.Fatal(err)
	}
	type outcome struct{ name, method, status, decision, upstreamStatus string }
	var got []outcome
	upstream := map[string]string{} // trace id -> the upstream span's gRPC status
	for _, s := range recv.spans() {
		a := kvs(s.span.GetAttributes())
		if s.span.GetKind() == tracepb.Span_SPAN_KIND_CLIENT {
			upstream[string(s.span.GetTraceId())] = a["rpc.response.status_code"]
		}
	}
	for _, s := range recv.spans() {
		if s.span.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
			continue
		}
		a := kvs(s.span.GetAttributes())
		if a["rpc.system.name"] != "grpc" {
			t.Errorf("server span %s without rpc.system.name grpc: %v", s.span.GetName(), a)
		}
		got = append(got, outcome{s.span.GetName(), a["rpc.method"], a["rpc.response.status_code"], a["authgate.decision"], upstream[string(s.span.GetTraceId())]})
	}
	want := []outcome{
		{"grpc.testing.TestService/UnaryCall", "grpc.testing.TestService/UnaryCall", "OK", "allow", "OK"},
		{"grpc.testing.TestService/UnaryCall", "grpc.testing.TestService/UnaryCall", "NOT_FOUND", "allow", "NOT_FOUND"},
		{"_OTHER", "_OTHER", "UNAUTHENTICATED", "deny", ""},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("gRPC server spans:\n got %v\nwant %v", got, want)
	}
}
