package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	collectortracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/authgate/authgate/authn/jwks"
	"github.com/authgate/authgate/authn/jwks/jwkstest"
	"github.com/authgate/authgate/internal/app"
	"github.com/authgate/authgate/internal/config"
)

// otlpReceiver is an OTLP trace receiver, over HTTP (protobuf bodies on
// /v1/traces) or gRPC (the collector's TraceService), decoding what the
// exporter sends with the protocol's own generated types. It keeps the
// raw request bytes too, to search them for what must never be exported.
type otlpReceiver struct {
	collectortracepb.UnimplementedTraceServiceServer
	mu       sync.Mutex
	requests []*collectortracepb.ExportTraceServiceRequest
	raw      [][]byte
	// endpoint is what OTEL_EXPORTER_OTLP_TRACES_ENDPOINT names.
	endpoint string
}

func (o *otlpReceiver) keep(raw []byte, req *collectortracepb.ExportTraceServiceRequest) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.raw = append(o.raw, raw)
	o.requests = append(o.requests, req)
}

// Export implements the OTLP/gRPC TraceService.
func (o *otlpReceiver) Export(_ context.Context, req *collectortracepb.ExportTraceServiceRequest) (*collectortracepb.ExportTraceServiceResponse, error) {
	raw, err := proto.Marshal(req)
	if err != nil {
		return nil, err
	}
	o.keep(raw, req)
	return &collectortracepb.ExportTraceServiceResponse{}, nil
}

// ServeHTTP implements OTLP/HTTP with protobuf bodies.
func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "want POST /v1/traces with application/x-protobuf", http.StatusBadRequest)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	req := &collectortracepb.ExportTraceServiceRequest{}
	if err := proto.Unmarshal(raw, req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	o.keep(raw, req)
	out, _ := proto.Marshal(&collectortracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// startOTLP starts a receiver for protocol ("http/protobuf" or "grpc").
func startOTLP(t *testing.T, protocol string) *otlpReceiver {
	t.Helper()
	o := &otlpReceiver{}
	if protocol == "grpc" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := grpc.NewServer()
		collectortracepb.RegisterTraceServiceServer(srv, o)
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(srv.Stop)
		o.endpoint = "http://" + ln.Addr().String()
		return o
	}
	srv := httptest.NewServer(o)
	t.Cleanup(srv.Close)
	o.endpoint = srv.URL + "/v1/traces"
	return o
}

// exported is one received span with its resource.
type exported struct {
	span     *tracepb.Span
	resource map[string]string
	scope    string
}

func (o *otlpReceiver) spans() []exported {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []exported
	for _, req := range o.requests {
		for _, rs := range req.GetResourceSpans() {
			res := kvs(rs.GetResource().GetAttributes())
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					out = append(out, exported{span: s, resource: res, scope: ss.GetScope().GetName()})
				}
			}
		}
	}
	return out
}

func (o *otlpReceiver) rawBytes() []byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	return bytes.Join(o.raw, nil)
}

func kvs(attrs []*commonpb.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range attrs {
		v := kv.GetValue()
		switch {
		case v.GetStringValue() != "":
			m[kv.GetKey()] = v.GetStringValue()
		default:
			m[kv.GetKey()] = strings.TrimSpace(strings.TrimPrefix(v.String(), "int_value:"))
		}
	}
	return m
}

