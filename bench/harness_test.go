package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestRotationDealsSharesInTurn(t *testing.T) {
	vals := make([]string, 10)
	for i := range vals {
		vals[i] = fmt.Sprint(i)
	}
	r := &rotation{Header: "X", Values: vals}
	r.setStreams(3)
	for s, want := range [][]string{{"0", "3", "6", "9"}, {"1", "4", "7"}, {"2", "5", "8"}} {
		if got := r.share(s, 3); !slices.Equal(got, want) {
			t.Errorf("share(%d, 3) = %v, want %v", s, got, want)
		}
	}
	var got []string
	for range 9 {
		got = append(got, r.next(1))
	}
	if want := []string{"1", "4", "7", "1", "4", "7", "1", "4", "7"}; !slices.Equal(got, want) {
		t.Errorf("next(1) x9 = %v, want %v", got, want)
	}
	r.setStreams(3) // same streams: the cursors survive
	if got := r.next(0); got != "0" {
		t.Errorf("next(0) after setStreams(3) = %q, want 0", got)
	}
	if got := r.next(1); got != "1" {
		t.Errorf("next(1) continues at %q, want 1 (wrapped)", got)
	}
	r.setCursor(2, 2)
	if got := r.next(2); got != "8" {
		t.Errorf("next(2) after setCursor(2, 2) = %q, want 8", got)
	}
}

func TestColdPoolBeatsTheCache(t *testing.T) {
	for _, c := range []struct{ streams, cache, conc int }{{1, 32, 4}, {2, 512, 8}, {2, 10000, 32}, {4, 100, 64}} {
		f := &fixtures{Streams: c.streams, TokenCache: c.cache, Concurrency: c.conc}
		n := f.coldPoolSize()
		r := &rotation{Values: make([]string, n)}
		for s := range c.streams {
			// Between two uses of a token its stream stores share-1 others;
			// in-flight reordering may cost 2*concurrency of them.
			if share := len(r.share(s, c.streams)); share-1-2*c.conc < c.cache {
				t.Errorf("%+v: pool %d, stream %d share %d does not beat the cache", c, n, s, share)
			}
		}
	}
	if f := (&fixtures{Streams: 2, TokenCache: 10000, Concurrency: 32}); f.coldPoolSize()/2 <= 10000 {
		t.Errorf("default pool share %d does not beat the bearer issuer-choice cache of 10000", f.coldPoolSize()/2)
	}
}

func TestMergeYAML(t *testing.T) {
	docs := map[string][]byte{
		"base": []byte("roles: [user]\nrules:\n  - id: a\nlisten:\n  address: x\n"),
		"one":  []byte("roles: [user, admin]\nrules:\n  - id: b\nlisten:\n  admin_address: y\n"),
		"same": []byte("listen:\n  address: x\n"),
		"bad":  []byte("listen:\n  address: z\n"),
	}
	out, err := mergeYAML([]string{"base", "one", "same"}, docs)
	if err != nil {
		t.Fatalf("mergeYAML() = %v", err)
	}
	var got struct {
		Roles  []string            `yaml:"roles"`
		Rules  []map[string]string `yaml:"rules"`
		Listen map[string]string   `yaml:"listen"`
	}
	if err := yaml.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Roles, []string{"user", "admin"}) || len(got.Rules) != 2 || got.Rules[1]["id"] != "b" ||
		got.Listen["address"] != "x" || got.Listen["admin_address"] != "y" {
		t.Errorf("mergeYAML() = %+v", got)
	}
	_, err = mergeYAML([]string{"base", "bad"}, docs)
	if err == nil || !strings.Contains(err.Error(), "bad sets listen.address, which base already set") {
		t.Errorf("conflicting scalars: mergeYAML() = %v, want an error naming both", err)
	}
}

