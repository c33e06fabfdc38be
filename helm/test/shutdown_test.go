package helmtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// binaryShutdownDefaults returns listen.shutdown_delay and shutdown_timeout
// as config.example.yaml documents them: it shows every key with the
// binary's default, and the chart must size the shutdown from the same
// values when config leaves them out.
func binaryShutdownDefaults(t *testing.T) (delay, timeout time.Duration) {
	t.Helper()
	path := filepath.Join(repoRoot, "config.example.yaml")
	var ex struct {
		Listen struct {
			ShutdownDelay   string `json:"shutdown_delay"`
			ShutdownTimeout string `json:"shutdown_timeout"`
		} `json:"listen"`
	}
	readYAML(t, path, &ex)
	var err error
	delay, err = time.ParseDuration(ex.Listen.ShutdownDelay)
	if err != nil {
		t.Fatalf("%s: listen.shutdown_delay: %v", path, err)
	}
	timeout, err = time.ParseDuration(ex.Listen.ShutdownTimeout)
	if err != nil {
		t.Fatalf("%s: listen.shutdown_timeout: %v", path, err)
	}
	return delay, timeout
}

// chartShutdownDefaults returns shutdown.appExtraSeconds and
// stopMarginSeconds from the chart's values.yaml.
func chartShutdownDefaults(t *testing.T) (appExtra, margin int64) {
	t.Helper()
	var v struct {
		Shutdown struct {
			AppExtraSeconds   int64 `json:"appExtraSeconds"`
			StopMarginSeconds int64 `json:"stopMarginSeconds"`
		} `json:"shutdown"`
	}
	readYAML(t, filepath.Join(chartDir, "values.yaml"), &v)
	return v.Shutdown.AppExtraSeconds, v.Shutdown.StopMarginSeconds
}

// readYAML decodes the YAML file at path into v, failing the test on error.
func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// ceilSeconds rounds a duration up to whole seconds.
func ceilSeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}

// podShutdown is what a rendered pod does on deletion.
type podShutdown struct {
	grace    int64
	appSleep int64 // the application's preStop sleep; -1 without one
	appHook  *corev1.LifecycleHandler
}

func shutdownOf(t *testing.T, dep *appsv1.Deployment, appName string) podShutdown {
	t.Helper()
	spec := &dep.Spec.Template.Spec
	if spec.TerminationGracePeriodSeconds == nil {
		t.Fatal("pod has no terminationGracePeriodSeconds")
	}
	ps := podShutdown{grace: *spec.TerminationGracePeriodSeconds, appSleep: -1}
	gw := container(t, spec, "authgate")
	// The gateway handles SIGTERM itself (readiness off, shutdown_delay,
	// drain): a preStop would only postpone that and eat the grace period.
	if gw.Lifecycle != nil && gw.Lifecycle.PreStop != nil {
		t.Errorf("authgate container has a preStop %+v; its own shutdown_delay does that work", gw.Lifecycle.PreStop)
	}
	if appName == "" {
		return ps
	}
	app := container(t, spec, appName)
	if app.Lifecycle != nil && app.Lifecycle.PreStop != nil {
		ps.appHook = app.Lifecycle.PreStop
		if s := app.Lifecycle.PreStop.Sleep; s != nil {
			ps.appSleep = s.Seconds
		}
	}
	return ps
}

// TestShutdownOrderFromConfigDefaults: with the binary's default drain, the
// application outlives the gateway and the grace period outlives both.
func TestShutdownOrderFromConfigDefaults(t *testing.T) {
	delay, timeout := binaryShutdownDefaults(t)
	appExtra, margin := chartShutdownDefaults(t)
	drain := ceilSeconds(delay + timeout)
	dep := one[appsv1.Deployment](t, render(t), fullname)
	ps := shutdownOf(t, dep, "app")
	if want := drain + appExtra; ps.appSleep != want {
		t.Errorf("application preStop sleep = %ds, want %ds (shutdown_delay %v + shutdown_timeout %v + appExtraSeconds %d)", ps.appSleep, want, delay, timeout, appExtra)
	}
	if ps.appSleep <= drain {
		t.Errorf("application preStop sleep %ds ends before the gateway's drain (%ds): requests in flight would get 502", ps.appSleep, drain)
	}
	if want := drain + appExtra + margin; ps.grace != want {
		t.Errorf("terminationGracePeriodSeconds = %d, want %d", ps.grace, want)
	}
	if ps.grace <= ps.appSleep {
		t.Errorf("terminationGracePeriodSeconds %d does not outlast the application's preStop sleep %ds", ps.grace, ps.appSleep)
	}
	// The pod the issue measured SIGKILLed a long drain: 30 < 5 + 30.
	if ps.grace < ceilSeconds(delay+timeout) {
		t.Errorf("terminationGracePeriodSeconds %d is shorter than the drain %v", ps.grace, delay+timeout)
	}
}

