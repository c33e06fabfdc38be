package helmtest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

const fullname = release + "-authgate"

// scenario is one set of values the chart must render correctly.
type scenario struct {
	name string
	args []string // extra helm arguments (-f, --set)
	mode string
}

// scenarios are the default values plus every example except invalid.yaml.
func scenarios(t *testing.T) []scenario {
	t.Helper()
	list := []scenario{{name: "defaults", mode: "wrap"}}
	files, err := filepath.Glob(filepath.Join(chartDir, "examples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		base := filepath.Base(f)
		if base == "invalid.yaml" {
			continue
		}
		var v struct {
			Mode string `json:"mode"`
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(data, &v); err != nil {
			t.Fatalf("%s: %v", base, err)
		}
		if v.Mode == "" {
			v.Mode = "wrap"
		}
		list = append(list, scenario{name: base, args: []string{"-f", f}, mode: v.Mode})
	}
	if len(list) < 3 {
		t.Fatalf("found %d scenarios, want the defaults and at least two examples", len(list))
	}
	return list
}

func TestLint(t *testing.T) {
	for _, sc := range scenarios(t) {
		t.Run(sc.name, func(t *testing.T) {
			args := append([]string{"lint", "--strict", chartDir, "--namespace", namespace, "--kube-version", kubeVersion}, sc.args...)
			if out, err := helm(t, args...); err != nil {
				t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		})
	}
}

func TestInvalidValuesRejectedBySchema(t *testing.T) {
	invalid := filepath.Join(chartDir, "examples", "invalid.yaml")
	typo := valuesFile(t, "gateway:\n  adminport: 9090\n") // case typo of adminPort
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"lint invalid.yaml", []string{"lint", "--strict", chartDir, "--kube-version", kubeVersion, "-f", invalid},
			[]string{"schema", "'prot' not allowed", "'portt' not allowed", "/mode"}},
		{"template invalid.yaml", []string{"template", release, chartDir, "--kube-version", kubeVersion, "-f", invalid},
			[]string{"schema", "'prot' not allowed", "'portt' not allowed", "/mode"}},
		{"template with a key in the wrong case", []string{"template", release, chartDir, "--kube-version", kubeVersion, "-f", typo},
			[]string{"schema", "'adminport' not allowed"}},
		{"template with a typo at top level", []string{"template", release, chartDir, "--kube-version", kubeVersion, "--set", "replicas=3"},
			[]string{"schema", "'replicas' not allowed"}},
		{"template with a bad redis scheme", []string{"template", release, chartDir, "--kube-version", kubeVersion, "--set", "redis.url=http://redis:6379"},
			[]string{"schema", "/redis/url"}},
		{"template with a sentinel address without port", []string{"template", release, chartDir, "--kube-version", kubeVersion,
			"--set", "redis.sentinel.masterName=m", "--set", "redis.sentinel.addresses={sentinel-0}"},
			[]string{"schema", "/redis/sentinel/addresses/0"}},
		{"template with a cluster address as a URL", []string{"template", release, chartDir, "--kube-version", kubeVersion,
			"--set", "redis.cluster.addresses={redis://n0:6379}"},
			[]string{"schema", "/redis/cluster/addresses/0"}},
		{"template with a short jwt secret", []string{"template", release, chartDir, "--kube-version", kubeVersion, "--set", "jwt.secret=short"},
			[]string{"schema", "/jwt/secret"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := helm(t, tc.args...)
			if err == nil {
				t.Fatalf("helm %s succeeded, want a schema error\n%s", strings.Join(tc.args, " "), out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("helm %s output lacks %q:\n%s", tc.args[0], w, out)
				}
			}
		})
	}
}

func TestTemplateFailsOnMisconfiguration(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"chart-owned policy_file set in config", []string{"--set", "config.policy_file=/tmp/p.yaml"}, "config.policy_file is set by the chart"},
		{"chart-owned listen address set in config", []string{"--set", "config.listen.address=:1234"}, "config.listen.address is set by the chart"},
		{"chart-owned upstream url set in wrap mode", []string{"--set", "config.upstream.url=http://elsewhere"}, "config.upstream.url is set by the chart"},
		{"app port equal to the gateway port", []string{"--set", "app.port=8080"}, "app.port must differ"},
		{"no policy", []string{"--set", "policy="}, "policy (inline) or existingPolicyConfigMap is required"},
		{"no jwt secret and generation off", []string{"--set", "jwt.generate=false"}, "jwt.secret or jwt.existingSecret is required"},
		{"forward-auth without trusted peers", []string{"--set", "mode=forward-auth"}, "config.forward_auth.trusted_peers is required"},
		{"forward-auth with mode both and no upstream", []string{"--set", "mode=forward-auth", "--set", "config.mode=both",
			"--set", "config.forward_auth.trusted_peers={10.0.0.0/8}"}, "config.upstream.url is required when config.mode is both"},
		{"forward-auth decisions only with an upstream", []string{"--set", "mode=forward-auth",
			"--set", "config.forward_auth.trusted_peers={10.0.0.0/8}", "--set", "config.upstream.url=http://backend:8080"}, "set config.mode: both"},
		{"forward-auth with config mode proxy", []string{"--set", "mode=forward-auth", "--set", "config.mode=proxy"}, "config.mode must be forward-auth or both"},
		{"wrap mode with config mode forward-auth", []string{"--set", "config.mode=forward-auth"}, "never proxies to the application"},
		{"redis password without url", []string{"--set", "redis.existingSecret=r"}, "redis.url, redis.sentinel and redis.cluster are empty"},
		{"redis url and sentinel", []string{"--set", "redis.url=redis://r:6379/0", "--set", "redis.sentinel.masterName=m",
			"--set", "redis.sentinel.addresses={s0:26379}"}, "set one of url, sentinel and cluster, not url and sentinel"},
		{"redis sentinel and cluster", []string{"--set", "redis.sentinel.masterName=m", "--set", "redis.sentinel.addresses={s0:26379}",
			"--set", "redis.cluster.addresses={n0:6379}"}, "not sentinel and cluster"},
		{"redis sentinel without addresses", []string{"--set", "redis.sentinel.masterName=m"}, "redis.sentinel needs both masterName and addresses"},
		{"redis sentinel password without sentinel", []string{"--set", "redis.url=redis://r:6379/0", "--set", "redis.sentinel.existingSecret=s"},
			"redis.sentinel.existingSecret is set but redis.sentinel.masterName is empty"},
		{"chart-owned redis sentinel set in config", []string{"--set", "config.redis.sentinel.master_name=m"}, "config.redis.sentinel is set by the chart"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"template", release, chartDir, "--kube-version", kubeVersion}, tc.args...)
			out, err := helm(t, args...)
			if err == nil {
				t.Fatalf("helm template %v succeeded, want an error containing %q", tc.args, tc.want)
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("helm template %v output lacks %q:\n%s", tc.args, tc.want, out)
			}
		})
	}
}