// TestModeTable checks the table's own consistency, so that a new mode
// cannot name a fragment that does not exist or forget its method.
func TestModeTable(t *testing.T) {
	seen := map[string]bool{}
	for _, m := range modeTable() {
		if seen[m.Name] {
			t.Errorf("mode %s: listed twice", m.Name)
		}
		seen[m.Name] = true
		if m.Doc == "" || m.Request == nil {
			t.Errorf("mode %s: no Doc or Request", m.Name)
		}
		switch {
		case m.Ref != "" && !slices.Contains([]string{"bare", "tuned", "nginx", grpcPlainRef}, m.Ref):
			t.Errorf("mode %s: unknown reference %q", m.Name, m.Ref)
		case m.Ref != "" && (m.Method != "" || len(m.Fragments) > 0 || m.Instance != ""):
			t.Errorf("mode %s: a reference has no gateway method, fragments or instance", m.Name)
		case m.Ref == "" && m.Method == "":
			t.Errorf("mode %s: a gateway mode needs the auth_method its requests are counted under", m.Name)
		}
		for _, f := range m.Fragments {
			if _, ok := fragmentTable[f]; !ok {
				t.Errorf("mode %s: unknown fragment %q", m.Name, f)
			}
		}
		if m.Needs != "" && m.Needs != needsRedis {
			t.Errorf("mode %s: needs %q, which the harness does not start", m.Name, m.Needs)
		}
		if m.GRPC && m.Ref == "" && (m.Instance == "" || m.Instance == mainInstance) {
			t.Errorf("mode %s: a gRPC mode needs an instance of its own (its upstream is the gRPC server)", m.Name)
		}
	}
	// A feature that changes every request keeps out of the main
	// instance, so the other modes measure what they did.
	for _, m := range modeTable() {
		for _, f := range m.Fragments {
			if env := fragmentTable[f].Env; len(env) > 0 && (m.Instance == "" || m.Instance == mainInstance) {
				t.Errorf("mode %s: fragment %s changes the gateway's environment, but the mode runs on the main instance", m.Name, f)
			}
		}
	}
	for _, want := range []string{"nginx", "tuned", "rs256-cold", "es256-cold", "eddsa-cold", "apikey-many",
		"assertion", "assertion-sign", "session", "session-redis", "conditions", "cel", "ratelimit", "grpc", "grpc-plain"} {
		if !seen[want] {
			t.Errorf("mode %s missing from the table", want)
		}
	}
}

