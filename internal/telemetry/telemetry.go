// Package telemetry builds the gateway's OpenTelemetry tracer provider from
// the standard OTEL_* environment variables. Tracing is off unless the
// environment asks for it; when off there is no provider at all, so the
// request path does no tracing work. Nothing here touches OpenTelemetry's
// global provider, propagator or error handler: the provider is passed to
// whoever traces, and its owner shuts it down.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// OTLP transport protocols (OTEL_EXPORTER_OTLP_PROTOCOL).
const (
	// ProtocolHTTP is OTLP/HTTP with protobuf bodies, the specification's
	// default.
	ProtocolHTTP = "http/protobuf"
	// ProtocolGRPC is OTLP/gRPC.
	ProtocolGRPC = "grpc"
)

// Settings are the tracing settings read from the environment. The zero
// value is tracing off.
type Settings struct {
	// Enabled reports whether spans are recorded and exported.
	Enabled bool
	// Protocol is ProtocolHTTP or ProtocolGRPC.
	Protocol string
	// Endpoint is the traces endpoint URL; empty means the exporter's
	// default (http://localhost:4318/v1/traces, or localhost:4317).
	Endpoint string
	// Sampler is the sampler named by OTEL_TRACES_SAMPLER; the default is
	// parent-based always-on: a request joins its caller's sampling
	// decision, and a request without one is sampled.
	Sampler sdktrace.Sampler
}

// FromEnv reads the settings from environ (KEY=VALUE entries, as
// os.Environ returns them). Tracing is on when OTEL_TRACES_EXPORTER is
// "otlp", or when it is unset and an OTLP endpoint is configured
// (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT); it
// is off when OTEL_SDK_DISABLED is true or OTEL_TRACES_EXPORTER is "none".
// A value the gateway cannot honour is an error naming the variable,
// rather than a silent fallback. The exporter itself reads the other
// OTEL_EXPORTER_OTLP_* variables (headers, certificates, timeout,
// compression), and the SDK the OTEL_BSP_* and OTEL_SPAN_* limits and
// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, from the process
// environment.
func FromEnv(environ []string) (Settings, error) {
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "OTEL_") {
			env[k] = strings.TrimSpace(v)
		}
	}
	var s Settings
	var errs []error
	bad := func(name, format string, a ...any) {
		errs = append(errs, fmt.Errorf("telemetry: %s: %s", name, fmt.Sprintf(format, a...)))
	}
	switch v := strings.ToLower(env["OTEL_SDK_DISABLED"]); v {
	case "", "false":
	case "true":
		return Settings{}, nil
	default:
		bad("OTEL_SDK_DISABLED", "want true or false, got %q", env["OTEL_SDK_DISABLED"])
	}
	endpointSet := env["OTEL_EXPORTER_OTLP_ENDPOINT"] != "" || env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] != ""
	switch v := env["OTEL_TRACES_EXPORTER"]; v {
	case "":
		s.Enabled = endpointSet
	case "otlp":
		s.Enabled = true
	case "none":
	default:
		bad("OTEL_TRACES_EXPORTER", "want otlp or none, got %q", v)
	}
	s.Protocol = firstSet(env, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
	switch s.Protocol {
	case "":
		s.Protocol = ProtocolHTTP
	case ProtocolHTTP, ProtocolGRPC:
	default:
		bad(protocolVar(env), "want http/protobuf or grpc, got %q", s.Protocol)
	}
	if v := env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]; v != "" {
		s.Endpoint = v // used as is, for either protocol
		if err := checkEndpoint(v); err != nil {
			bad("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "%v", err)
		}
	} else if v := env["OTEL_EXPORTER_OTLP_ENDPOINT"]; v != "" {
		if err := checkEndpoint(v); err != nil {
			bad("OTEL_EXPORTER_OTLP_ENDPOINT", "%v", err)
		}
		s.Endpoint = v
		if s.Protocol == ProtocolHTTP {
			// The base endpoint of OTLP/HTTP gets the signal's path.
			s.Endpoint = strings.TrimSuffix(v, "/") + "/v1/traces"
		}
	}
	sampler, err := samplerFrom(env["OTEL_TRACES_SAMPLER"], env["OTEL_TRACES_SAMPLER_ARG"])
	if err != nil {
		errs = append(errs, err)
	}
	s.Sampler = sampler
	if err := errors.Join(errs...); err != nil {
		return Settings{}, err
	}
	if !s.Enabled {
		return Settings{}, nil
	}
	return s, nil
}

func firstSet(env map[string]string, names ...string) string {
	for _, n := range names {
		if v := env[n]; v != "" {
			return v
		}
	}
	return ""
}