func TestRenderedObjects(t *testing.T) {
	for _, sc := range scenarios(t) {
		t.Run(sc.name, func(t *testing.T) {
			objs := render(t, sc.args...)
			for _, o := range objs {
				if !strings.HasPrefix(o.Name, fullname) && o.Kind != "Secret" && o.Kind != "ConfigMap" {
					t.Errorf("%s %q: name does not start with %q", o.Kind, o.Name, fullname)
				}
			}
			checkConfig(t, objs, sc)
			if sc.mode == "sidecar-only" {
				for _, kind := range []string{"Deployment", "Service", "NetworkPolicy", "PodDisruptionBudget", "Ingress"} {
					for _, o := range objs {
						if o.Kind == kind && o.Name == fullname {
							t.Errorf("sidecar-only mode rendered %s %q; the user's chart owns the workload", kind, o.Name)
						}
					}
				}
				return
			}
			dep := one[appsv1.Deployment](t, objs, fullname)
			gw := container(t, &dep.Spec.Template.Spec, "authgate")
			checkContainers(t, &dep.Spec.Template.Spec, sc.mode)
			checkService(t, objs, dep, gw)
			checkNoSubPathAndDirectories(t, &dep.Spec.Template.Spec)
			checkSecurityContext(t, &dep.Spec.Template.Spec, gw)
			checkProbes(t, gw)
			checkNetworkPolicy(t, objs, dep, gw)
			checkPDB(t, objs, dep)
			checkShutdownOrder(t, dep, sc.mode)
			if _, ok := dep.Spec.Template.Annotations["checksum/authgate-config"]; !ok {
				t.Errorf("pod template lacks the checksum/authgate-config annotation")
			}
		})
	}
}