// TestInstanceFiles renders every fragment with the base, as a run does,
// so a template or merge mistake in a fragment fails here and not after a
// minute of benchmarking.
func TestInstanceFiles(t *testing.T) {
	dir := t.TempDir()
	d := configData{Dir: dir, InstanceDir: filepath.Join(dir, "gw"), Upstream: "http://127.0.0.1:1", Addr: "127.0.0.1:2",
		AdminAddr: "127.0.0.1:3", Issuer: "http://127.0.0.1:4", JWKSURI: "http://127.0.0.1:4/jwks.json", TokenCache: 77}
	for name := range fragmentTable {
		t.Run(name, func(t *testing.T) {
			path, err := instanceFiles(d, []string{name})
			if err != nil {
				t.Fatalf("instanceFiles(%s) = %v", name, err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var cfg map[string]any
			if err := yaml.Unmarshal(b, &cfg); err != nil {
				t.Fatalf("config does not parse: %v\n%s", err, b)
			}
			if cfg["policy_file"] != filepath.Join(d.InstanceDir, "policy.yaml") || cfg["users_file"] == nil {
				t.Errorf("config lacks the base:\n%s", b)
			}
		})
	}
	path, err := instanceFiles(d, []string{"external-issuer", "api-key"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	for _, want := range []string{"token_cache_size: 77", "jwks_uri: http://127.0.0.1:4/jwks.json", "api_keys_file: " + dir + "/keys.yaml"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("config lacks %q:\n%s", want, b)
		}
	}
	if _, err := instanceFiles(d, []string{"api-key", "api-keys10k"}); err == nil {
		t.Errorf("two keys files in one instance: want a merge conflict")
	}
	if _, err := instanceFiles(d, []string{"no-such"}); err == nil {
		t.Errorf("unknown fragment: want an error")
	}
}

// snap builds a metrics snapshot from Prometheus text.
func snap(t *testing.T, text string) promSnapshot {
	t.Helper()
	s, err := parseSamples(text)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerifyMethodCatchesFallback(t *testing.T) {
	before := snap(t, `authgate_requests_total{auth_method="apikey",code_class="2xx",decision="allow",reason="rule"} 10`)
	for _, c := range []struct {
		name    string
		after   string
		wantErr string
	}{
		{"every request by the method", `authgate_requests_total{auth_method="apikey",code_class="2xx",decision="allow",reason="rule"} 110`, ""},
		{"a few cut off at the end", `authgate_requests_total{auth_method="apikey",code_class="2xx",decision="allow",reason="rule"} 110
authgate_requests_total{auth_method="apikey",code_class="5xx",decision="error",reason="upstream_canceled"} 3`, ""},
		{"fell back to anonymous", `authgate_requests_total{auth_method="apikey",code_class="2xx",decision="allow",reason="rule"} 10
authgate_requests_total{auth_method="none",code_class="2xx",decision="allow",reason="rule"} 100`, "counted 0 allowed 2xx requests by apikey"},
		{"redirected", `authgate_requests_total{auth_method="apikey",code_class="3xx",decision="allow",reason="rule"} 100
authgate_requests_total{auth_method="apikey",code_class="2xx",decision="allow",reason="rule"} 10`, "counted 0 allowed"},
		{"some denied", `authgate_requests_total{auth_method="apikey",code_class="2xx",decision="allow",reason="rule"} 110
authgate_requests_total{auth_method="apikey",code_class="4xx",decision="deny",reason="rule"} 50`, "50 requests that were not allowed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := verifyMethod(authMethodKey, before, snap(t, c.after), loadResult{Requests: 100}, 4)
			if c.wantErr == "" && err != nil {
				t.Errorf("verifyMethod() = %v, want nil", err)
			}
			if c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
				t.Errorf("verifyMethod() = %v, want %q", err, c.wantErr)
			}
		})
	}
}

func TestVerifyColdAndManyKeys(t *testing.T) {
	cache := func(hit, miss int) promSnapshot {
		return snap(t, fmt.Sprintf("authgate_token_cache_total{result=\"hit\"} %d\nauthgate_token_cache_total{result=\"miss\"} %d\n", hit, miss))
	}
	res := loadResult{Requests: 1000}
	if err := verifyCold(nil, cache(5, 5), cache(5, 1005), res); err != nil {
		t.Errorf("all misses: verifyCold() = %v", err)
	}
	if err := verifyCold(nil, cache(5, 5), cache(1000, 10), res); err == nil {
		t.Errorf("all hits (pool smaller than the cache): verifyCold() = nil, want an error")
	}
	if err := verifyCold(nil, cache(5, 5), cache(5, 500), res); err == nil {
		t.Errorf("fewer lookups than requests (not verified by the issuer): verifyCold() = nil, want an error")
	}

	keys := func(n int) promSnapshot {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "authgate_api_key_requests_total{key=\"k%d\"} 1\n", i)
		}
		return snap(t, b.String())
	}
	f := &fixtures{ManyKeys: make([]string, 10000)}
	if err := verifyManyKeys(f, keys(0), keys(900), res); err != nil {
		t.Errorf("900 keys for 1000 requests: verifyManyKeys() = %v", err)
	}
	if err := verifyManyKeys(f, keys(0), keys(1), res); err == nil {
		t.Errorf("one key for every request: verifyManyKeys() = nil, want an error")
	}
}

