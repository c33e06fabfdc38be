// Package testkit holds the helpers every test suite of the module shares:
// free loopback ports, the module root and the gateway binary build. It
// imports nothing of the gateway and registers nothing, so any package's
// tests, the benchmark harness and the chart tests can use it. Golden files
// are in the golden sub-package.
package testkit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// FreeAddr returns a 127.0.0.1 address whose port was free a moment ago.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("testkit: free port: %w", err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr, nil
}

// FreePort returns a 127.0.0.1 port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(addr)
	var p int
	fmt.Sscan(port, &p)
	return p
}

// ModuleRoot returns the directory of the go.mod that declares the
// gateway's module, searching upwards from the working directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.HasPrefix(string(data), "module github.com/authgate/authgate\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testkit: the gateway's go.mod was not found above the working directory")
		}
		dir = parent
	}
}

// Build compiles the gateway binary into dir and returns its path. It
// builds the binary that ships: static, trimmed, never with -race from the
// caller's GOFLAGS.
func Build(ctx context.Context, dir string) (string, error) {
	return BuildCommand(ctx, dir, ".", "authgate")
}

// BuildCommand compiles the main package pkg (a path relative to the module
// root, like "./test/rollout/upstreamd") into dir/name, as Build does, and
// returns its path.
func BuildCommand(ctx context.Context, dir, pkg, name string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, name)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(withoutEnv(os.Environ(), "GOFLAGS", "CGO_ENABLED"), "GOFLAGS=", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("testkit: go build %s: %w\n%s", pkg, err, b)
	}
	return out, nil
}

// IsRefusedDial reports whether err is a refused TCP dial: nothing
// listened on the port, so nothing of the request was sent.
func IsRefusedDial(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial" && errors.Is(err, syscall.ECONNREFUSED)
}

// withoutEnv returns environ without the variables named.
func withoutEnv(environ []string, names ...string) []string {
	var out []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		keep := true
		for _, n := range names {
			if k == n {
				keep = false
			}
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}

// StableAddr returns a 127.0.0.1 address, free a moment ago, whose port is
// below the kernel's ephemeral range. A test that closes a listener and
// listens on the same port again later (an upstream that restarts) needs
// one: a port from the ephemeral range can be handed to another socket's
// automatic bind in between.
func StableAddr() (string, error) {
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var lo, hi int
		if n, _ := fmt.Sscan(string(b), &lo, &hi); n == 2 && lo > 2048 {
			low = lo
		}
	}
	span := low - 1024
	start := int(time.Now().UnixNano()%int64(span)) + 1024
	for i := range span {
		port := 1024 + (start-1024+i)%span
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		addr := ln.Addr().String()
		_ = ln.Close()
		return addr, nil
	}
	return "", errors.New("testkit: no free port below the ephemeral range")
}
