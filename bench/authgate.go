package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// findRepoRoot walks up from dir to the directory holding go.mod.
func findRepoRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("bench: go.mod not found above the working directory")
		}
		dir = parent
	}
}

// buildAuthgate builds the gateway from the repository root into dir. The
// build never inherits -race from the caller's GOFLAGS: the figures are for
// the binary that ships.
func buildAuthgate(ctx context.Context, root, dir string) (string, error) {
	out := filepath.Join(dir, "authgate")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, ".")
	cmd.Dir = root
	cmd.Env = append(withoutEnv(os.Environ(), "GOFLAGS"), "GOFLAGS=", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("bench: go build authgate: %w\n%s", err, b)
	}
	return out, nil
}

// withoutEnv returns environ without the variables named or prefixed.
func withoutEnv(environ []string, names ...string) []string {
	var out []string
outer:
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		for _, n := range names {
			if k == n || (strings.HasSuffix(n, "*") && strings.HasPrefix(k, strings.TrimSuffix(n, "*"))) {
				continue outer
			}
		}
		out = append(out, kv)
	}
	return out
}

// capBuffer keeps the first limit bytes written to it. It is safe for
// concurrent use.
type capBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	limit int
}

// Write keeps what fits and reports every byte written, so a chatty
// process never blocks or fails on its output.
func (c *capBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := c.limit - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// String returns what was kept.
func (c *capBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// gateway is a running authgate subprocess.
type gateway struct {
	cmd    *exec.Cmd
	stderr *capBuffer
	done   chan struct{}
	err    error // set before done is closed
	URL    string
}

// errExited is returned when the gateway exits before it is ready.
var errExited = errors.New("bench: authgate exited before it was ready")

// startGateway runs `authgate serve --config cfg` and waits until its admin
// listener reports ready or it exits. On exit the returned error wraps
// errExited and carries the gateway's stderr.
func startGateway(ctx context.Context, bin, cfg, secret, addr, adminAddr string) (*gateway, error) {
	cmd := exec.Command(bin, "serve", "--config", cfg)
	cmd.Env = append(withoutEnv(os.Environ(), "AUTHGATE_*"), "AUTHGATE_JWT_SECRET="+secret)
	g := &gateway{cmd: cmd, stderr: &capBuffer{limit: 64 << 10}, done: make(chan struct{}), URL: "http://" + addr}
	cmd.Stdout = g.stderr
	cmd.Stderr = g.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start authgate: %w", err)
	}
	go func() {
		g.err = cmd.Wait()
		close(g.done)
	}()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-g.done:
			return nil, fmt.Errorf("%w (%v):\n%s", errExited, g.err, strings.TrimSpace(g.stderr.String()))
		case <-ctx.Done():
			g.Stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		resp, err := client.Get("http://" + adminAddr + "/readyz")
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			client.CloseIdleConnections()
			return g, nil
		}
	}
	g.Stop()
	return nil, fmt.Errorf("bench: authgate not ready after 20s:\n%s", g.stderr.String())
}

// PID returns the gateway's process id.
func (g *gateway) PID() int { return g.cmd.Process.Pid }

// Stop asks the gateway to stop (SIGTERM) and kills it if it has not
// exited after 10s.
func (g *gateway) Stop() {
	select {
	case <-g.done:
		return
	default:
	}
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
	case <-time.After(10 * time.Second):
		_ = g.cmd.Process.Kill()
		<-g.done
	}
}

// memStatus is a process's resident memory from /proc/PID/status.
type memStatus struct {
	RSS, HWM uint64 // bytes: VmRSS (now) and VmHWM (peak)
}

// readMem reads VmRSS and VmHWM of pid.
func readMem(pid int) (memStatus, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return memStatus{}, fmt.Errorf("bench: read memory: %w", err)
	}
	return parseMemStatus(b)
}

// parseMemStatus parses the VmRSS and VmHWM lines of a /proc status file.
func parseMemStatus(b []byte) (memStatus, error) {
	var m memStatus
	var seen int
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return m, fmt.Errorf("bench: bad %s line %q", k, sc.Text())
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return m, fmt.Errorf("bench: bad %s line: %w", k, err)
		}
		if k == "VmRSS" {
			m.RSS = n << 10
		} else {
			m.HWM = n << 10
		}
		seen++
	}
	if seen != 2 {
		return m, errors.New("bench: VmRSS or VmHWM missing from status")
	}
	return m, nil
}
