// Command bench measures what authgate costs against plain reverse
// proxies: a bare httputil.ReverseProxy, the same proxy tuned like the
// gateway's upstream side, and nginx.
//
// It starts a small upstream in-process and every proxy under test as a
// process of its own (the Go references, nginx, one or more gateway
// instances), so each has its own scheduler and its CPU time and memory
// can be read from /proc. It drives closed-loop load through every mode of
// the mode table (modes.go), interleaving the modes in every round so that
// machine noise hits them all alike, and reads each process's CPU time
// (utime+stime) around every run: CPU per request is steadier than
// requests per second on a shared machine. It then measures proxied
// throughput under a login flood, the gateway's memory per idle keep-alive
// connection, and its memory after many distinct client addresses hit the
// login limiter.
//
// Every mode must answer 200 and be counted by the gateway as allowed by
// the expected authentication method; a cold mode must miss the
// verified-token cache on every request. Anything else fails the run.
//
// The last four lines are machine readable (a value not measured is na):
//
//	bench-ratios: bare.tuned=0.37 bare.nginx=0.20 ... hs256.tuned=0.97 hs256.nginx=0.52 ...
//	bench-cpu: bare=61.0 tuned=24.0 nginx=14.0 public=40.1 hs256=41.7 ...
//	bench-flood: ratio=0.78 limited=0.99 bcrypt=0.78
//	bench-memory: idle_mb=22.4 idle_anon_mb=6.1 conn_kib=21.7 conns=1000 nginx_conn_kib=1.0 tuned_conn_kib=18.0 peak_mb=35.0 limiter_1m_mb=86.3
//
// ratios are median req/s over the tuned proxy's and nginx's; cpu is µs of
// CPU per request of the process under test.
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
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/authgate/authgate/authn/jwks"
	"github.com/authgate/authgate/authn/users"
)

