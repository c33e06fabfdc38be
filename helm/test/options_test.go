package helmtest

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"
)

// monitoringAPI is the API group/version of the Prometheus Operator's CRDs.
const monitoringAPI = "monitoring.coreos.com/v1"

// testCA is a syntactically PEM block; the chart does not parse certificates.
const testCA = "-----BEGIN CERTIFICATE-----\nMIIBdGVzdA==\n-----END CERTIFICATE-----\n"

func kinds(objs []object) []string {
	var k []string
	for _, o := range objs {
		k = append(k, o.Kind)
	}
	return k
}

// TestMonitoringAPICheck: the echo-server example turns the ServiceMonitor
// and PrometheusRule on; they are rendered only where the Prometheus
// Operator's API exists, so the example installs on a bare cluster.
func TestMonitoringAPICheck(t *testing.T) {
	example := filepath.Join(chartDir, "examples", "echo-server.yaml")
	tests := []struct {
		name           string
		apiVersions    []string
		monitor, rules bool
	}{
		{"no Prometheus Operator", nil, false, false},
		{"group version", []string{monitoringAPI}, true, true},
		{"ServiceMonitor kind only", []string{monitoringAPI + "/ServiceMonitor"}, true, false},
		{"PrometheusRule kind only", []string{monitoringAPI + "/PrometheusRule"}, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"-f", example}
			for _, v := range tc.apiVersions {
				args = append(args, "--api-versions", v)
			}
			objs := render(t, args...)
			if got := len(find[serviceMonitor](objs)) == 1; got != tc.monitor {
				t.Errorf("ServiceMonitor rendered = %v, want %v (objects %v)", got, tc.monitor, kinds(objs))
			}
			if got := len(find[prometheusRule](objs)) == 1; got != tc.rules {
				t.Errorf("PrometheusRule rendered = %v, want %v (objects %v)", got, tc.rules, kinds(objs))
			}
			// Everything else of the example is there either way.
			one[appsv1.Deployment](t, objs, fullname)
			one[corev1.Service](t, objs, fullname+"-metrics")
		})
	}
}

func TestExtraVolumesMountsAndEnv(t *testing.T) {
	v := valuesFile(t, `gateway:
  extraEnv:
    - name: HTTPS_PROXY
      value: http://proxy.internal:3128
  extraVolumeMounts:
    - name: idp-tls
      mountPath: /etc/idp-tls
      readOnly: true
  extraVolumes:
    - name: idp-tls
      secret:
        secretName: idp-client-cert
`)
	check := func(t *testing.T, spec *corev1.PodSpec) {
		t.Helper()
		gw := container(t, spec, "authgate")
		if !slices.ContainsFunc(gw.Env, func(e corev1.EnvVar) bool { return e.Name == "HTTPS_PROXY" && e.Value == "http://proxy.internal:3128" }) {
			t.Errorf("authgate env %v lacks gateway.extraEnv", gw.Env)
		}
		if !slices.ContainsFunc(gw.VolumeMounts, func(m corev1.VolumeMount) bool {
			return m.Name == "idp-tls" && m.MountPath == "/etc/idp-tls" && m.ReadOnly
		}) {
			t.Errorf("authgate mounts %v lack gateway.extraVolumeMounts", gw.VolumeMounts)
		}
		if !slices.ContainsFunc(spec.Volumes, func(v corev1.Volume) bool {
			return v.Name == "idp-tls" && v.Secret != nil && v.Secret.SecretName == "idp-client-cert"
		}) {
			t.Errorf("pod volumes lack gateway.extraVolumes")
		}
		checkNoSubPathAndDirectories(t, spec)
	}
	t.Run("wrap", func(t *testing.T) {
		dep := one[appsv1.Deployment](t, render(t, "-f", v), fullname)
		check(t, &dep.Spec.Template.Spec)
	})
	t.Run("forward-auth", func(t *testing.T) {
		dep := one[appsv1.Deployment](t, render(t, "-f", filepath.Join(chartDir, "examples", "forward-auth.yaml"), "-f", v), fullname)
		check(t, &dep.Spec.Template.Spec)
	})
}

