package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// histSubBits is the number of bits of sub-bucket resolution per power of
// two: 64 linear sub-buckets per octave, so a recorded value is off by at
// most 1/64 (about 1.6%) of itself.
const (
	histSubBits  = 6
	histSub      = 1 << histSubBits
	histLinear   = 2 * histSub // values below this have their own bucket
	histBuckets  = histLinear + 64*histSub
	histMaxValue = uint64(1) << 62
)

// histogram is a log-linear latency histogram in nanoseconds, in the
// spirit of HdrHistogram: exact below 128ns, then 64 buckets per power of
// two. The zero value is empty and ready to use. It is not safe for
// concurrent use; give each worker its own and merge them.
type histogram struct {
	counts [histBuckets]uint64
	total  uint64
}

// bucketOf returns the bucket index for the value v.
func bucketOf(v uint64) int {
	if v >= histMaxValue {
		v = histMaxValue - 1
	}
	n := bits.Len64(v)
	if n <= histSubBits+1 {
		return int(v)
	}
	shift := n - (histSubBits + 1)
	return shift*histSub + int(v>>shift)
}

// bucketValue returns a representative value (the midpoint) of bucket i.
func bucketValue(i int) uint64 {
	if i < histLinear {
		return uint64(i)
	}
	shift := i/histSub - 1
	m := uint64(i - shift*histSub)
	return m<<shift + (uint64(1)<<shift)/2
}

// record adds one observation.
func (h *histogram) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucketOf(uint64(d))]++
	h.total++
}

// merge adds every observation of o to h.
func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
}

// quantile returns the value at quantile q in [0,1], or 0 when empty.
func (h *histogram) quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := uint64(q*float64(h.total) + 0.5)
	if rank < 1 {
		rank = 1
	}
	if rank > h.total {
		rank = h.total
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(bucketValue(i))
		}
	}
	return time.Duration(bucketValue(histBuckets - 1))
}

// target is one thing to load: a URL and the headers every request carries.
type target struct {
	URL     string
	Headers http.Header
}

// loadResult is the outcome of one closed-loop run.
type loadResult struct {
	Requests uint64        // completed requests with status 200
	Non200   uint64        // completed requests with another status
	Errors   uint64        // transport errors
	Elapsed  time.Duration // wall time of the run
	P50      time.Duration
	P99      time.Duration
	P999     time.Duration
}

// RPS returns the rate of successful requests per second.
func (r loadResult) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// loadgen runs a closed-loop load against a target.
type loadgen interface {
	// Name is "go" or "wrk".
	Name() string
	// Run keeps concurrency requests in flight against t for d.
	Run(ctx context.Context, t target, concurrency int, d time.Duration) (loadResult, error)
}

// newClientTransport returns a transport for a load client that keeps one
// persistent connection per worker.
func newClientTransport(conns int) *http.Transport {
	return &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
}

// goLoadgen is the built-in load generator: one goroutine per connection,
// each recording latencies into its own histogram.
type goLoadgen struct{}

func (goLoadgen) Name() string { return "go" }

func (goLoadgen) Run(ctx context.Context, t target, concurrency int, d time.Duration) (loadResult, error) {
	tr := newClientTransport(concurrency)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	type worker struct {
		hist             histogram
		ok, non200, errs uint64
	}
	workers := make([]*worker, concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for i := range workers {
		w := &worker{}
		workers[i] = w
		wg.Go(func() {
			for time.Now().Before(deadline) {
				req, err := http.NewRequestWithContext(runCtx, http.MethodGet, t.URL, nil)
				if err != nil {
					w.errs++
					return
				}
				req.Header = t.Headers.Clone()
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					if runCtx.Err() != nil {
						return
					}
					w.errs++
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				w.hist.record(time.Since(t0))
				if resp.StatusCode == http.StatusOK {
					w.ok++
				} else {
					w.non200++
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all histogram
	res := loadResult{Elapsed: elapsed}
	for _, w := range workers {
		all.merge(&w.hist)
		res.Requests += w.ok
		res.Non200 += w.non200
		res.Errors += w.errs
	}
	res.P50, res.P99, res.P999 = all.quantile(0.50), all.quantile(0.99), all.quantile(0.999)
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("bench: load interrupted: %w", err)
	}
	return res, nil
}

// wrkScript prints one machine-readable line from wrk's done() hook, with
// the 99.9th percentile that wrk's --latency output leaves out.
const wrkScript = `done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH requests=%d duration_us=%d errors=%d status_errors=%d p50_us=%d p99_us=%d p999_us=%d\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
`

// wrkLoadgen drives the external wrk tool.
type wrkLoadgen struct {
	path    string // the wrk binary
	script  string // the done() hook script
	threads int
}

// newWrk returns a wrk load generator if wrk is on PATH; the script is
// written into dir.
func newWrk(dir string, threads int) (*wrkLoadgen, error) {
	path, err := exec.LookPath("wrk")
	if err != nil {
		return nil, fmt.Errorf("bench: wrk: %w", err)
	}
	script := filepath.Join(dir, "bench.lua")
	if err := os.WriteFile(script, []byte(wrkScript), 0o600); err != nil {
		return nil, fmt.Errorf("bench: wrk script: %w", err)
	}
	return &wrkLoadgen{path: path, script: script, threads: max(1, threads)}, nil
}

func (w *wrkLoadgen) Name() string { return "wrk" }

func (w *wrkLoadgen) Run(ctx context.Context, t target, concurrency int, d time.Duration) (loadResult, error) {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	args := []string{"-t", strconv.Itoa(min(w.threads, concurrency)), "-c", strconv.Itoa(concurrency),
		"-d", strconv.Itoa(secs) + "s", "--latency", "-s", w.script}
	keys := make([]string, 0, len(t.Headers))
	for k := range t.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range t.Headers[k] {
			args = append(args, "-H", k+": "+v)
		}
	}
	args = append(args, t.URL)
	cmd := exec.CommandContext(ctx, w.path, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return loadResult{}, fmt.Errorf("bench: wrk: %w: %s", err, strings.TrimSpace(errOut.String()))
	}
	return parseWrk(out.String())
}

// parseWrk reads the BENCH line the done() hook prints.
func parseWrk(out string) (loadResult, error) {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "BENCH ") {
			continue
		}
		v := map[string]uint64{}
		for _, f := range strings.Fields(line)[1:] {
			k, s, ok := strings.Cut(f, "=")
			if !ok {
				return loadResult{}, fmt.Errorf("bench: wrk: bad field %q", f)
			}
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return loadResult{}, fmt.Errorf("bench: wrk: field %q: %w", f, err)
			}
			v[k] = n
		}
		for _, k := range []string{"requests", "duration_us", "errors", "status_errors", "p50_us", "p99_us", "p999_us"} {
			if _, ok := v[k]; !ok {
				return loadResult{}, fmt.Errorf("bench: wrk: missing %s in %q", k, line)
			}
		}
		us := func(k string) time.Duration { return time.Duration(v[k]) * time.Microsecond }
		ok := v["requests"] - min(v["requests"], v["status_errors"])
		return loadResult{Requests: ok, Non200: v["status_errors"], Errors: v["errors"], Elapsed: us("duration_us"),
			P50: us("p50_us"), P99: us("p99_us"), P999: us("p999_us")}, nil
	}
	return loadResult{}, errors.New("bench: wrk: no BENCH line in output")
}
