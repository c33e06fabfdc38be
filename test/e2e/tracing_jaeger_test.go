package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/internal/app"
	"github.com/authgate/authgate/internal/config"
	"github.com/authgate/authgate/internal/testkit"
)

// jaegerBinary returns the Jaeger built by scripts/jaeger.sh (or $JAEGER).
// Without it the test is skipped, or fails when CI is set.
func jaegerBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("Jaeger test: skipped under -short")
	}
	if p := os.Getenv("JAEGER"); p != "" {
		return p
	}
	if p := builtJaeger(filepath.Join("..", "tools", "jaeger", "go.mod")); p != "" {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatal("jaeger not built but CI is set: run scripts/jaeger.sh (make test does)")
	}
	t.Skip("jaeger not built; run scripts/jaeger.sh (make test does)")
	return ""
}

// builtJaeger is where scripts/jaeger.sh leaves the version pinned in
// toolsGoMod, or "" when it is not there.
func builtJaeger(toolsGoMod string) string {
	b, err := os.ReadFile(toolsGoMod)
	if err != nil {
		return ""
	}
	version := ""
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "github.com/jaegertracing/jaeger" {
			version = f[1]
			break
		}
	}
	cache, err := os.UserCacheDir()
	if err != nil || version == "" {
		return ""
	}
	p := filepath.Join(cache, "authgate-jaeger-test", "jaeger-"+version, "jaeger")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// jaeger is a running Jaeger with in-memory storage: OTLP receivers
// (gRPC and HTTP) and the query API, each on a loopback port of its own.
type jaeger struct {
	otlpGRPC, otlpHTTP, query string
}

// jaegerConfig is Jaeger's own configuration (the OpenTelemetry
// Collector's format): OTLP in, memory storage, the query API, no
// telemetry of its own on fixed ports.
const jaegerConfig = `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: %[1]s
    grpc:
      endpoint: %[2]s
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %[3]s
      http:
        endpoint: %[4]s
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`

