package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// grpcPolicy admits the test service's methods to admins only, and its
// EmptyCall to anyone.
const grpcPolicy = `roles: [admin, reader]
rules:
  - id: grpc-test
    path: /grpc.testing.TestService/*
    methods: [POST]
    roles: [admin]
  - id: grpc-empty
    path: /grpc.testing.TestService/EmptyCall
    methods: [POST]
    public: true
`

// grpcCall is what the upstream saw of one call.
type grpcCall struct {
	Method string
	MD     metadata.MD
	// Canceled is set when the call's context ended before the handler
	// finished on its own (a deadline or a cancel that reached the
	// upstream).
	Canceled bool
	// Deadline is set when the call arrived with a deadline.
	Deadline bool
}

// grpcUpstream is a real grpc-go server with the interop TestService: it
// records every call and the metadata it carried.
type grpcUpstream struct {
	testpb.UnimplementedTestServiceServer
	srv  *grpc.Server
	addr string

	mu    sync.Mutex
	calls []grpcCall
}

// startGRPCUpstream serves the test service on a loopback port until the
// test ends; tlsConf, when set, makes it serve TLS (h2 with ALPN).
func startGRPCUpstream(t *testing.T, tlsConf *tls.Config) *grpcUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	if tlsConf != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsConf)))
	}
	u := &grpcUpstream{srv: grpc.NewServer(opts...), addr: ln.Addr().String()}
	testpb.RegisterTestServiceServer(u.srv, u)
	go func() { _ = u.srv.Serve(ln) }()
	t.Cleanup(u.srv.Stop)
	return u
}

func (u *grpcUpstream) record(ctx context.Context, method string) *grpcCall {
	md, _ := metadata.FromIncomingContext(ctx)
	u.mu.Lock()
	defer u.mu.Unlock()
	_, dl := ctx.Deadline()
	u.calls = append(u.calls, grpcCall{Method: method, MD: md.Copy(), Deadline: dl})
	return &u.calls[len(u.calls)-1]
}

func (u *grpcUpstream) markCanceled(method string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for i := len(u.calls) - 1; i >= 0; i-- {
		if u.calls[i].Method == method {
			u.calls[i].Canceled = true
			return
		}
	}
}

func (u *grpcUpstream) all() []grpcCall {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]grpcCall(nil), u.calls...)
}

func (u *grpcUpstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.calls)
}

func (u *grpcUpstream) last(t *testing.T) grpcCall {
	t.Helper()
	all := u.all()
	if len(all) == 0 {
		t.Fatal("upstream saw no call")
	}
	return all[len(all)-1]
}

// first returns the first value of metadata key k.
func first(md metadata.MD, k string) string {
	if v := md.Get(k); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (u *grpcUpstream) EmptyCall(ctx context.Context, _ *testpb.Empty) (*testpb.Empty, error) {
	u.record(ctx, "EmptyCall")
	return &testpb.Empty{}, nil
}

// UnaryCall echoes the payload and returns the subject it was told of in
// Username. Metadata "x-sleep" makes it wait that long first (or until
// the call ends), and a ResponseStatus makes it fail with that status
// after sending a trailer.
func (u *grpcUpstream) UnaryCall(ctx context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	c := u.record(ctx, "UnaryCall")
	if d, err := time.ParseDuration(first(c.MD, "x-sleep")); err == nil {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			u.markCanceled("UnaryCall")
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	if s := in.GetResponseStatus(); s != nil {
		_ = grpc.SetTrailer(ctx, metadata.Pairs("x-upstream-trailer", "kept"))
		return nil, status.Error(codes.Code(s.GetCode()), s.GetMessage())
	}
	return &testpb.SimpleResponse{Payload: in.GetPayload(), Username: first(c.MD, "x-auth-subject")}, nil
}

// StreamingOutputCall sends one response per parameter, waiting its
// interval before each: a server stream whose messages come over time.
func (u *grpcUpstream) StreamingOutputCall(in *testpb.StreamingOutputCallRequest, stream testpb.TestService_StreamingOutputCallServer) error {
	u.record(stream.Context(), "StreamingOutputCall")
	for _, p := range in.GetResponseParameters() {
		select {
		case <-time.After(time.Duration(p.GetIntervalUs()) * time.Microsecond):
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
			return err
		}
	}
	return nil
}

// StreamingInputCall sums the payload sizes of a client stream.
func (u *grpcUpstream) StreamingInputCall(stream testpb.TestService_StreamingInputCallServer) error {
	u.record(stream.Context(), "StreamingInputCall")
	var n int32
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: n})
		}
		if err != nil {
			return err
		}
		n += int32(len(m.GetPayload().GetBody()))
	}
}

// FullDuplexCall answers every message at once with a payload of the
// size it asks for: the client waits for each answer before sending the
// next message, which passes only if nothing buffers the request stream.
func (u *grpcUpstream) FullDuplexCall(stream testpb.TestService_FullDuplexCallServer) error {
	u.record(stream.Context(), "FullDuplexCall")
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		size := int32(0)
		if ps := m.GetResponseParameters(); len(ps) > 0 {
			size = ps[0].GetSize()
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: make([]byte, size)}}); err != nil {
			return err
		}
	}
}

// dialGRPC returns a client of the gateway at addr: h2c when tlsRoots is
// nil, else TLS trusting tlsRoots.
func dialGRPC(t *testing.T, addr string, tlsRoots *x509.CertPool) testpb.TestServiceClient {
	t.Helper()
	creds := insecure.NewCredentials()
	if tlsRoots != nil {
		creds = credentials.NewTLS(&tls.Config{RootCAs: tlsRoots, MinVersion: tls.VersionTLS12})
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return testpb.NewTestServiceClient(cc)
}

// certPool returns a pool holding the PEM certificate in file.
func certPool(t *testing.T, file string) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", file)
	}
	return p
}

// withCreds returns ctx carrying the gRPC metadata pairs kv.
func withCreds(ctx context.Context, kv ...string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, kv...)
}
