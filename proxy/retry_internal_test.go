package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestClassifyByErrorType(t *testing.T) {
	dial := func(errno syscall.Errno) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", errno)}
	}
	read := func(errno syscall.Errno) error {
		return &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", errno)}
	}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	later, cancelLater := context.WithTimeout(context.Background(), time.Hour)
	defer cancelLater()
	// An upstream told the call's deadline resets the stream when it
	// passes; that reset can come before the gateway's timer has ended
	// the context.
	upstreamReset := errors.New("stream error: stream ID 1; CANCEL; received from peer")
	cases := []struct {
		name string
		ctx  context.Context
		err  error
		want string
	}{
		{"refused dial", context.Background(), dial(syscall.ECONNREFUSED), "refused"},
		{"wrapped refused dial", context.Background(), fmt.Errorf("proxy: %w", dial(syscall.ECONNREFUSED)), "refused"},
		{"unreachable dial", context.Background(), dial(syscall.EHOSTUNREACH), "refused"},
		{"reset read", context.Background(), read(syscall.ECONNRESET), "reset"},
		{"broken pipe", context.Background(), &net.OpError{Op: "write", Err: os.NewSyscallError("write", syscall.EPIPE)}, "reset"},
		{"EOF", context.Background(), io.EOF, "reset"},
		{"wrapped unexpected EOF", context.Background(), fmt.Errorf("net/http: HTTP/1.x transport connection broken: %w", io.ErrUnexpectedEOF), "reset"},
		{"deadline", context.Background(), context.DeadlineExceeded, "timeout"},
		{"canceled client", canceled, io.EOF, "canceled"},
		{"reset after the call's deadline, timer not yet run", pastDeadline{}, upstreamReset, "timeout"},
		{"reset before the call's deadline", later, upstreamReset, "other"},
		// Text is not evidence: only the error's type and cause count.
		{"text only", context.Background(), errors.New("dial tcp: connection refused; connection reset by peer; EOF"), "other"},
	}
	for _, tc := range cases {
		if got := classify(tc.ctx, tc.err); got != tc.want {
			t.Errorf("classify(%s: %v) = %q, want %q", tc.name, tc.err, got, tc.want)
		}
	}
	if !refusedDial(dial(syscall.ECONNREFUSED)) || refusedDial(dial(syscall.EHOSTUNREACH)) || refusedDial(read(syscall.ECONNREFUSED)) {
		t.Error("refusedDial must hold for a refused dial only")
	}
}

// recBody records what happens to a request body.
type recBody struct {
	io.Reader
	closes int
}

func (b *recBody) Close() error { b.closes++; return nil }

func TestHeldBody(t *testing.T) {
	t.Run("close before read is held for the retry", func(t *testing.T) {
		rb := &recBody{Reader: strings.NewReader("abc")}
		h := &heldBody{rc: rb}
		_ = h.Close()
		if rb.closes != 0 || !h.unread() {
			t.Fatalf("closes = %d, unread = %v; want the Close held and the body unread", rb.closes, h.unread())
		}
		h.handOver()
		_ = h.Close()
		if rb.closes != 0 {
			t.Errorf("Close after handOver reached the body")
		}
	})
	t.Run("held close is done when no retry follows", func(t *testing.T) {
		rb := &recBody{Reader: strings.NewReader("abc")}
		h := &heldBody{rc: rb}
		_ = h.Close()
		h.settle()
		if rb.closes != 1 {
			t.Errorf("closes = %d after settle, want 1", rb.closes)
		}
		_ = h.Close()
		if rb.closes != 2 {
			t.Errorf("a Close after settle must pass through")
		}
	})
	t.Run("close after read passes through", func(t *testing.T) {
		rb := &recBody{Reader: strings.NewReader("abc")}
		h := &heldBody{rc: rb}
		_, _ = h.Read(make([]byte, 1))
		_ = h.Close()
		if rb.closes != 1 || h.unread() {
			t.Errorf("closes = %d, unread = %v; want 1, false", rb.closes, h.unread())
		}
	})
}

// pastDeadline is a context whose deadline has passed while its timer has
// not yet ended it (Err is still nil), as a loaded process sees it.
type pastDeadline struct{}

func (pastDeadline) Deadline() (time.Time, bool) { return time.Now().Add(-time.Millisecond), true }
func (pastDeadline) Done() <-chan struct{}       { return nil }
func (pastDeadline) Err() error                  { return nil }
func (pastDeadline) Value(any) any               { return nil }