// container returns the named container of the pod spec.
func container(t *testing.T, spec *corev1.PodSpec, name string) *corev1.Container {
	t.Helper()
	for i := range spec.Containers {
		if spec.Containers[i].Name == name {
			return &spec.Containers[i]
		}
	}
	t.Fatalf("pod has no container %q", name)
	return nil
}

// portNumber resolves a named or numbered port against the container.
func portNumber(t *testing.T, c *corev1.Container, p intstr.IntOrString) int32 {
	t.Helper()
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	t.Fatalf("container %s has no port named %q", c.Name, p.StrVal)
	return 0
}

func namedPort(t *testing.T, c *corev1.Container, name string) int32 {
	t.Helper()
	return portNumber(t, c, intstr.FromString(name))
}

func checkContainers(t *testing.T, spec *corev1.PodSpec, mode string) {
	t.Helper()
	var names []string
	for _, c := range spec.Containers {
		names = append(names, c.Name)
		if c.Name != "authgate" && len(c.Ports) > 0 {
			t.Errorf("container %s declares ports %v; only the gateway may expose ports", c.Name, c.Ports)
		}
	}
	switch mode {
	case "wrap":
		if len(spec.Containers) != 2 {
			t.Errorf("wrap mode pod containers = %v, want authgate and the application", names)
		}
	case "forward-auth":
		if len(spec.Containers) != 1 {
			t.Errorf("forward-auth mode pod containers = %v, want authgate alone", names)
		}
	}
	gw := container(t, spec, "authgate")
	if got, want := gw.Args, []string{"serve", "--config", "/etc/authgate/config/config.yaml"}; !slices.Equal(got, want) {
		t.Errorf("authgate args = %v, want %v", got, want)
	}
	env := map[string]string{}
	for _, e := range gw.Env {
		env[e.Name] = e.Value
	}
	if f, ok := env["AUTHGATE_JWT_SECRET_FILE"]; ok && f != "/etc/authgate/jwt/jwt-secret" {
		t.Errorf("AUTHGATE_JWT_SECRET_FILE = %q, want /etc/authgate/jwt/jwt-secret", f)
	}
	if f, ok := env["AUTHGATE_REDIS_PASSWORD_FILE"]; ok && f != "/etc/authgate/redis/password" {
		t.Errorf("AUTHGATE_REDIS_PASSWORD_FILE = %q, want /etc/authgate/redis/password", f)
	}
	if a := spec.AutomountServiceAccountToken; a == nil || *a {
		t.Errorf("automountServiceAccountToken = true by default; authgate needs no API access")
	}
}

