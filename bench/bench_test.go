package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMain lets the test binary serve as the reference proxy subprocess,
// as the harness binary does.
func TestMain(m *testing.M) {
	if up := os.Getenv(referenceEnv); up != "" {
		if err := runReference(up); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestQuick runs the whole harness in quick mode against a freshly built
// gateway. It checks only that every mode answered 200 and that the summary
// lines are well formed; figures depend on the machine and are never
// asserted.
func TestQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the gateway; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, []string{"--quick"}, &out)
	t.Logf("output:\n%s", out.String())
	if err != nil {
		t.Fatalf("run(--quick) = %v", err)
	}
	lines := map[string]string{}
	for _, l := range strings.Split(out.String(), "\n") {
		if k, _, ok := strings.Cut(l, ": "); ok && strings.HasPrefix(k, "bench-") {
			lines[k] = l
		}
	}
	num := `(?:[0-9]+(?:\.[0-9]+)?|na)`
	for _, c := range []struct {
		key  string
		want *regexp.Regexp
	}{
		{"bench-check", regexp.MustCompile(`^bench-check: bare=200 tuned=200 public=200 hs256=200 apikey=200 rs256=(?:200|na) es256=(?:200|na)$`)},
		{"bench-ratios", regexp.MustCompile(`^bench-ratios: public=` + num + ` hs256=` + num + ` apikey=` + num + ` rs256=` + num + ` es256=` + num + `$`)},
		{"bench-flood", regexp.MustCompile(`^bench-flood: ratio=` + num + ` limited=` + num + ` bcrypt=` + num + `$`)},
		{"bench-memory", regexp.MustCompile(`^bench-memory: idle_mb=` + num + ` peak_mb=` + num + ` limiter_1m_mb=` + num + `( limiter_ips=[0-9]+ limiter_mb=` + num + `)?$`)},
	} {
		t.Run(c.key, func(t *testing.T) {
			got, ok := lines[c.key]
			if !ok {
				t.Fatalf("no %s line in the output", c.key)
			}
			if !c.want.MatchString(got) {
				t.Errorf("%q does not match %s", got, c.want)
			}
		})
	}
	// The summary lines come last, in this order, for scripts that tail.
	all := strings.Split(strings.TrimSpace(out.String()), "\n")
	if n := len(all); n < 3 || !strings.HasPrefix(all[n-3], "bench-ratios:") ||
		!strings.HasPrefix(all[n-2], "bench-flood:") || !strings.HasPrefix(all[n-1], "bench-memory:") {
		t.Errorf("the last three lines are not bench-ratios, bench-flood, bench-memory")
	}
}

func TestHistogramQuantile(t *testing.T) {
	for _, c := range []struct {
		name   string
		values []time.Duration
		q      float64
		want   time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one value", []time.Duration{time.Millisecond}, 0.99, time.Millisecond},
		{"median of 1..100ms", seq(100, time.Millisecond), 0.5, 50 * time.Millisecond},
		{"p99 of 1..100ms", seq(100, time.Millisecond), 0.99, 99 * time.Millisecond},
		{"p99.9 of 1..1000us", seq(1000, time.Microsecond), 0.999, 999 * time.Microsecond},
		{"small exact values", []time.Duration{3, 5, 7}, 0.5, 5},
	} {
		t.Run(c.name, func(t *testing.T) {
			var h histogram
			for _, v := range c.values {
				h.record(v)
			}
			got := h.quantile(c.q)
			if d := math.Abs(float64(got-c.want)) / math.Max(1, float64(c.want)); d > 1.0/64 {
				t.Errorf("quantile(%v) = %v, want %v within 1/64", c.q, got, c.want)
			}
		})
	}
}

func seq(n int, unit time.Duration) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(i+1) * unit
	}
	return out
}

func TestHistogramBuckets(t *testing.T) {
	prev := -1
	for _, v := range []uint64{0, 1, 127, 128, 129, 255, 256, 1000, 1 << 20, 1<<40 + 12345, histMaxValue - 1, histMaxValue, math.MaxUint64} {
		t.Run(time.Duration(min(v, math.MaxInt64)).String(), func(t *testing.T) {
			i := bucketOf(v)
			if i < prev || i >= histBuckets {
				t.Fatalf("bucketOf(%d) = %d, want monotonic and below %d", v, i, histBuckets)
			}
			prev = i
			if v < histMaxValue {
				if got := bucketValue(i); math.Abs(float64(got)-float64(v)) > float64(v)/64+1 {
					t.Errorf("bucketValue(bucketOf(%d)) = %d, want within 1/64", v, got)
				}
			}
		})
	}
}