func TestGoMemLimit(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		want     string // GOMEMLIMIT value; "" = not set
		downward bool
	}{
		{"default 384Mi limit at 0.9", nil, "362387865", false},
		{"1Gi at 0.5", []string{"--set", "gateway.resources.limits.memory=1Gi", "-f", valuesFile(t, "gateway:\n  goMemLimitRatio: 0.5\n")}, "536870912", false},
		{"decimal units", []string{"--set", "gateway.resources.limits.memory=500M"}, "450000000", false},
		{"plain bytes", []string{"--set", "gateway.resources.limits.memory=1000000"}, "900000", false},
		{"no limit in values: downward API", []string{"--set", "gateway.resources.limits=null"}, "$(MEMORY_LIMIT_MIB)000000", true},
		{"ratio 0: none", []string{"--set", "gateway.goMemLimitRatio=0"}, "", false},
		{"the user's own wins", []string{"--set", "gateway.extraEnv[0].name=GOMEMLIMIT", "--set", "gateway.extraEnv[0].value=100MiB"}, "100MiB", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dep := one[appsv1.Deployment](t, render(t, tc.args...), fullname)
			gw := container(t, &dep.Spec.Template.Spec, "authgate")
			var values []string
			var mib *corev1.EnvVar
			for i, e := range gw.Env {
				switch e.Name {
				case "GOMEMLIMIT":
					values = append(values, e.Value)
				case "MEMORY_LIMIT_MIB":
					mib = &gw.Env[i]
				}
			}
			if tc.want == "" {
				if len(values) != 0 {
					t.Errorf("GOMEMLIMIT = %v, want none", values)
				}
				return
			}
			if len(values) != 1 || values[0] != tc.want {
				t.Errorf("GOMEMLIMIT = %v, want exactly [%s]", values, tc.want)
			}
			if !tc.downward {
				if mib != nil {
					t.Errorf("MEMORY_LIMIT_MIB set although the limit is known: %+v", mib)
				}
				return
			}
			if mib == nil || mib.ValueFrom == nil || mib.ValueFrom.ResourceFieldRef == nil {
				t.Fatalf("MEMORY_LIMIT_MIB = %+v, want a resourceFieldRef", mib)
			}
			ref := mib.ValueFrom.ResourceFieldRef
			if ref.Resource != "limits.memory" || ref.Divisor.Cmp(resource.MustParse("1Mi")) != 0 || ref.ContainerName != "" {
				t.Errorf("resourceFieldRef = %+v, want limits.memory with divisor 1Mi of the container itself", ref)
			}
			// Kubernetes expands $(VAR) from variables defined earlier in the list.
			if slices.IndexFunc(gw.Env, func(e corev1.EnvVar) bool { return e.Name == "MEMORY_LIMIT_MIB" }) >
				slices.IndexFunc(gw.Env, func(e corev1.EnvVar) bool { return e.Name == "GOMEMLIMIT" }) {
				t.Errorf("MEMORY_LIMIT_MIB comes after GOMEMLIMIT; $(MEMORY_LIMIT_MIB) would not expand")
			}
		})
	}
	t.Run("unreadable limit", func(t *testing.T) {
		out, err := helm(t, "template", release, chartDir, "--kube-version", kubeVersion, "--set", "gateway.resources.limits.memory=lots")
		if err == nil || !strings.Contains(out, `gateway.resources.limits.memory: cannot read the quantity "lots"`) {
			t.Errorf("helm template with limits.memory=lots: err=%v\n%s", err, out)
		}
	})
}

// caConfig is the part of config.yaml the CA bundle sets.
type caConfig struct {
	TLS struct {
		CAFile string `json:"ca_file"`
	} `json:"tls"`
}

