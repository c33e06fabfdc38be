package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// idleConnCost measures what an idle keep-alive connection costs the
// process pid in resident memory: it reads the RSS, opens n connections
// to rawURL, sends one GET on each (so the server has served a request and
// holds the connection in keep-alive, as a browser or an idle pool leaves
// it), waits settle, reads the RSS again and returns the growth per
// connection in bytes. The connections are closed before it returns.
func idleConnCost(ctx context.Context, rawURL string, n int, pid func() int, settle time.Duration) (float64, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return 0, fmt.Errorf("bench: idle connections: %w", err)
	}
	before, err := readMem(pid())
	if err != nil {
		return 0, err
	}
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	d := net.Dialer{Timeout: 5 * time.Second}
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUser-Agent: authgate-bench\r\n\r\n"
	for range n {
		c, err := d.DialContext(ctx, "tcp", u.Host)
		if err != nil {
			return 0, fmt.Errorf("bench: idle connections: %w", err)
		}
		conns = append(conns, c)
		if err := oneRequest(c, req); err != nil {
			return 0, fmt.Errorf("bench: idle connection %d: %w", len(conns), err)
		}
	}
	select {
	case <-time.After(settle):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	after, err := readMem(pid())
	if err != nil {
		return 0, err
	}
	return (float64(after.RSS) - float64(before.RSS)) / float64(n), nil
}

// oneRequest writes req on c and reads a 200 response, leaving c open.
func oneRequest(c net.Conn, req string) error {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	defer func() { _ = c.SetDeadline(time.Time{}) }()
	if _, err := io.WriteString(c, req); err != nil {
		return err
	}
	// The reader is dropped with its buffer once the body is read: the
	// connection stays idle and no further byte is expected on it.
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("answered %d", resp.StatusCode)
	}
	if resp.Close {
		return errors.New("the server closed the connection after one request")
	}
	return nil
}
