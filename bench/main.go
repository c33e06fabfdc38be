// Command bench measures what authgate costs over a bare reverse proxy.
//
// It starts a small upstream in-process, a bare httputil.ReverseProxy (the
// reference) and authgate as subprocesses, so each proxy has a process and
// a Go scheduler of its own and the gateway's memory can be read from
// /proc, and
// drives closed-loop load through each mode, interleaving the modes in
// every round so machine noise hits them all alike. It then measures
// proxied throughput under a login flood and the gateway's memory after a
// million distinct client addresses hit the login limiter.
//
// The last three lines are machine readable:
//
//	bench-ratios: public=0.97 hs256=0.93 apikey=0.95 rs256=0.88 es256=0.87
//	bench-flood: ratio=0.78 limited=0.95 bcrypt=0.78
//	bench-memory: idle_mb=14.0 peak_mb=40.0 limiter_1m_mb=62.0
//
// A value the gateway cannot produce yet (a feature not built) is "na".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if up := os.Getenv(referenceEnv); up != "" {
		if err := runReference(up); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// allModes returns the benchmark modes in the order they run in every
// round. bare (ReverseProxy on the default transport) is the reference for
// every ratio; tuned is the same proxy with the gateway's idle pool size.
func allModes() []string {
	return []string{"bare", "tuned", "public", "hs256", "apikey", "rs256", "es256"}
}

// ratioModes returns the gateway modes of the bench-ratios line.
func ratioModes() []string { return []string{"public", "hs256", "apikey", "rs256", "es256"} }

// settings are the parsed flags.
type settings struct {
	Duration      time.Duration
	Rounds        int
	Concurrency   int
	Modes         []string
	Quick         bool
	Authgate      string
	Loadgen       string
	FloodClients  int
	FloodDuration time.Duration
	FloodPairs    int
	LimiterIPs    int
	LimiterMax    time.Duration
}

