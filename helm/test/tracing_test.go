package helmtest

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// tracing.* become the standard OTEL_* variables, the collector's
// credentials come from a Secret, and no tracing value renders nothing.
func TestTracingValues(t *testing.T) {
	env := func(args ...string) map[string]corev1.EnvVar {
		t.Helper()
		objs := render(t, args...)
		dep := one[appsv1.Deployment](t, objs, fullname)
		m := map[string]corev1.EnvVar{}
		for _, e := range container(t, &dep.Spec.Template.Spec, "authgate").Env {
			m[e.Name] = e
		}
		return m
	}
	for name := range env() {
		if strings.HasPrefix(name, "OTEL_") {
			t.Errorf("tracing off by default, but %s is set", name)
		}
	}
	got := env("--set", "tracing.endpoint=http://otel-collector.observability:4317", "--set", "tracing.protocol=grpc",
		"--set", "tracing.sampler=parentbased_traceidratio", "--set-string", "tracing.samplerArg=0.25", "--set", "tracing.headersSecret.name=otel-auth")
	for k, v := range map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.observability:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
		"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25",
	} {
		if got[k].Value != v {
			t.Errorf("%s = %q, want %q", k, got[k].Value, v)
		}
	}
	h := got["OTEL_EXPORTER_OTLP_HEADERS"]
	if h.Value != "" || h.ValueFrom == nil || h.ValueFrom.SecretKeyRef == nil || h.ValueFrom.SecretKeyRef.Name != "otel-auth" || h.ValueFrom.SecretKeyRef.Key != "headers" {
		t.Errorf("OTEL_EXPORTER_OTLP_HEADERS = %+v, want it from Secret otel-auth key headers", h)
	}
	for _, tc := range []struct{ set, want string }{
		{"tracing.endpoint=otel:4318", "/tracing/endpoint"},
		{"tracing.endpoint=http://user:pw@otel:4318", "/tracing/endpoint"},
		{"tracing.protocol=http/json", "/tracing/protocol"},
		{"tracing.sampler=sometimes", "/tracing/sampler"},
		{"tracing.samplerArg=2", "/tracing/samplerArg"},
	} {
		out, err := helm(t, "template", release, chartDir, "--kube-version", kubeVersion, "--set-string", tc.set)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("--set %s: %v, want a schema error at %s\n%s", tc.set, err, tc.want, out)
		}
	}
}

// A Service in front of an h2c listener says so (appProtocol), so Gateway
// API implementations and meshes speak HTTP/2 to it.
func TestServiceAppProtocolForH2C(t *testing.T) {
	svc := func(args ...string) *corev1.Service {
		return one[corev1.Service](t, render(t, args...), fullname)
	}
	if p := svc().Spec.Ports[0].AppProtocol; p != nil {
		t.Errorf("appProtocol %q without h2c", *p)
	}
	if p := svc("--set", "config.listen.h2c=true").Spec.Ports[0].AppProtocol; p == nil || *p != "kubernetes.io/h2c" {
		t.Errorf("appProtocol %v with listen.h2c, want kubernetes.io/h2c", p)
	}
}
