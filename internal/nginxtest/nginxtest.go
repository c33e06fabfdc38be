// Package nginxtest runs a real nginx for integration tests.
package nginxtest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/authgate/authgate/internal/testkit"
)

// Prelude is the top of an nginx.conf that keeps every file nginx writes
// inside the test's directory. Templates passed to Start begin with it and
// then open their own http block contents.
const Prelude = `
{{if .Root}}user root;{{end}}
worker_processes 1;
pid {{.Dir}}/nginx.pid;
error_log {{.Dir}}/error.log info;
events { worker_connections 64; }
http {
  access_log {{.Dir}}/access.log;
  client_body_temp_path {{.Dir}}/tmp/body;
  proxy_temp_path {{.Dir}}/tmp/proxy;
  fastcgi_temp_path {{.Dir}}/tmp/fastcgi;
  uwsgi_temp_path {{.Dir}}/tmp/uwsgi;
  scgi_temp_path {{.Dir}}/tmp/scgi;
`

// FreePort returns a free TCP port on 127.0.0.1.
func FreePort(t testing.TB) int { return testkit.FreePort(t) }

// Binary returns the nginx binary. When it is missing the test fails under
// CI=true (CI installs nginx) and is skipped otherwise.
func Binary(t testing.TB) string {
	t.Helper()
	if bin, err := exec.LookPath("nginx"); err == nil {
		return bin
	}
	for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("nginx is not installed (apt-get install -y nginx)")
	}
	t.Skip("nginx is not installed; apt-get install -y nginx to run the nginx integration tests")
	return ""
}

// Start renders conf (a text/template that receives data plus Dir and
// Root) into a fresh directory, runs nginx on it in the foreground and
// waits until every port in ports accepts connections. nginx is stopped
// when the test ends; its error log is printed if the test failed.
func Start(t testing.TB, conf string, data map[string]any, ports ...int) {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	for _, d := range []string{"tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	vars := map[string]any{
		// Workers run as root only when the test does (CI containers):
		// the default "nobody" cannot enter a root-owned 0700 TempDir.
		"Root": os.Geteuid() == 0,
		"Dir":  dir,
	}
	for k, v := range data {
		vars[k] = v
	}
	var buf bytes.Buffer
	if err := template.Must(template.New("nginx").Parse(conf)).Execute(&buf, vars); err != nil {
		t.Fatal(err)
	}
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command(bin, "-p", dir, "-c", confPath, "-e", filepath.Join(dir, "error.log"), "-g", "daemon off;")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx error.log:\n%s", log)
		}
	})
	for _, port := range ports {
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		deadline := time.Now().Add(10 * time.Second)
		for {
			c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
			if err == nil {
				c.Close()
				break
			}
			select {
			case err := <-exited:
				log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
				t.Fatalf("nginx exited: %v\n%s\n%s", err, out.String(), log)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("nginx did not listen on %s", addr)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// Snippet returns the fenced code block of the Markdown file at path that
// stands between the lines "<!-- snippet:NAME:begin -->" and
// "<!-- snippet:NAME:end -->", without its fence lines, so that a test
// runs exactly what the documentation shows. The test fails when the
// markers or the fence are missing.
func Snippet(t testing.TB, path, name string) string {
	t.Helper()
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	begin, end := "<!-- snippet:"+name+":begin -->", "<!-- snippet:"+name+":end -->"
	_, rest, ok := strings.Cut(string(doc), begin+"\n")
	if !ok {
		t.Fatalf("%s: no %q marker", path, begin)
	}
	block, _, ok := strings.Cut(rest, end)
	if !ok {
		t.Fatalf("%s: no %q marker after %q", path, end, begin)
	}
	block = strings.TrimSpace(block)
	first, body, ok := strings.Cut(block, "\n")
	if !ok || !strings.HasPrefix(first, "```") || !strings.HasSuffix(body, "```") {
		t.Fatalf("%s: snippet %s is not one fenced code block", path, name)
	}
	return strings.TrimSuffix(body, "```")
}

// Replace returns s with every old replaced by new, failing the test when
// old does not occur: a documented snippet that changed shape must not be
// run half-adapted.
func Replace(t testing.TB, s, old, new string) string {
	t.Helper()
	if !strings.Contains(s, old) {
		t.Fatalf("snippet no longer contains %q:\n%s", old, s)
	}
	return strings.ReplaceAll(s, old, new)
}