func startJaeger(t *testing.T) *jaeger {
	t.Helper()
	bin := jaegerBinary(t)
	addr := func() string { return fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t)) }
	j := &jaeger{query: addr(), otlpGRPC: addr(), otlpHTTP: addr()}
	queryGRPC := addr()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, jaegerConfig, j.query, queryGRPC, j.otlpGRPC, j.otlpHTTP), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "jaeger.log"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--config=file:"+cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		_ = logf.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logf.Name()); err == nil {
				t.Logf("jaeger log:\n%s", b)
			}
		}
	})
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get("http://" + j.query + "/api/services")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return j
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("jaeger query API not up at %s after a minute", j.query)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// jaegerSpan is a span as Jaeger's query API returns it.
type jaegerSpan struct {
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	References    []struct {
		RefType string `json:"refType"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	Tags []struct {
		Key   string `json:"key"`
		Value any    `json:"value"`
	} `json:"tags"`
	ProcessID string `json:"processID"`
}

func (s jaegerSpan) tag(k string) string {
	for _, tg := range s.Tags {
		if tg.Key == k {
			return fmt.Sprint(tg.Value)
		}
	}
	return ""
}

func (s jaegerSpan) parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

// trace waits until Jaeger holds want spans of the trace id, and returns
// them with the raw answer.
func (j *jaeger) trace(t *testing.T, id string, want int) ([]jaegerSpan, []byte) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + j.query + "/api/traces/" + id)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var body struct {
			Data []struct {
				Spans     []jaegerSpan `json:"spans"`
				Processes map[string]struct {
					ServiceName string `json:"serviceName"`
				} `json:"processes"`
			} `json:"data"`
		}
		if resp.StatusCode == http.StatusOK && json.Unmarshal(raw, &body) == nil && len(body.Data) == 1 && len(body.Data[0].Spans) >= want {
			for _, s := range body.Data[0].Spans {
				if p := body.Data[0].Processes[s.ProcessID]; p.ServiceName != "authgate" {
					t.Errorf("span %s from service %q, want authgate", s.OperationName, p.ServiceName)
				}
			}
			return body.Data[0].Spans, raw
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace %s not in jaeger with %d spans after 30s: %d %s", id, want, resp.StatusCode, raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestTracingToJaeger exports to a real trace backend, Jaeger (whose OTLP
// receivers are the OpenTelemetry Collector's), over both OTLP protocols,
// and reads the traces back through its query API: one server span
// continuing the caller's trace, with authentication, decision and
// upstream children, the decision's attributes, and no credential
// anywhere in what was stored.
func TestTracingToJaeger(t *testing.T) {
	j := startJaeger(t)
	for i, tc := range []struct{ protocol, endpoint string }{
		{"http/protobuf", "http://" + j.otlpHTTP},
		{"grpc", "http://" + j.otlpGRPC},
	} {
		t.Run(tc.protocol, func(t *testing.T) {
			environ := []string{"OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_PROTOCOL=" + tc.protocol,
				"OTEL_EXPORTER_OTLP_ENDPOINT=" + tc.endpoint, "OTEL_BSP_SCHEDULE_DELAY=100"}
			e := newEnvDeps(t, config.Secrets{JWT: []byte(testSecret)}, app.Deps{Environ: environ}, "", nil, withUsers)
			tr := e.login("alice", "alice-password-1")
			traceID := fmt.Sprintf("4bf92f3577b34da6a3ce929d0e0e47%02x", i)
			const parentID = "00f067aa0ba902b7"
			resp, body := e.do("GET", "/admin/x?api_key=query-secret-456", "Authorization", "Bearer "+tr.AccessToken,
				"Traceparent", "00-"+traceID+"-"+parentID+"-01")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("traced request: %d %s", resp.StatusCode, body)
			}
			deniedID := fmt.Sprintf("5bf92f3577b34da6a3ce929d0e0e47%02x", i)
			if resp, _ := e.do("GET", "/admin/y", "X-API-Key", testReaderKey, "Traceparent", "00-"+deniedID+"-"+parentID+"-01"); resp.StatusCode != http.StatusForbidden {
				t.Fatalf("reader: %d, want 403", resp.StatusCode)
			}
			if err := e.gw.Stop(); err != nil { // the stop order exports the queued spans
				t.Fatal(err)
			}

			spans, raw := j.trace(t, traceID, 4)
			byName := map[string]jaegerSpan{}
			var server jaegerSpan
			for _, s := range spans {
				if s.tag("span.kind") == "server" {
					server = s
				}
				byName[s.OperationName+"/"+s.tag("span.kind")] = s
			}
			if server.SpanID == "" || len(spans) != 4 {
				t.Fatalf("trace has %d spans, want server, authenticate, decide, upstream: %s", len(spans), raw)
			}
			if server.parent() != parentID {
				t.Errorf("server span parent %q, want the caller's %s", server.parent(), parentID)
			}
			for _, name := range []string{"authgate.authenticate/internal", "authgate.decide/internal", "GET/client"} {
				if c, ok := byName[name]; !ok || c.parent() != server.SpanID {
					t.Errorf("%s missing or not a child of the server span: %s", name, raw)
				}
			}
			for k, v := range map[string]string{"http.request.method": "GET", "url.path": "/admin/x", "http.response.status_code": "200",
				"authgate.decision": "allow", "authgate.reason": "allow_role", "authgate.rule_id": "admin", "authgate.auth_method": "jwt"} {
				if got := server.tag(k); got != v {
					t.Errorf("server span %s = %q, want %q", k, got, v)
				}
			}
			if up := byName["GET/client"]; !strings.HasSuffix(up.tag("url.full"), "/admin/x") || up.tag("http.response.status_code") != "200" {
				t.Errorf("upstream span url.full %q status %q", up.tag("url.full"), up.tag("http.response.status_code"))
			}

			denied, deniedRaw := j.trace(t, deniedID, 3)
			for _, s := range denied {
				if s.tag("span.kind") == "server" && (s.tag("authgate.reason") != "deny_missing_role" || s.tag("http.response.status_code") != "403") {
					t.Errorf("denied request's server span: reason %q status %q", s.tag("authgate.reason"), s.tag("http.response.status_code"))
				}
			}
			stored := string(raw) + string(deniedRaw)
			tok := tr.AccessToken
			for _, secret := range []string{tok, tok[strings.LastIndexByte(tok, '.')+1:], testReaderKey, "query-secret-456", "alice-password-1"} {
				if strings.Contains(stored, secret) {
					t.Errorf("jaeger stored a credential (%d bytes)", len(secret))
				}
			}
		})
	}
}
