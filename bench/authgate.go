package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/authgate/authgate/internal/testkit"
)

// findRepoRoot returns the repository root: the directory of the
// gateway's go.mod above the working directory.
func findRepoRoot(string) (string, error) { return testkit.ModuleRoot() }

// buildAuthgate builds the gateway into dir, as testkit builds it for every
// suite: static and trimmed, never inheriting -race from the caller's
// GOFLAGS, since the figures are for the binary that ships.
func buildAuthgate(ctx context.Context, _ string, dir string) (string, error) {
	return testkit.Build(ctx, dir)
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
func startGateway(ctx context.Context, bin, cfg, secret, addr, adminAddr string, env ...string) (*gateway, error) {
	cmd := exec.Command(bin, "serve", "--config", cfg)
	cmd.Env = append(append(withoutEnv(os.Environ(), "AUTHGATE_*"), "AUTHGATE_JWT_SECRET="+secret), env...)
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
func (g *gateway) Stop() { stopProcess(g.cmd, g.done, syscall.SIGTERM, 10*time.Second, nil) }

// instance is one gateway process of a run, with the modes it serves.
type instance struct {
	Name      string
	Modes     []string
	Fragments []string // union of its modes' fragments, in table order
	Data      configData
	gw        *gateway
}

// MetricsURL is the instance's metrics endpoint on its admin listener.
func (in *instance) MetricsURL() string { return "http://" + in.Data.AdminAddr + "/metrics" }

// start writes the instance's files and starts its gateway. A config the
// gateway refuses is an error naming the instance's modes: a mode's
// feature is never turned off behind its back.
func (in *instance) start(ctx context.Context, bin, secret string) error {
	cfg, err := instanceFiles(in.Data, in.Fragments)
	if err != nil {
		return err
	}
	env, err := instanceEnv(in.Data, in.Fragments)
	if err != nil {
		return err
	}
	in.gw, err = startGateway(ctx, bin, cfg, secret, in.Data.Addr, in.Data.AdminAddr, env...)
	if err != nil {
		return fmt.Errorf("bench: gateway instance %s (modes %s): %w", in.Name, strings.Join(in.Modes, ", "), err)
	}
	return nil
}

// Stop stops the instance's gateway, if it runs.
func (in *instance) Stop() {
	if in.gw != nil {
		in.gw.Stop()
	}
}
