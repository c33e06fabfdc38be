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
		if err := runReference(os.Getenv(referenceKindEnv), up); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestSmoke runs the whole harness in smoke mode against a freshly built
// gateway: every mode once, with the checks a full run makes. It fails when
// any mode answers anything but 200, is counted by the gateway under
// another authentication method (a feature silently off), or, for a cold
// mode, hits the verified-token cache. Figures depend on the machine and
// are never asserted; the summary lines' shape is.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the gateway, nginx and the references; skipped with -short")
	}
	requireTool(t, "nginx", func() error { _, err := nginxBinary(); return err })
	// Without redis-server the Redis modes are left out (the run fails
	// under CI=true instead, as the harness does).
	_, err := redisBinary()
	haveRedis := err == nil
	if !haveRedis && os.Getenv("CI") == "true" {
		t.Fatalf("redis-server is required under CI: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err = run(ctx, []string{"--smoke"}, &out)
	t.Logf("output:\n%s", out.String())
	if err != nil {
		t.Fatalf("run(--smoke) = %v", err)
	}
	lines := map[string]string{}
	for _, l := range strings.Split(out.String(), "\n") {
		if k, _, ok := strings.Cut(l, ": "); ok && strings.HasPrefix(k, "bench-") {
			lines[k] = l
		}
	}
	num := `[0-9]+(?:\.[0-9]+)?`
	var check, ratios, cpu []string
	for _, spec := range modeTable() {
		m, v := spec.Name, num
		if spec.Needs == needsRedis && !haveRedis {
			v = "na" // left out, with a note
		} else {
			check = append(check, m+"=200")
		}
		if m != "tuned" {
			ratios = append(ratios, m+`\.tuned=`+v)
		}
		if m != "nginx" {
			ratios = append(ratios, m+`\.nginx=`+v)
		}
		cpu = append(cpu, m+"="+v)
	}
	for _, c := range []struct {
		key  string
		want *regexp.Regexp
	}{
		{"bench-check", regexp.MustCompile(`^bench-check: ` + strings.Join(check, " ") + `$`)},
		{"bench-ratios", regexp.MustCompile(`^bench-ratios: ` + strings.Join(ratios, " ") + `$`)},
		{"bench-cpu", regexp.MustCompile(`^bench-cpu: ` + strings.Join(cpu, " ") + `$`)},
		{"bench-flood", regexp.MustCompile(`^bench-flood: ratio=` + num + ` limited=` + num + ` bcrypt=` + num + `$`)},
		{"bench-memory", regexp.MustCompile(`^bench-memory: idle_mb=` + num + ` idle_anon_mb=` + num + ` conn_kib=-?` + num + ` conns=50 nginx_conn_kib=-?` + num + ` tuned_conn_kib=-?` + num +
			` peak_mb=` + num + ` limiter_1m_mb=na limiter_ips=300 limiter_mb=` + num + `$`)},
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
	want := []string{"bench-ratios:", "bench-cpu:", "bench-flood:", "bench-memory:"}
	if n := len(all); n < len(want) {
		t.Fatalf("output has %d lines", n)
	}
	for i, p := range want {
		if got := all[len(all)-len(want)+i]; !strings.HasPrefix(got, p) {
			t.Errorf("line %d from the end is %q, want %s", len(want)-i, got, p)
		}
	}
}

// requireTool skips the test when find reports the tool missing, or fails
// it when CI is set (CI installs every tool).
func requireTool(t *testing.T, name string, find func() error) {
	t.Helper()
	if err := find(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is required under CI: %v", name, err)
		}
		t.Skipf("%s is not installed: %v", name, err)
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
		{"all", "Name:\tauthgate\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nRssAnon:\t    4096 kB\nRssFile:\t    6144 kB\nThreads:\t7\n", memStatus{RSS: 10 << 20, HWM: 20 << 20, Anon: 4 << 20}, false},
		{"missing hwm", "VmRSS:\t 1 kB\nRssAnon:\t 1 kB\n", memStatus{}, true},
		{"missing anon", "VmRSS:\t 1 kB\nVmHWM:\t 1 kB\n", memStatus{}, true},
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
			return s.Duration == 5*time.Second && s.Rounds == 5 && s.Concurrency == 32 && len(s.Modes) == len(modeNames()) &&
				s.LimiterIPs == 1_000_000 && s.TokenCache == 10000 && s.IdleConns == 1000 && s.Loadgen == "auto"
		}, false},
		{"quick", []string{"--quick"}, func(s settings) bool {
			return s.Duration == time.Second && s.Rounds == 1 && s.Concurrency == 8 && s.LimiterIPs == 20_000 && s.TokenCache == 512
		}, false},
		{"smoke", []string{"--smoke"}, func(s settings) bool {
			return s.Requests == 200 && s.Loadgen == "go" && s.Rounds == 1 && s.TokenCache == 32 && s.BcryptCost == 10 && s.LimiterIPs == 300
		}, false},
		{"smoke keeps explicit flags", []string{"--smoke", "--requests=50", "--modes=hs256"}, func(s settings) bool {
			return s.Requests == 50 && strings.Join(s.Modes, ",") == "hs256"
		}, false},
		{"requests imply the go load generator", []string{"--requests=10"}, func(s settings) bool { return s.Loadgen == "go" }, false},
		{"requests with wrk", []string{"--requests=10", "--loadgen=wrk"}, nil, true},
		{"quick and smoke", []string{"--quick", "--smoke"}, nil, true},
		{"no token cache", []string{"--token-cache=0"}, nil, true},
		{"bcrypt cost below the users file minimum", []string{"--bcrypt-cost=4"}, nil, true},
		{"flood skipped", []string{"--flood-pairs=0"}, func(s settings) bool { return s.FloodPairs == 0 }, false},
		{"quick keeps explicit flags", []string{"--quick", "--rounds=3", "--concurrency", "4"}, func(s settings) bool {
			return s.Rounds == 3 && s.Concurrency == 4 && s.Duration == time.Second
		}, false},
		{"modes keep canonical order", []string{"--modes=rs256-cold,hs256,bare,hs256,nginx"}, func(s settings) bool {
			return strings.Join(s.Modes, ",") == "bare,nginx,hs256,rs256-cold"
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
	rows := []tableRow{
		{Name: "tuned", RPS: 100, CPU: 20, ToTuned: 1, ToNginx: 0.5},
		{Name: "nginx", RPS: 200, CPU: 10.04, ToTuned: 2, ToNginx: 1},
		{Name: "hs256", RPS: 97.4, CPU: 41.25, ToTuned: 0.974, ToNginx: 0.487},
		{Name: "rs256-cold", RPS: nan(), CPU: nan(), ToTuned: nan(), ToNginx: nan()},
	}
	for _, c := range []struct {
		name string
		got  string
		want string
	}{
		{"ratios to both references, na when not run", ratiosLine(rows),
			"bench-ratios: tuned.nginx=0.50 nginx.tuned=2.00 hs256.tuned=0.97 hs256.nginx=0.49 rs256-cold.tuned=na rs256-cold.nginx=na"},
		{"cpu per request", cpuLine(rows), "bench-cpu: tuned=20.0 nginx=10.0 hs256=41.2 rs256-cold=na"},
		{"flood worst of both", floodReport{Limited: 0.95, Bcrypt: 0.781}.line(), "bench-flood: ratio=0.78 limited=0.95 bcrypt=0.78"},
		{"flood one variant", floodReport{Limited: nan(), Bcrypt: 0.5}.line(), "bench-flood: ratio=0.50 limited=na bcrypt=0.50"},
		{"flood none", floodReport{Limited: nan(), Bcrypt: nan()}.line(), "bench-flood: ratio=na limited=na bcrypt=na"},
		{"memory full drive", memoryLine(memFigures{IdleMB: 14, IdleAnonMB: 5.04, ConnKiB: 23.04, Conns: 1000, NginxConnKiB: 1.9, TunedConnKiB: 18.06, PeakMB: 40.04, LimiterMB: 62, LimiterIPs: 1_000_000}),
			"bench-memory: idle_mb=14.0 idle_anon_mb=5.0 conn_kib=23.0 conns=1000 nginx_conn_kib=1.9 tuned_conn_kib=18.1 peak_mb=40.0 limiter_1m_mb=62.0"},
		{"memory short drive", memoryLine(memFigures{IdleMB: 14, IdleAnonMB: 5, ConnKiB: 20, Conns: 200, NginxConnKiB: nan(), TunedConnKiB: nan(), PeakMB: 40, LimiterMB: 20, LimiterIPs: 20_000}),
			"bench-memory: idle_mb=14.0 idle_anon_mb=5.0 conn_kib=20.0 conns=200 nginx_conn_kib=na tuned_conn_kib=na peak_mb=40.0 limiter_1m_mb=na limiter_ips=20000 limiter_mb=20.0"},
		{"memory no drive", memoryLine(memFigures{IdleMB: 14, IdleAnonMB: 5, ConnKiB: nan(), PeakMB: 40, NginxConnKiB: nan(), TunedConnKiB: nan(), LimiterMB: nan()}),
			"bench-memory: idle_mb=14.0 idle_anon_mb=5.0 conn_kib=na conns=0 nginx_conn_kib=na tuned_conn_kib=na peak_mb=40.0 limiter_1m_mb=na"},
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

func TestParseSamples(t *testing.T) {
	text := `# HELP go_memstats_heap_inuse_bytes x
# TYPE go_memstats_heap_inuse_bytes gauge
go_memstats_heap_inuse_bytes 8.937472e+06
authgate_requests_total{auth_method="jwt",code_class="2xx",decision="allow",reason="rule"} 7
authgate_requests_total{auth_method="none",code_class="2xx",decision="allow",reason="rule"} 2
authgate_requests_total{auth_method="jwt",code_class="4xx",decision="deny",reason="a \"quoted\", value"} 1 1700000000000
authgate_api_key_requests_total{key="bench-key-1"} 3
authgate_api_key_requests_total{key="bench-key-2"} 0
`
	snap, err := parseSamples(text)
	if err != nil {
		t.Fatalf("parseSamples() = %v", err)
	}
	for _, c := range []struct {
		name   string
		metric string
		match  map[string]string
		want   float64
	}{
		{"unlabelled in exponent form", "go_memstats_heap_inuse_bytes", nil, 8937472},
		{"every series", "authgate_requests_total", nil, 10},
		{"by two labels", "authgate_requests_total", map[string]string{"auth_method": "jwt", "decision": "allow"}, 7},
		{"escaped label value", "authgate_requests_total", map[string]string{"reason": `a "quoted", value`}, 1},
		{"missing metric", "authgate_token_cache_total", nil, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := snap.sum(c.metric, c.match); got != c.want {
				t.Errorf("sum(%s, %v) = %v, want %v", c.metric, c.match, got, c.want)
			}
		})
	}
	if got := snap.values("authgate_api_key_requests_total", "key"); len(got) != 2 || got["bench-key-1"] != 3 {
		t.Errorf("values(key) = %v, want bench-key-1=3 and bench-key-2=0", got)
	}
	for _, bad := range []string{"name_only", `m{a="unterminated} 1`, `m{a} 1`, "m one", "m 1 2 3"} {
		if _, err := parseSamples(bad + "\n"); err == nil {
			t.Errorf("parseSamples(%q) = nil error, want one", bad)
		}
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
		want    bool
	}{
		{"token endpoint", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":"invalid_grant"}`)
		}, true},
		{"policy denial", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":"unauthorized"}`)
		}, false},
		{"no login endpoint", http.NotFound, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(c.handler)
			defer srv.Close()
			if err := probeLogin(context.Background(), srv.URL); (err == nil) != c.want {
				t.Errorf("probeLogin() = %v, want success %v", err, c.want)
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
	res, err := goLoadgen{}.Run(context.Background(), &target{URL: srv.URL, Headers: http.Header{"X-Test": {"yes"}}}, runOpts{Concurrency: 2, Duration: 200 * time.Millisecond})
	if err != nil {
		t.Fatalf("Run() = %v", err)
	}
	if res.Requests == 0 || res.Non200 == 0 || res.Errors != 0 || res.P50 <= 0 || res.RPS() <= 0 {
		t.Errorf("Run() = %+v, want both 200s and 503s, no errors, positive latency", res)
	}
}