// TestCheckModesFailsOnFallback runs checkModes against a fake gateway
// that answers 200 but counts the requests as anonymous: the check must
// report the fallback instead of passing the mode.
func TestCheckModesFailsOnFallback(t *testing.T) {
	var served atomic.Int64
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		_, _ = io.WriteString(w, upstreamBody)
	}))
	defer gw.Close()
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "authgate_requests_total{auth_method=\"none\",code_class=\"2xx\",decision=\"allow\",reason=\"rule\"} %d\n", served.Load())
	}))
	defer admin.Close()
	in := &instance{Name: mainInstance, Data: configData{AdminAddr: strings.TrimPrefix(admin.URL, "http://")}}
	modes := []mode{
		{modeSpec: modeSpec{Name: "public", Method: authMethodNone}, Target: target{URL: gw.URL + publicPath}, Inst: in},
		{modeSpec: modeSpec{Name: "apikey", Method: authMethodKey}, Target: target{URL: gw.URL + apiPath}, Inst: in},
	}
	var out bytes.Buffer
	err := checkModes(context.Background(), &out, modes, &fixtures{})
	if err == nil || !strings.Contains(err.Error(), "mode apikey") || strings.Contains(err.Error(), "mode public") {
		t.Errorf("checkModes() = %v, want an error for apikey only", err)
	}
	if got := strings.TrimSpace(out.String()); got != "bench-check: public=200 apikey=fallback" {
		t.Errorf("checkModes() printed %q", got)
	}
}

// TestInstanceRefusedConfigFails: a gateway that rejects its config (a
// feature not built) fails the run and names the modes; no feature is
// turned off to make it start.
func TestInstanceRefusedConfigFails(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "authgate")
	script := "#!/bin/sh\necho 'config.yaml: unknown key \"issuers\"' >&2\nexit 1\n"
	if err := os.WriteFile(bin, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	in := &instance{Name: mainInstance, Modes: []string{"rs256", "rs256-cold"}, Fragments: []string{"external-issuer"},
		Data: configData{Dir: dir, InstanceDir: filepath.Join(dir, "gw"), Upstream: "http://127.0.0.1:1", Addr: "127.0.0.1:1",
			AdminAddr: "127.0.0.1:1", Issuer: "http://127.0.0.1:1", JWKSURI: "http://127.0.0.1:1/jwks.json", TokenCache: 1}}
	err := in.start(context.Background(), bin, "secret")
	if !errors.Is(err, errExited) || !strings.Contains(err.Error(), "rs256, rs256-cold") || !strings.Contains(err.Error(), `unknown key "issuers"`) {
		t.Errorf("start() = %v, want errExited naming the modes and the gateway's message", err)
	}
}

func TestParseStatCPU(t *testing.T) {
	// The command name may hold spaces and parentheses.
	line := "4242 (a (weird) name) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 1234 0 0\n"
	ticks, ppid, err := parseStatCPU([]byte(line))
	if err != nil || ticks != 325 || ppid != 17 {
		t.Errorf("parseStatCPU() = %d, %d, %v; want 325, 17, nil", ticks, ppid, err)
	}
	if _, _, err := parseStatCPU([]byte("4242 (x) S 1 2")); err == nil {
		t.Errorf("short stat: want an error")
	}
}

func TestCPUMeterReadsOwnProcess(t *testing.T) {
	m := newCPUMeter(os.Getpid(), false)
	c0, err := m.Read()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(100 * time.Millisecond)
	x := 0
	for time.Now().Before(deadline) {
		x++
	}
	c1, err := m.Read()
	if err != nil || c1 < c0 {
		t.Errorf("Read() = %v, %v after %v; want non-decreasing (spun %d)", c1, err, c0, x)
	}
	if clockTicks() <= 0 {
		t.Errorf("clockTicks() = %d", clockTicks())
	}
}

func TestParseWrkCursors(t *testing.T) {
	out := "BENCHCURSOR 1 7\nBENCHCURSOR 0 3\nBENCH requests=1 duration_us=1 errors=0 status_errors=0 p50_us=1 p99_us=1 p999_us=1\n"
	got, err := parseWrkCursors(out, 2)
	if err != nil || !slices.Equal(got, []int{3, 7}) {
		t.Errorf("parseWrkCursors() = %v, %v; want [3 7]", got, err)
	}
	for _, bad := range []string{"BENCHCURSOR 0 3\n", "BENCHCURSOR 0 3\nBENCHCURSOR 5 1\n", "BENCHCURSOR 0 x\nBENCHCURSOR 1 1\n"} {
		if _, err := parseWrkCursors(bad, 2); err == nil {
			t.Errorf("parseWrkCursors(%q) = nil error", bad)
		}
	}
}