func TestHistogramMerge(t *testing.T) {
	var a, b histogram
	a.record(time.Millisecond)
	b.record(3 * time.Millisecond)
	b.record(3 * time.Millisecond)
	a.merge(&b)
	if a.total != 3 {
		t.Errorf("merged total = %d, want 3", a.total)
	}
	if got := a.quantile(0.5); got < 2*time.Millisecond {
		t.Errorf("merged median = %v, want about 3ms", got)
	}
}

func TestParseWrk(t *testing.T) {
	for _, c := range []struct {
		name    string
		out     string
		want    loadResult
		wantErr bool
	}{
		{
			name: "done hook line",
			out:  "Running 1s test\n  Latency 1ms\nBENCH requests=1000 duration_us=1000000 errors=2 status_errors=10 p50_us=500 p99_us=2000 p999_us=4000\n",
			want: loadResult{Requests: 990, Non200: 10, Errors: 2, Elapsed: time.Second, P50: 500 * time.Microsecond, P99: 2 * time.Millisecond, P999: 4 * time.Millisecond},
		},
		{name: "no line", out: "Running 1s test\n", wantErr: true},
		{name: "missing field", out: "BENCH requests=1 duration_us=1\n", wantErr: true},
		{name: "bad number", out: "BENCH requests=x duration_us=1 errors=0 status_errors=0 p50_us=1 p99_us=1 p999_us=1\n", wantErr: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseWrk(c.out)
			if (err != nil) != c.wantErr {
				t.Fatalf("parseWrk() error = %v, want error %v", err, c.wantErr)
			}
			if got != c.want {
				t.Errorf("parseWrk() = %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestParseMemStatus(t *testing.T) {
	for _, c := range []struct {
		name    string
		in      string
		want    memStatus
		wantErr bool
	}{
		{"both", "Name:\tauthgate\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nThreads:\t7\n", memStatus{RSS: 10 << 20, HWM: 20 << 20}, false},
		{"missing hwm", "VmRSS:\t 1 kB\n", memStatus{RSS: 1 << 10}, true},
		{"bad unit", "VmRSS:\t 1 MB\nVmHWM:\t 1 kB\n", memStatus{}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseMemStatus([]byte(c.in))
			if (err != nil) != c.wantErr {
				t.Fatalf("parseMemStatus() error = %v, want error %v", err, c.wantErr)
			}
			if !c.wantErr && got != c.want {
				t.Errorf("parseMemStatus() = %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestParseFlags(t *testing.T) {
	for _, c := range []struct {
		name    string
		args    []string
		check   func(settings) bool
		wantErr bool
	}{
		{"defaults", nil, func(s settings) bool {
			return s.Duration == 5*time.Second && s.Rounds == 5 && s.Concurrency == 32 && len(s.Modes) == 7 && s.LimiterIPs == 1_000_000
		}, false},
		{"quick", []string{"--quick"}, func(s settings) bool {
			return s.Duration == time.Second && s.Rounds == 1 && s.Concurrency == 8 && s.LimiterIPs == 20_000
		}, false},
		{"quick keeps explicit flags", []string{"--quick", "--rounds=3", "--concurrency", "4"}, func(s settings) bool {
			return s.Rounds == 3 && s.Concurrency == 4 && s.Duration == time.Second
		}, false},
		{"modes keep canonical order", []string{"--modes=hs256,bare,hs256"}, func(s settings) bool {
			return strings.Join(s.Modes, ",") == "bare,hs256"
		}, false},
		{"unknown mode", []string{"--modes=bare,rs512"}, nil, true},
		{"bad loadgen", []string{"--loadgen=ab"}, nil, true},
		{"zero rounds", []string{"--rounds=0"}, nil, true},
		{"stray argument", []string{"extra"}, nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := parseFlags(c.args, io.Discard)
			if (err != nil) != c.wantErr {
				t.Fatalf("parseFlags(%q) error = %v, want error %v", c.args, err, c.wantErr)
			}
			if c.check != nil && !c.check(s) {
				t.Errorf("parseFlags(%q) = %+v", c.args, s)
			}
		})
	}
}

func TestSummaryLines(t *testing.T) {
	for _, c := range []struct {
		name string
		got  string
		want string
	}{
		{"ratios with na", ratiosLine([]string{"bare", "public", "hs256"}, map[string]float64{"public": 0.974, "hs256": 0.9, "rs256": nan()}),
			"bench-ratios: public=0.97 hs256=0.90 apikey=na rs256=na es256=na"},
		{"ratio of unselected mode", ratiosLine([]string{"bare"}, map[string]float64{"public": 1}),
			"bench-ratios: public=na hs256=na apikey=na rs256=na es256=na"},
		{"flood worst of both", floodReport{Limited: 0.95, Bcrypt: 0.781}.line(), "bench-flood: ratio=0.78 limited=0.95 bcrypt=0.78"},
		{"flood one variant", floodReport{Limited: nan(), Bcrypt: 0.5}.line(), "bench-flood: ratio=0.50 limited=na bcrypt=0.50"},
		{"flood none", floodReport{Limited: nan(), Bcrypt: nan()}.line(), "bench-flood: ratio=na limited=na bcrypt=na"},
		{"memory full drive", memoryLine(14, 40.04, 62, 1_000_000), "bench-memory: idle_mb=14.0 peak_mb=40.0 limiter_1m_mb=62.0"},
		{"memory short drive", memoryLine(14, 40, 20, 20_000), "bench-memory: idle_mb=14.0 peak_mb=40.0 limiter_1m_mb=na limiter_ips=20000 limiter_mb=20.0"},
		{"memory no drive", memoryLine(14, 40, nan(), 0), "bench-memory: idle_mb=14.0 peak_mb=40.0 limiter_1m_mb=na"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.got != c.want {
				t.Errorf("got %q, want %q", c.got, c.want)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}, {[]float64{7}, 7}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	if got := median(nil); !math.IsNaN(got) {
		t.Errorf("median(nil) = %v, want NaN", got)
	}
}

func TestParseMetric(t *testing.T) {
	text := "# HELP go_memstats_heap_inuse_bytes x\n# TYPE go_memstats_heap_inuse_bytes gauge\ngo_memstats_heap_inuse_bytes 8.937472e+06\nother 1\n"
	for _, c := range []struct {
		name, metric string
		want         uint64
		wantErr      bool
	}{
		{"exponent form", "go_memstats_heap_inuse_bytes", 8937472, false},
		{"missing", "go_memstats_heap_sys_bytes", 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseMetric(text, c.metric)
			if (err != nil) != c.wantErr || got != c.want {
				t.Errorf("parseMetric(%q) = %d, %v; want %d, error %v", c.metric, got, err, c.want, c.wantErr)
			}
		})
	}
}

func TestSpread(t *testing.T) {
	if got := spread([]float64{90, 100, 110}); math.Abs(got-0.2) > 1e-9 {
		t.Errorf("spread(90,100,110) = %v, want 0.2", got)
	}
	if got := spread(nil); !math.IsNaN(got) {
		t.Errorf("spread(nil) = %v, want NaN", got)
	}
}

func TestIsLoopbackURL(t *testing.T) {
	for _, c := range []struct {
		in   string
		want bool
	}{
		{"http://127.0.0.1:8080", true},
		{"http://[::1]:80", true},
		{"http://10.0.0.1:80", false},
		{"https://127.0.0.1:80", false},
		{"http://localhost:80", false},
		{"http://127.0.0.1", false},
	} {
		if got := isLoopbackURL(c.in); got != c.want {
			t.Errorf("isLoopbackURL(%q) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestAddrFrom(t *testing.T) {
	base := netip.MustParseAddr("10.0.0.1")
	for _, c := range []struct {
		i    uint32
		want string
	}{{0, "10.0.0.1"}, {255, "10.0.1.0"}, {999_999, "10.15.66.64"}} {
		if got := addrFrom(base, c.i).String(); got != c.want {
			t.Errorf("addrFrom(10.0.0.1, %d) = %s, want %s", c.i, got, c.want)
		}
	}
}

func TestWithoutEnv(t *testing.T) {
	got := withoutEnv([]string{"A=1", "AUTHGATE_X=2", "AUTHGATE_Y=3", "GOFLAGS=-race", "B=4"}, "AUTHGATE_*", "GOFLAGS")
	if strings.Join(got, " ") != "A=1 B=4" {
		t.Errorf("withoutEnv() = %q, want [A=1 B=4]", got)
	}
}

// fakeLogin is a login endpoint that records the client addresses it saw
// and answers like the gateway's limiter: 400 for the first attempts of a
// username, 429 after.
type fakeLogin struct {
	mu    sync.Mutex
	addrs map[string]bool
	users map[string]int
}

func (f *fakeLogin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != loginPath || r.ParseForm() != nil || r.PostForm.Get("password") != "wrong" {
		http.Error(w, "unexpected request", http.StatusTeapot)
		return
	}
	f.mu.Lock()
	f.addrs[r.Header.Get("X-Forwarded-For")] = true
	user := r.PostForm.Get("username")
	f.users[user]++
	n := f.users[user]
	f.mu.Unlock()
	if n > 5 {
		w.WriteHeader(http.StatusTooManyRequests)
		return
	}
	w.WriteHeader(http.StatusBadRequest)
	_, _ = io.WriteString(w, `{"error":"invalid_grant"}`)
}

func TestDriveLimiterSendsDistinctAddresses(t *testing.T) {
	f := &fakeLogin{addrs: map[string]bool{}, users: map[string]int{}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	const n = 2000
	got, err := driveLimiter(context.Background(), io.Discard, srv.URL, n, time.Minute)
	srv.Close() // waits for handlers still running
	if err != nil || got != n {
		t.Fatalf("driveLimiter(%d) = %d, %v; want %d, nil", n, got, err, n)
	}
	if len(f.addrs) != n || len(f.users) != 1 {
		t.Errorf("server saw %d addresses and %d usernames, want %d and 1", len(f.addrs), len(f.users), n)
	}
}

func TestRunFloodVariants(t *testing.T) {
	for _, c := range []struct {
		name      string
		distinct  bool
		wantUsers func(int) bool
	}{
		{"limited uses one user and no forwarded address", false, func(n int) bool { return n == 1 }},
		{"distinct uses a fresh user per attempt", true, func(n int) bool { return n > 1 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := &fakeLogin{addrs: map[string]bool{}, users: map[string]int{}}
			srv := httptest.NewServer(f)
			defer srv.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			counts := runFlood(ctx, srv.URL, 4, c.distinct)
			srv.Close() // cancelled attempts may still be in the handler
			if counts[http.StatusTeapot] != 0 || counts[0] != 0 {
				t.Errorf("runFlood() answers %s, want no 418 and no errors", counts)
			}
			if !c.wantUsers(len(f.users)) {
				t.Errorf("server saw %d usernames", len(f.users))
			}
			if !c.distinct && !f.addrs[""] {
				t.Errorf("limited flood sent X-Forwarded-For")
			}
		})
	}
}

func TestProbeLogin(t *testing.T) {
	for _, c := range []struct {
		name    string
		handler http.HandlerFunc
		feats   features
		want    bool
	}{
		{"token endpoint", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":"invalid_grant"}`)
		}, features{Users: true}, true},
		{"policy denial", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":"unauthorized"}`)
		}, features{Users: true}, false},
		{"users not configured", nil, features{}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(c.handler)
			defer srv.Close()
			if got, note := probeLogin(context.Background(), srv.URL, c.feats); got != c.want {
				t.Errorf("probeLogin() = %v (%s), want %v", got, note, c.want)
			}
		})
	}
}

func TestGoLoadgenCountsStatuses(t *testing.T) {
	var mu sync.Mutex
	var seen int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen++
		odd := seen%2 == 1
		mu.Unlock()
		if r.Header.Get("X-Test") != "yes" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if odd {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, upstreamBody)
	}))
	defer srv.Close()
	res, err := goLoadgen{}.Run(context.Background(), target{URL: srv.URL, Headers: http.Header{"X-Test": {"yes"}}}, 2, 200*time.Millisecond)
	if err != nil {
		t.Fatalf("Run() = %v", err)
	}
	if res.Requests == 0 || res.Non200 == 0 || res.Errors != 0 || res.P50 <= 0 || res.RPS() <= 0 {
		t.Errorf("Run() = %+v, want both 200s and 503s, no errors, positive latency", res)
	}
}
