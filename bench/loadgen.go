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
	"sync/atomic"
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

// target is one thing to load: a URL, the headers every request carries
// and, optionally, a header whose value changes with every request.
type target struct {
	URL     string
	Headers http.Header
	Rotate  *rotation // nil: every request is the same
}

// rotation is a pool of values for one header that requests take in turn.
// The pool is dealt into streams (one per load-generator thread); each
// stream walks its share in order and wraps around, so between two uses
// of one value its stream has used every other value of its share. With a
// share larger than a cache, no request hits that cache. The cursors
// survive between runs, so a later round does not restart on values the
// cache still holds. It is safe for concurrent use.
type rotation struct {
	Header string
	Values []string

	mu      sync.Mutex
	cursors []int // per stream: the next index into the stream's share
}

// setStreams deals the pool into n streams, keeping the cursors when n is
// unchanged. A rotation used before setStreams has one stream.
func (r *rotation) setStreams(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.cursors) != n {
		r.cursors = make([]int, n)
	}
}

// share returns the values of stream s of n.
func (r *rotation) share(s, n int) []string {
	var out []string
	for i := s; i < len(r.Values); i += n {
		out = append(out, r.Values[i])
	}
	return out
}

// next returns the next value of stream s and advances its cursor.
func (r *rotation) next(s int) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.cursors) == 0 {
		r.cursors = make([]int, 1)
	}
	n := len(r.cursors)
	size := (len(r.Values) - s + n - 1) / n
	if size <= 0 {
		return r.Values[0] // a pool smaller than its streams; never built
	}
	i := r.cursors[s] % size
	r.cursors[s] = i + 1
	return r.Values[s+i*n]
}

// cursor returns stream s's cursor.
func (r *rotation) cursor(s int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cursors[s]
}

// setCursor sets stream s's cursor.
func (r *rotation) setCursor(s, c int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cursors[s] = c
}

// header returns the headers of the next request on stream s.
func (t *target) header(s int) http.Header {
	h := t.Headers.Clone()
	if h == nil {
		h = http.Header{}
	}
	if t.Rotate != nil {
		h.Set(t.Rotate.Header, t.Rotate.next(s))
	}
	return h
}

