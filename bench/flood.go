package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// nan is the "not available" value; it prints as na.
func nan() float64 { return math.NaN() }

// fmtNum prints x with prec decimals, or na for NaN and infinities.
func fmtNum(x float64, prec int) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "na"
	}
	return strconv.FormatFloat(x, 'f', prec, 64)
}

// fmtLatency prints seconds as milliseconds.
func fmtLatency(sec float64) string {
	if math.IsNaN(sec) {
		return "na"
	}
	return strconv.FormatFloat(sec*1e3, 'f', 2, 64) + "ms"
}

// addrFrom returns the i-th address of the IPv4 block starting at base.
func addrFrom(base netip.Addr, i uint32) netip.Addr {
	b := base.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += i
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// loginBody is a wrong-password login form for username.
func loginBody(username string) string {
	return url.Values{"username": {username}, "password": {"wrong"}}.Encode()
}

// postLogin sends one login attempt and returns its status.
func postLogin(ctx context.Context, c *http.Client, gwURL, username, xff string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, gwURL+loginPath, strings.NewReader(loginBody(username)))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(b), nil
}

// probeLogin checks that the gateway serves its login endpoint: a wrong
// password must be answered by the token endpoint (an OAuth
// invalid_grant), not by the policy or a 404.
func probeLogin(ctx context.Context, gwURL string) error {
	c := &http.Client{Timeout: 10 * time.Second, Transport: newClientTransport(1)}
	defer c.CloseIdleConnections()
	status, body, err := postLogin(ctx, c, gwURL, benchUser, "")
	switch {
	case err != nil:
		return fmt.Errorf("bench: login probe: %w", err)
	case strings.Contains(body, `"invalid_grant"`):
		return nil
	default:
		return fmt.Errorf("bench: POST %s answered %d %q, not an OAuth invalid_grant", loginPath, status, strings.TrimSpace(body))
	}
}

// statusCounts counts responses by status; 0 counts transport errors.
type statusCounts map[int]uint64

func (s statusCounts) String() string {
	keys := make([]int, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	var f []string
	for _, k := range keys {
		name := strconv.Itoa(k)
		if k == 0 {
			name = "error"
		}
		f = append(f, fmt.Sprintf("%s:%d", name, s[k]))
	}
	return strings.Join(f, " ")
}

// runFlood keeps clients login attempts in flight until ctx ends. With
// distinct set, every attempt comes from a fresh client address (through
// X-Forwarded-For from the trusted harness) for a fresh unknown username,
// so neither limiter stops it and each one costs a bcrypt compare: a
// distributed credential-stuffing flood. Without it, every attempt is the
// same client guessing alice's password, which the limiter answers 429.
func runFlood(ctx context.Context, gwURL string, clients int, distinct bool) statusCounts {
	tr := newClientTransport(clients)
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	base := netip.MustParseAddr("100.64.0.1")
	var next atomic.Uint32
	var mu sync.Mutex
	total := statusCounts{}
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			local := statusCounts{}
			for ctx.Err() == nil {
				user, xff := benchUser, ""
				if distinct {
					i := next.Add(1)
					user, xff = "flood-"+strconv.FormatUint(uint64(i), 10), addrFrom(base, i%(1<<22)).String()
				}
				status, _, err := postLogin(ctx, c, gwURL, user, xff)
				if err != nil {
					if ctx.Err() != nil {
						break
					}
					status = 0
				}
				local[status]++
			}
			mu.Lock()
			for k, v := range local {
				total[k] += v
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	return total
}

// floodReport holds the flood ratios; NaN is not measured.
type floodReport struct {
	Limited, Bcrypt float64
}

// line is the machine-readable bench-flood line: ratio is the worse of
// the two variants.
func (f floodReport) line() string {
	ratio := nan()
	for _, r := range []float64{f.Limited, f.Bcrypt} {
		if !math.IsNaN(r) && (math.IsNaN(ratio) || r < ratio) {
			ratio = r
		}
	}
	return fmt.Sprintf("bench-flood: ratio=%s limited=%s bcrypt=%s", fmtNum(ratio, 2), fmtNum(f.Limited, 2), fmtNum(f.Bcrypt, 2))
}

// measureFlood measures HS256 throughput with and without each login flood
// variant, in alternating pairs, and prints what the flood received.
func measureFlood(ctx context.Context, out io.Writer, lg loadgen, s settings, gwURL string, hs *target) (floodReport, error) {
	rep := floodReport{}
	opts := runOpts{Concurrency: s.Concurrency, Duration: s.FloodDuration}
	for _, distinct := range []bool{false, true} {
		var base, with []float64
		counts := statusCounts{}
		for range s.FloodPairs {
			r, err := lg.Run(ctx, hs, opts)
			if err != nil {
				return rep, err
			}
			base = append(base, r.RPS())
			fctx, stop := context.WithCancel(ctx)
			var got statusCounts
			done := make(chan struct{})
			go func() {
				got = runFlood(fctx, gwURL, s.FloodClients, distinct)
				close(done)
			}()
			r, err = lg.Run(ctx, hs, opts)
			stop()
			<-done
			if err != nil {
				return rep, err
			}
			with = append(with, r.RPS())
			for k, v := range got {
				counts[k] += v
			}
		}
		ratio := median(with) / median(base)
		name := "limited"
		desc := "one client address, user alice"
		if distinct {
			name, desc = "bcrypt", "fresh client address and unknown username per attempt"
			rep.Bcrypt = ratio
		} else {
			rep.Limited = ratio
		}
		fmt.Fprintf(out, "flood %-7s (%d clients, %s): hs256 %.0f -> %.0f req/s, ratio %s; login answers: %s\n",
			name, s.FloodClients, desc, median(base), median(with), fmtNum(ratio, 2), counts)
	}
	return rep, nil
}

// driveLimiter sends one wrong-password login from each of n distinct
// client addresses (X-Forwarded-For from the trusted harness), all for one
// username. The per-address bucket is taken first, then the username's
// bucket, which is exhausted after its burst, so almost every attempt is
// answered 429 before any bcrypt work and the drive measures the limiter's
// memory, not bcrypt. It returns how many addresses were driven; fewer
// than n when maxDur ran out.
func driveLimiter(ctx context.Context, out io.Writer, gwURL string, n int, maxDur time.Duration) (int, error) {
	const workers = 64
	dctx, cancel := context.WithTimeout(ctx, maxDur)
	defer cancel()
	tr := newClientTransport(workers)
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	base := netip.MustParseAddr("10.0.0.1")
	var next, driven atomic.Int64
	var mu sync.Mutex
	total := statusCounts{}
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			local := statusCounts{}
			for dctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(n) {
					break
				}
				status, _, err := postLogin(dctx, c, gwURL, limiterUser, addrFrom(base, uint32(i)).String())
				if err != nil {
					if dctx.Err() != nil {
						break
					}
					status = 0
				}
				local[status]++
				driven.Add(1)
			}
			mu.Lock()
			for k, v := range local {
				total[k] += v
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("bench: limiter drive: %w", err)
	}
	got := int(driven.Load())
	el := time.Since(start)
	fmt.Fprintf(out, "limiter drive: %d distinct client addresses in %s (%.0f req/s); answers: %s\n",
		got, el.Round(time.Millisecond), float64(got)/el.Seconds(), total)
	if got < n {
		fmt.Fprintf(out, "note: limiter drive stopped after %s at %d of %d addresses\n", maxDur, got, n)
	}
	return got, nil
}
