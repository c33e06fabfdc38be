package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// errNoRedis is returned by redisBinary when redis-server is not
// installed.
var errNoRedis = errors.New("bench: redis-server is not installed (apt-get install redis-server)")

// redisBinary returns the redis-server binary.
func redisBinary() (string, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", errNoRedis
	}
	return bin, nil
}

// redisProc is a redis-server the harness started for the modes whose
// state store is Redis.
type redisProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	Addr string // host:port on loopback
}

// startRedis runs redis-server on a free loopback port, without
// persistence, with its working directory under dir, and waits until it
// answers PING.
func startRedis(ctx context.Context, dir string) (*redisProc, error) {
	bin, err := redisBinary()
	if err != nil {
		return nil, err
	}
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	rd := filepath.Join(dir, "redis")
	if err := os.MkdirAll(rd, 0o700); err != nil {
		return nil, fmt.Errorf("bench: redis: %w", err)
	}
	out := &capBuffer{limit: 16 << 10}
	cmd := exec.Command(bin, "--save", "", "--appendonly", "no", "--port", port, "--bind", "127.0.0.1", "--dir", rd)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start redis-server: %w", err)
	}
	p := &redisProc{cmd: cmd, done: make(chan struct{}), Addr: addr}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if redisPing(addr) == nil {
			return p, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("bench: redis-server exited:\n%s", out.String())
		case <-ctx.Done():
			p.Stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("bench: redis-server did not answer PING on %s:\n%s", addr, out.String())
		}
	}
}

// redisPing sends one inline PING and expects +PONG.
func redisPing(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 7)
	if _, err := c.Read(buf); err != nil {
		return err
	}
	if string(buf) != "+PONG\r\n" {
		return fmt.Errorf("bench: redis answered %q to PING", buf)
	}
	return nil
}

// Stop stops redis-server (SIGTERM) and kills it after 5s.
func (p *redisProc) Stop() { stopProcess(p.cmd, p.done, syscall.SIGTERM, 5*time.Second, nil) }

// stopProcess asks cmd's process to stop with sig and waits until done
// is closed; after grace it kills it (with kill, if set, else SIGKILL to
// the process alone) and waits again. A process already gone is left
// alone.
func stopProcess(cmd *exec.Cmd, done <-chan struct{}, sig os.Signal, grace time.Duration, kill func()) {
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(grace):
		if kill != nil {
			kill()
		} else {
			_ = cmd.Process.Kill()
		}
		<-done
	}
}