// recorder is an upstream that records the values of one header.
type recorder struct {
	header string
	mu     sync.Mutex
	seen   []string
	conns  atomic.Int64
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc.mu.Lock()
	rc.seen = append(rc.seen, r.Header.Get(rc.header))
	rc.mu.Unlock()
	_, _ = io.WriteString(w, upstreamBody)
}

func (rc *recorder) server(t *testing.T) *httptest.Server {
	srv := httptest.NewUnstartedServer(rc)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			rc.conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

func TestGoLoadgenRequestsAndRotation(t *testing.T) {
	rc := &recorder{header: "X-Key"}
	srv := rc.server(t)
	rot := &rotation{Header: "X-Key", Values: []string{"a", "b", "c", "d", "e"}}
	tg := &target{URL: srv.URL, Headers: http.Header{"X-Static": {"s"}}, Rotate: rot}
	res, err := goLoadgen{}.Run(context.Background(), tg, runOpts{Concurrency: 3, Duration: 10 * time.Second, Requests: 52})
	if err != nil || res.Requests != 52 {
		t.Fatalf("Run() = %+v, %v; want 52 requests", res, err)
	}
	counts := map[string]int{}
	for _, v := range rc.seen {
		counts[v]++
	}
	// 52 requests over 5 values in turn: two values 11 times, three 10.
	for v, n := range counts {
		if n < 10 || n > 11 {
			t.Errorf("value %q sent %d times, want 10 or 11 (%v)", v, n, counts)
		}
	}
	if got := rot.next(0); got != "c" {
		t.Errorf("the next value after 52 requests is %q, want c: the cursor survives the run", got)
	}
}

// TestWrkRotation drives the real wrk with the rotation script: every
// value of the pool is sent, in equal measure, with the static headers,
// and the threads' cursors come back for the next run.
func TestWrkRotation(t *testing.T) {
	if testing.Short() {
		t.Skip("runs wrk for two seconds; skipped with -short")
	}
	requireTool(t, "wrk", func() error { _, err := newWrk(t.TempDir(), 2); return err })
	w, err := newWrk(t.TempDir(), 2)
	if err != nil {
		t.Fatal(err)
	}
	rc := &recorder{header: "X-Key"}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Static") != "s" {
			rw.WriteHeader(http.StatusBadRequest)
			return
		}
		rc.ServeHTTP(rw, r)
	}))
	srv.Start()
	defer srv.Close()
	vals := make([]string, 40)
	for i := range vals {
		vals[i] = fmt.Sprintf("v%02d", i)
	}
	rot := &rotation{Header: "X-Key", Values: vals}
	rot.setStreams(w.Streams(4))
	tg := &target{URL: srv.URL, Headers: http.Header{"X-Static": {"s"}}, Rotate: rot}
	for run := range 2 {
		res, err := w.Run(context.Background(), tg, runOpts{Concurrency: 4, Duration: time.Second})
		if err != nil || res.Requests == 0 || res.Non200 != 0 {
			t.Fatalf("run %d: Run() = %+v, %v", run, res, err)
		}
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	counts := map[string]int{}
	for _, v := range rc.seen {
		counts[v]++
	}
	if len(counts) != len(vals) {
		t.Fatalf("server saw %d distinct values, want %d", len(counts), len(vals))
	}
	for s := range 2 {
		share := rot.share(s, 2)
		lo, hi := len(rc.seen), 0
		for _, v := range share {
			lo, hi = min(lo, counts[v]), max(hi, counts[v])
		}
		// Each thread walks its share in turn, continuing where the last
		// run stopped: within a share, counts differ by at most one, plus
		// the requests a run's end leaves generated but never sent (at
		// most one per connection of the thread, per run).
		const runs, connsPerThread = 2, 2
		if hi-lo > 1+runs*connsPerThread {
			t.Errorf("stream %d: counts range %d..%d, want within %d", s, lo, hi, 1+runs*connsPerThread)
		}
		if c := rot.cursor(s); c < 0 || c >= len(share) {
			t.Errorf("stream %d: cursor %d outside its share of %d", s, c, len(share))
		}
	}
}

