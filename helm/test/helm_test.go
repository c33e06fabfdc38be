package helmtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"
)

const (
	// helmModule is the helm release the tests run; it is built from source
	// through the Go module proxy when $HELM is not set.
	helmModule = "helm.sh/helm/v3/cmd/helm@v3.22.0"
	// kubeVersion is passed to lint and template. A helm built with
	// `go install` reports Kubernetes v1.20 by default, below the chart's
	// kubeVersion constraint.
	kubeVersion = "1.31.0"
	release     = "demo"
	namespace   = "apps"
)

// Paths resolved once by TestMain; read-only afterwards.
var (
	helmBin  string
	chartDir string
)

func TestMain(m *testing.M) {
	var err error
	chartDir, err = filepath.Abs(filepath.Join("..", "authgate"))
	if err == nil {
		helmBin, err = helmBinary()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "helmtest:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// helmBinary returns $HELM, or a helm built once into the user cache.
func helmBinary() (string, error) {
	if h := os.Getenv("HELM"); h != "" {
		return h, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "authgate-helm-test", "helm-v3.22.0")
	bin := filepath.Join(dir, "helm")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("helmtest: create helm cache: %w", err)
	}
	fmt.Fprintf(os.Stderr, "helmtest: building %s into %s (first run only)\n", helmModule, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "install", helmModule)
	// Outside any module, so the install ignores this module's go.mod.
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("helmtest: go install %s: %w (or set HELM to a helm v3 binary)", helmModule, err)
	}
	return bin, nil
}

// helm runs the helm binary and returns its combined output.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, helmBin, args...)
	home := t.TempDir()
	// Isolated helm home: no repositories, plugins or cache from the host.
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// valuesFile writes YAML values to a temporary file and returns its path.
func valuesFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// object is one rendered manifest, decoded strictly into its API type.
type object struct {
	Kind   string
	Name   string
	Source string // the template it came from
	Obj    any
}

// serviceMonitor is the part of monitoring.coreos.com/v1 ServiceMonitor the
// chart renders; decoding is strict, so any other field is an error.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Scheme        string `json:"scheme"`
			Interval      string `json:"interval"`
			ScrapeTimeout string `json:"scrapeTimeout"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// prometheusRule is the part of monitoring.coreos.com/v1 PrometheusRule the
// chart renders.
type prometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert"`
				Expr        string            `json:"expr"`
				For         string            `json:"for,omitempty"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

// newTyped returns an empty object of the Go type for apiVersion/kind.
func newTyped(apiVersion, kind string) (any, error) {
	switch apiVersion + " " + kind {
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1 Secret":
		return &corev1.Secret{}, nil
	case "v1 Service":
		return &corev1.Service{}, nil
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}, nil
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, nil
	case "networking.k8s.io/v1 NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, nil
	case "networking.k8s.io/v1 Ingress":
		return &networkingv1.Ingress{}, nil
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}, nil
	case "monitoring.coreos.com/v1 ServiceMonitor":
		return &serviceMonitor{}, nil
	case "monitoring.coreos.com/v1 PrometheusRule":
		return &prometheusRule{}, nil
	case "gateway.networking.k8s.io/v1 HTTPRoute":
		return &gatewayv1.HTTPRoute{}, nil
	}
	return nil, fmt.Errorf("unexpected object %s %s", apiVersion, kind)
}

// decodeManifests splits helm template output into documents and decodes
// each strictly: duplicate keys, unknown fields and unknown kinds are errors.
func decodeManifests(out string) ([]object, error) {
	var objs []object
	var errs []error
	for _, doc := range splitDocs(out) {
		source := ""
		for _, line := range strings.Split(doc, "\n") {
			if s, ok := strings.CutPrefix(line, "# Source: "); ok {
				source = s
				break
			}
		}
		j, err := yaml.YAMLToJSONStrict([]byte(doc))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", source, err))
			continue
		}
		if string(j) == "null" {
			continue // a document holding only comments
		}
		var tm metav1.TypeMeta
		if err := json.Unmarshal(j, &tm); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", source, err))
			continue
		}
		obj, err := newTyped(tm.APIVersion, tm.Kind)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", source, err))
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(j))
		dec.DisallowUnknownFields()
		if err := dec.Decode(obj); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %w", source, tm.Kind, err))
			continue
		}
		objs = append(objs, object{Kind: tm.Kind, Name: objectName(obj), Source: source, Obj: obj})
	}
	return objs, errors.Join(errs...)
}

func splitDocs(out string) []string {
	var docs []string
	var cur []string
	for _, line := range strings.Split(out, "\n") {
		if strings.TrimRight(line, " ") == "---" {
			docs = append(docs, strings.Join(cur, "\n"))
			cur = nil
			continue
		}
		cur = append(cur, line)
	}
	docs = append(docs, strings.Join(cur, "\n"))
	var nonEmpty []string
	for _, d := range docs {
		if strings.TrimSpace(d) != "" {
			nonEmpty = append(nonEmpty, d)
		}
	}
	return nonEmpty
}

func objectName(obj any) string {
	if m, ok := obj.(metav1.Object); ok {
		return m.GetName()
	}
	return ""
}

// render runs helm template with the given extra arguments and decodes the
// result; it fails the test on any error.
func render(t *testing.T, args ...string) []object {
	t.Helper()
	out, err := helm(t, append([]string{"template", release, chartDir,
		"--namespace", namespace, "--kube-version", kubeVersion}, args...)...)
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", args, err, out)
	}
	objs, err := decodeManifests(out)
	if err != nil {
		t.Fatalf("decode helm template %v output: %v", args, err)
	}
	if len(objs) == 0 {
		t.Fatalf("helm template %v rendered no objects", args)
	}
	return objs
}

// find returns the objects of one kind.
func find[T any](objs []object) []*T {
	var r []*T
	for _, o := range objs {
		if v, ok := o.Obj.(*T); ok {
			r = append(r, v)
		}
	}
	return r
}

// one returns the single object of kind T named name, failing the test otherwise.
func one[T any](t *testing.T, objs []object, name string) *T {
	t.Helper()
	for _, o := range objs {
		if v, ok := o.Obj.(*T); ok && o.Name == name {
			return v
		}
	}
	var zero T
	t.Fatalf("no %T named %q rendered", zero, name)
	return nil
}
