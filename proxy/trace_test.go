package proxy_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/authn/apikey"
	"github.com/authgate/authgate/policy"
	"github.com/authgate/authgate/proxy"
)

const traceKey = "agk_trace_key_0123456789abcdefghijklmn"

// traceEnv is a gateway in front of an upstream that records the trace
// headers it got, with spans recorded in memory.
type traceEnv struct {
	gw    *proxy.Gateway
	spans *tracetest.SpanRecorder
	mu    sync.Mutex
	seen  []http.Header
}

func (e *traceEnv) last(t *testing.T) http.Header {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.seen) == 0 {
		t.Fatal("upstream saw no request")
	}
	return e.seen[len(e.seen)-1]
}

// newTraceEnv builds the gateway; traced false gives it no provider.
func newTraceEnv(t *testing.T, traced bool, sampler sdktrace.Sampler) *traceEnv {
	t.Helper()
	e := &traceEnv{spans: tracetest.NewSpanRecorder()}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.seen = append(e.seen, r.Header.Clone())
		e.mu.Unlock()
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(up.Close)
	set, err := policy.Load("policy.yaml", []byte(benchPolicy))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := apikey.Parse("keys.yaml", []byte("keys:\n  - name: bot\n    sha256: "+apikey.Digest(traceKey)+"\n    roles: [admin]\n"))
	if err != nil {
		t.Fatal(err)
	}
	var ks apikey.Store
	ks.Swap(keys)
	u, _ := url.Parse(up.URL)
	o := proxy.Options{
		Upstream: u, Policy: policy.NewStore(set), Authenticator: authn.Chain{APIKey: apikey.NewAuthenticator(&ks, nil)},
		Logger: zap.NewNop(), Metrics: proxy.NewMetrics(prometheus.NewRegistry()),
	}
	if traced {
		if sampler == nil {
			sampler = sdktrace.ParentBased(sdktrace.AlwaysSample())
		}
		o.TracerProvider = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(e.spans), sdktrace.WithSampler(sampler))
	}
	if e.gw, err = proxy.New(o); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *traceEnv) serve(t *testing.T, target string, hdr ...string) int {
	t.Helper()
	r := httptest.NewRequest("GET", target, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	e.gw.ServeHTTP(w, r)
	return w.Code
}

// attrs returns a span's attributes as strings.
func attrs(s sdktrace.ReadOnlySpan) map[string]string {
	m := map[string]string{}
	for _, kv := range s.Attributes() {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

// byName indexes the ended spans by name, the server span as "server"
// and the upstream span as "upstream"; each must occur once.
func byName(t *testing.T, spans []sdktrace.ReadOnlySpan) map[string]sdktrace.ReadOnlySpan {
	t.Helper()
	m := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		name := s.Name()
		switch s.SpanKind() {
		case trace.SpanKindServer:
			name = "server"
		case trace.SpanKindClient:
			name = "upstream"
		}
		if _, dup := m[name]; dup {
			t.Fatalf("two %s spans: %s", name, dump(spans))
		}
		m[name] = s
	}
	return m
}

// dump renders every span's name, attributes, events and status, for
// searching for what must not be there.
func dump(spans []sdktrace.ReadOnlySpan) string {
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "%s %v %v %v\n", s.Name(), s.Attributes(), s.Events(), s.Status())
	}
	return b.String()
}

const incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// An allowed request: one server span that continues the caller's trace,
// with authentication, decision and upstream spans under it; the upstream
// continues the trace from the upstream span; no credential anywhere.
func TestTraceSpanTree(t *testing.T) {
	e := newTraceEnv(t, true, nil)
	if code := e.serve(t, "/admin/x?access_token=query-secret", "X-API-Key", traceKey, "Traceparent", incoming, "Tracestate", "vendor=1", "User-Agent", "tester/1"); code != 200 {
		t.Fatalf("status %d", code)
	}
	spans := e.spans.Ended()
	got := byName(t, spans)
	server, auth, decide, up := got["server"], got["authgate.authenticate"], got["authgate.decide"], got["upstream"]
	if len(spans) != 4 || server == nil || auth == nil || decide == nil || up == nil {
		t.Fatalf("spans: %s", dump(spans))
	}
	if server.Name() != "GET" || up.Name() != "GET" {
		t.Errorf("span names %q and %q, want the method", server.Name(), up.Name())
	}
	if server.SpanKind() != trace.SpanKindServer || server.Parent().SpanID().String() != "00f067aa0ba902b7" ||
		server.SpanContext().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || !server.Parent().IsRemote() {
		t.Fatalf("server span %v parent %v: want a child of the incoming traceparent", server.SpanContext(), server.Parent())
	}
	for _, child := range []sdktrace.ReadOnlySpan{auth, decide, up} {
		if child.Parent().SpanID() != server.SpanContext().SpanID() {
			t.Errorf("%s is not a child of the server span", child.Name())
		}
	}
	want := map[string]string{
		"http.request.method": "GET", "url.path": "/admin/x", "url.scheme": "http", "http.response.status_code": "200",
		"network.protocol.version": "1.1", "server.address": "example.com", "user_agent.original": "tester/1",
		"authgate.decision": "allow", "authgate.reason": "allow_role", "authgate.auth_method": "apikey",
	}
	sa := attrs(server)
	for k, v := range want {
		if sa[k] != v {
			t.Errorf("server span %s = %q, want %q", k, sa[k], v)
		}
	}
	if sa["authgate.rule_id"] == "" || sa["client.address"] == "" {
		t.Errorf("server span lacks rule_id or client.address: %v", sa)
	}
	if a := attrs(auth); a["authgate.auth_method"] != "apikey" {
		t.Errorf("authenticate span %v", a)
	}
	if a := attrs(decide); a["authgate.decision"] != "allow" || a["authgate.rule_id"] != sa["authgate.rule_id"] {
		t.Errorf("decide span %v", a)
	}
	if a := attrs(up); a["http.response.status_code"] != "200" || !strings.HasSuffix(a["url.full"], "/admin/x") || a["server.address"] != "127.0.0.1" {
		t.Errorf("upstream span %v", a)
	}
	// The upstream continues the trace from the upstream span.
	h := e.last(t)
	wantTP := "00-4bf92f3577b34da6a3ce929d0e0e4736-" + up.SpanContext().SpanID().String() + "-01"
	if tp := h.Get("Traceparent"); tp != wantTP || h.Get("Tracestate") != "vendor=1" {
		t.Errorf("upstream traceparent %q tracestate %q, want %q vendor=1", tp, h.Get("Tracestate"), wantTP)
	}
	if d := dump(spans); strings.Contains(d, traceKey) || strings.Contains(d, "query-secret") || strings.Contains(d, "access_token") {
		t.Fatalf("a credential is in the spans:\n%s", d)
	}
}

