package telemetry

import (
	"context"
	"strings"
	"sync"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

func TestFromEnv(t *testing.T) {
	tests := []struct {
		name     string
		env      []string
		enabled  bool
		protocol string
		endpoint string
		err      string
	}{
		{name: "nothing set: off"},
		{name: "unrelated variables", env: []string{"PATH=/bin", "OTELX=1"}},
		{name: "exporter otlp", env: []string{"OTEL_TRACES_EXPORTER=otlp"}, enabled: true, protocol: ProtocolHTTP},
		{name: "endpoint alone turns it on", env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318"}, enabled: true, protocol: ProtocolHTTP, endpoint: "http://collector:4318/v1/traces"},
		{name: "base endpoint with a slash", env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318/"}, enabled: true, protocol: ProtocolHTTP, endpoint: "http://collector:4318/v1/traces"},
		{name: "traces endpoint used as is", env: []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=https://c/custom", "OTEL_EXPORTER_OTLP_ENDPOINT=http://other:4318"}, enabled: true, protocol: ProtocolHTTP, endpoint: "https://c/custom"},
		{name: "grpc base endpoint has no path added", env: []string{"OTEL_EXPORTER_OTLP_PROTOCOL=grpc", "OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4317"}, enabled: true, protocol: ProtocolGRPC, endpoint: "http://collector:4317"},
		{name: "traces protocol wins", env: []string{"OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc"}, enabled: true, protocol: ProtocolGRPC},
		{name: "exporter none wins over an endpoint", env: []string{"OTEL_TRACES_EXPORTER=none", "OTEL_EXPORTER_OTLP_ENDPOINT=http://c:4318"}},
		{name: "sdk disabled wins", env: []string{"OTEL_SDK_DISABLED=TRUE", "OTEL_TRACES_EXPORTER=otlp"}},
		{name: "sdk disabled false", env: []string{"OTEL_SDK_DISABLED=false", "OTEL_TRACES_EXPORTER=otlp"}, enabled: true, protocol: ProtocolHTTP},
		{name: "unsupported exporter", env: []string{"OTEL_TRACES_EXPORTER=zipkin"}, err: "OTEL_TRACES_EXPORTER"},
		{name: "two exporters", env: []string{"OTEL_TRACES_EXPORTER=otlp,console"}, err: "OTEL_TRACES_EXPORTER"},
		{name: "http/json", env: []string{"OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_PROTOCOL=http/json"}, err: "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{name: "bad endpoint", env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT=collector:4318"}, err: "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{name: "credentials in the endpoint", env: []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=https://user:secret@c/v1/traces"}, err: "user:password"},
		{name: "bad sdk disabled", env: []string{"OTEL_SDK_DISABLED=yes"}, err: "OTEL_SDK_DISABLED"},
		{name: "unknown sampler", env: []string{"OTEL_TRACES_EXPORTER=otlp", "OTEL_TRACES_SAMPLER=jaeger_remote"}, err: "OTEL_TRACES_SAMPLER"},
		{name: "ratio out of range", env: []string{"OTEL_TRACES_EXPORTER=otlp", "OTEL_TRACES_SAMPLER=parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG=2"}, err: "OTEL_TRACES_SAMPLER_ARG"},
		{name: "bad settings are reported while off", env: []string{"OTEL_TRACES_EXPORTER=none", "OTEL_TRACES_SAMPLER=nope"}, err: "OTEL_TRACES_SAMPLER"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := FromEnv(tc.env)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), "telemetry: ") {
					t.Fatalf("FromEnv(%q) error = %v, want one naming %s", tc.env, err, tc.err)
				}
				if strings.Contains(err.Error(), "secret") {
					t.Fatalf("error repeats a credential: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("FromEnv(%q): %v", tc.env, err)
			}
			if s.Enabled != tc.enabled || s.Protocol != tc.protocol || s.Endpoint != tc.endpoint {
				t.Fatalf("FromEnv(%q) = enabled %v, %q, %q; want %v, %q, %q", tc.env, s.Enabled, s.Protocol, s.Endpoint, tc.enabled, tc.protocol, tc.endpoint)
			}
			if s.Enabled && s.Sampler == nil {
				t.Fatal("no sampler")
			}
		})
	}
}

// The default sampler is parent-based: an unsampled parent keeps the
// request unsampled, a sampled one or none samples it.
func TestDefaultSamplerIsParentBased(t *testing.T) {
	s, err := FromEnv([]string{"OTEL_TRACES_EXPORTER=otlp"})
	if err != nil {
		t.Fatal(err)
	}
	if d := s.Sampler.Description(); !strings.HasPrefix(d, "ParentBased{root:AlwaysOnSampler") {
		t.Fatalf("sampler %s, want parent-based always-on", d)
	}
	for name, want := range map[string]string{
		"parentbased_always_off":   "ParentBased{root:AlwaysOffSampler",
		"traceidratio":             "TraceIDRatioBased{0.25}",
		"parentbased_traceidratio": "ParentBased{root:TraceIDRatioBased{0.25}",
		"always_on":                "AlwaysOnSampler",
	} {
		s, err := FromEnv([]string{"OTEL_TRACES_EXPORTER=otlp", "OTEL_TRACES_SAMPLER=" + name, "OTEL_TRACES_SAMPLER_ARG=0.25"})
		if err != nil || !strings.HasPrefix(s.Sampler.Description(), want) {
			t.Errorf("%s: sampler %v (%v), want %s", name, s.Sampler, err, want)
		}
	}
}

func TestProviderOffIsNil(t *testing.T) {
	p, err := New(context.Background(), Settings{}, Options{})
	if err != nil || p != nil {
		t.Fatalf("New(off) = %v, %v; want nil, nil", p, err)
	}
	if p.TracerProvider() != nil {
		t.Fatal("a nil provider has a tracer provider")
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Spans reach the exporter by Shutdown, with the service resource.
func TestProviderExportsOnShutdown(t *testing.T) {
	exp := &keepExporter{}
	s, _ := FromEnv([]string{"OTEL_TRACES_EXPORTER=otlp"})
	p, err := New(context.Background(), s, Options{ServiceVersion: "v9", Exporter: exp})
	if err != nil {
		t.Fatal(err)
	}
	_, span := p.TracerProvider().Tracer("t").Start(context.Background(), "x", trace.WithSpanKind(trace.SpanKindServer))
	span.End()
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := exp.spans
	if len(got) != 1 {
		t.Fatalf("exported %d spans, want 1", len(got))
	}
	attrs := map[string]string{}
	for _, kv := range got[0].Resource().Attributes() {
		attrs[string(kv.Key)] = kv.Value.Emit()
	}
	if attrs["service.name"] != "authgate" || attrs["service.version"] != "v9" {
		t.Fatalf("resource %v, want service authgate v9", attrs)
	}
}

// keepExporter keeps what it exported past its shutdown.
type keepExporter struct {
	mu    sync.Mutex
	spans []sdktrace.ReadOnlySpan
}

func (k *keepExporter) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.spans = append(k.spans, spans...)
	return nil
}

func (k *keepExporter) Shutdown(context.Context) error { return nil }
