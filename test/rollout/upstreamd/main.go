// Command upstreamd is the app behind the gateway in the rollout tests: a
// small HTTP/1.1 server with keep-alive. GET answers "ok"; a request with
// a body answers "ok <length> <crc32>" of what it read, so the client can
// tell that the body arrived whole.
//
// On SIGTERM it exits at once, as most apps do (-mode exit); or stops like
// a graceful Go app (-mode graceful: http.Server.Shutdown, which closes
// the listener, closes idle connections at once and waits for the rest);
// or retires its connections first (-mode retire: the listener closes,
// then every response carries Connection: close, and a connection idle for
// half a second is closed, as the gateway itself drains). With
// -wait it listens only after SIGUSR1, so that a test can open the port a
// measured gap after the previous process closed it. It prints
// "listening" once it listens and "stopping" when SIGTERM arrives.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	mode := flag.String("mode", "exit", "on SIGTERM: exit (at once), graceful (http.Server.Shutdown) or retire (close the listener, retire connections, then shut down)")
	wait := flag.Bool("wait", false, "listen only after SIGUSR1")
	flag.Parse()

	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGUSR1)
	if *wait {
		// Only now may SIGUSR1 come: the Go runtime drops one that
		// arrives before Notify, and the process would wait forever.
		fmt.Println("waiting")
		for s := range sig {
			if s == syscall.SIGUSR1 {
				break
			}
			os.Exit(0) // stopped before it ever listened
		}
	}
	// The previous process may not have closed the port yet on a loaded
	// machine (it prints "stopping" first); the gap the harness measures
	// then includes the wait.
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if ln, err = net.Listen("tcp", *addr); err == nil || !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "upstreamd:", err)
		os.Exit(1)
	}
	var retiring atomic.Bool
	tr := &tracker{conns: map[net.Conn]idleSince{}}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, ConnState: tr.state,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if retiring.Load() {
				w.Header().Set("Connection", "close")
			}
			serve(w, r)
		})}
	go func() { _ = srv.Serve(ln) }()
	fmt.Println("listening", ln.Addr())

	for s := range sig {
		if s != syscall.SIGTERM {
			continue
		}
		fmt.Println("stopping")
		switch *mode {
		case "graceful":
		case "retire":
			// The listener closes before any response says
			// Connection: close. The other way round, the gateway
			// dials again at once after such a response, the kernel
			// queues that connection for an Accept that never comes,
			// and closing the listener resets it with the request
			// already written: a POST the app never read, lost. After
			// the close a dial is refused, which the gateway retries.
			_ = ln.Close()
			retiring.Store(true)
			for deadline := time.Now().Add(10 * time.Second); tr.reap(500*time.Millisecond) > 0 && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
		default:
			os.Exit(0)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := srv.Shutdown(ctx)
		cancel()
		if err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
}

func serve(w http.ResponseWriter, r *http.Request) {
	if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil {
		time.Sleep(d)
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		_, _ = io.WriteString(w, "ok")
		return
	}
	h := crc32.NewIEEE()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
		return
	}
	fmt.Fprintf(w, "ok %d %08x", n, h.Sum32())
}

// tracker knows since when each connection is idle (zero: in use).
type tracker struct {
	mu    sync.Mutex
	conns map[net.Conn]idleSince
}

type idleSince struct{ t time.Time }

func (tr *tracker) state(c net.Conn, s http.ConnState) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	switch s {
	case http.StateIdle:
		tr.conns[c] = idleSince{time.Now()}
	case http.StateClosed, http.StateHijacked:
		delete(tr.conns, c)
	default:
		tr.conns[c] = idleSince{}
	}
}

// reap closes the connections idle for grace and returns how many are left.
func (tr *tracker) reap(grace time.Duration) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for c, s := range tr.conns {
		if !s.t.IsZero() && time.Since(s.t) >= grace {
			_ = c.Close()
			delete(tr.conns, c)
		}
	}
	return len(tr.conns)
}
