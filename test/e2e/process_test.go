package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/authgate/authgate/internal/testkit"
)

// The process tests run the real binary: signals, exit codes and what is
// printed at startup are only observable from outside the process.

// buildBinary returns the gateway binary, built once per test run by
// testkit.Build (without -race, to keep the suite fast; the in-process
// tests cover races) and shared by every process test.
func buildBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, err := os.MkdirTemp("", "authgate-bin-")
		if err != nil {
			binErr = err
			return
		}
		registerCleanup(func() { os.RemoveAll(binDir) })
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		binPath, binErr = testkit.Build(ctx, binDir)
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int { return testkit.FreePort(t) }

// lockedBuffer collects a child's output; it is safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// proc is a running `authgate serve`.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stderr *lockedBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // Wait's result, valid after done
	gwURL  string
	admURL string
	client *http.Client
}

// procConfig is a config file for a process test; %s are the upstream URL
// and shutdown delay, %d the two ports.
const procConfig = `upstream:
  url: %s
listen:
  address: 127.0.0.1:%d
  admin_address: 127.0.0.1:%d
  shutdown_delay: %s
  shutdown_timeout: 5s
policy_file: policy.yaml
reload_interval: 1h
logging:
  level: info
`

// startProc writes policyText and a config into dir and starts the binary
// with environ. The process is killed at cleanup if it still runs.
func startProc(t *testing.T, bin, dir, upstream, policyText string, shutdownDelay time.Duration, environ []string) *proc {
	t.Helper()
	writeFile(t, filepath.Join(dir, "policy.yaml"), policyText)
	return startProcConfig(t, bin, dir, func(gw, adm int) string {
		return fmt.Sprintf(procConfig, upstream, gw, adm, shutdownDelay)
	}, environ)
}

// startProcConfig writes config(gatewayPort, adminPort) into dir and
// starts the binary with environ. A port chosen free can be taken by
// another process before the binary binds it; then the binary exits at
// once and is started again on other ports.
func startProcConfig(t *testing.T, bin, dir string, config func(gw, adm int) string, environ []string) *proc {
	t.Helper()
	for attempt := 1; ; attempt++ {
		gwPort, admPort := freePort(t), freePort(t)
		p := launch(t, bin, dir, config(gwPort, admPort), environ)
		p.gwURL, p.admURL = fmt.Sprintf("http://127.0.0.1:%d", gwPort), fmt.Sprintf("http://127.0.0.1:%d", admPort)
		// Give a bind failure a moment to show before handing the process
		// over; one that never exits is bound.
		select {
		case <-p.done:
			if strings.Contains(p.stderr.String(), "address already in use") && attempt < 5 {
				continue
			}
		case <-time.After(200 * time.Millisecond):
		}
		return p
	}
}