func TestCABundle(t *testing.T) {
	const caFile = "/etc/authgate/ca/ca.crt"
	pem := valuesFile(t, "caBundle:\n  pem: |\n"+indent(testCA, "    "))
	tests := []struct {
		name      string
		args      []string
		configMap string // the ConfigMap the volume names, or
		secret    string // the Secret
		key       string
	}{
		{"inline pem", []string{"-f", pem}, fullname + "-ca", "", "ca.crt"},
		{"existing ConfigMap", []string{"--set", "caBundle.existingConfigMap=trust", "--set", "caBundle.key=trust-bundle.pem"}, "trust", "", "trust-bundle.pem"},
		{"existing Secret", []string{"--set", "caBundle.existingSecret=corp-ca"}, "", "corp-ca", "ca.crt"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			objs := render(t, tc.args...)
			var cfg caConfig
			if err := yaml.Unmarshal([]byte(one[corev1.ConfigMap](t, objs, fullname+"-config").Data["config.yaml"]), &cfg); err != nil {
				t.Fatal(err)
			}
			if cfg.TLS.CAFile != caFile {
				t.Errorf("config.yaml tls.ca_file = %q, want %q", cfg.TLS.CAFile, caFile)
			}
			dep := one[appsv1.Deployment](t, objs, fullname)
			spec := &dep.Spec.Template.Spec
			gw := container(t, spec, "authgate")
			if !slices.ContainsFunc(gw.VolumeMounts, func(m corev1.VolumeMount) bool {
				return m.Name == "authgate-ca" && m.MountPath == filepath.Dir(caFile) && m.ReadOnly && m.SubPath == ""
			}) {
				t.Errorf("authgate does not mount the CA directory %s read-only: %v", filepath.Dir(caFile), gw.VolumeMounts)
			}
			i := slices.IndexFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == "authgate-ca" })
			if i < 0 {
				t.Fatal("no authgate-ca volume")
			}
			vol := spec.Volumes[i]
			var items []corev1.KeyToPath
			switch {
			case tc.configMap != "" && vol.ConfigMap != nil && vol.ConfigMap.Name == tc.configMap:
				items = vol.ConfigMap.Items
			case tc.secret != "" && vol.Secret != nil && vol.Secret.SecretName == tc.secret:
				items = vol.Secret.Items
			default:
				t.Fatalf("authgate-ca volume = %+v, want ConfigMap %q / Secret %q", vol, tc.configMap, tc.secret)
			}
			if len(items) != 1 || items[0].Key != tc.key || items[0].Path != filepath.Base(caFile) {
				t.Errorf("authgate-ca items = %v, want %s -> %s", items, tc.key, filepath.Base(caFile))
			}
			if tc.configMap == fullname+"-ca" {
				if got := one[corev1.ConfigMap](t, objs, tc.configMap).Data["ca.crt"]; strings.TrimSpace(got) != strings.TrimSpace(testCA) {
					t.Errorf("CA ConfigMap ca.crt = %q, want the pem value", got)
				}
			}
		})
	}
	t.Run("no bundle: no tls key", func(t *testing.T) {
		raw := one[corev1.ConfigMap](t, render(t), fullname+"-config").Data["config.yaml"]
		if strings.Contains(raw, "ca_file") {
			t.Errorf("config.yaml names a CA file without caBundle:\n%s", raw)
		}
	})
	t.Run("pem edits roll the pods", func(t *testing.T) {
		other := valuesFile(t, "caBundle:\n  pem: |\n"+indent(testCA+testCA, "    "))
		a := one[appsv1.Deployment](t, render(t, "-f", pem), fullname).Spec.Template.Annotations["checksum/authgate-ca"]
		b := one[appsv1.Deployment](t, render(t, "-f", other), fullname).Spec.Template.Annotations["checksum/authgate-ca"]
		if a == "" || a == b {
			t.Errorf("checksum/authgate-ca = %q then %q, want a value that changes with the pem", a, b)
		}
	})
	refused := []struct {
		name string
		args []string
		want string
	}{
		{"two sources", []string{"--set", "caBundle.existingSecret=a", "--set", "caBundle.existingConfigMap=b"}, "caBundle: set one of"},
		{"not PEM", []string{"--set", "caBundle.pem=hello"}, "caBundle.pem must hold PEM certificates"},
		{"ca_file also in config", []string{"--set", "caBundle.existingSecret=a", "--set", "config.tls.ca_file=/x"}, "config.tls.ca_file is set by the chart"},
	}
	for _, tc := range refused {
		t.Run("refused: "+tc.name, func(t *testing.T) {
			out, err := helm(t, append([]string{"template", release, chartDir, "--kube-version", kubeVersion}, tc.args...)...)
			if err == nil || !strings.Contains(out, tc.want) {
				t.Errorf("helm template %v: err=%v, want an error containing %q\n%s", tc.args, err, tc.want, out)
			}
		})
	}
}

// TestCABundleAcceptedByBinary runs `authgate check` on a config with
// tls.ca_file, once the binary knows the key.
func TestCABundleAcceptedByBinary(t *testing.T) {
	bin := buildAuthgate(t)
	v := valuesFile(t, "caBundle:\n  pem: |\n"+indent(testCA, "    "))
	pf := collectPodFiles(t, render(t, "-f", v, "--set", "jwt.secret="+dummyJWTSecret))
	pf.files["ca/ca.crt"] = testCA
	dir := t.TempDir()
	writePodFiles(t, dir, pf)
	env := append(baseEnv(), "AUTHGATE_JWT_SECRET="+pf.jwtSecret)
	out, err := execCheck(bin, dir, env)
	if err != nil && (strings.Contains(out, `unknown key "tls"`) || strings.Contains(out, `unknown key "ca_file"`)) {
		t.Skip("the authgate binary does not know the config key tls.ca_file yet")
	}
	if err != nil {
		t.Fatalf("authgate check with tls.ca_file: %v\n%s", err, out)
	}
}

func indent(s, prefix string) string {
	lines := strings.SplitAfter(strings.TrimSuffix(s, "\n"), "\n")
	for i := range lines {
		lines[i] = prefix + lines[i]
	}
	return strings.Join(lines, "") + "\n"
}