// checkService: the Service in front of the pods targets the gateway port and
// nothing else, so the application can only be reached through authgate.
func checkService(t *testing.T, objs []object, dep *appsv1.Deployment, gw *corev1.Container) {
	t.Helper()
	svc := one[corev1.Service](t, objs, fullname)
	if len(svc.Spec.Ports) != 1 {
		t.Fatalf("Service %s has %d ports, want exactly 1 (the gateway)", svc.Name, len(svc.Spec.Ports))
	}
	gwPort := namedPort(t, gw, "authgate")
	if got := portNumber(t, gw, svc.Spec.Ports[0].TargetPort); got != gwPort {
		t.Errorf("Service targetPort resolves to %d, want the gateway port %d", got, gwPort)
	}
	for k, v := range svc.Spec.Selector {
		if dep.Spec.Template.Labels[k] != v {
			t.Errorf("Service selector %s=%s does not match the pod labels %v", k, v, dep.Spec.Template.Labels)
		}
	}
	// The metrics Service, when rendered, exposes only the admin port.
	for _, s := range find[corev1.Service](objs) {
		if s.Name != fullname+"-metrics" {
			continue
		}
		if len(s.Spec.Ports) != 1 || portNumber(t, gw, s.Spec.Ports[0].TargetPort) != namedPort(t, gw, "authgate-admin") {
			t.Errorf("metrics Service ports = %+v, want only the admin port", s.Spec.Ports)
		}
	}
}

// checkNoSubPathAndDirectories: a subPath mount never sees ConfigMap/Secret
// updates, which would silently break hot reload of the policy and keys.
func checkNoSubPathAndDirectories(t *testing.T, spec *corev1.PodSpec) {
	t.Helper()
	all := append(slices.Clone(spec.InitContainers), spec.Containers...)
	for _, c := range all {
		for _, m := range c.VolumeMounts {
			if m.SubPath != "" || m.SubPathExpr != "" {
				t.Errorf("container %s mounts %s with subPath=%q subPathExpr=%q; mount directories", c.Name, m.MountPath, m.SubPath, m.SubPathExpr)
			}
		}
	}
	gw := container(t, spec, "authgate")
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range gw.VolumeMounts {
		mounts[m.Name] = m
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	want := []struct{ volume, dir, file string }{
		{"authgate-config", "/etc/authgate/config", "config.yaml"},
		{"authgate-policy", "/etc/authgate/policy", "policy.yaml"},
		{"authgate-users", "/etc/authgate/users", "users.yaml"},
		{"authgate-keys", "/etc/authgate/keys", "keys.yaml"},
		{"authgate-jwt", "/etc/authgate/jwt", "jwt-secret"},
		{"authgate-redis", "/etc/authgate/redis", "password"},
		{"authgate-redis-sentinel", "/etc/authgate/redis-sentinel", "password"},
	}
	for _, w := range want {
		m, mounted := mounts[w.volume]
		if !mounted {
			if w.volume == "authgate-config" || w.volume == "authgate-policy" {
				t.Errorf("authgate does not mount %s", w.volume)
			}
			continue
		}
		if m.MountPath != w.dir {
			t.Errorf("volume %s mounted at %s, want the directory %s", w.volume, m.MountPath, w.dir)
		}
		if !m.ReadOnly {
			t.Errorf("volume %s is mounted read-write", w.volume)
		}
		v, ok := volumes[w.volume]
		if !ok {
			t.Errorf("volume %s is mounted but not declared", w.volume)
			continue
		}
		var items []corev1.KeyToPath
		switch {
		case v.ConfigMap != nil:
			items = v.ConfigMap.Items
		case v.Secret != nil:
			items = v.Secret.Items
		default:
			t.Errorf("volume %s is neither a ConfigMap nor a Secret", w.volume)
		}
		// Without items every key of the object appears; with items, the one
		// file the gateway reads must be among them.
		if len(items) > 0 && !slices.ContainsFunc(items, func(k corev1.KeyToPath) bool { return k.Path == w.file }) {
			t.Errorf("volume %s items %v do not project %s", w.volume, items, w.file)
		}
	}
}

func checkSecurityContext(t *testing.T, spec *corev1.PodSpec, gw *corev1.Container) {
	t.Helper()
	psc := spec.SecurityContext
	if psc == nil {
		t.Fatal("pod has no securityContext")
	}
	if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Errorf("pod runAsNonRoot is not true")
	}
	if psc.RunAsUser == nil || *psc.RunAsUser != 65532 {
		t.Errorf("pod runAsUser = %v, want 65532", psc.RunAsUser)
	}
	if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod seccompProfile = %v, want RuntimeDefault", psc.SeccompProfile)
	}
	sc := gw.SecurityContext
	if sc == nil {
		t.Fatal("authgate container has no securityContext")
	}
	checks := []struct {
		what string
		ok   bool
	}{
		{"runAsNonRoot", sc.RunAsNonRoot != nil && *sc.RunAsNonRoot},
		{"runAsUser 65532", sc.RunAsUser != nil && *sc.RunAsUser == 65532},
		{"readOnlyRootFilesystem", sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem},
		{"allowPrivilegeEscalation false", sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation},
		{"capabilities drop ALL", sc.Capabilities != nil && slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) && len(sc.Capabilities.Add) == 0},
		{"seccompProfile RuntimeDefault", sc.SeccompProfile != nil && sc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault},
		{"not privileged", sc.Privileged == nil || !*sc.Privileged},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("authgate container securityContext: %s not set: %+v", c.what, sc)
		}
	}
}

