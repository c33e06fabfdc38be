package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"
)

// referenceEnv, when set to an upstream URL, makes the harness binary (or
// its test binary) serve one reference proxy, named by referenceKindEnv,
// instead of benchmarking. Each reference runs in its own process, like
// the gateway, so none shares a Go scheduler with the load generator and
// the upstream, and the CPU it spends can be read from /proc.
const (
	referenceEnv     = "AUTHGATE_BENCH_REFERENCE"
	referenceKindEnv = "AUTHGATE_BENCH_REFERENCE_KIND"
)

// referenceMain serves the reference proxy kind ("bare" or "tuned") in
// front of upstream on a fresh loopback port, writes "reference <URL>" to
// out, and serves until in reaches EOF (the harness closed it or exited).
func referenceMain(kind, upstream string, in io.Reader, out io.Writer) error {
	var rt http.RoundTripper
	switch kind {
	case grpcPlainRef:
		return grpcReferenceMain(upstream, in, out)
	case "bare":
	case "tuned":
		tr := tunedTransport()
		defer tr.CloseIdleConnections()
		rt = tr
	default:
		return fmt.Errorf("bench: %s: unknown reference %q", referenceKindEnv, kind)
	}
	h, err := bareProxy(upstream, rt)
	if err != nil {
		return err
	}
	s, err := startServer(h)
	if err != nil {
		return err
	}
	defer s.Close()
	if _, err := fmt.Fprintf(out, "reference %s\n", s.URL); err != nil {
		return fmt.Errorf("bench: reference: %w", err)
	}
	_, _ = io.Copy(io.Discard, in)
	return nil
}

// referenceProc is a running reference subprocess.
type referenceProc struct {
	cmd   *exec.Cmd
	stdin io.Closer
	URL   string
}

// startReference re-runs the current executable as the reference server
// kind.
func startReference(ctx context.Context, kind, upstream string) (*referenceProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bench: reference: %w", err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(withoutEnv(os.Environ(), referenceEnv, referenceKindEnv), referenceEnv+"="+upstream, referenceKindEnv+"="+kind)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("bench: reference: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("bench: reference: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: reference: %w", err)
	}
	p := &referenceProc{cmd: cmd, stdin: stdin}
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- s
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case s := <-line:
		f := strings.Fields(s)
		if len(f) != 2 || f[0] != "reference" {
			p.Stop()
			return nil, fmt.Errorf("bench: reference %s: unexpected first line %q", kind, s)
		}
		p.URL = f[1]
		return p, nil
	case <-time.After(20 * time.Second):
		p.Stop()
		return nil, fmt.Errorf("bench: reference %s: no address after 20s", kind)
	case <-ctx.Done():
		p.Stop()
		return nil, ctx.Err()
	}
}

// PID returns the reference's process id.
func (p *referenceProc) PID() int { return p.cmd.Process.Pid }

// Stop closes the reference's stdin, which ends it, and kills it if it is
// still running after 5s.
func (p *referenceProc) Stop() {
	_ = p.stdin.Close()
	done := make(chan struct{})
	go func() {
		_ = p.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// isLoopbackURL reports whether raw is an http URL on a loopback address;
// the reference only ever proxies to the harness's own upstream.
func isLoopbackURL(raw string) bool {
	host, ok := strings.CutPrefix(raw, "http://")
	if !ok {
		return false
	}
	h, _, err := net.SplitHostPort(host)
	ip := net.ParseIP(h)
	return err == nil && ip != nil && ip.IsLoopback()
}