func TestHTTPRoute(t *testing.T) {
	v := valuesFile(t, `httpRoute:
  enabled: true
  labels:
    team: shop
  parentRefs:
    - name: public
      namespace: gateway-system
      sectionName: https
  hostnames: [shop.example.com]
  rules:
    - matches:
        - path: {type: PathPrefix, value: /api}
      timeouts:
        request: 30s
    - matches:
        - path: {type: PathPrefix, value: /auth}
ingress:
  enabled: true
`)
	objs := render(t, "-f", v)
	route := one[gatewayv1.HTTPRoute](t, objs, fullname)
	svc := one[corev1.Service](t, objs, fullname)
	one[networkingv1.Ingress](t, objs, fullname) // beside the Ingress
	if len(route.Spec.ParentRefs) != 1 || route.Spec.ParentRefs[0].Name != "public" ||
		route.Spec.ParentRefs[0].Namespace == nil || *route.Spec.ParentRefs[0].Namespace != "gateway-system" {
		t.Errorf("parentRefs = %+v", route.Spec.ParentRefs)
	}
	if !slices.Equal(route.Spec.Hostnames, []gatewayv1.Hostname{"shop.example.com"}) {
		t.Errorf("hostnames = %v", route.Spec.Hostnames)
	}
	if route.Labels["team"] != "shop" {
		t.Errorf("labels = %v, want team=shop added", route.Labels)
	}
	if len(route.Spec.Rules) != 2 {
		t.Fatalf("rules = %d, want 2", len(route.Spec.Rules))
	}
	if tm := route.Spec.Rules[0].Timeouts; tm == nil || tm.Request == nil || *tm.Request != "30s" {
		t.Errorf("rule 0 timeouts = %+v, want request 30s", tm)
	}
	// Every rule reaches only the Service, which targets only the gateway port.
	for i, r := range route.Spec.Rules {
		if len(r.BackendRefs) != 1 {
			t.Fatalf("rule %d backendRefs = %+v, want exactly the Service", i, r.BackendRefs)
		}
		ref := r.BackendRefs[0].BackendObjectReference
		if string(ref.Name) != svc.Name || ref.Port == nil || int32(*ref.Port) != svc.Spec.Ports[0].Port ||
			(ref.Kind != nil && *ref.Kind != "Service") || ref.Namespace != nil {
			t.Errorf("rule %d backendRef = %+v, want Service %s port %d", i, ref, svc.Name, svc.Spec.Ports[0].Port)
		}
	}
	t.Run("schema refuses a backend of the user's", func(t *testing.T) {
		out, err := helm(t, "template", release, chartDir, "--kube-version", kubeVersion, "--set", "httpRoute.enabled=true",
			"--set", "httpRoute.parentRefs[0].name=gw", "--set", "httpRoute.rules[0].backendRefs[0].name=app")
		if err == nil || !strings.Contains(out, "'backendRefs' not allowed") {
			t.Errorf("helm template with a backendRefs of its own: err=%v\n%s", err, out)
		}
	})
	t.Run("parentRefs required", func(t *testing.T) {
		out, err := helm(t, "template", release, chartDir, "--kube-version", kubeVersion, "--set", "httpRoute.enabled=true")
		if err == nil || !strings.Contains(out, "httpRoute.parentRefs is required") {
			t.Errorf("helm template without parentRefs: err=%v\n%s", err, out)
		}
	})
	t.Run("off by default", func(t *testing.T) {
		if r := find[gatewayv1.HTTPRoute](render(t)); len(r) != 0 {
			t.Errorf("an HTTPRoute is rendered by default")
		}
	})
}

func TestExtraObjects(t *testing.T) {
	v := valuesFile(t, `extraObjects:
  - apiVersion: v1
    kind: ConfigMap
    metadata:
      name: '{{ include "authgate.fullname" . }}-extra'
    data:
      release: '{{ .Release.Name }}'
  - |
    apiVersion: v1
    kind: Secret
    metadata:
      name: {{ .Release.Name }}-raw
    stringData:
      token: x
`)
	objs := render(t, "-f", v)
	cm := one[corev1.ConfigMap](t, objs, fullname+"-extra")
	if cm.Data["release"] != release {
		t.Errorf("extra ConfigMap data = %v, want release=%s (rendered through tpl)", cm.Data, release)
	}
	one[corev1.Secret](t, objs, release+"-raw")
}

// TestImageTagDefaultsToAppVersion: the chart pulls the tag `make image`
// builds unless told otherwise.
func TestImageTagDefaultsToAppVersion(t *testing.T) {
	const repo = "ghcr.io/authgate/authgate"
	digest := "sha256:" + strings.Repeat("ab", 32)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"default", nil, repo + ":" + chartAppVersion(t)},
		{"explicit tag", []string{"--set", "image.tag=dev-1"}, repo + ":dev-1"},
		{"digest wins", []string{"--set", "image.tag=dev-1", "--set", "image.digest=" + digest}, repo + "@" + digest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dep := one[appsv1.Deployment](t, render(t, tc.args...), fullname)
			if got := container(t, &dep.Spec.Template.Spec, "authgate").Image; got != tc.want {
				t.Errorf("authgate image = %q, want %q", got, tc.want)
			}
		})
	}
}
