package helmtest

import (
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// composeFile is the part of examples/docker-compose.yaml the checks read.
type composeFile struct {
	Services map[string]struct {
		Image           string            `json:"image"`
		Command         []string          `json:"command"`
		Environment     map[string]string `json:"environment"`
		Volumes         []string          `json:"volumes"`
		NetworkMode     string            `json:"network_mode"`
		User            string            `json:"user"`
		ReadOnly        bool              `json:"read_only"`
		StopGracePeriod string            `json:"stop_grace_period"`
		Ports           []string          `json:"ports"`
	} `json:"services"`
}

// composeDefault resolves ${NAME:-default} to its default.
var composeDefault = regexp.MustCompile(`^\$\{[A-Z_]+:-(.*)\}$`)

// TestDockerComposeExample: the compose example runs the image the chart
// pulls, with a config the binary accepts, the app reachable only through
// the gateway, and a stop grace period that covers the drain. (No Docker
// engine is needed: nothing is started.)
func TestDockerComposeExample(t *testing.T) {
	examples := filepath.Join(repoRoot, "examples")
	var cf composeFile
	readYAML(t, filepath.Join(examples, "docker-compose.yaml"), &cf)
	gw, ok := cf.Services["gateway"]
	if !ok {
		t.Fatalf("docker-compose.yaml has no gateway service: %v", cf.Services)
	}
	if want := "ghcr.io/authgate/authgate:" + chartAppVersion(t); gw.Image != want {
		t.Errorf("gateway image = %q, want %q (what make image tags and the chart pulls)", gw.Image, want)
	}
	if gw.User != "65532:65532" || !gw.ReadOnly {
		t.Errorf("gateway user=%q read_only=%v, want the image's hardened profile", gw.User, gw.ReadOnly)
	}
	for _, p := range gw.Ports {
		if strings.HasSuffix(p, ":9090") && !strings.HasPrefix(p, "127.0.0.1:") {
			t.Errorf("the admin port is published on every interface: %q", p)
		}
	}
	// The config path in the command lies in the mounted examples directory.
	if len(gw.Command) != 3 || gw.Command[0] != "serve" || gw.Command[1] != "--config" {
		t.Fatalf("gateway command = %v, want serve --config FILE", gw.Command)
	}
	const mount = "/etc/authgate/examples"
	if len(gw.Volumes) != 1 || gw.Volumes[0] != "./:"+mount+":ro" {
		t.Fatalf("gateway volumes = %v, want the examples directory read-only at %s", gw.Volumes, mount)
	}
	rel, ok := strings.CutPrefix(gw.Command[2], mount+"/")
	if !ok {
		t.Fatalf("gateway config %s is not under %s", gw.Command[2], mount)
	}
	cfgPath := filepath.Join(examples, rel)
	var cfg struct {
		Upstream struct {
			URL string `json:"url"`
		} `json:"upstream"`
		Listen struct {
			ShutdownDelay   string `json:"shutdown_delay"`
			ShutdownTimeout string `json:"shutdown_timeout"`
		} `json:"listen"`
	}
	readYAML(t, cfgPath, &cfg)

	// The app shares the gateway's network namespace and listens on loopback
	// at the upstream address: the gateway is the one way in.
	app := cf.Services["app"]
	if app.NetworkMode != "service:gateway" {
		t.Errorf("app network_mode = %q, want service:gateway", app.NetworkMode)
	}
	up, err := url.Parse(cfg.Upstream.URL)
	if err != nil {
		t.Fatal(err)
	}
	if app.Environment["LISTEN"] != up.Host || up.Hostname() != "127.0.0.1" {
		t.Errorf("app LISTEN = %q, upstream.url = %q: want the same loopback address", app.Environment["LISTEN"], cfg.Upstream.URL)
	}

	// Redis is a service of the file.
	ru, err := url.Parse(gw.Environment["AUTHGATE_REDIS_URL"])
	if err != nil || ru.Scheme != "redis" {
		t.Fatalf("AUTHGATE_REDIS_URL = %q", gw.Environment["AUTHGATE_REDIS_URL"])
	}
	if _, ok := cf.Services[ru.Hostname()]; !ok {
		t.Errorf("AUTHGATE_REDIS_URL names host %q, which is not a service", ru.Hostname())
	}

	// docker stop waits stop_grace_period before SIGKILL: it must cover the drain.
	delay, timeout := binaryShutdownDefaults(t)
	if cfg.Listen.ShutdownDelay != "" || cfg.Listen.ShutdownTimeout != "" {
		t.Fatalf("%s sets the shutdown durations; read them here", cfgPath)
	}
	grace, err := time.ParseDuration(gw.StopGracePeriod)
	if err != nil || grace <= delay+timeout {
		t.Errorf("gateway stop_grace_period = %q, want more than shutdown_delay + shutdown_timeout (%v)", gw.StopGracePeriod, delay+timeout)
	}

	// The binary accepts the config with the files the volume holds.
	secret := gw.Environment["AUTHGATE_JWT_SECRET"]
	if m := composeDefault.FindStringSubmatch(secret); m != nil {
		secret = m[1]
	}
	out, err := execCheckConfig(buildAuthgate(t), cfgPath, append(baseEnv(), "AUTHGATE_JWT_SECRET="+secret))
	if err != nil {
		t.Fatalf("authgate check --strict --config %s: %v\n%s", cfgPath, err, out)
	}
	t.Logf("authgate check: %s", strings.TrimSpace(out))
}

// chartAppVersion returns the appVersion of Chart.yaml.
func chartAppVersion(t *testing.T) string {
	t.Helper()
	var c struct {
		AppVersion string `json:"appVersion"`
	}
	readYAML(t, filepath.Join(chartDir, "Chart.yaml"), &c)
	if c.AppVersion == "" {
		t.Fatal("Chart.yaml has no appVersion")
	}
	return c.AppVersion
}
