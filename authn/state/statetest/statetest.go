// Package statetest provides test helpers for stores: a real redis-server
// process on a free loopback port and a settable clock.
package statetest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/authgate/authgate/internal/testkit"
)

// startTimeout bounds how long a redis-server may take to answer PING.
const startTimeout = 10 * time.Second

// Server is a redis-server process owned by one test. Create it with
// StartServer; the zero value is not usable. Its methods are safe for
// concurrent use.
type Server struct {
	t    testing.TB
	bin  string
	port int
	dir  string
	// args, if set, returns the arguments for a run on port with working
	// directory dir instead of a plain server's.
	args func(port int, dir string) ([]string, error)

	mu   sync.Mutex
	cmd  *exec.Cmd // nil while stopped
	runs int
}

// StartRedis starts a redis-server for t on a free 127.0.0.1 port and
// returns its address, a function that stops it and one that restarts it on
// the same port. The server is stopped when the test ends. If redis-server is
// not installed the test is skipped, or fails when the CI environment
// variable is "true".
func StartRedis(t testing.TB) (addr string, stop func(), restart func()) {
	t.Helper()
	s := StartServer(t)
	return s.Addr(), s.Stop, s.Restart
}

// StartServer is StartRedis returning the Server, which can also pause the
// process to simulate a server that accepts connections but never answers.
func StartServer(t testing.TB) *Server {
	t.Helper()
	return startServer(t, lookPath(t, "redis-server", "redis-server"), nil)
}

// lookPath returns the path of bin, skipping t when it is not installed
// (failing when CI is "true"); pkg is the Debian package that has it.
func lookPath(t testing.TB, bin, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(bin)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed but CI=true: install it (apt-get install -y %s)", bin, pkg)
		}
		t.Skipf("%s not installed; apt-get install -y %s", bin, pkg)
	}
	return path
}

// startServer starts bin with args (nil: a plain server) on a free port.
func startServer(t testing.TB, bin string, args func(port int, dir string) ([]string, error)) *Server {
	t.Helper()
	var err error
	s := &Server{t: t, bin: bin, dir: t.TempDir(), args: args}
	// Another process can take the port between probing and binding, so
	// retry with a new port a few times.
	for attempt := 0; ; attempt++ {
		s.port, err = freePort()
		if err != nil {
			t.Fatalf("statetest: find free port: %v", err)
		}
		err = s.start()
		if err == nil {
			break
		}
		if attempt == 2 {
			t.Fatalf("statetest: start redis-server: %v", err)
		}
	}
	t.Cleanup(s.Stop)
	return s
}

// Port returns the server's port.
func (s *Server) Port() int { return s.port }

// Dir returns the server's working directory, kept across restarts.
func (s *Server) Dir() string { return s.dir }

// Running reports whether the process runs (it may be paused).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL returns a redis:// URL for the server's database db.
func (s *Server) URL(db int) string { return fmt.Sprintf("redis://%s/%d", s.Addr(), db) }

// Stop terminates the server and waits for it to exit. Stopping a stopped
// server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT) // a paused process cannot exit
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Restart stops the server if it runs and starts it again on the same port,
// empty.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	var err error
	deadline := time.Now().Add(startTimeout)
	for {
		// The port can linger briefly after the old process exits.
		if err = s.start(); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatalf("statetest: restart redis-server: %v", err)
	}
}

// Pause stops the process with SIGSTOP: connections stay open but nothing is
// answered, as with a hung server or a network partition.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused process.
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig os.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(sig)
	}
}

// start launches the process and waits until it answers PING.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.runs++
	logf, err := os.Create(filepath.Join(s.dir, fmt.Sprintf("redis-%d.log", s.runs)))
	if err != nil {
		return err
	}
	defer logf.Close()
	args := []string{"--save", "", "--appendonly", "no",
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--dir", s.dir}
	if s.args != nil {
		if args, err = s.args(s.port, s.dir); err != nil {
			return err
		}
	}
	cmd := exec.Command(s.bin, args...)
	// Files, not pipes, so that exec starts no copying goroutines that
	// would outlive a goroutine-leak check.
	cmd.Stdout = logf
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		return err
	}
	deadline := time.Now().Add(startTimeout)
	for {
		if err = ping(s.Addr()); err == nil {
			s.cmd = cmd
			return nil
		}
		gone := exited(cmd)
		if gone || time.Now().After(deadline) {
			if !gone {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			}
			b, _ := os.ReadFile(logf.Name())
			return fmt.Errorf("redis-server on port %d did not start: %v\n%s", s.port, err, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// exited reports whether the process has already terminated, reaping it if
// so.
func exited(cmd *exec.Cmd) bool {
	var ws syscall.WaitStatus
	pid, err := syscall.Wait4(cmd.Process.Pid, &ws, syscall.WNOHANG, nil)
	return err == nil && pid == cmd.Process.Pid
}

// ping sends an inline PING and expects +PONG (or -NOAUTH).
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	// A server that requires a password answers too.
	if !strings.HasPrefix(line, "+PONG") && !strings.HasPrefix(line, "-NOAUTH") {
		return errors.New("unexpected reply " + strconv.Quote(line))
	}
	return nil
}

// freePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func freePort() (int, error) {
	addr, err := testkit.FreeAddr()
	if err != nil {
		return 0, err
	}
	_, port, _ := net.SplitHostPort(addr)
	return strconv.Atoi(port)
}

// Clock is a settable clock for injecting as Now. The zero value reads as
// the zero time; use NewClock. It is safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock reading t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Set sets the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}