func checkProbes(t *testing.T, gw *corev1.Container) {
	t.Helper()
	admin := namedPort(t, gw, "authgate-admin")
	probes := []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{
		{"liveness", gw.LivenessProbe, "/healthz"},
		{"readiness", gw.ReadinessProbe, "/readyz"},
	}
	for _, p := range probes {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("authgate %s probe is not an httpGet probe: %+v", p.name, p.probe)
			continue
		}
		if p.probe.HTTPGet.Path != p.path {
			t.Errorf("authgate %s probe path = %q, want %q", p.name, p.probe.HTTPGet.Path, p.path)
		}
		if got := portNumber(t, gw, p.probe.HTTPGet.Port); got != admin {
			t.Errorf("authgate %s probe port = %d, want the admin port %d", p.name, got, admin)
		}
	}
}

// checkNetworkPolicy: ingress is admitted to the gateway port and, for
// scraping, to the admin port from named peers only; never to the app port.
func checkNetworkPolicy(t *testing.T, objs []object, dep *appsv1.Deployment, gw *corev1.Container) {
	t.Helper()
	np := one[networkingv1.NetworkPolicy](t, objs, fullname)
	if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
		t.Errorf("NetworkPolicy policyTypes = %v, want Ingress", np.Spec.PolicyTypes)
	}
	for k, v := range np.Spec.PodSelector.MatchLabels {
		if dep.Spec.Template.Labels[k] != v {
			t.Errorf("NetworkPolicy podSelector %s=%s does not select the pods", k, v)
		}
	}
	if len(np.Spec.PodSelector.MatchLabels) == 0 {
		t.Errorf("NetworkPolicy selects every pod of the namespace")
	}
	gwPort, admin := namedPort(t, gw, "authgate"), namedPort(t, gw, "authgate-admin")
	sawGateway := false
	for i, rule := range np.Spec.Ingress {
		if len(rule.Ports) == 0 {
			t.Errorf("NetworkPolicy ingress rule %d admits every port", i)
		}
		for _, p := range rule.Ports {
			if p.Port == nil {
				t.Errorf("NetworkPolicy ingress rule %d has a port entry without a port", i)
				continue
			}
			switch portNumber(t, gw, *p.Port) {
			case gwPort:
				sawGateway = true
			case admin:
				if len(rule.From) == 0 {
					t.Errorf("NetworkPolicy admits the admin port from anywhere; restrict it to the metrics scrapers")
				}
			default:
				t.Errorf("NetworkPolicy ingress rule %d admits port %v, want only the gateway (%d) and admin (%d) ports", i, p.Port, gwPort, admin)
			}
		}
	}
	if !sawGateway {
		t.Errorf("NetworkPolicy does not admit the gateway port %d", gwPort)
	}
}