// parseFlags parses args. --quick changes the defaults of every flag not
// given explicitly.
func parseFlags(args []string, out io.Writer) (settings, error) {
	var s settings
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.DurationVar(&s.Duration, "duration", 5*time.Second, "duration of one mode in one round")
	fs.IntVar(&s.Rounds, "rounds", 5, "rounds; every round runs every mode once")
	fs.IntVar(&s.Concurrency, "concurrency", 32, "requests in flight (persistent connections)")
	modes := fs.String("modes", strings.Join(allModes(), ","), "comma-separated modes: "+strings.Join(allModes(), ","))
	fs.BoolVar(&s.Quick, "quick", false, "a run under a minute: 1 round of 1s, concurrency 8, short flood, 20k limiter addresses")
	fs.StringVar(&s.Authgate, "authgate", "", "authgate binary (default: go build it from the repository root)")
	fs.StringVar(&s.Loadgen, "loadgen", "auto", "load generator: auto (wrk if installed), wrk or go")
	fs.IntVar(&s.FloodClients, "flood-clients", 100, "concurrent clients in the login flood")
	fs.DurationVar(&s.FloodDuration, "flood-duration", 5*time.Second, "duration of each phase of the flood measurement")
	fs.IntVar(&s.FloodPairs, "flood-pairs", 3, "baseline/flood measurement pairs per flood variant")
	fs.IntVar(&s.LimiterIPs, "limiter-ips", 1_000_000, "distinct client addresses driven at the login limiter (0 skips)")
	fs.DurationVar(&s.LimiterMax, "limiter-max", 4*time.Minute, "give up the limiter drive after this long")
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	if fs.NArg() > 0 {
		return s, fmt.Errorf("bench: unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if s.Quick {
		quick := map[string]func(){
			"duration":       func() { s.Duration = time.Second },
			"rounds":         func() { s.Rounds = 1 },
			"concurrency":    func() { s.Concurrency = 8 },
			"flood-clients":  func() { s.FloodClients = 20 },
			"flood-duration": func() { s.FloodDuration = time.Second },
			"flood-pairs":    func() { s.FloodPairs = 1 },
			"limiter-ips":    func() { s.LimiterIPs = 20_000 },
			"limiter-max":    func() { s.LimiterMax = 15 * time.Second },
		}
		for name, apply := range quick {
			if !set[name] {
				apply()
			}
		}
	}
	var errs []error
	for _, m := range strings.Split(*modes, ",") {
		m = strings.TrimSpace(m)
		if !slices.Contains(allModes(), m) {
			errs = append(errs, fmt.Errorf("bench: --modes: unknown mode %q", m))
		} else if !slices.Contains(s.Modes, m) {
			s.Modes = append(s.Modes, m)
		}
	}
	// Keep the canonical order so rounds interleave the same way every run.
	order := allModes()
	slices.SortFunc(s.Modes, func(a, b string) int { return slices.Index(order, a) - slices.Index(order, b) })
	if s.Duration < 100*time.Millisecond {
		errs = append(errs, errors.New("bench: --duration must be at least 100ms"))
	}
	if s.Rounds < 1 || s.Concurrency < 1 || s.FloodClients < 1 || s.FloodPairs < 1 {
		errs = append(errs, errors.New("bench: --rounds, --concurrency, --flood-clients and --flood-pairs must be at least 1"))
	}
	switch s.Loadgen {
	case "auto", "wrk", "go":
	default:
		errs = append(errs, fmt.Errorf("bench: --loadgen: want auto, wrk or go, got %q", s.Loadgen))
	}
	return s, errors.Join(errs...)
}

// mode is one benchmark mode: what to request, or why it is unavailable.
type mode struct {
	Name   string
	Target target
	NA     string // non-empty: unavailable, and why
}

// modeStats are the per-round results of one mode.
type modeStats struct {
	rps, p50, p99, p999 []float64 // rps in req/s, latencies in seconds
	non200, errors      uint64
}

func (m *modeStats) add(r loadResult) {
	m.rps = append(m.rps, r.RPS())
	m.p50 = append(m.p50, r.P50.Seconds())
	m.p99 = append(m.p99, r.P99.Seconds())
	m.p999 = append(m.p999, r.P999.Seconds())
	m.non200 += r.Non200
	m.errors += r.Errors
}

// median returns the median of xs, or NaN when empty.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return nan()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// run is the whole benchmark; it writes the report to out.
func run(ctx context.Context, args []string, out io.Writer) error {
	s, err := parseFlags(args, out)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "authgate-bench-")
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(tmp)

	var lg loadgen = goLoadgen{}
	if s.Loadgen != "go" {
		w, err := newWrk(tmp, runtime.NumCPU())
		switch {
		case err == nil:
			lg = w
		case s.Loadgen == "wrk":
			return err
		}
	}

	bin := s.Authgate
	if bin == "" {
		wd, err := os.Getwd()
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		root, err := findRepoRoot(wd)
		if err != nil {
			return err
		}
		t0 := time.Now()
		if bin, err = buildAuthgate(ctx, root, tmp); err != nil {
			return err
		}
		fmt.Fprintf(out, "bench: built authgate in %s\n", time.Since(t0).Round(time.Millisecond))
	}

	creds, err := newCredentials()
	if err != nil {
		return err
	}
	upstream, err := startServer(upstreamHandler())
	if err != nil {
		return err
	}
	defer upstream.Close()
	ref, err := startReference(ctx, upstream.URL)
	if err != nil {
		return err
	}
	defer ref.Stop()
	jwksHandler, err := creds.jwksHandler()
	if err != nil {
		return err
	}
	jwksSrv, err := startServer(jwksHandler)
	if err != nil {
		return err
	}
	defer jwksSrv.Close()
	if err := creds.mintExternal(jwksSrv.URL); err != nil {
		return err
	}
	files, err := newGatewayFiles(tmp, upstream.URL, jwksSrv.URL+"/jwks.json", creds)
	if err != nil {
		return err
	}

	gw, feats, notes, err := startWithFallback(ctx, bin, files, creds.JWTSecret)
	if err != nil {
		return err
	}
	defer gw.Stop()
	for _, n := range notes {
		fmt.Fprintln(out, "note:", n)
	}
	time.Sleep(500 * time.Millisecond) // let start-up garbage settle
	idle, err := readMem(gw.PID())
	if err != nil {
		return err
	}

	modes := buildModes(s.Modes, ref.BareURL, ref.TunedURL, gw.URL, creds, feats)
	if err := checkModes(ctx, out, modes); err != nil {
		return err
	}
	loginOK, loginNote := probeLogin(ctx, gw.URL, feats)
	if loginNote != "" {
		fmt.Fprintln(out, "note:", loginNote)
	}

	fmt.Fprintf(out, "bench: loadgen=%s concurrency=%d rounds=%d duration=%s gomaxprocs=%d nproc=%d loadavg=%s\n",
		lg.Name(), s.Concurrency, s.Rounds, s.Duration, runtime.GOMAXPROCS(0), runtime.NumCPU(), loadavg())
	stats := map[string]*modeStats{}
	for r := range s.Rounds {
		for _, m := range modes {
			if m.NA != "" {
				continue
			}
			res, err := lg.Run(ctx, m.Target, s.Concurrency, s.Duration)
			if err != nil {
				return fmt.Errorf("bench: round %d mode %s: %w", r+1, m.Name, err)
			}
			if stats[m.Name] == nil {
				stats[m.Name] = &modeStats{}
			}
			stats[m.Name].add(res)
		}
	}
	peak, err := readMem(gw.PID())
	if err != nil {
		return err
	}
	ratios := printTable(out, modes, stats)

	var hs256 *mode
	for i := range modes {
		if modes[i].Name == "hs256" && modes[i].NA == "" {
			hs256 = &modes[i]
		}
	}
	flood := floodReport{Limited: nan(), Bcrypt: nan()}
	switch {
	case hs256 == nil:
		fmt.Fprintln(out, "note: flood not measured: mode hs256 not selected")
	case !loginOK:
		fmt.Fprintln(out, "note: flood not measured: /auth/login not available")
	default:
		if flood, err = measureFlood(ctx, out, lg, s, gw.URL, hs256.Target); err != nil {
			return err
		}
	}
	if m, err := readMem(gw.PID()); err == nil {
		peak.HWM = max(peak.HWM, m.HWM)
	}

	limiterMB, limiterIPs := nan(), 0
	switch {
	case s.LimiterIPs <= 0:
		fmt.Fprintln(out, "note: limiter drive skipped (--limiter-ips 0)")
	case !loginOK:
		fmt.Fprintln(out, "note: limiter drive skipped: /auth/login not available")
	default:
		limiterIPs, err = driveLimiter(ctx, out, gw.URL, s.LimiterIPs, s.LimiterMax)
		if err != nil {
			return err
		}
		if m, err := readMem(gw.PID()); err == nil {
			limiterMB = mb(m.RSS)
		}
		if heap, err := heapInuse(ctx, "http://"+files.AdminAddr+"/metrics"); err == nil {
			fmt.Fprintf(out, "limiter drive: gateway heap in use %.1f MiB (go_memstats_heap_inuse_bytes), RSS %s MiB\n", mb(heap), fmtNum(limiterMB, 1))
		}
	}

	fmt.Fprintf(out, "bench: finished, loadavg=%s\n", loadavg())
	fmt.Fprintln(out, ratiosLine(s.Modes, ratios))
	fmt.Fprintln(out, flood.line())
	fmt.Fprintln(out, memoryLine(mb(idle.RSS), mb(peak.HWM), limiterMB, limiterIPs))
	return nil
}

