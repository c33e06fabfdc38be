// Package grpcbench holds what a gRPC benchmark of the gateway needs: a
// gRPC upstream, the plain gRPC reverse proxy the gateway is compared with,
// and a closed-loop load generator of unary calls carrying a bearer token.
// The gateway and the plain proxy see the same calls on the same upstream,
// so the difference between them is what the gateway adds: authentication,
// the decision and the identity headers.
package grpcbench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Method is the path of the unary method the load calls, for the policy.
const Method = "/grpc.testing.TestService/UnaryCall"

// upstream answers UnaryCall with the payload it got.
type upstream struct {
	testpb.UnimplementedTestServiceServer
}

func (upstream) UnaryCall(_ context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{Payload: in.GetPayload()}, nil
}

func (upstream) EmptyCall(context.Context, *testpb.Empty) (*testpb.Empty, error) {
	return &testpb.Empty{}, nil
}

// StartUpstream serves gRPC's interop TestService (UnaryCall echoes its
// payload) over h2c on ln, until the returned server is stopped.
func StartUpstream(ln net.Listener) *grpc.Server {
	s := grpc.NewServer()
	testpb.RegisterTestServiceServer(s, upstream{})
	go func() { _ = s.Serve(ln) }()
	return s
}

// PlainProxy returns the reference: an httputil.ReverseProxy to upstream
// (an http:// URL of an h2c server) that forwards every request with
// SetURL and the X-Forwarded headers, and authenticates nothing. rt is its
// transport; nil means a stock transport speaking h2c with prior
// knowledge. Trailers and streaming work as in the gateway: a gRPC
// response has no Content-Length, which the reverse proxy flushes at once.
func PlainProxy(up *url.URL, rt http.RoundTripper) http.Handler {
	if rt == nil {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		rt = &http.Transport{Protocols: &p}
	}
	return &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(up); pr.SetXForwarded() },
		Transport: rt,
	}
}

// ServeH2C serves h on ln for HTTP/1.1 and h2c with prior knowledge, until
// the returned server is closed.
func ServeH2C(ln net.Listener, h http.Handler) *http.Server {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	s := &http.Server{Handler: h, Protocols: &p, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.Serve(ln) }()
	return s
}

// LoadOptions configure RunUnary. Zero fields take the defaults given.
type LoadOptions struct {
	// Token is sent as "authorization: Bearer <Token>"; empty sends none.
	Token string
	// Concurrency is the number of calls in flight at once; default 16.
	Concurrency int
	// Conns is the number of client connections the calls share; each is
	// one HTTP/2 connection. Default 1, as a gRPC client uses.
	Conns int
	// Duration is how long the load runs; default 5s.
	Duration time.Duration
	// PayloadBytes is the size of each call's payload; default 64.
	PayloadBytes int
	// Calls, if positive, ends the run after that many calls have been
	// started (Duration still bounds it).
	Calls int
}

// Result is what one run measured.
type Result struct {
	// Calls is the number of calls that completed with status OK.
	Calls int
	// Errors counts the calls that did not, by their status code name.
	Errors map[string]int
	// Elapsed is the run's wall-clock time.
	Elapsed time.Duration
	// P50, P99 and P999 are latency quantiles of the OK calls.
	P50, P99, P999 time.Duration
}

// RPS returns the OK calls per second.
func (r Result) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Calls) / r.Elapsed.Seconds()
}

// String renders r on one line.
func (r Result) String() string {
	return fmt.Sprintf("%.0f calls/s, p50 %v, p99 %v, %d ok, errors %v", r.RPS(), r.P50, r.P99, r.Calls, r.Errors)
}

// RunUnary drives closed-loop UnaryCall load at addr (host:port, h2c)
// for o.Duration, or until ctx ends.
func RunUnary(ctx context.Context, addr string, o LoadOptions) (Result, error) {
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	if o.Conns <= 0 {
		o.Conns = 1
	}
	if o.Duration <= 0 {
		o.Duration = 5 * time.Second
	}
	if o.PayloadBytes <= 0 {
		o.PayloadBytes = 64
	}
	clients := make([]testpb.TestServiceClient, o.Conns)
	for i := range clients {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return Result{}, fmt.Errorf("grpcbench: dial %s: %w", addr, err)
		}
		defer cc.Close()
		clients[i] = testpb.NewTestServiceClient(cc)
	}
	if o.Token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+o.Token)
	}
	req := &testpb.SimpleRequest{Payload: &testpb.Payload{Body: make([]byte, o.PayloadBytes)}}
	type worker struct {
		lat    []time.Duration
		errors map[string]int
	}
	workers := make([]worker, o.Concurrency)
	var started atomic.Int64
	var wg sync.WaitGroup
	// Calls carry no deadline: each worker stops after its call that
	// ends past the run's end, so no call is cut and counted as failed.
	start := time.Now()
	end := start.Add(o.Duration)
	for i := range workers {
		w := &workers[i]
		w.errors = map[string]int{}
		c := clients[i%len(clients)]
		wg.Go(func() {
			for t0 := time.Now(); t0.Before(end) && ctx.Err() == nil; t0 = time.Now() {
				if o.Calls > 0 && started.Add(1) > int64(o.Calls) {
					return
				}
				_, err := c.UnaryCall(ctx, req)
				switch {
				case err == nil:
					w.lat = append(w.lat, time.Since(t0))
				case ctx.Err() != nil:
					return // the caller gave up
				default:
					w.errors[status.Code(err).String()]++
				}
			}
		})
	}
	wg.Wait()
	r := Result{Elapsed: time.Since(start), Errors: map[string]int{}}
	var all []time.Duration
	for _, w := range workers {
		all = append(all, w.lat...)
		for k, n := range w.errors {
			r.Errors[k] += n
		}
	}
	r.Calls = len(all)
	if r.Calls == 0 {
		return r, errors.New("grpcbench: no call succeeded")
	}
	slices.Sort(all)
	r.P50, r.P99, r.P999 = all[len(all)/2], all[len(all)*99/100], all[len(all)*999/1000]
	return r, nil
}
