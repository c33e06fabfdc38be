package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"text/template"
	"time"
)

// nginxConf is the nginx reference: a plain reverse proxy set up like the
// gateway's upstream side, so the comparison is proxy against proxy.
//   - One worker, as the gateway runs on the machine's cores with one Go
//     scheduler; the figures are per request, so one worker is the fair
//     unit (it saturates one core, the gateway may use both).
//   - Keep-alive to the upstream with 256 idle connections
//     (upstream.max_idle_conns) and no per-connection request limit on
//     either side, as Go's server and transport have none.
//   - Streaming, not buffering: ReverseProxy copies each response through
//     a 32 KiB buffer as it arrives and streams request bodies, so nginx
//     gets proxy_buffering off with a 32k buffer and no request buffering
//     (proxy_buffers is set only so nginx accepts the 32k buffer size).
//   - The X-Forwarded-* headers the Go references set; no access log, as
//     the gateway logs no allowed request in the benchmark.
const nginxConf = `{{if .Root}}user root;{{end}}
worker_processes 1;
worker_rlimit_nofile 16384;
pid {{.Dir}}/nginx.pid;
error_log {{.Dir}}/error.log error;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path {{.Dir}}/tmp/body;
  proxy_temp_path {{.Dir}}/tmp/proxy;
  fastcgi_temp_path {{.Dir}}/tmp/fastcgi;
  uwsgi_temp_path {{.Dir}}/tmp/uwsgi;
  scgi_temp_path {{.Dir}}/tmp/scgi;
  keepalive_timeout 120s;
  keepalive_requests 1000000000;
  upstream app {
    server {{.Upstream}};
    keepalive 256;
    keepalive_requests 1000000000;
    keepalive_timeout 90s;
  }
  server {
    listen {{.Addr}} backlog=4096;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_buffer_size 32k;
      proxy_buffers 4 32k;
    }
  }
}
`

// nginxBinary returns the nginx binary, or an error saying how to get one
// or leave the nginx mode out.
func nginxBinary() (string, error) {
	if bin, err := exec.LookPath("nginx"); err == nil {
		return bin, nil
	}
	for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("bench: nginx is not installed (apt-get install nginx), or leave the nginx mode out with --modes")
}

// nginxProc is the running nginx reference (master and worker).
type nginxProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	dir  string
	URL  string
}

// startNginx runs nginx in the foreground with its prefix, config, pid and
// logs in a fresh directory under dir, in front of upstream (host:port).
func startNginx(ctx context.Context, dir, upstream string) (*nginxProc, error) {
	bin, err := nginxBinary()
	if err != nil {
		return nil, err
	}
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	nd := filepath.Join(dir, "nginx")
	for _, d := range []string{"tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"} {
		if err := os.MkdirAll(filepath.Join(nd, d), 0o700); err != nil {
			return nil, fmt.Errorf("bench: nginx: %w", err)
		}
	}
	var conf bytes.Buffer
	// Workers run as root only when the harness does: the default user
	// cannot enter a root-owned 0700 temporary directory.
	err = template.Must(template.New("nginx").Parse(nginxConf)).Execute(&conf,
		map[string]any{"Root": os.Geteuid() == 0, "Dir": nd, "Addr": addr, "Upstream": upstream})
	if err != nil {
		return nil, fmt.Errorf("bench: nginx config: %w", err)
	}
	confPath := filepath.Join(nd, "nginx.conf")
	if err := os.WriteFile(confPath, conf.Bytes(), 0o600); err != nil {
		return nil, fmt.Errorf("bench: nginx config: %w", err)
	}
	out := &capBuffer{limit: 16 << 10}
	cmd := exec.Command(bin, "-p", nd, "-c", confPath, "-e", filepath.Join(nd, "error.log"), "-g", "daemon off;")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start nginx: %w", err)
	}
	p := &nginxProc{cmd: cmd, done: make(chan struct{}), dir: nd, URL: "http://" + addr}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			// The master listens before its worker runs; wait for it.
			if len(childPIDs(p.PID())) > 0 {
				return p, nil
			}
		}
		select {
		case <-p.done:
			log, _ := os.ReadFile(filepath.Join(nd, "error.log"))
			return nil, fmt.Errorf("bench: nginx exited: %s\n%s", out.String(), log)
		case <-ctx.Done():
			p.Stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("bench: nginx did not listen on %s", addr)
		}
	}
}

// PID returns the master's process id; its worker is a child.
func (p *nginxProc) PID() int { return p.cmd.Process.Pid }

// Stop asks nginx to finish (SIGQUIT, a graceful stop) and kills it after
// 5s.
func (p *nginxProc) Stop() {
	stopProcess(p.cmd, p.done, syscall.SIGQUIT, 5*time.Second, func() {
		workers := childPIDs(p.PID())
		_ = p.cmd.Process.Kill()
		for _, pid := range workers {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}