// startWithFallback starts the gateway with every optional feature and
// turns off, one at a time, the features its config loader rejects (not
// built yet).
func startWithFallback(ctx context.Context, bin string, files *gatewayFiles, secret string) (*gateway, features, []string, error) {
	f := features{Issuers: true, Users: true}
	var notes []string
	for {
		if err := files.writeConfig(f); err != nil {
			return nil, f, notes, err
		}
		gw, err := startGateway(ctx, bin, files.Config, secret, files.Addr, files.AdminAddr)
		if err == nil {
			return gw, f, notes, nil
		}
		if !errors.Is(err, errExited) {
			return nil, f, notes, err
		}
		msg := err.Error()
		switch {
		case f.Issuers && strings.Contains(msg, "issuers"):
			f.Issuers = false
			notes = append(notes, "authgate rejects the issuers config key; rs256 and es256 are na")
		case f.Users && strings.Contains(msg, "users"):
			f.Users = false
			notes = append(notes, "authgate rejects the users_file config key; flood and limiter are na")
		default:
			return nil, f, notes, err
		}
	}
}

// buildModes returns the selected modes with their targets.
func buildModes(names []string, bareURL, tunedURL, gwURL string, c *credentials, f features) []mode {
	bearer := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }
	var out []mode
	for _, n := range names {
		m := mode{Name: n}
		switch n {
		case "bare":
			m.Target = target{URL: bareURL + apiPath, Headers: http.Header{}}
		case "tuned":
			m.Target = target{URL: tunedURL + apiPath, Headers: http.Header{}}
		case "public":
			m.Target = target{URL: gwURL + publicPath, Headers: http.Header{}}
		case "hs256":
			m.Target = target{URL: gwURL + apiPath, Headers: bearer(c.HS256)}
		case "apikey":
			m.Target = target{URL: gwURL + apiPath, Headers: http.Header{"X-Api-Key": {c.APIKey}}}
		case "rs256", "es256":
			tok := c.RS256
			if n == "es256" {
				tok = c.ES256
			}
			m.Target = target{URL: gwURL + apiPath, Headers: bearer(tok)}
			if !f.Issuers {
				m.NA = "external issuers not supported by this authgate"
			}
		}
		out = append(out, m)
	}
	return out
}