// runOpts shape one closed-loop run.
type runOpts struct {
	Concurrency int
	Duration    time.Duration // the run's length; with Requests, its limit
	Requests    int           // stop after this many requests; 0: run for Duration
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
	// Run keeps o.Concurrency requests in flight against t.
	Run(ctx context.Context, t *target, o runOpts) (loadResult, error)
	// Streams is the number of independent request sequences a run with
	// this concurrency has: a rotation is dealt into that many shares.
	Streams(concurrency int) int
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

// Streams is 1: every worker takes the next rotation value from one
// shared sequence.
func (goLoadgen) Streams(int) int { return 1 }

func (goLoadgen) Run(ctx context.Context, t *target, o runOpts) (loadResult, error) {
	tr := newClientTransport(o.Concurrency)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	type worker struct {
		hist             histogram
		ok, non200, errs uint64
	}
	workers := make([]*worker, o.Concurrency)
	var issued atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(o.Duration)
	for i := range workers {
		w := &worker{}
		workers[i] = w
		wg.Go(func() {
			for time.Now().Before(deadline) {
				if o.Requests > 0 && issued.Add(1) > int64(o.Requests) {
					return
				}
				req, err := http.NewRequestWithContext(runCtx, http.MethodGet, t.URL, nil)
				if err != nil {
					w.errs++
					return
				}
				req.Header = t.header(0)
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

// wrkDone is the done() hook of both wrk scripts: one machine-readable
// line with the 99.9th percentile that wrk's --latency output leaves out.
const wrkDone = `function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    local c = t:get("cursor")
    if c then io.write(string.format("BENCHCURSOR %d %d\n", t:get("id"), c)) end
  end
  local e = summary.errors
  io.write(string.format("BENCH requests=%d duration_us=%d errors=%d status_errors=%d p50_us=%d p99_us=%d p999_us=%d\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
`

// wrkSetup numbers the threads, so each takes its own share of a
// rotation, and keeps them for done().
const wrkSetup = `threads = {}
local counter = 0
function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end
`

// wrkRotate builds, in each thread, one request per value of the thread's
// share of a rotation (script arguments: values file, header, streams,
// then one start cursor per stream) and sends them in turn. Requests are
// built once in init, as wrk's documentation advises.
const wrkRotate = `function init(args)
  local file, header, streams = args[1], args[2], tonumber(args[3])
  local start = tonumber(args[4 + id])
  reqs = {}
  local n = 0
  for line in io.lines(file) do
    if n % streams == id then
      local h = {}
      for k, v in pairs(wrk.headers) do h[k] = v end
      h[header] = line
      table.insert(reqs, wrk.format(nil, nil, h))
    end
    n = n + 1
  end
  size = #reqs
  cursor = start % size
end

function request()
  local r = reqs[cursor + 1]
  cursor = (cursor + 1) % size
  return r
end
`

// wrkLoadgen drives the external wrk tool.
type wrkLoadgen struct {
	path    string // the wrk binary
	dir     string // where scripts and rotation files are written
	static  string // script for targets without a rotation
	rotate  string // script for targets with one
	threads int

	mu    sync.Mutex
	files map[*rotation]string // rotation values, one per line
}

// newWrk returns a wrk load generator if wrk is on PATH; its scripts are
// written into dir.
func newWrk(dir string, threads int) (*wrkLoadgen, error) {
	path, err := exec.LookPath("wrk")
	if err != nil {
		return nil, fmt.Errorf("bench: wrk: %w", err)
	}
	w := &wrkLoadgen{path: path, dir: dir, threads: max(1, threads), files: map[*rotation]string{},
		static: filepath.Join(dir, "bench.lua"), rotate: filepath.Join(dir, "bench-rotate.lua")}
	for name, body := range map[string]string{w.static: wrkSetup + wrkDone, w.rotate: wrkSetup + wrkRotate + wrkDone} {
		if err := os.WriteFile(name, []byte(body), 0o600); err != nil {
			return nil, fmt.Errorf("bench: wrk script: %w", err)
		}
	}
	return w, nil
}

func (w *wrkLoadgen) Name() string { return "wrk" }

// Streams is wrk's thread count: each thread walks its own share.
func (w *wrkLoadgen) Streams(concurrency int) int { return min(w.threads, concurrency) }

// rotationFile writes r's values once and returns the file.
func (w *wrkLoadgen) rotationFile(r *rotation) (string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if f, ok := w.files[r]; ok {
		return f, nil
	}
	for _, v := range r.Values {
		if strings.ContainsAny(v, "\r\n") {
			return "", errors.New("bench: wrk: a rotation value holds a line break")
		}
	}
	f := filepath.Join(w.dir, fmt.Sprintf("rotation-%d.txt", len(w.files)))
	if err := os.WriteFile(f, []byte(strings.Join(r.Values, "\n")+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("bench: wrk: %w", err)
	}
	w.files[r] = f
	return f, nil
}

func (w *wrkLoadgen) Run(ctx context.Context, t *target, o runOpts) (loadResult, error) {
	if o.Requests > 0 {
		return loadResult{}, errors.New("bench: wrk runs for a duration; a request count needs --loadgen=go")
	}
	secs := max(1, int(o.Duration.Round(time.Second)/time.Second))
	threads := w.Streams(o.Concurrency)
	script := w.static
	if t.Rotate != nil {
		script = w.rotate
	}
	args := []string{"-t", strconv.Itoa(threads), "-c", strconv.Itoa(o.Concurrency),
		"-d", strconv.Itoa(secs) + "s", "--latency", "-s", script}
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
	if r := t.Rotate; r != nil {
		file, err := w.rotationFile(r)
		if err != nil {
			return loadResult{}, err
		}
		r.setStreams(threads)
		args = append(args, "--", file, r.Header, strconv.Itoa(threads))
		for s := range threads {
			args = append(args, strconv.Itoa(r.cursor(s)))
		}
	}
	cmd := exec.CommandContext(ctx, w.path, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return loadResult{}, fmt.Errorf("bench: wrk: %w: %s", err, strings.TrimSpace(errOut.String()))
	}
	if r := t.Rotate; r != nil {
		cur, err := parseWrkCursors(out.String(), threads)
		if err != nil {
			return loadResult{}, err
		}
		for s, c := range cur {
			r.setCursor(s, c)
		}
	}
	return parseWrk(out.String())
}

// parseWrkCursors reads the BENCHCURSOR lines of a rotation run: the
// position each of the threads reached in its share.
func parseWrkCursors(out string, threads int) ([]int, error) {
	cur := make([]int, threads)
	seen := 0
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "BENCHCURSOR" {
			continue
		}
		id, err1 := strconv.Atoi(f[1])
		c, err2 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil || id < 0 || id >= threads || c < 0 {
			return nil, fmt.Errorf("bench: wrk: bad line %q", line)
		}
		cur[id] = c
		seen++
	}
	if seen != threads {
		return nil, fmt.Errorf("bench: wrk: %d cursor lines, want %d", seen, threads)
	}
	return cur, nil
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