// launch starts the binary on config in dir.
func launch(t *testing.T, bin, dir, config string, environ []string) *proc {
	t.Helper()
	cfg := filepath.Join(dir, "config.yaml")
	writeFile(t, cfg, config)
	p := &proc{
		t:      t,
		cmd:    exec.Command(bin, "serve", "--config", cfg),
		stderr: &lockedBuffer{},
		done:   make(chan struct{}),
		client: &http.Client{Timeout: 5 * time.Second},
	}
	p.cmd.Env = environ
	p.cmd.Stdout = p.stderr
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		p.client.CloseIdleConnections()
		if t.Failed() {
			t.Logf("authgate output:\n%s", p.stderr.String())
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// readyz returns the status of /readyz, or 0 when the admin listener does
// not answer.
func (p *proc) readyz() int {
	resp, err := p.client.Get(p.admURL + "/readyz")
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func (p *proc) waitReady() {
	p.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for p.readyz() != http.StatusOK {
		if p.exited() {
			p.t.Fatalf("authgate exited before ready: %v\n%s", p.err, p.stderr.String())
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("authgate not ready within 10s\n%s", p.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// get sends an anonymous GET through the gateway and returns the status.
func (p *proc) get(path string) int {
	p.t.Helper()
	resp, err := p.client.Get(p.gwURL + path)
	if err != nil {
		p.t.Fatalf("GET %s: %v", path, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// anonymousDecisions are the statuses of the anonymous probes, which tell
// reloadPolicyA (/public open) from reloadPolicyB (/open open).
func (p *proc) anonymousDecisions() string {
	p.t.Helper()
	return fmt.Sprintf("/public/x=%d /open/x=%d /elsewhere=%d", p.get("/public/x"), p.get("/open/x"), p.get("/elsewhere"))
}

const (
	procDecisionsA = "/public/x=200 /open/x=401 /elsewhere=401"
	procDecisionsB = "/public/x=401 /open/x=200 /elsewhere=401"
)

func (p *proc) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
}

func TestProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	secretEnv := "AUTHGATE_JWT_SECRET=" + testSecret

	t.Run("SIGHUP reloads the policy", func(t *testing.T) {
		t.Parallel()
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }))
		t.Cleanup(up.Close)
		dir := t.TempDir()
		p := startProc(t, bin, dir, up.URL, reloadPolicyA, 0, []string{secretEnv})
		p.waitReady()
		if got := p.anonymousDecisions(); got != procDecisionsA {
			t.Fatalf("before the edit: %s, want %s", got, procDecisionsA)
		}

		replaceByRename(t, filepath.Join(dir, "policy.yaml"), reloadPolicyB)
		// With reload_interval 1h nothing but SIGHUP reloads: the old
		// policy must keep answering.
		for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
			if got := p.anonymousDecisions(); got != procDecisionsA {
				t.Fatalf("after the edit, before SIGHUP: %s, want still %s", got, procDecisionsA)
			}
			time.Sleep(20 * time.Millisecond)
		}

		p.signal(syscall.SIGHUP)
		var got string
		eventually(t, 2*time.Second, "policy B after SIGHUP", func() bool {
			got = p.anonymousDecisions()
			return got == procDecisionsB
		})
		if p.exited() {
			t.Fatalf("authgate exited after SIGHUP: %v", p.err)
		}
		if out := p.stderr.String(); !strings.Contains(out, "SIGHUP: reloading files") {
			t.Errorf("log does not mention the SIGHUP reload:\n%s", out)
		}

		// A bad edit picked up by SIGHUP is rejected: the process stays
		// up, policy B keeps answering, and the log names file and line.
		replaceByRename(t, filepath.Join(dir, "policy.yaml"), strings.Replace(reloadPolicyB, "roles: [admin]", "role: [admin]", 1))
		p.signal(syscall.SIGHUP)
		want := filepath.Join(dir, "policy.yaml") + ":8: rule 2 (/admin/**): unknown key"
		eventually(t, 2*time.Second, "rejected reload logged", func() bool {
			return strings.Contains(p.stderr.String(), want)
		})
		if got := p.anonymousDecisions(); got != procDecisionsB {
			t.Errorf("after a rejected SIGHUP reload: %s, want still %s", got, procDecisionsB)
		}
		if p.exited() || p.readyz() != http.StatusOK {
			t.Errorf("authgate not ready after a rejected reload (exited: %v)", p.exited())
		}
	})

	t.Run("SIGTERM turns readiness off, drains, exits 0", func(t *testing.T) {
		t.Parallel()
		arrived, release := make(chan struct{}), make(chan struct{})
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/public/slow" {
				close(arrived)
				<-release
			}
			_, _ = io.WriteString(w, "ok")
		}))
		t.Cleanup(up.Close)
		t.Cleanup(func() {
			select {
			case <-release:
			default:
				close(release)
			}
		})
		const delay = 1500 * time.Millisecond
		p := startProc(t, bin, t.TempDir(), up.URL, reloadPolicyA, delay, []string{secretEnv})
		p.waitReady()

		// A request in flight when the signal arrives must complete.
		slow := make(chan int, 1)
		go func() {
			resp, err := p.client.Get(p.gwURL + "/public/slow")
			if err != nil {
				slow <- 0
				return
			}
			resp.Body.Close()
			slow <- resp.StatusCode
		}()
		<-arrived

		start := time.Now()
		p.signal(syscall.SIGTERM)
		eventually(t, delay*2/3, "/readyz 503 after SIGTERM", func() bool { return p.readyz() == http.StatusServiceUnavailable })
		// Readiness is off but the listener still serves during the delay,
		// while endpoint controllers stop routing here.
		if got := p.get("/public/x"); got != http.StatusOK {
			t.Errorf("GET /public/x during the shutdown delay = %d, want 200", got)
		}
		if elapsed := time.Since(start); elapsed >= delay {
			t.Fatalf("checks during the delay took %v, longer than the delay %v", elapsed, delay)
		}
		// Once the listener is closed, let the in-flight request finish.
		eventually(t, delay+2*time.Second, "main listener closed", func() bool {
			c, err := net.DialTimeout("tcp", strings.TrimPrefix(p.gwURL, "http://"), 100*time.Millisecond)
			if err != nil {
				return true
			}
			c.Close()
			return false
		})
		if elapsed := time.Since(start); elapsed < delay {
			t.Errorf("listener closed %v after SIGTERM, before the %v shutdown delay", elapsed, delay)
		}
		if p.exited() {
			t.Errorf("authgate exited with a request in flight")
		}
		close(release)
		if got := <-slow; got != http.StatusOK {
			t.Errorf("in-flight request = %d, want 200", got)
		}
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			t.Fatal("authgate did not exit within 5s of draining")
		}
		if p.err != nil {
			t.Fatalf("exit: %v, want status 0\n%s", p.err, p.stderr.String())
		}
		if out := p.stderr.String(); !strings.Contains(out, "authgate stopped") {
			t.Errorf("log does not say the gateway stopped:\n%s", out)
		}
	})

	t.Run("startup refused", func(t *testing.T) {
		t.Parallel()
		okConfig := func(string) string {
			return fmt.Sprintf(procConfig, "http://127.0.0.1:9", freePort(t), freePort(t), "0s")
		}
		tests := []struct {
			name    string
			config  func(dir string) string
			policy  string
			environ []string
			want    []string // each must appear in the output
		}{
			{
				name:    "invalid policy",
				config:  okConfig,
				policy:  strings.Replace(reloadPolicyA, "roles: [admin]", "role: [admin]", 1),
				environ: []string{secretEnv},
				want:    []string{`$DIR/policy.yaml:8: rule 2 (/admin/**): unknown key "role"`},
			},
			{
				name:    "missing secret",
				config:  okConfig,
				policy:  reloadPolicyA,
				environ: nil,
				want:    []string{"no signing key: set AUTHGATE_JWT_SIGNING_KEY_FILE"},
			},
			{
				name:    "secret shorter than 32 bytes",
				config:  okConfig,
				policy:  reloadPolicyA,
				environ: []string{"AUTHGATE_JWT_SECRET=0123456789abcdef0123456789abcde"},
				want:    []string{"AUTHGATE_JWT_SECRET is 31 bytes, need at least 32"},
			},
			{
				name: "unknown config key",
				config: func(dir string) string {
					return strings.Replace(okConfig(dir), "  admin_address:", "  admin_adress:", 1)
				},
				policy:  reloadPolicyA,
				environ: []string{secretEnv},
				want:    []string{"$DIR/config.yaml:5: ", "admin_adress"},
			},
			{
				name:    "secret given twice",
				config:  okConfig,
				policy:  reloadPolicyA,
				environ: []string{secretEnv, "AUTHGATE_JWT_SECRET_FILE=/nonexistent"},
				want:    []string{"set AUTHGATE_JWT_SECRET or AUTHGATE_JWT_SECRET_FILE, not both"},
			},
			{
				name: "unknown key and bad value both named",
				config: func(dir string) string {
					c := strings.Replace(okConfig(dir), "  admin_address:", "  admin_adress:", 1)
					return strings.Replace(c, "  level: info", "  level: loud", 1)
				},
				policy:  reloadPolicyA,
				environ: []string{secretEnv},
				want: []string{
					"$DIR/config.yaml:5: ",
					`$DIR/config.yaml:11: field logging.level: want debug, info, warn or error, got "loud"`,
				},
			},
			{
				name: "two bad fields both named",
				config: func(dir string) string {
					c := strings.Replace(okConfig(dir), "  level: info", "  level: loud", 1)
					return strings.Replace(c, "reload_interval: 1h", "reload_interval: 0s", 1)
				},
				policy:  reloadPolicyA,
				environ: []string{secretEnv},
				want: []string{
					`$DIR/config.yaml:11: field logging.level: want debug, info, warn or error, got "loud"`,
					"$DIR/config.yaml:9: field reload_interval: must be positive",
				},
			},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				dir := t.TempDir()
				writeFile(t, filepath.Join(dir, "policy.yaml"), tc.policy)
				cfg := filepath.Join(dir, "config.yaml")
				writeFile(t, cfg, tc.config(dir))
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				cmd := exec.CommandContext(ctx, bin, "serve", "--config", cfg)
				cmd.Env = tc.environ
				out, err := cmd.CombinedOutput()
				var exit *exec.ExitError
				if !errors.As(err, &exit) || exit.ExitCode() != 1 {
					t.Fatalf("authgate serve: %v, want exit status 1\n%s", err, out)
				}
				text := strings.ReplaceAll(string(out), dir, "$DIR")
				for _, w := range tc.want {
					if !strings.Contains(text, w) {
						t.Errorf("output lacks %q:\n%s", w, text)
					}
				}
				if strings.Contains(text, testSecret) {
					t.Errorf("output contains the signing secret:\n%s", text)
				}
			})
		}
	})
}