// The bar for tracing: against a real OTLP receiver, over both OTLP
// protocols, a request is one server span continuing the caller's trace,
// with authentication (and under it the JWKS fetch the request waited
// for), decision and upstream spans; the attributes follow the semantic
// conventions plus the decision; the upstream continues the trace; and no
// credential is in anything exported.
func TestTracingToOTLPReceiver(t *testing.T) {
	for _, protocol := range []string{"http/protobuf", "grpc"} {
		t.Run(protocol, func(t *testing.T) {
			recv := startOTLP(t, protocol)
			idp := jwkstest.NewIdP(t)
			environ := []string{"OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_PROTOCOL=" + protocol, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=" + recv.endpoint}
			e := newEnvDeps(t, config.Secrets{JWT: []byte(testSecret)}, app.Deps{Environ: environ}, "", nil, func(c *config.Config) {
				c.Issuers = []jwks.IssuerConfig{{Issuer: idp.Issuer(), JWKSURI: idp.JWKSURI(), Audiences: []string{"my-app"},
					Algorithms: []string{"RS256"}, RolesClaim: "realm_access.roles"}}
			})
			waitReady(t, e, 200)
			// New keys: the request's token names a kid the gateway has not
			// fetched, so the request waits for a JWKS fetch.
			idp.Rotate()
			tok := idp.Sign(externalClaims(idp, "admin"), "RS256")
			registerSecret(tok)
			const traceID, parentID = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
			resp, body := e.do("GET", "/admin/x?access_token=query-secret-123", "Authorization", "Bearer "+tok,
				"Traceparent", "00-"+traceID+"-"+parentID+"-01", "X-Request-Id", "req-traced-1")
			if resp.StatusCode != 200 {
				t.Fatalf("traced request: %d %s", resp.StatusCode, body)
			}
			upTP := e.up.last(t).Header.Get("Traceparent")
			if resp, _ := e.do("GET", "/admin/y", "X-API-Key", testReaderKey); resp.StatusCode != 403 {
				t.Fatalf("reader: %d", resp.StatusCode)
			}
			if err := e.gw.Stop(); err != nil { // the stop order exports the queued spans
				t.Fatal(err)
			}

			all := recv.spans()
			var tree []exported
			for _, s := range all {
				if hex.EncodeToString(s.span.GetTraceId()) == traceID {
					tree = append(tree, s)
				}
			}
			find := func(pred func(exported) bool) *tracepb.Span {
				t.Helper()
				var found *tracepb.Span
				for _, s := range tree {
					if pred(s) {
						if found != nil {
							t.Fatalf("two matching spans in %v", names(tree))
						}
						found = s.span
					}
				}
				if found == nil {
					t.Fatalf("no matching span among %v", names(tree))
				}
				return found
			}
			server := find(func(s exported) bool { return s.span.GetKind() == tracepb.Span_SPAN_KIND_SERVER })
			auth := find(func(s exported) bool { return s.span.GetName() == "authgate.authenticate" })
			fetch := find(func(s exported) bool { return s.span.GetName() == "authgate.jwks.fetch" })
			decide := find(func(s exported) bool { return s.span.GetName() == "authgate.decide" })
			upstream := find(func(s exported) bool { return s.span.GetKind() == tracepb.Span_SPAN_KIND_CLIENT })
			if len(tree) != 5 {
				t.Fatalf("the trace has %d spans: %v", len(tree), names(tree))
			}
			id := func(s *tracepb.Span) string { return hex.EncodeToString(s.GetSpanId()) }
			parent := func(s *tracepb.Span) string { return hex.EncodeToString(s.GetParentSpanId()) }
			if parent(server) != parentID {
				t.Errorf("server span parent %s, want the caller's %s", parent(server), parentID)
			}
			for _, c := range []*tracepb.Span{auth, decide, upstream} {
				if parent(c) != id(server) {
					t.Errorf("%s is not a child of the server span", c.GetName())
				}
			}
			if parent(fetch) != id(auth) {
				t.Errorf("the JWKS fetch span is not a child of the authentication span")
			}
			if want := "00-" + traceID + "-" + id(upstream) + "-01"; upTP != want {
				t.Errorf("upstream traceparent %q, want %q (the upstream span)", upTP, want)
			}
			sa := kvs(server.GetAttributes())
			for k, v := range map[string]string{
				"http.request.method": "GET", "url.path": "/admin/x", "http.response.status_code": "200", "url.scheme": "http",
				"authgate.decision": "allow", "authgate.reason": "allow_role", "authgate.rule_id": "admin", "authgate.auth_method": "external",
				"network.protocol.version": "1.1", "client.address": "127.0.0.1",
			} {
				if sa[k] != v {
					t.Errorf("server span %s = %q, want %q", k, sa[k], v)
				}
			}
			if a := kvs(decide.GetAttributes()); a["authgate.decision"] != "allow" || a["authgate.rule_id"] != "admin" {
				t.Errorf("decide span %v", a)
			}
			if a := kvs(fetch.GetAttributes()); a["authgate.issuer"] != idp.Issuer() || a["authgate.jwks.cause"] != "unknown_kid" {
				t.Errorf("jwks fetch span %v", a)
			}
			if a := kvs(upstream.GetAttributes()); a["http.response.status_code"] != "200" || !strings.HasSuffix(a["url.full"], "/admin/x") {
				t.Errorf("upstream span %v", a)
			}
			if res := tree[0].resource; res["service.name"] != "authgate" || res["service.version"] != "test" {
				t.Errorf("resource %v", res)
			}

			// The denied reader is a trace of its own: server, auth, decide.
			var denied []exported
			for _, s := range all {
				if kvs(s.span.GetAttributes())["authgate.reason"] == "deny_missing_role" && s.span.GetKind() == tracepb.Span_SPAN_KIND_SERVER {
					denied = append(denied, s)
				}
			}
			if len(denied) != 1 || kvs(denied[0].span.GetAttributes())["http.response.status_code"] != "403" {
				t.Errorf("denied request's server span: %v", names(denied))
			}

			raw := recv.rawBytes()
			for _, secret := range []string{tok, tok[strings.LastIndexByte(tok, '.')+1:], testReaderKey, "query-secret-123", "access_token"} {
				if bytes.Contains(raw, []byte(secret)) {
					t.Errorf("exported spans contain a credential (%d bytes)", len(secret))
				}
			}
		})
	}
}

func names(spans []exported) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.span.GetName()+"("+s.scope+")")
	}
	return out
}

// Tracing stays off unless asked for, and a setting the gateway cannot
// honour stops startup with the variable's name.
func TestTracingSettingsAtStartup(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir+"/policy.yaml", testPolicy)
	cfg := config.Default()
	cfg.Path, cfg.PolicyFile, cfg.Upstream.URL = dir+"/config.yaml", dir+"/policy.yaml", "http://127.0.0.1:1"
	_, err := app.New(&cfg, config.Secrets{JWT: []byte(testSecret)}, app.Deps{Environ: []string{"OTEL_TRACES_EXPORTER=zipkin"}})
	if err == nil || !strings.Contains(err.Error(), "OTEL_TRACES_EXPORTER") {
		t.Fatalf("app.New with OTEL_TRACES_EXPORTER=zipkin: %v, want an error naming it", err)
	}
	_, err = app.New(&cfg, config.Secrets{JWT: []byte(testSecret)}, app.Deps{Environ: []string{"OTEL_TRACES_EXPORTER=otlp", "OTEL_TRACES_SAMPLER=sometimes"}})
	if err == nil || !strings.Contains(err.Error(), "OTEL_TRACES_SAMPLER") {
		t.Fatalf("app.New with a bad sampler: %v", err)
	}
}