// checkModes sends one request per available mode and requires a 200 with
// the upstream's body. It prints one bench-check line.
func checkModes(ctx context.Context, out io.Writer, modes []mode) error {
	client := &http.Client{Timeout: 10 * time.Second, Transport: newClientTransport(1)}
	var fields []string
	var errs []error
	for _, m := range modes {
		if m.NA != "" {
			fields = append(fields, m.Name+"=na")
			continue
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.Target.URL, nil)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		req.Header = m.Target.Headers.Clone()
		resp, err := client.Do(req)
		if err != nil {
			errs = append(errs, fmt.Errorf("bench: mode %s: %w", m.Name, err))
			fields = append(fields, m.Name+"=error")
			continue
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		fields = append(fields, fmt.Sprintf("%s=%d", m.Name, resp.StatusCode))
		if resp.StatusCode != http.StatusOK || string(body) != upstreamBody {
			errs = append(errs, fmt.Errorf("bench: mode %s: GET %s answered %d %q, want 200 %q",
				m.Name, m.Target.URL, resp.StatusCode, strings.TrimSpace(string(body)), upstreamBody))
		}
	}
	fmt.Fprintln(out, "bench-check: "+strings.Join(fields, " "))
	return errors.Join(errs...)
}

// printTable prints the results table and returns each mode's ratio of
// median throughput to the bare proxy's. The /tuned column is the ratio to
// the tuned proxy, which pools upstream connections like the gateway.
func printTable(out io.Writer, modes []mode, stats map[string]*modeStats) map[string]float64 {
	bareRPS := nan()
	if st := stats["bare"]; st != nil {
		bareRPS = median(st.rps)
	}
	tunedRPS := nan()
	if st := stats["tuned"]; st != nil {
		tunedRPS = median(st.rps)
	}
	ratios := map[string]float64{}
	fmt.Fprintf(out, "%-8s %10s %7s %9s %9s %9s %6s %6s %8s %7s\n", "mode", "req/s", "spread", "p50", "p99", "p99.9", "ratio", "/tuned", "non200", "errors")
	for _, m := range modes {
		st := stats[m.Name]
		if m.NA != "" || st == nil {
			ratios[m.Name] = nan()
			fmt.Fprintf(out, "%-8s %10s %7s %9s %9s %9s %6s %6s %8s %7s  (%s)\n", m.Name, "na", "-", "na", "na", "na", "na", "na", "-", "-", m.NA)
			continue
		}
		rps := median(st.rps)
		ratios[m.Name] = rps / bareRPS
		fmt.Fprintf(out, "%-8s %10.0f %6s%% %9s %9s %9s %6s %6s %8d %7d\n", m.Name, rps, fmtNum(100*spread(st.rps), 0),
			fmtLatency(median(st.p50)), fmtLatency(median(st.p99)), fmtLatency(median(st.p999)),
			fmtNum(ratios[m.Name], 2), fmtNum(rps/tunedRPS, 2), st.non200, st.errors)
	}
	return ratios
}

// spread returns (max-min)/median of xs: how much the rounds disagree.
func spread(xs []float64) float64 {
	if len(xs) == 0 {
		return nan()
	}
	return (slices.Max(xs) - slices.Min(xs)) / median(xs)
}

// ratiosLine is the machine-readable bench-ratios line.
func ratiosLine(selected []string, ratios map[string]float64) string {
	var f []string
	for _, m := range ratioModes() {
		r, ok := ratios[m]
		if !ok || !slices.Contains(selected, m) {
			r = nan()
		}
		f = append(f, m+"="+fmtNum(r, 2))
	}
	return "bench-ratios: " + strings.Join(f, " ")
}

// memoryLine is the machine-readable bench-memory line. limiter_1m_mb is
// reported only when a full million addresses were driven; a shorter
// drive reports its size and figure separately.
func memoryLine(idle, peak, limiter float64, ips int) string {
	l := fmt.Sprintf("bench-memory: idle_mb=%s peak_mb=%s", fmtNum(idle, 1), fmtNum(peak, 1))
	if ips >= 1_000_000 {
		return l + " limiter_1m_mb=" + fmtNum(limiter, 1)
	}
	l += " limiter_1m_mb=na"
	if ips > 0 {
		l += fmt.Sprintf(" limiter_ips=%d limiter_mb=%s", ips, fmtNum(limiter, 1))
	}
	return l
}

// mb converts bytes to mebibytes.
func mb(b uint64) float64 { return float64(b) / (1 << 20) }

// heapInuse reads go_memstats_heap_inuse_bytes from the gateway's metrics.
func heapInuse(ctx context.Context, metricsURL string) (uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return 0, fmt.Errorf("bench: metrics: %w", err)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return 0, fmt.Errorf("bench: metrics: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return 0, fmt.Errorf("bench: metrics: %w", err)
	}
	return parseMetric(string(body), "go_memstats_heap_inuse_bytes")
}

// parseMetric returns the value of an unlabelled metric in the Prometheus
// text format.
func parseMetric(text, name string) (uint64, error) {
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil || v < 0 {
				return 0, fmt.Errorf("bench: metric %s: bad value %q", name, f[1])
			}
			return uint64(v), nil
		}
	}
	return 0, fmt.Errorf("bench: metric %s not found", name)
}

// loadavg returns the 1-minute load average, or na: figures taken while
// other work shares the machine are noisy, and the report says so.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "na"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "na"
	}
	return f[0]
}

// runReference is the reference-server mode of the binary, entered when
// referenceEnv is set.
func runReference(upstream string) error {
	if !isLoopbackURL(upstream) {
		return fmt.Errorf("bench: %s must be a loopback http URL, got %q", referenceEnv, upstream)
	}
	return referenceMain(upstream, os.Stdin, os.Stdout)
}