func main() {
	if up := os.Getenv(referenceEnv); up != "" {
		if err := runReference(os.Getenv(referenceKindEnv), up); err != nil {
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

// settings are the parsed flags.
type settings struct {
	Duration      time.Duration
	Requests      int
	Rounds        int
	Concurrency   int
	Modes         []string
	Quick, Smoke  bool
	Authgate      string
	Loadgen       string
	FloodClients  int
	FloodDuration time.Duration
	FloodPairs    int
	LimiterIPs    int
	LimiterMax    time.Duration
	IdleConns     int
	TokenCache    int
	BcryptCost    int
	Settle        time.Duration // pause for start-up garbage and idle connections to settle
}

// parseFlags parses args. --quick and --smoke change the defaults of every
// flag not given explicitly.
func parseFlags(args []string, out io.Writer) (settings, error) {
	s := settings{Settle: 500 * time.Millisecond}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.DurationVar(&s.Duration, "duration", 5*time.Second, "duration of one mode in one round (with --requests, its limit)")
	fs.IntVar(&s.Requests, "requests", 0, "requests per mode per round instead of a duration (needs --loadgen=go)")
	fs.IntVar(&s.Rounds, "rounds", 5, "rounds; every round runs every mode once")
	fs.IntVar(&s.Concurrency, "concurrency", 32, "requests in flight (persistent connections)")
	modes := fs.String("modes", strings.Join(modeNames(), ","), "comma-separated modes: "+strings.Join(modeNames(), ","))
	fs.BoolVar(&s.Quick, "quick", false, "a run under a minute: 1 round of 1s, concurrency 8, short flood, 20k limiter addresses")
	fs.BoolVar(&s.Smoke, "smoke", false, "a check in seconds, not a measurement: every mode once with 200 requests from the Go load generator")
	fs.StringVar(&s.Authgate, "authgate", "", "authgate binary (default: go build it from the repository root)")
	fs.StringVar(&s.Loadgen, "loadgen", "auto", "load generator: auto (wrk if installed), wrk or go")
	fs.IntVar(&s.FloodClients, "flood-clients", 100, "concurrent clients in the login flood")
	fs.DurationVar(&s.FloodDuration, "flood-duration", 5*time.Second, "duration of each phase of the flood measurement")
	fs.IntVar(&s.FloodPairs, "flood-pairs", 3, "baseline/flood measurement pairs per flood variant (0 skips the flood)")
	fs.IntVar(&s.LimiterIPs, "limiter-ips", 1_000_000, "distinct client addresses driven at the login limiter (0 skips)")
	fs.DurationVar(&s.LimiterMax, "limiter-max", 4*time.Minute, "give up the limiter drive after this long")
	fs.IntVar(&s.IdleConns, "idle-conns", 1000, "idle keep-alive connections opened to measure memory per connection (0 skips)")
	fs.IntVar(&s.TokenCache, "token-cache", jwks.DefaultCacheConfig().TokenCacheSize,
		"jwks.token_cache_size of the gateway; the cold modes' token pools are sized to defeat it")
	fs.IntVar(&s.BcryptCost, "bcrypt-cost", users.DefaultCost, "bcrypt cost of the benchmark user's password hash")
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	if fs.NArg() > 0 {
		return s, fmt.Errorf("bench: unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	preset := func(values map[string]func()) {
		for name, apply := range values {
			if !set[name] {
				apply()
			}
		}
	}
	var errs []error
	switch {
	case s.Quick && s.Smoke:
		errs = append(errs, errors.New("bench: --quick and --smoke: choose one"))
	case s.Quick:
		preset(map[string]func(){
			"duration":       func() { s.Duration = time.Second },
			"rounds":         func() { s.Rounds = 1 },
			"concurrency":    func() { s.Concurrency = 8 },
			"flood-clients":  func() { s.FloodClients = 20 },
			"flood-duration": func() { s.FloodDuration = time.Second },
			"flood-pairs":    func() { s.FloodPairs = 1 },
			"limiter-ips":    func() { s.LimiterIPs = 20_000 },
			"limiter-max":    func() { s.LimiterMax = 15 * time.Second },
			"idle-conns":     func() { s.IdleConns = 200 },
			"token-cache":    func() { s.TokenCache = 512 },
		})
	case s.Smoke:
		s.Settle = 50 * time.Millisecond
		preset(map[string]func(){
			"duration":       func() { s.Duration = 30 * time.Second },
			"requests":       func() { s.Requests = 200 },
			"rounds":         func() { s.Rounds = 1 },
			"concurrency":    func() { s.Concurrency = 4 },
			"loadgen":        func() { s.Loadgen = "go" },
			"flood-clients":  func() { s.FloodClients = 4 },
			"flood-duration": func() { s.FloodDuration = 200 * time.Millisecond },
			"flood-pairs":    func() { s.FloodPairs = 1 },
			"limiter-ips":    func() { s.LimiterIPs = 300 },
			"limiter-max":    func() { s.LimiterMax = 20 * time.Second },
			"idle-conns":     func() { s.IdleConns = 50 },
			"token-cache":    func() { s.TokenCache = 32 },
			"bcrypt-cost":    func() { s.BcryptCost = users.MinCost },
		})
	}
	for _, m := range strings.Split(*modes, ",") {
		m = strings.TrimSpace(m)
		if !slices.Contains(modeNames(), m) {
			errs = append(errs, fmt.Errorf("bench: --modes: unknown mode %q", m))
		} else if !slices.Contains(s.Modes, m) {
			s.Modes = append(s.Modes, m)
		}
	}
	// Keep the table's order so rounds interleave the same way every run.
	order := modeNames()
	slices.SortFunc(s.Modes, func(a, b string) int { return slices.Index(order, a) - slices.Index(order, b) })
	if s.Duration < 100*time.Millisecond {
		errs = append(errs, errors.New("bench: --duration must be at least 100ms"))
	}
	if s.Rounds < 1 || s.Concurrency < 1 || s.FloodClients < 1 {
		errs = append(errs, errors.New("bench: --rounds, --concurrency and --flood-clients must be at least 1"))
	}
	if s.Requests < 0 || s.FloodPairs < 0 || s.LimiterIPs < 0 || s.IdleConns < 0 {
		errs = append(errs, errors.New("bench: --requests, --flood-pairs, --limiter-ips and --idle-conns must not be negative"))
	}
	if s.TokenCache < 1 {
		errs = append(errs, errors.New("bench: --token-cache must be at least 1: a disabled cache has no cold path to measure"))
	}
	if s.BcryptCost < users.MinCost || s.BcryptCost > users.MaxCost {
		errs = append(errs, fmt.Errorf("bench: --bcrypt-cost must be within %d..%d", users.MinCost, users.MaxCost))
	}
	switch s.Loadgen {
	case "auto", "wrk", "go":
	default:
		errs = append(errs, fmt.Errorf("bench: --loadgen: want auto, wrk or go, got %q", s.Loadgen))
	}
	if s.Requests > 0 && s.Loadgen == "wrk" {
		errs = append(errs, errors.New("bench: --requests needs --loadgen=go: wrk runs for a duration"))
	}
	if s.Requests > 0 {
		s.Loadgen = "go"
	}
	return s, errors.Join(errs...)
}

// mode is one selected mode, ready to load.
type mode struct {
	modeSpec
	Target target
	CPU    *cpuMeter
	Inst   *instance // nil for a reference
}

// modeStats are the per-round results of one mode.
type modeStats struct {
	rps, p50, p99, p999, cpu []float64 // rps in req/s, latencies in seconds, cpu in s per request
	requests, non200, errors uint64
	cacheHits, cacheMisses   float64 // verified-token cache lookups (external tokens)
}

// maxErrorRate is the share of transport errors (connect, read, write,
// timeout) a mode may have under load. On a shared machine a stalled
// process can make the load generator time out a request now and then,
// references included; more than that is a defect. A non-200 answer is
// always one.
const maxErrorRate = 0.001

// failed reports whether the mode's answers under load fail the run.
func (m *modeStats) failed() bool {
	return m.non200 > 0 || float64(m.errors) > maxErrorRate*float64(m.requests+m.errors)
}

// runRecord is what one run of a mode measured.
type runRecord struct {
	Res                    loadResult
	CPU                    time.Duration // of the process under test
	CacheHits, CacheMisses float64       // verified-token cache lookups in the run
}

func (m *modeStats) add(rec runRecord) {
	r, cpu := rec.Res, rec.CPU
	m.cacheHits += rec.CacheHits
	m.cacheMisses += rec.CacheMisses
	m.rps = append(m.rps, r.RPS())
	m.p50 = append(m.p50, r.P50.Seconds())
	m.p99 = append(m.p99, r.P99.Seconds())
	m.p999 = append(m.p999, r.P999.Seconds())
	if n := r.Requests + r.Non200; n > 0 {
		m.cpu = append(m.cpu, cpu.Seconds()/float64(n))
	}
	m.requests += r.Requests + r.Non200
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

// stopper collects what run started, to stop it all at the end. The
// processes stop in parallel: each waits for its own graceful exit.
type stopper []func()

func (s *stopper) add(f func()) { *s = append(*s, f) }
func (s stopper) stop() {
	var wg sync.WaitGroup
	for _, f := range s {
		wg.Go(f)
	}
	wg.Wait()
}

// run is the whole benchmark; it writes the report to out. It returns an
// error when a mode failed its checks, after printing everything.
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
	var stops stopper
	defer func() { stops.stop() }()

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
	bin, err := authgateBinary(ctx, out, s.Authgate, tmp)
	if err != nil {
		return err
	}

	creds, err := newCredentials()
	if err != nil {
		return err
	}
	recorder := upstreamHandler()
	upstream, err := startServer(recorder)
	if err != nil {
		return err
	}
	stops.add(upstream.Close)
	jwksHandler, err := creds.jwksHandler()
	if err != nil {
		return err
	}
	jwksSrv, err := startServer(jwksHandler)
	if err != nil {
		return err
	}
	stops.add(jwksSrv.Close)
	if err := creds.mintExternal(jwksSrv.URL); err != nil {
		return err
	}
	fx := &fixtures{Creds: creds, TokenCache: s.TokenCache, Streams: lg.Streams(s.Concurrency), Concurrency: s.Concurrency,
		Features: &featureState{Upstream: recorder, UpstreamURL: upstream.URL, GatewayURL: map[string]string{}}}
	if err := writeSharedFiles(tmp, fx, s.BcryptCost); err != nil {
		return err
	}
	if err := fx.Features.writeSigningKey(tmp); err != nil {
		return err
	}

	modes, insts, err := startModes(ctx, out, s, tmp, bin, upstream.URL, jwksSrv.URL, fx, &stops)
	if err != nil {
		return err
	}
	mainGW := insts[mainInstance]
	gwPID := mainGW.gw.PID
	time.Sleep(s.Settle) // let start-up garbage settle
	idle, err := readMem(gwPID())
	if err != nil {
		return err
	}
	connCost, nginxConnCost, tunedConnCost := nan(), nan(), nan()
	if s.IdleConns > 0 {
		if connCost, err = idleConnCost(ctx, mainGW.gw.URL+publicPath, s.IdleConns, gwPID, s.Settle); err != nil {
			return err
		}
		for _, m := range modes {
			switch m.Ref {
			case "nginx":
				ng := m.CPU.pid
				if nginxConnCost, err = idleConnCost(ctx, m.Target.URL, s.IdleConns, func() int { return workerOf(ng) }, s.Settle); err != nil {
					return err
				}
			case "tuned":
				// What net/http itself holds per idle connection: the floor
				// under the gateway's figure.
				tp := m.CPU.pid
				if tunedConnCost, err = idleConnCost(ctx, m.Target.URL, s.IdleConns, func() int { return tp }, s.Settle); err != nil {
					return err
				}
			}
		}
	}

	// The idle connections raised the peak; the peak reported is that of
	// the load, the flood and the limiter drive.
	if err := resetPeak(gwPID()); err != nil {
		fmt.Fprintln(out, "note:", err, "(peak_mb includes the idle connections)")
	}
	if err := checkModes(ctx, out, modes, fx); err != nil {
		return err
	}
	if err := probeLogin(ctx, mainGW.gw.URL); err != nil {
		return err
	}

	fmt.Fprintf(out, "bench: loadgen=%s concurrency=%d rounds=%d %s gomaxprocs=%d nproc=%d loadavg=%s\n",
		lg.Name(), s.Concurrency, s.Rounds, runLength(s), runtime.GOMAXPROCS(0), runtime.NumCPU(), loadavg())
	stats := map[string]*modeStats{}
	var failures []error
	opts := runOpts{Concurrency: s.Concurrency, Duration: s.Duration, Requests: s.Requests}
	for r := range s.Rounds {
		for i := range modes {
			m := &modes[i]
			rec, err := measure(ctx, lg, m, opts, fx)
			if errors.Is(err, errRun) {
				return fmt.Errorf("bench: round %d mode %s: %w", r+1, m.Name, err)
			}
			if err != nil {
				failures = append(failures, fmt.Errorf("bench: round %d mode %s: %w", r+1, m.Name, err))
			}
			if stats[m.Name] == nil {
				stats[m.Name] = &modeStats{}
			}
			stats[m.Name].add(rec)
		}
	}
	peak, err := readMem(gwPID())
	if err != nil {
		return err
	}
	tbl := printTable(out, modes, stats)
	for _, m := range modes {
		if st := stats[m.Name]; st != nil && st.failed() {
			failures = append(failures, fmt.Errorf("bench: mode %s: %d non-200 answers and %d transport errors in %d requests under load",
				m.Name, st.non200, st.errors, st.requests))
		}
	}

	flood := floodReport{Limited: nan(), Bcrypt: nan()}
	if s.FloodPairs == 0 {
		fmt.Fprintln(out, "note: flood skipped (--flood-pairs 0)")
	} else {
		hs := target{URL: mainGW.gw.URL + apiPath, Headers: bearer(creds.HS256)}
		if flood, err = measureFlood(ctx, out, lg, s, mainGW.gw.URL, &hs); err != nil {
			return err
		}
	}
	if m, err := readMem(gwPID()); err == nil {
		peak.HWM = max(peak.HWM, m.HWM)
	}

	limiterMB, limiterIPs := nan(), 0
	if s.LimiterIPs == 0 {
		fmt.Fprintln(out, "note: limiter drive skipped (--limiter-ips 0)")
	} else {
		limiterIPs, err = driveLimiter(ctx, out, mainGW.gw.URL, s.LimiterIPs, s.LimiterMax)
		if err != nil {
			return err
		}
		if m, err := readMem(gwPID()); err == nil {
			limiterMB = mb(m.RSS)
		}
		if snap, err := scrape(ctx, mainGW.MetricsURL()); err == nil {
			fmt.Fprintf(out, "limiter drive: gateway heap in use %.1f MiB (go_memstats_heap_inuse_bytes), RSS %s MiB\n",
				mb(uint64(snap.sum("go_memstats_heap_inuse_bytes", nil))), fmtNum(limiterMB, 1))
		}
	}

	fmt.Fprintf(out, "bench: finished, loadavg=%s\n", loadavg())
	fmt.Fprintln(out, ratiosLine(tbl))
	fmt.Fprintln(out, cpuLine(tbl))
	fmt.Fprintln(out, flood.line())
	fmt.Fprintln(out, memoryLine(memFigures{IdleMB: mb(idle.RSS), IdleAnonMB: mb(idle.Anon), ConnKiB: connCost / 1024, Conns: s.IdleConns,
		NginxConnKiB: nginxConnCost / 1024, TunedConnKiB: tunedConnCost / 1024, PeakMB: mb(peak.HWM), LimiterMB: limiterMB, LimiterIPs: limiterIPs}))
	return errors.Join(failures...)
}

// workerOf returns the pid of nginx master's worker.
func workerOf(master int) int {
	if w := childPIDs(master); len(w) > 0 {
		return w[0]
	}
	return master
}

// runLength describes how long each run lasts.
func runLength(s settings) string {
	if s.Requests > 0 {
		return fmt.Sprintf("requests=%d", s.Requests)
	}
	return "duration=" + s.Duration.String()
}

// authgateBinary returns bin, or builds the gateway into dir when bin is
// empty.
func authgateBinary(ctx context.Context, out io.Writer, bin, dir string) (string, error) {
	if bin != "" {
		return bin, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	root, err := findRepoRoot(wd)
	if err != nil {
		return "", err
	}
	t0 := time.Now()
	if bin, err = buildAuthgate(ctx, root, dir); err != nil {
		return "", err
	}
	fmt.Fprintf(out, "bench: built authgate in %s\n", time.Since(t0).Round(time.Millisecond))
	return bin, nil
}

// writeSharedFiles writes the users file and both keys files into dir,
// and keeps the many keys in fx.
func writeSharedFiles(dir string, fx *fixtures, cost int) error {
	hash, err := bcrypt.GenerateFromPassword([]byte(benchPassword), cost)
	if err != nil {
		return fmt.Errorf("bench: hash password: %w", err)
	}
	usersFile := fmt.Sprintf("users:\n  - username: %s\n    password_hash: %q\n    roles: [%s]\n", benchUser, hash, benchRole)
	fx.ManyKeys = newAPIKeys(manyKeysCount)
	files := map[string]string{"users.yaml": usersFile, "keys.yaml": keysFile([]string{fx.Creds.APIKey}), "keys-many.yaml": keysFile(fx.ManyKeys)}
	for name, data := range files {
		if err := os.WriteFile(dir+"/"+name, []byte(data), 0o600); err != nil {
			return fmt.Errorf("bench: write %s: %w", name, err)
		}
	}
	return nil
}

// startModes starts the processes the selected modes need (references and
// gateway instances; the main instance always) and returns the modes with
// their targets. Everything started is added to stops.
func startModes(ctx context.Context, out io.Writer, s settings, dir, bin, upstreamURL, jwksURL string, fx *fixtures, stops *stopper) ([]mode, map[string]*instance, error) {
	insts := map[string]*instance{mainInstance: {Name: mainInstance}}
	instOrder := []string{mainInstance}
	helpers, err := startHelpers(ctx, out, s, dir, fx, stops)
	if err != nil {
		return nil, nil, err
	}
	var specs []modeSpec
	for _, spec := range modeTable() {
		if !slices.Contains(s.Modes, spec.Name) || !helpers.has(spec) {
			continue
		}
		specs = append(specs, spec)
		if spec.Ref != "" {
			continue
		}
		name := spec.Instance
		if name == "" {
			name = mainInstance
		}
		in := insts[name]
		if in == nil {
			in = &instance{Name: name}
			insts[name] = in
			instOrder = append(instOrder, name)
		}
		in.Modes = append(in.Modes, spec.Name)
		for _, f := range spec.Fragments {
			if !slices.Contains(in.Fragments, f) {
				in.Fragments = append(in.Fragments, f)
			}
		}
	}
	for _, name := range instOrder {
		in := insts[name]
		in.Data = configData{Dir: dir, InstanceDir: dir + "/gw-" + name, Upstream: upstreamURL,
			Issuer: jwksURL, JWKSURI: jwksURL + "/jwks.json", TokenCache: s.TokenCache, RedisAddr: fx.Features.RedisAddr}
		if helpers.grpcInstances[name] {
			in.Data.Upstream = helpers.grpcURL
		}
		if in.Data.Addr, err = freePort(); err != nil {
			return nil, nil, err
		}
		if in.Data.AdminAddr, err = freePort(); err != nil {
			return nil, nil, err
		}
		if err := in.start(ctx, bin, fx.Creds.JWTSecret); err != nil {
			return nil, nil, err
		}
		stops.add(in.Stop)
		fx.Features.GatewayURL[name] = in.gw.URL
	}

	refs := map[string]struct {
		url string
		cpu *cpuMeter
	}{}
	var modes []mode
	for _, spec := range specs {
		m := mode{modeSpec: spec}
		path := spec.Path
		if path == "" {
			path = apiPath
		}
		var base string
		switch spec.Ref {
		case "":
			name := spec.Instance
			if name == "" {
				name = mainInstance
			}
			m.Inst = insts[name]
			base, m.CPU = m.Inst.gw.URL, newCPUMeter(m.Inst.gw.PID(), false)
		default:
			r, ok := refs[spec.Ref]
			if !ok {
				switch spec.Ref {
				case "nginx":
					p, err := startNginx(ctx, dir, strings.TrimPrefix(upstreamURL, "http://"))
					if err != nil {
						return nil, nil, err
					}
					stops.add(p.Stop)
					r.url, r.cpu = p.URL, newCPUMeter(p.PID(), true)
				default:
					up := upstreamURL
					if spec.Ref == grpcPlainRef {
						up = helpers.grpcURL
					}
					p, err := startReference(ctx, spec.Ref, up)
					if err != nil {
						return nil, nil, err
					}
					stops.add(p.Stop)
					r.url, r.cpu = p.URL, newCPUMeter(p.PID(), false)
				}
				refs[spec.Ref] = r
			}
			base, m.CPU = r.url, r.cpu
		}
		t0 := time.Now()
		h, rot, err := spec.Request(fx)
		if err != nil {
			return nil, nil, fmt.Errorf("bench: mode %s: %w", spec.Name, err)
		}
		if rot != nil {
			rot.setStreams(fx.Streams)
			fmt.Fprintf(out, "bench: mode %s: %d distinct %s values in turn (ready in %s)\n",
				spec.Name, len(rot.Values), rot.Header, time.Since(t0).Round(time.Millisecond))
		}
		m.Target = target{URL: base + path, Headers: h, Rotate: rot}
		modes = append(modes, m)
	}
	return modes, insts, nil
}

// errRun marks a failure of the harness itself (the load generator could
// not run), as opposed to a mode failing its checks.
var errRun = errors.New("load run failed")

// measure runs one closed-loop load of m and returns what it measured.
// The metrics are scraped outside the CPU window. A mode that fails its
// checks returns its figures and an error; a load generator that fails
// returns an error wrapping errRun.
func measure(ctx context.Context, lg loadgen, m *mode, o runOpts, fx *fixtures) (runRecord, error) {
	var rec runRecord
	var before promSnapshot
	var err error
	if m.Inst != nil {
		if before, err = scrape(ctx, m.Inst.MetricsURL()); err != nil {
			return rec, fmt.Errorf("%w: %w", errRun, err)
		}
	}
	c0, err := m.CPU.Read()
	if err != nil {
		return rec, fmt.Errorf("%w: %w", errRun, err)
	}
	run := lg.Run
	if m.GRPC {
		run = func(ctx context.Context, _ *target, o runOpts) (loadResult, error) { return runGRPC(ctx, m, o, fx) }
	}
	if rec.Res, err = run(ctx, &m.Target, o); err != nil {
		return rec, fmt.Errorf("%w: %w", errRun, err)
	}
	c1, err := m.CPU.Read()
	if err != nil {
		return rec, fmt.Errorf("%w: %w", errRun, err)
	}
	rec.CPU = c1 - c0
	if m.Inst == nil {
		return rec, nil
	}
	after, err := scrape(ctx, m.Inst.MetricsURL())
	if err != nil {
		return rec, fmt.Errorf("%w: %w", errRun, err)
	}
	rec.CacheHits = delta(before, after, metricTokenCache, map[string]string{"result": "hit"})
	rec.CacheMisses = delta(before, after, metricTokenCache, map[string]string{"result": "miss"})
	return rec, verifyRun(m, fx, before, after, rec.Res, o.Concurrency)
}

// verifyRun applies the generic method check and the mode's own.
func verifyRun(m *mode, fx *fixtures, before, after promSnapshot, res loadResult, slack int) error {
	err := verifyMethod(m.Method, before, after, res, slack)
	if m.Verify != nil {
		err = errors.Join(err, m.Verify(fx, before, after, res))
	}
	return err
}

// checkRequests is how many requests checkModes sends per mode.
const checkRequests = 3

// checkModes sends a few requests per mode and requires a 200 with the
// upstream's body, and for a gateway mode the metric checks a load run
// gets. It prints one bench-check line.
func checkModes(ctx context.Context, out io.Writer, modes []mode, fx *fixtures) error {
	tr := newClientTransport(1)
	defer tr.CloseIdleConnections()
	client := &http.Client{Timeout: 10 * time.Second, Transport: tr}
	var fields []string
	var errs []error
	for i := range modes {
		m := &modes[i]
		var before promSnapshot
		var err error
		if m.Inst != nil {
			if before, err = scrape(ctx, m.Inst.MetricsURL()); err != nil {
				return err
			}
		}
		check := checkOne
		if m.GRPC {
			check = func(ctx context.Context, _ *http.Client, m *mode) (int, error) { return checkGRPC(ctx, m, fx) }
		}
		status, err := check(ctx, client, m)
		if err != nil {
			errs = append(errs, fmt.Errorf("bench: mode %s: %w", m.Name, err))
			fields = append(fields, fmt.Sprintf("%s=%d", m.Name, status))
			continue
		}
		if m.Inst != nil {
			after, err := scrape(ctx, m.Inst.MetricsURL())
			if err != nil {
				return err
			}
			if err := verifyRun(m, fx, before, after, loadResult{Requests: checkRequests}, 0); err != nil {
				errs = append(errs, fmt.Errorf("bench: mode %s: %w", m.Name, err))
				fields = append(fields, m.Name+"=fallback")
				continue
			}
		}
		fields = append(fields, fmt.Sprintf("%s=%d", m.Name, status))
	}
	fmt.Fprintln(out, "bench-check: "+strings.Join(fields, " "))
	return errors.Join(errs...)
}

// checkOne sends checkRequests requests of m and returns the last status;
// each must be a 200 with the upstream's body.
func checkOne(ctx context.Context, client *http.Client, m *mode) (int, error) {
	status := 0
	for range checkRequests {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.Target.URL, nil)
		if err != nil {
			return 0, err
		}
		req.Header = m.Target.header(0)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		status = resp.StatusCode
		if resp.StatusCode != http.StatusOK || string(body) != upstreamBody {
			return status, fmt.Errorf("GET %s answered %d %q, want 200 %q",
				m.Target.URL, resp.StatusCode, strings.TrimSpace(string(body)), upstreamBody)
		}
	}
	return status, nil
}

// tableRow is one mode's figures as printed.
type tableRow struct {
	Name             string
	RPS, CPU         float64 // req/s; µs per request
	ToTuned, ToNginx float64
}

// printTable prints the results table and returns every mode's figures,
// in table order. A mode not selected is NaN throughout.
func printTable(out io.Writer, modes []mode, stats map[string]*modeStats) []tableRow {
	ref := func(name string) float64 {
		if st := stats[name]; st != nil {
			return median(st.rps)
		}
		return nan()
	}
	tuned, nginx := ref("tuned"), ref("nginx")
	fmt.Fprintf(out, "%-14s %9s %7s %9s %9s %9s %8s %6s %6s %7s %6s %9s\n",
		"mode", "req/s", "spread", "p50", "p99", "p99.9", "cpu/req", "/tuned", "/nginx", "non200", "errors", "cache-hit")
	var rows []tableRow
	for _, name := range modeNames() {
		row := tableRow{Name: name, RPS: nan(), CPU: nan(), ToTuned: nan(), ToNginx: nan()}
		if st := stats[name]; st != nil {
			row.RPS, row.CPU = median(st.rps), median(st.cpu)*1e6
			row.ToTuned, row.ToNginx = row.RPS/tuned, row.RPS/nginx
			hit := "-"
			if n := st.cacheHits + st.cacheMisses; n > 0 {
				hit = fmtNum(100*st.cacheHits/n, 2) + "%"
			}
			fmt.Fprintf(out, "%-14s %9.0f %6s%% %9s %9s %9s %6sµs %6s %6s %7d %6d %9s\n", name, row.RPS, fmtNum(100*spread(st.rps), 0),
				fmtLatency(median(st.p50)), fmtLatency(median(st.p99)), fmtLatency(median(st.p999)),
				fmtNum(row.CPU, 1), fmtNum(row.ToTuned, 2), fmtNum(row.ToNginx, 2), st.non200, st.errors, hit)
		}
		rows = append(rows, row)
	}
	for _, m := range modes {
		fmt.Fprintf(out, "  %-14s %s\n", m.Name, m.Doc)
		if st := stats[m.Name]; st != nil && m.Verify != nil && st.cacheHits+st.cacheMisses > 0 {
			fmt.Fprintf(out, "  %-14s verified-token cache over all rounds: %.0f hits, %.0f misses\n", m.Name, st.cacheHits, st.cacheMisses)
		}
	}
	fmt.Fprintln(out, "  cache-hit: verified-token cache hits of external tokens over all lookups (authgate_token_cache_total)")
	return rows
}

// spread returns (max-min)/median of xs: how much the rounds disagree.
func spread(xs []float64) float64 {
	if len(xs) == 0 {
		return nan()
	}
	return (slices.Max(xs) - slices.Min(xs)) / median(xs)
}

// ratiosLine is the machine-readable bench-ratios line: every mode's
// throughput over the tuned proxy's and over nginx's.
func ratiosLine(rows []tableRow) string {
	var f []string
	for _, r := range rows {
		if r.Name != "tuned" {
			f = append(f, r.Name+".tuned="+fmtNum(r.ToTuned, 2))
		}
		if r.Name != "nginx" {
			f = append(f, r.Name+".nginx="+fmtNum(r.ToNginx, 2))
		}
	}
	return "bench-ratios: " + strings.Join(f, " ")
}

// cpuLine is the machine-readable bench-cpu line: µs of CPU per request of
// the process under test, per mode.
func cpuLine(rows []tableRow) string {
	var f []string
	for _, r := range rows {
		f = append(f, r.Name+"="+fmtNum(r.CPU, 1))
	}
	return "bench-cpu: " + strings.Join(f, " ")
}

// memFigures are the figures of the bench-memory line; NaN is not
// measured.
type memFigures struct {
	IdleMB       float64 // the main gateway's RSS after start-up
	IdleAnonMB   float64 // the anonymous part of IdleMB (RssAnon: heap and stacks, not the executable's pages)
	ConnKiB      float64 // RSS growth per idle keep-alive connection
	Conns        int     // idle connections opened for ConnKiB
	NginxConnKiB float64 // the same for the nginx worker
	TunedConnKiB float64 // the same for the tuned Go proxy: net/http's own cost
	PeakMB       float64 // the gateway's peak RSS through the load and the flood
	LimiterMB    float64 // RSS after the limiter drive
	LimiterIPs   int     // addresses driven
}

// memoryLine is the machine-readable bench-memory line. limiter_1m_mb is
// reported only when a full million addresses were driven; a shorter
// drive reports its size and figure separately.
func memoryLine(m memFigures) string {
	l := fmt.Sprintf("bench-memory: idle_mb=%s idle_anon_mb=%s conn_kib=%s conns=%d nginx_conn_kib=%s tuned_conn_kib=%s peak_mb=%s",
		fmtNum(m.IdleMB, 1), fmtNum(m.IdleAnonMB, 1), fmtNum(m.ConnKiB, 1), m.Conns, fmtNum(m.NginxConnKiB, 1), fmtNum(m.TunedConnKiB, 1), fmtNum(m.PeakMB, 1))
	if m.LimiterIPs >= 1_000_000 {
		return l + " limiter_1m_mb=" + fmtNum(m.LimiterMB, 1)
	}
	l += " limiter_1m_mb=na"
	if m.LimiterIPs > 0 {
		l += fmt.Sprintf(" limiter_ips=%d limiter_mb=%s", m.LimiterIPs, fmtNum(m.LimiterMB, 1))
	}
	return l
}

// mb converts bytes to mebibytes.
func mb(b uint64) float64 { return float64(b) / (1 << 20) }

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
func runReference(kind, upstream string) error {
	if !isLoopbackURL(upstream) {
		return fmt.Errorf("bench: %s must be a loopback http URL, got %q", referenceEnv, upstream)
	}
	return referenceMain(kind, upstream, os.Stdin, os.Stdout)
}