func checkPDB(t *testing.T, objs []object, dep *appsv1.Deployment) {
	t.Helper()
	pdb := one[policyv1.PodDisruptionBudget](t, objs, fullname)
	if (pdb.Spec.MinAvailable == nil) == (pdb.Spec.MaxUnavailable == nil) {
		t.Errorf("PodDisruptionBudget sets minAvailable=%v maxUnavailable=%v, want exactly one", pdb.Spec.MinAvailable, pdb.Spec.MaxUnavailable)
	}
	for k, v := range pdb.Spec.Selector.MatchLabels {
		if dep.Spec.Template.Labels[k] != v {
			t.Errorf("PodDisruptionBudget selector %s=%s does not select the pods", k, v)
		}
	}
}

// renderedConfig is the part of config.yaml the chart owns.
type renderedConfig struct {
	Upstream struct {
		URL string `json:"url"`
	} `json:"upstream"`
	Listen struct {
		Address      string `json:"address"`
		AdminAddress string `json:"admin_address"`
	} `json:"listen"`
	PolicyFile  string `json:"policy_file"`
	UsersFile   string `json:"users_file"`
	APIKeysFile string `json:"api_keys_file"`
}

func checkConfig(t *testing.T, objs []object, sc scenario) {
	t.Helper()
	cm := one[corev1.ConfigMap](t, objs, fullname+"-config")
	raw, ok := cm.Data["config.yaml"]
	if !ok {
		t.Fatalf("ConfigMap %s has no config.yaml", cm.Name)
	}
	var cfg renderedConfig
	if err := yaml.Unmarshal([]byte(raw), &cfg); err != nil {
		t.Fatalf("config.yaml does not parse: %v\n%s", err, raw)
	}
	if cfg.Listen.Address == "" || cfg.Listen.AdminAddress == "" {
		t.Errorf("config.yaml listen = %+v, want both addresses set", cfg.Listen)
	}
	if cfg.PolicyFile != "/etc/authgate/policy/policy.yaml" {
		t.Errorf("config.yaml policy_file = %q", cfg.PolicyFile)
	}
	if cfg.UsersFile != "" && cfg.UsersFile != "/etc/authgate/users/users.yaml" {
		t.Errorf("config.yaml users_file = %q", cfg.UsersFile)
	}
	if cfg.APIKeysFile != "" && cfg.APIKeysFile != "/etc/authgate/keys/keys.yaml" {
		t.Errorf("config.yaml api_keys_file = %q", cfg.APIKeysFile)
	}
	if sc.mode != "forward-auth" && !strings.HasPrefix(cfg.Upstream.URL, "http://127.0.0.1:") {
		t.Errorf("config.yaml upstream.url = %q, want the application on 127.0.0.1", cfg.Upstream.URL)
	}
}

