package main

import (
	"bufio"
	"context"
	"errors"
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
// its test binary) serve the reference proxies instead of benchmarking.
// The reference runs in its own process, like the gateway, so neither side
// shares a Go scheduler with the load generator and the upstream.
const referenceEnv = "AUTHGATE_BENCH_REFERENCE"

// referenceMain serves the bare and tuned reference proxies in front of
// upstream on fresh loopback ports, writes "reference <bareURL>
// <tunedURL>" to out, and serves until in reaches EOF (the harness closed
// it or exited).
func referenceMain(upstream string, in io.Reader, out io.Writer) error {
	tr := tunedTransport()
	defer tr.CloseIdleConnections()
	var urls []string
	for _, rt := range []http.RoundTripper{nil, tr} {
		h, err := bareProxy(upstream, rt)
		if err != nil {
			return err
		}
		s, err := startServer(h)
		if err != nil {
			return err
		}
		defer s.Close()
		urls = append(urls, s.URL)
	}
	if _, err := fmt.Fprintf(out, "reference %s\n", strings.Join(urls, " ")); err != nil {
		return fmt.Errorf("bench: reference: %w", err)
	}
	_, _ = io.Copy(io.Discard, in)
	return nil
}

// referenceProc is the running reference subprocess.
type referenceProc struct {
	cmd      *exec.Cmd
	stdin    io.Closer
	BareURL  string
	TunedURL string
}

// startReference re-runs the current executable as the reference server.
func startReference(ctx context.Context, upstream string) (*referenceProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bench: reference: %w", err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(withoutEnv(os.Environ(), referenceEnv), referenceEnv+"="+upstream)
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
		if len(f) != 3 || f[0] != "reference" {
			p.Stop()
			return nil, fmt.Errorf("bench: reference: unexpected first line %q", s)
		}
		p.BareURL, p.TunedURL = f[1], f[2]
		return p, nil
	case <-time.After(20 * time.Second):
		p.Stop()
		return nil, errors.New("bench: reference: no address after 20s")
	case <-ctx.Done():
		p.Stop()
		return nil, ctx.Err()
	}
}

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