func TestShutdownOrderFollowsValues(t *testing.T) {
	_, margin := chartShutdownDefaults(t)
	userLifecycle := valuesFile(t, "app:\n  lifecycle:\n    postStart:\n      exec:\n        command: [/bin/true]\n")
	userSleep := valuesFile(t, "app:\n  lifecycle:\n    preStop:\n      sleep:\n        seconds: 60\n")
	userExec := valuesFile(t, "app:\n  lifecycle:\n    preStop:\n      exec:\n        command: [/app, drain]\n")
	tests := []struct {
		name      string
		args      []string
		app       string
		grace     int64
		appSleep  int64
		wantExec  bool
		postStart bool
	}{
		{"custom durations", []string{"--set", "config.listen.shutdown_delay=1m30s", "--set", "config.listen.shutdown_timeout=500ms"}, "app", 91 + 2 + margin, 93, false, false},
		{"no delay", []string{"--set", "config.listen.shutdown_delay=0s", "--set", "config.listen.shutdown_timeout=10s"}, "app", 12 + margin, 12, false, false},
		{"explicit grace above the minimum", []string{"--set", "terminationGracePeriodSeconds=120"}, "app", 120, 37, false, false},
		{"larger margins", []string{"--set", "shutdown.appExtraSeconds=5", "--set", "shutdown.stopMarginSeconds=20"}, "app", 35 + 5 + 20, 40, false, false},
		{"app preStop off", []string{"--set", "shutdown.appPreStop=false"}, "app", 35 + margin, -1, false, false},
		{"user postStart kept beside the chart's preStop", []string{"-f", userLifecycle}, "app", 37 + margin, 37, false, true},
		{"user preStop sleep wins", []string{"-f", userSleep}, "app", 60 + margin, 60, false, false},
		{"user exec preStop wins", []string{"-f", userExec}, "app", 37 + margin, -1, true, false},
		{"forward-auth: the gateway alone", []string{"-f", filepath.Join(chartDir, "examples", "forward-auth.yaml")}, "", 35 + margin, -1, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dep := one[appsv1.Deployment](t, render(t, tc.args...), fullname)
			ps := shutdownOf(t, dep, tc.app)
			if ps.grace != tc.grace {
				t.Errorf("terminationGracePeriodSeconds = %d, want %d", ps.grace, tc.grace)
			}
			if ps.appSleep != tc.appSleep {
				t.Errorf("application preStop sleep = %d, want %d", ps.appSleep, tc.appSleep)
			}
			if got := ps.appHook != nil && ps.appHook.Exec != nil; got != tc.wantExec {
				t.Errorf("application preStop exec present = %v, want %v (%+v)", got, tc.wantExec, ps.appHook)
			}
			if tc.app != "" {
				app := container(t, &dep.Spec.Template.Spec, tc.app)
				if got := app.Lifecycle != nil && app.Lifecycle.PostStart != nil; got != tc.postStart {
					t.Errorf("application postStart present = %v, want %v", got, tc.postStart)
				}
			}
		})
	}
}