func TestExampleEchoServer(t *testing.T) {
	// As on a cluster with the Prometheus Operator; TestMonitoringAPICheck
	// renders it without.
	objs := render(t, "-f", filepath.Join(chartDir, "examples", "echo-server.yaml"), "--api-versions", monitoringAPI)
	dep := one[appsv1.Deployment](t, objs, fullname)
	app := container(t, &dep.Spec.Template.Spec, "echo")
	listen := ""
	for _, e := range app.Env {
		if e.Name == "LISTEN" {
			listen = e.Value
		}
	}
	if !strings.HasPrefix(listen, "127.0.0.1:") {
		t.Errorf("echo server LISTEN = %q, want a loopback address so the gateway cannot be bypassed", listen)
	}
	for _, name := range []string{fullname + "-users", fullname + "-api-keys", fullname + "-jwt"} {
		one[corev1.Secret](t, objs, name)
	}
	one[serviceMonitor](t, objs, fullname)
	rules := one[prometheusRule](t, objs, fullname)
	var exprs []string
	for _, g := range rules.Spec.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
			if strings.Contains(r.Expr, "{{") {
				t.Errorf("alert %s expr still holds template braces: %s", r.Alert, r.Expr)
			}
		}
	}
	all := strings.Join(exprs, "\n")
	for _, want := range []string{
		"authgate_policy_last_reload_success", `code_class="5xx"`, `authgate_logins_total`, `outcome="failure"`, "authgate_token_reuse_total",
		"authgate_state_store_up", "authgate_state_store_topology_changes_total",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("PrometheusRule has no alert on %s", want)
		}
	}
	dash := one[corev1.ConfigMap](t, objs, fullname+"-dashboard")
	if dash.Labels["grafana_dashboard"] != "1" {
		t.Errorf("dashboard ConfigMap labels = %v, want grafana_dashboard=1", dash.Labels)
	}
	file, err := os.ReadFile(filepath.Join(chartDir, "dashboards", "authgate.json"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(dash.Data["authgate.json"]) != strings.TrimSpace(string(file)) {
		t.Errorf("dashboard ConfigMap content differs from dashboards/authgate.json")
	}
}

func TestDashboardJSON(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(chartDir, "dashboards", "authgate.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("dashboards/authgate.json: %v", err)
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("dashboard title=%q uid=%q, want both set", d.Title, d.UID)
	}
	var exprs []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	all := strings.Join(exprs, "\n")
	for _, metric := range []string{
		"authgate_requests_total", "by (decision, reason)",
		"authgate_request_duration_seconds_bucket", "authgate_upstream_duration_seconds_bucket",
		"authgate_upstream_errors_total", "by (kind)",
		"authgate_logins_total", "authgate_policy_reload_total", "authgate_policy_last_reload_success",
	} {
		t.Run(metric, func(t *testing.T) {
			if !strings.Contains(all, metric) {
				t.Errorf("no dashboard panel queries %s", metric)
			}
		})
	}
}

func TestChecksumRollsOnlyOnRestartSettings(t *testing.T) {
	checksum := func(t *testing.T, args ...string) string {
		t.Helper()
		objs := render(t, args...)
		dep := one[appsv1.Deployment](t, objs, fullname)
		sum := dep.Spec.Template.Annotations["checksum/authgate-config"]
		if sum == "" {
			t.Fatalf("no checksum/authgate-config annotation")
		}
		return sum
	}
	base := checksum(t)
	tests := []struct {
		name   string
		args   []string
		change bool
	}{
		{"same values", nil, false},
		{"config logging level", []string{"--set", "config.logging.level=debug"}, true},
		{"config trusted proxies", []string{"--set", "config.trusted_proxies={10.0.0.0/8}"}, true},
		{"gateway port", []string{"--set", "gateway.port=8081"}, true},
		{"app port (upstream url)", []string{"--set", "app.port=3001"}, true},
		{"policy edit", []string{"-f", valuesFile(t, "policy: |\n  rules:\n    - path: /public/**\n      public: true\n")}, false},
		{"users enabled", []string{"-f", valuesFile(t, "users:\n  content: |\n    users: []\n")}, true}, // adds users_file to config.yaml
		{"api keys enabled", []string{"-f", valuesFile(t, "apiKeys:\n  existingSecret: keys\n")}, true}, // adds api_keys_file
		{"pod annotation", []string{"--set", "podAnnotations.team=a"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := checksum(t, tc.args...)
			if changed := got != base; changed != tc.change {
				t.Errorf("checksum changed=%v, want %v (base %s, got %s)", changed, tc.change, base, got)
			}
		})
	}
	// Once users and keys exist, editing their content must not roll the
	// pods: they are hot-reloaded like the policy.
	t.Run("users and keys content edits", func(t *testing.T) {
		v1 := valuesFile(t, "users:\n  content: |\n    users: []\napiKeys:\n  content: |\n    keys: []\n")
		v2 := valuesFile(t, "users:\n  content: |\n    users:\n      - username: bob\napiKeys:\n  content: |\n    keys:\n      - name: k\n")
		if a, b := checksum(t, "-f", v1), checksum(t, "-f", v2); a != b {
			t.Errorf("checksum changed on a users/keys content edit: %s != %s", a, b)
		}
	})
}

func TestSidecarOnlyFromParentChart(t *testing.T) {
	parent := t.TempDir()
	write := func(rel, content string) {
		t.Helper()
		p := filepath.Join(parent, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("Chart.yaml", "apiVersion: v2\nname: shop\nversion: 1.0.0\ndependencies:\n  - name: authgate\n    version: 0.1.0\n")
	write("values.yaml", `authgate:
  mode: sidecar-only
  app:
    port: 8000
  jwt:
    existingSecret: shop-jwt
  policy: |
    rules:
      - path: /**
        authenticated: true
`)
	// The snippet documented in helm/authgate/README.md.
	write("templates/deployment.yaml", `apiVersion: apps/v1
kind: Deployment
metadata:
  name: shop
spec:
  selector:
    matchLabels:
      app: shop
  template:
    metadata:
      labels:
        app: shop
        {{- include "authgate.selectorLabels" .Subcharts.authgate | nindent 8 }}
      annotations:
        {{- include "authgate.podAnnotations" .Subcharts.authgate | nindent 8 }}
    spec:
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        seccompProfile:
          type: RuntimeDefault
      terminationGracePeriodSeconds: {{ include "authgate.terminationGracePeriodSeconds" .Subcharts.authgate }}
      containers:
        - name: shop
          image: shop:1.0
          env:
            - name: BIND
              value: 127.0.0.1:8000
          {{- include "authgate.appLifecycle" .Subcharts.authgate | nindent 10 }}
        {{- include "authgate.sidecar" .Subcharts.authgate | nindent 8 }}
      volumes:
        {{- include "authgate.volumes" .Subcharts.authgate | nindent 8 }}
`)
	write("templates/service.yaml", `apiVersion: v1
kind: Service
metadata:
  name: shop
spec:
  selector:
    app: shop
  ports:
    - name: http
      port: 80
      targetPort: authgate
`)
	copyDir(t, chartDir, filepath.Join(parent, "charts", "authgate"))

	out, err := helm(t, "template", release, parent, "--namespace", namespace, "--kube-version", kubeVersion)
	if err != nil {
		t.Fatalf("helm template parent chart: %v\n%s", err, out)
	}
	objs, err := decodeManifests(out)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	dep := one[appsv1.Deployment](t, objs, "shop")
	spec := &dep.Spec.Template.Spec
	gw := container(t, spec, "authgate")
	checkNoSubPathAndDirectories(t, spec)
	checkSecurityContext(t, spec, gw)
	checkProbes(t, gw)
	if dep.Spec.Template.Annotations["checksum/authgate-config"] == "" {
		t.Errorf("authgate.podAnnotations rendered no checksum")
	}
	// The documented shutdown helpers give the parent's pod the same order.
	checkShutdownOrder(t, dep, "wrap")
	// The volumes point at the objects the subchart rendered.
	cm := one[corev1.ConfigMap](t, objs, fullname+"-config")
	one[corev1.ConfigMap](t, objs, fullname+"-policy")
	for _, v := range spec.Volumes {
		if v.Name == "authgate-config" && v.ConfigMap.Name != cm.Name {
			t.Errorf("authgate-config volume names ConfigMap %q, want %q", v.ConfigMap.Name, cm.Name)
		}
		if v.Name == "authgate-jwt" && v.Secret.SecretName != "shop-jwt" {
			t.Errorf("authgate-jwt volume names Secret %q, want shop-jwt", v.Secret.SecretName)
		}
	}
	var cfg renderedConfig
	if err := yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Upstream.URL != "http://127.0.0.1:8000" {
		t.Errorf("sidecar upstream.url = %q, want http://127.0.0.1:8000", cfg.Upstream.URL)
	}
	for _, o := range objs {
		if o.Kind == "Deployment" && o.Name != "shop" {
			t.Errorf("sidecar-only subchart rendered its own Deployment %q", o.Name)
		}
	}
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		t.Fatalf("copy chart: %v", err)
	}
}