func protocolVar(env map[string]string) string {
	if env["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] != "" {
		return "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	}
	return "OTEL_EXPORTER_OTLP_PROTOCOL"
}

// checkEndpoint reports an endpoint that is not an http or https URL with
// a host. The URL is not secret; credentials belong in
// OTEL_EXPORTER_OTLP_HEADERS, so one in the URL is refused.
func checkEndpoint(v string) error {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("want an http:// or https:// URL with a host")
	}
	if u.User != nil {
		return errors.New("must not contain user:password (send credentials in OTEL_EXPORTER_OTLP_HEADERS)")
	}
	return nil
}

// samplerFrom returns the sampler OTEL_TRACES_SAMPLER names, with its
// OTEL_TRACES_SAMPLER_ARG.
func samplerFrom(name, arg string) (sdktrace.Sampler, error) {
	ratio := func() (float64, error) {
		if arg == "" {
			return 1, nil
		}
		f, err := strconv.ParseFloat(arg, 64)
		if err != nil || f < 0 || f > 1 {
			return 0, fmt.Errorf("telemetry: OTEL_TRACES_SAMPLER_ARG: want a ratio in [0,1], got %q", arg)
		}
		return f, nil
	}
	switch name {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "parentbased_traceidratio":
		f, err := ratio()
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(f)), err
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "traceidratio":
		f, err := ratio()
		return sdktrace.TraceIDRatioBased(f), err
	}
	return nil, fmt.Errorf("telemetry: OTEL_TRACES_SAMPLER: want parentbased_always_on, parentbased_always_off, parentbased_traceidratio, always_on, always_off or traceidratio, got %q", name)
}

// Options are the optional parts of a Provider.
type Options struct {
	// ServiceVersion is the service.version resource attribute.
	ServiceVersion string
	// Exporter replaces the OTLP exporter (tests, benchmarks).
	Exporter sdktrace.SpanExporter
}

// Provider owns the gateway's tracer provider and its exporter. A nil
// *Provider is tracing off; its methods are safe to call. It is safe for
// concurrent use.
type Provider struct {
	tp *sdktrace.TracerProvider
}

// New returns the provider s describes, or nil when tracing is off. The
// exporter connects lazily: an unreachable collector costs dropped spans,
// never a failed start or a slower request.
func New(ctx context.Context, s Settings, o Options) (*Provider, error) {
	if !s.Enabled {
		return nil, nil
	}
	exp := o.Exporter
	if exp == nil {
		var err error
		if exp, err = newExporter(ctx, s); err != nil {
			return nil, err
		}
	}
	res, err := resource.New(ctx,
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithAttributes(semconv.ServiceName("authgate"), semconv.ServiceVersion(o.ServiceVersion)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override
		resource.WithTelemetrySDK(),
	)
	if err != nil {
		// A malformed OTEL_RESOURCE_ATTRIBUTES is reported, not dropped.
		_ = exp.Shutdown(ctx)
		return nil, fmt.Errorf("telemetry: resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES): %w", err)
	}
	sampler := s.Sampler
	if sampler == nil {
		sampler = sdktrace.ParentBased(sdktrace.AlwaysSample())
	}
	// The batch processor drops spans when its queue is full instead of
	// blocking requests: a collector outage or a flood of sampled
	// requests costs spans, never latency or unbounded memory.
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sampler),
	)
	return &Provider{tp: tp}, nil
}

func newExporter(ctx context.Context, s Settings) (sdktrace.SpanExporter, error) {
	var exp sdktrace.SpanExporter
	var err error
	switch s.Protocol {
	case ProtocolGRPC:
		var opts []otlptracegrpc.Option
		if s.Endpoint != "" {
			opts = append(opts, otlptracegrpc.WithEndpointURL(s.Endpoint))
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	default:
		var opts []otlptracehttp.Option
		if s.Endpoint != "" {
			opts = append(opts, otlptracehttp.WithEndpointURL(s.Endpoint))
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: otlp exporter: %w", err)
	}
	return exp, nil
}

// TracerProvider returns the provider to trace with, or nil when tracing
// is off.
func (p *Provider) TracerProvider() trace.TracerProvider {
	if p == nil {
		return nil
	}
	return p.tp
}

// Shutdown exports the spans still queued and stops the exporter, waiting
// at most until ctx ends. Spans ended after it are dropped.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p == nil {
		return nil
	}
	if err := p.tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("telemetry: shutdown: %w", err)
	}
	return nil
}

// ShutdownTimeout bounds the final export at shutdown.
const ShutdownTimeout = 5 * time.Second