func TestIdleConnCost(t *testing.T) {
	rc := &recorder{header: "User-Agent"}
	srv := rc.server(t)
	_, err := idleConnCost(context.Background(), srv.URL+"/x", 20, os.Getpid, 10*time.Millisecond)
	if err != nil {
		t.Fatalf("idleConnCost() = %v", err)
	}
	if got := rc.conns.Load(); got != 20 {
		t.Errorf("server saw %d connections, want 20", got)
	}
	if len(rc.seen) != 20 {
		t.Errorf("server saw %d requests, want one per connection", len(rc.seen))
	}
	closing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
	}))
	defer closing.Close()
	if _, err := idleConnCost(context.Background(), closing.URL, 2, os.Getpid, 0); err == nil {
		t.Errorf("a server that closes every connection: want an error, not a figure for no idle connection")
	}
}

// TestNginxReference starts the nginx reference in front of a recording
// upstream: it proxies with keep-alive to the upstream, sets
// X-Forwarded-For, and its worker's CPU can be read.
func TestNginxReference(t *testing.T) {
	if testing.Short() {
		t.Skip("starts nginx; skipped with -short")
	}
	requireTool(t, "nginx", func() error { _, err := nginxBinary(); return err })
	rc := &recorder{header: "X-Forwarded-For"}
	up := rc.server(t)
	p, err := startNginx(context.Background(), t.TempDir(), strings.TrimPrefix(up.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	if len(childPIDs(p.PID())) != 1 {
		t.Errorf("nginx has %d workers, want 1", len(childPIDs(p.PID())))
	}
	res, err := goLoadgen{}.Run(context.Background(), &target{URL: p.URL + "/x"}, runOpts{Concurrency: 1, Duration: 10 * time.Second, Requests: 50})
	if err != nil || res.Requests != 50 {
		t.Fatalf("Run() = %+v, %v", res, err)
	}
	if got := rc.conns.Load(); got != 1 {
		t.Errorf("upstream saw %d connections for 50 sequential requests, want 1 (keep-alive)", got)
	}
	if rc.seen[0] != "127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q, want 127.0.0.1", rc.seen[0])
	}
	if _, err := newCPUMeter(p.PID(), true).Read(); err != nil {
		t.Errorf("cpu of nginx: %v", err)
	}
}

func TestResetPeak(t *testing.T) {
	if err := resetPeak(os.Getpid()); err != nil {
		t.Skipf("clear_refs not writable here: %v", err)
	}
	m, err := readMem(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Right after the reset the peak is the current RSS, give or take what
	// the runtime touched in between.
	if m.HWM < m.RSS || m.HWM-m.RSS > 8<<20 {
		t.Errorf("after resetPeak: VmHWM %d, VmRSS %d; want the peak reset to the RSS", m.HWM, m.RSS)
	}
}

func TestModeStatsFailed(t *testing.T) {
	for _, c := range []struct {
		name string
		res  loadResult
		want bool
	}{
		{"clean", loadResult{Requests: 100000}, false},
		{"a stalled request now and then", loadResult{Requests: 100000, Errors: 7}, false},
		{"many transport errors", loadResult{Requests: 100000, Errors: 500}, true},
		{"one non-200", loadResult{Requests: 100000, Non200: 1}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var st modeStats
			st.add(runRecord{Res: c.res})
			if got := st.failed(); got != c.want {
				t.Errorf("failed() = %v, want %v", got, c.want)
			}
		})
	}
}