func TestShutdownRefusesInconsistentValues(t *testing.T) {
	delay, timeout := binaryShutdownDefaults(t)
	drain := ceilSeconds(delay + timeout)
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"grace period shorter than the drain", []string{"--set", "terminationGracePeriodSeconds=30"},
			[]string{"terminationGracePeriodSeconds 30 is shorter than the shutdown needs", fmt.Sprintf("drains for up to %ds", drain)}},
		{"grace period shorter than the app's sleep", []string{"--set", "terminationGracePeriodSeconds=40"},
			[]string{"terminationGracePeriodSeconds 40 is shorter", "preStop sleep lasts 37s"}},
		{"grace period too short for a longer drain", []string{"--set", "config.listen.shutdown_timeout=2m", "--set", "terminationGracePeriodSeconds=60"},
			[]string{"terminationGracePeriodSeconds 60 is shorter", "listen.shutdown_timeout 2m"}},
		{"app preStop sleep shorter than the drain", []string{"--set", "app.lifecycle.preStop.sleep.seconds=10"},
			[]string{"app.lifecycle.preStop.sleep.seconds is 10", "application would stop while requests are still in flight"}},
		{"duration as a number", []string{"--set", "config.listen.shutdown_delay=5"}, []string{"config.listen.shutdown_delay must be a duration string"}},
		{"duration with an unknown unit", []string{"--set", "config.listen.shutdown_timeout=30sec"}, []string{`config.listen.shutdown_timeout: "30sec" is not a duration`}},
		{"preStop sleep before Kubernetes 1.30", []string{"--kube-version", "1.29.4"}, []string{"needs Kubernetes >= 1.30", "shutdown.appPreStop: false"}},
		{"schema: grace period 0", []string{"--set", "terminationGracePeriodSeconds=0"}, []string{"schema", "terminationGracePeriodSeconds"}},
		{"schema: margin below the kubelet minimum", []string{"--set", "shutdown.stopMarginSeconds=1"}, []string{"schema", "stopMarginSeconds"}},
		{"schema: unknown lifecycle hook", []string{"--set", "app.lifecycle.preStart.exec.command={x}"}, []string{"schema", "'preStart' not allowed"}},
		{"schema: unknown shutdown key", []string{"--set", "shutdown.delay=5"}, []string{"schema", "'delay' not allowed"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"template", release, chartDir, "--kube-version", kubeVersion}, tc.args...)
			out, err := helm(t, args...)
			if err == nil {
				t.Fatalf("helm template %v succeeded, want an error", tc.args)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("helm template %v output lacks %q:\n%s", tc.args, w, out)
				}
			}
		})
	}
	// Without the chart's sleep, an older cluster is fine.
	t.Run("Kubernetes 1.29 with appPreStop off", func(t *testing.T) {
		render(t, "--kube-version", "1.29.4", "--set", "shutdown.appPreStop=false")
	})
}

// TestSchemaAcceptsAppLifecycle: users add their own hooks to the
// application container.
func TestSchemaAcceptsAppLifecycle(t *testing.T) {
	v := valuesFile(t, `app:
  lifecycle:
    postStart:
      exec:
        command: [/bin/true]
    preStop:
      sleep:
        seconds: 45
`)
	for _, cmd := range [][]string{
		{"lint", "--strict", chartDir, "--kube-version", kubeVersion, "-f", v},
		{"template", release, chartDir, "--kube-version", kubeVersion, "-f", v},
	} {
		if out, err := helm(t, cmd...); err != nil {
			t.Errorf("helm %s with app.lifecycle: %v\n%s", cmd[0], err, out)
		}
	}
}

// checkShutdownOrder: in a pod with an application, the application's
// preStop sleep outlasts the gateway's drain (as the binary's defaults
// size it, or the scenario's own config) and the grace period outlasts both.
func checkShutdownOrder(t *testing.T, dep *appsv1.Deployment, mode string) {
	t.Helper()
	spec := &dep.Spec.Template.Spec
	if spec.TerminationGracePeriodSeconds == nil {
		t.Fatal("pod has no terminationGracePeriodSeconds")
	}
	grace := *spec.TerminationGracePeriodSeconds
	delay, timeout := binaryShutdownDefaults(t)
	drain := ceilSeconds(delay + timeout)
	if grace <= drain {
		t.Errorf("terminationGracePeriodSeconds %d does not outlast the gateway's drain %ds", grace, drain)
	}
	if mode != "wrap" {
		return
	}
	for _, c := range spec.Containers {
		if c.Name == "authgate" {
			continue
		}
		if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
			t.Errorf("application container %s has no preStop sleep; it would exit while the gateway drains", c.Name)
			continue
		}
		if s := c.Lifecycle.PreStop.Sleep.Seconds; s <= drain || s >= grace {
			t.Errorf("application %s preStop sleep %ds, want between the drain %ds and the grace period %ds", c.Name, s, drain, grace)
		}
	}
}