// A denial is traced with its reason and no upstream span; an invalid
// credential ends in the authentication span, with no decision.
func TestTraceDenials(t *testing.T) {
	e := newTraceEnv(t, true, nil)
	if code := e.serve(t, "/admin/x"); code != 401 {
		t.Fatalf("status %d", code)
	}
	got := byName(t, e.spans.Ended())
	if len(got) != 3 || got["authgate.decide"] == nil {
		t.Fatalf("spans: %s", dump(e.spans.Ended()))
	}
	sa := attrs(got["server"])
	if sa["authgate.decision"] != "deny" || sa["authgate.reason"] != "deny_unauthenticated" || sa["http.response.status_code"] != "401" || sa["authgate.auth_method"] != "none" {
		t.Errorf("server span of a denial: %v", sa)
	}
	e = newTraceEnv(t, true, nil)
	bad := "agk_not_a_key_0123456789abcdefghijkl"
	if code := e.serve(t, "/admin/x", "X-API-Key", bad); code != 401 {
		t.Fatalf("status %d", code)
	}
	got = byName(t, e.spans.Ended())
	if len(got) != 2 || got["authgate.authenticate"] == nil {
		t.Fatalf("spans of an invalid credential: %s", dump(e.spans.Ended()))
	}
	if a := attrs(got["authgate.authenticate"]); a["error.type"] != "invalid_credential" {
		t.Errorf("authenticate span %v", a)
	}
	if sa := attrs(got["server"]); sa["authgate.reason"] != "invalid_credential" {
		t.Errorf("server span %v", sa)
	}
	if d := dump(e.spans.Ended()); strings.Contains(d, bad) {
		t.Fatalf("the rejected key is in the spans:\n%s", d)
	}
}

// Tracing off: the caller's trace context reaches the upstream untouched.
// Tracing on and not sampled: nothing is recorded and the upstream still
// gets the trace, unsampled, under the gateway's span id.
func TestTracePropagation(t *testing.T) {
	off := newTraceEnv(t, false, nil)
	off.serve(t, "/public/x", "Traceparent", incoming, "Tracestate", "vendor=1")
	if h := off.last(t); h.Get("Traceparent") != incoming || h.Get("Tracestate") != "vendor=1" {
		t.Fatalf("tracing off: upstream got %q %q, want them untouched", h.Get("Traceparent"), h.Get("Tracestate"))
	}
	on := newTraceEnv(t, true, nil)
	unsampled := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
	on.serve(t, "/public/x", "Traceparent", unsampled)
	tp := on.last(t).Get("Traceparent")
	if len(on.spans.Ended()) != 0 || !strings.HasPrefix(tp, "00-4bf92f3577b34da6a3ce929d0e0e4736-") || !strings.HasSuffix(tp, "-00") || tp == unsampled {
		t.Fatalf("unsampled caller: %d spans, upstream traceparent %q; want none recorded and the trace passed on unsampled", len(on.spans.Ended()), tp)
	}
	on.serve(t, "/public/x", "Traceparent", "garbage", "Tracestate", "stale=1")
	if h := on.last(t); h.Get("Tracestate") != "" || len(h.Get("Traceparent")) != 55 {
		t.Fatalf("a malformed traceparent: upstream got %q %q, want a new trace and no stale tracestate", h.Get("Traceparent"), h.Get("Tracestate"))
	}
}

// discard is a span exporter that drops what it gets.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// BenchmarkGatewayPassTraced is BenchmarkGatewayPass with tracing on, every
// request sampled and exported through the batch processor, as in
// production; BenchmarkGatewayPass itself is the cost with tracing off.
func BenchmarkGatewayPassTraced(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discard{}), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	gw, tok := benchGateway(b, func(o *proxy.Options) { o.TracerProvider = tp })
	b.Run("public", func(b *testing.B) { serveLoop(b, gw, "/public/x") })
	b.Run("hs256", func(b *testing.B) { serveLoop(b, gw, "/admin/x", "Authorization", "Bearer "+tok) })
	unsampled := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discard{}), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())))
	b.Cleanup(func() { _ = unsampled.Shutdown(context.Background()) })
	gw, tok = benchGateway(b, func(o *proxy.Options) { o.TracerProvider = unsampled })
	b.Run("hs256-unsampled", func(b *testing.B) { serveLoop(b, gw, "/admin/x", "Authorization", "Bearer "+tok) })
}
