// Package rollout runs real gateway processes in front of a real app
// process under keep-alive load, and stops or restarts them as a rolling
// update, a whole-pod stop or an app restart does, in each topology a
// client can reach the gateway through. The short form runs in `make
// test`; AUTHGATE_ROLLOUT_LONG=1 runs the long form whose figures the
// README quotes.
package rollout

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
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
	"syscall"
	"testing"
	"time"

	"github.com/authgate/authgate/internal/testkit"
)

// settings are the knobs of one run. The short form keeps every topology
// to a few seconds; the long form uses the gateway's production defaults
// and many rounds.
type settings struct {
	long     bool
	rounds   int           // SIGTERMs (or app restarts) per topology
	clients  int           // keep-alive client loops
	delay    time.Duration // listen.shutdown_delay
	timeout  time.Duration // listen.shutdown_timeout
	retry    string        // upstream.retry_refused_delay; "" keeps the default
	lag      time.Duration // endpoint propagation: readiness seen -> endpoints updated
	warm     time.Duration // steady load before each round and at the end
	gap      time.Duration // app restart gap
	gapsLong time.Duration // an app restart gap longer than the retry delay
}

func loadSettings(t *testing.T) settings {
	t.Helper()
	if testing.Short() {
		t.Skip("runs gateway, app and nginx processes under load")
	}
	s := settings{rounds: 1, clients: 32, delay: time.Second, timeout: 5 * time.Second,
		lag: 250 * time.Millisecond, warm: 400 * time.Millisecond, gap: 26 * time.Millisecond, gapsLong: 200 * time.Millisecond}
	if os.Getenv("AUTHGATE_ROLLOUT_LONG") == "1" {
		s.long, s.rounds, s.delay, s.timeout, s.warm = true, 10, 5*time.Second, 30*time.Second, 2*time.Second
		s.lag = time.Second
	}
	if v := os.Getenv("AUTHGATE_ROLLOUT_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("AUTHGATE_ROLLOUT_ROUNDS=%q: want a positive integer", v)
		}
		s.rounds = n
	}
	if v := os.Getenv("AUTHGATE_ROLLOUT_CLIENTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 2 {
			t.Fatalf("AUTHGATE_ROLLOUT_CLIENTS=%q: want an integer >= 2", v)
		}
		s.clients = n
	}
	return s
}

// The binaries, built once per test run: the gateway (or the one named by
// AUTHGATE_ROLLOUT_BIN, to measure another build) and the app.
var bins struct {
	once        sync.Once
	dir         string
	gateway, up string
	err         error
}

func binaries(t *testing.T) (gateway, up string) {
	t.Helper()
	bins.once.Do(func() {
		bins.dir, bins.err = os.MkdirTemp("", "authgate-rollout-")
		if bins.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		if bins.gateway = os.Getenv("AUTHGATE_ROLLOUT_BIN"); bins.gateway == "" {
			if bins.gateway, bins.err = testkit.Build(ctx, bins.dir); bins.err != nil {
				return
			}
		}
		bins.up, bins.err = testkit.BuildCommand(ctx, bins.dir, "./test/rollout/upstreamd", "upstreamd")
	})
	if bins.err != nil {
		t.Fatal(bins.err)
	}
	return bins.gateway, bins.up
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bins.dir != "" {
		os.RemoveAll(bins.dir)
	}
	os.Exit(code)
}

// line is one line a process printed, with when it was read.
type line struct {
	at   time.Time
	text string
}

// proc is a child process. Its output is kept; the app's lines are also
// delivered on lines, timestamped.
type proc struct {
	name  string
	cmd   *exec.Cmd
	mu    sync.Mutex
	out   bytes.Buffer
	lines chan line
	done  chan struct{}
	err   error // Wait's result, valid once done is closed
}

func startProc(t *testing.T, name, bin string, args, env []string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: exec.Command(bin, args...), lines: make(chan line, 64), done: make(chan struct{})}
	p.cmd.Env = env
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = p.cmd.Stdout
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			l := line{at: time.Now(), text: sc.Text()}
			p.mu.Lock()
			if p.out.Len() < 4<<20 {
				p.out.WriteString(l.text + "\n")
			}
			p.mu.Unlock()
			select {
			case p.lines <- l:
			default:
			}
		}
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", p.name, p.output())
		}
	})
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *proc) signal(sig os.Signal) { _ = p.cmd.Process.Signal(sig) }

// wait waits up to d for the process to exit and reports whether it did.
func (p *proc) wait(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// expect waits up to d for a line starting with prefix.
func (p *proc) expect(t *testing.T, prefix string, d time.Duration) time.Time {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case l := <-p.lines:
			if strings.HasPrefix(l.text, prefix) {
				return l.at
			}
		case <-p.done:
			t.Fatalf("%s exited (%v) before printing %q:\n%s", p.name, p.err, prefix, p.output())
		case <-deadline:
			t.Fatalf("%s printed no %q within %v:\n%s", p.name, prefix, d, p.output())
		}
	}
}

// stopModel is how a pod stops.
type stopModel int

const (
	// appOutlives: the gateway gets SIGTERM, the app only once the gateway
	// has exited (the chart's preStop sleep on the app).
	appOutlives stopModel = iota
	// together: the gateway and the app get SIGTERM at the same instant
	// and the app exits at once.
	together
	// gatewayOnly: the gateway stops and starts again; the app stays.
	gatewayOnly
)

// slot is one pod: an app and a gateway in front of it, on fixed loopback
// ports, so that a replacement listens where its predecessor did.
type slot struct {
	idx                      int
	dir                      string
	appAddr, gwAddr, admAddr string
	app, gw                  *proc
}

// cluster is a set of pods, the endpoints a Service would route to, and
// the rounds of a rollout.
type cluster struct {
	t       *testing.T
	s       settings
	gwBin   string
	upBin   string
	appMode string
	slots   []*slot
	// published is, per slot, whether the Service routes new connections
	// to it: its readiness as the endpoints controller last saw it, lag
	// later.
	published []atomic.Bool
	signalAt  atomic.Int64 // unix ns of the latest SIGTERM
	stopPoll  chan struct{}
	pollWG    sync.WaitGroup
	exits     []exitRecord
}

type exitRecord struct {
	err  error
	took time.Duration
}

const gatewayConfig = `upstream:
  url: http://%s
%slisten:
  address: %s
  admin_address: %s
  shutdown_delay: %s
  shutdown_timeout: %s
policy_file: policy.yaml
reload_interval: 1h
logging:
  level: info
  allowed_sample_rate: 0
`

const gatewayPolicy = "rules:\n  - id: app\n    path: /app/**\n    public: true\n"

func newCluster(t *testing.T, s settings, pods int, appMode string) *cluster {
	t.Helper()
	gw, up := binaries(t)
	c := &cluster{t: t, s: s, gwBin: gw, upBin: up, appMode: appMode, published: make([]atomic.Bool, pods), stopPoll: make(chan struct{})}
	for i := range pods {
		sl := &slot{idx: i, dir: t.TempDir()}
		for _, a := range []*string{&sl.appAddr, &sl.gwAddr, &sl.admAddr} {
			var err error
			// Processes restart on these addresses: keep them out of the
			// ephemeral range, where another socket could take them.
			if *a, err = testkit.StableAddr(); err != nil {
				t.Fatal(err)
			}
		}
		retry := ""
		if s.retry != "" {
			retry = "  retry_refused_delay: " + s.retry + "\n"
		}
		cfg := fmt.Sprintf(gatewayConfig, sl.appAddr, retry, sl.gwAddr, sl.admAddr, s.delay, s.timeout)
		for name, text := range map[string]string{"config.yaml": cfg, "policy.yaml": gatewayPolicy} {
			if err := os.WriteFile(filepath.Join(sl.dir, name), []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		c.slots = append(c.slots, sl)
		c.startSlot(i)
		c.published[i].Store(true)
	}
	for i := range c.slots {
		c.pollWG.Add(1)
		go c.pollEndpoints(i)
	}
	t.Cleanup(func() {
		close(c.stopPoll)
		c.pollWG.Wait()
	})
	return c
}

// startApp starts the app of slot i; with wait it listens only on SIGUSR1.
func (c *cluster) startApp(i int, wait bool) *proc {
	sl := c.slots[i]
	args := []string{"-addr", sl.appAddr, "-mode", c.appMode}
	if wait {
		args = append(args, "-wait")
	}
	p := startProc(c.t, fmt.Sprintf("app %d", i), c.upBin, args, nil)
	if wait {
		// A SIGUSR1 sent before the process listens for it would be lost.
		p.expect(c.t, "waiting", 10*time.Second)
	}
	return p
}

// startSlot starts pod i (its app, then its gateway) and waits until the
// gateway is ready.
func (c *cluster) startSlot(i int) {
	t := c.t
	sl := c.slots[i]
	if sl.app == nil {
		sl.app = c.startApp(i, false)
		sl.app.expect(t, "listening", 10*time.Second)
	}
	sl.gw = startProc(t, fmt.Sprintf("gateway %d", i), c.gwBin, []string{"serve", "--config", filepath.Join(sl.dir, "config.yaml")},
		[]string{"AUTHGATE_JWT_SECRET=rollout-test-secret-0123456789abcdefghij"})
	deadline := time.Now().Add(10 * time.Second)
	for readyz(sl.admAddr) != http.StatusOK {
		if sl.gw.wait(0) || time.Now().After(deadline) {
			t.Fatalf("gateway %d not ready (exited: %v):\n%s", i, sl.gw.wait(0), sl.gw.output())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var probeClient = &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// readyz returns the status of GET /readyz, 0 when nothing answers.
func readyz(admAddr string) int {
	resp, err := probeClient.Get("http://" + admAddr + "/readyz")
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// pollEndpoints is the endpoints controller and kube-proxy for slot i: it
// probes readiness every 50 ms and updates what the Service routes to lag
// after a change.
func (c *cluster) pollEndpoints(i int) {
	defer c.pollWG.Done()
	seen := true
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-c.stopPoll:
			return
		case <-tick.C:
		}
		ready := readyz(c.slots[i].admAddr) == http.StatusOK
		if ready != seen {
			seen = ready
			time.AfterFunc(c.s.lag, func() { c.published[i].Store(ready) })
		}
	}
}

// serviceDial opens a connection the way a ClusterIP Service does: the
// backend is chosen once per connection among the ready endpoints, and the
// connection stays with it.
func (c *cluster) serviceDial(ctx context.Context, _, _ string) (net.Conn, error) {
	var ready []int
	for i := range c.published {
		if c.published[i].Load() {
			ready = append(ready, i)
		}
	}
	if len(ready) == 0 {
		return nil, errors.New("service: no ready endpoints")
	}
	d := net.Dialer{Timeout: 2 * time.Second}
	return d.DialContext(ctx, "tcp", c.slots[ready[rand.IntN(len(ready))]].gwAddr)
}

// stopSlot stops pod i as model says and waits until it is gone.
func (c *cluster) stopSlot(i int, model stopModel) {
	t := c.t
	sl := c.slots[i]
	at := time.Now()
	c.signalAt.Store(at.UnixNano())
	sl.gw.signal(syscall.SIGTERM)
	if model == together {
		sl.app.signal(syscall.SIGTERM)
	}
	bound := c.s.delay + c.s.timeout + 10*time.Second
	if !sl.gw.wait(bound) {
		t.Fatalf("gateway %d did not exit within %v of SIGTERM", i, bound)
	}
	c.exits = append(c.exits, exitRecord{err: sl.gw.err, took: time.Since(at)})
	switch model {
	case gatewayOnly:
		return
	case appOutlives:
		sl.app.signal(syscall.SIGTERM)
	}
	if !sl.app.wait(10 * time.Second) {
		t.Fatalf("app %d did not exit", i)
	}
	sl.app = nil
}

// rollout restarts the pods one after the other, rounds times in all,
// under load, each as model says, like a Deployment's rolling update.
func (c *cluster) rollout(model stopModel) {
	for r := range c.s.rounds {
		time.Sleep(c.s.warm)
		i := r % len(c.slots)
		c.stopSlot(i, model)
		c.startSlot(i)
	}
	time.Sleep(c.s.warm)
}

// restartApp restarts the app of pod i as a graceful in-place restart:
// the old process stops (closing its listener at once) and the new one
// listens gap later. It returns the measured gap.
func (c *cluster) restartApp(i int, gap time.Duration) time.Duration {
	t := c.t
	sl := c.slots[i]
	next := c.startApp(i, true)
	old := sl.app
	c.signalAt.Store(time.Now().UnixNano())
	old.signal(syscall.SIGTERM)
	closed := old.expect(t, "stopping", 10*time.Second)
	time.Sleep(time.Until(closed.Add(gap)))
	next.signal(syscall.SIGUSR1)
	open := next.expect(t, "listening", 10*time.Second)
	sl.app = next
	if !old.wait(30 * time.Second) {
		t.Fatalf("old app %d did not exit", i)
	}
	return open.Sub(closed)
}

// checkExits fails the test for a gateway that did not exit 0.
func (c *cluster) checkExits() (slowest time.Duration) {
	for i, e := range c.exits {
		if e.err != nil {
			c.t.Errorf("gateway stop %d: exit %v, want 0", i, e.err)
		}
		slowest = max(slowest, e.took)
	}
	return slowest
}

// metric returns the sum of the samples of name on slot i's admin listener.
func (c *cluster) metric(i int, name string) float64 {
	resp, err := probeClient.Get("http://" + c.slots[i].admAddr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, name+" ") || strings.HasPrefix(l, name+"{") {
			f := strings.Fields(l)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

// tally is what one client loop saw.
type tally struct {
	total, ok  int
	redirected int // refused dials sent again elsewhere (direct clients)
	methods    map[string]int
	failures   map[string]int // "POST 502 gateway", "GET eof", ...
	samples    []string
}

func newTally() *tally { return &tally{methods: map[string]int{}, failures: map[string]int{}} }

func (s *tally) add(o *tally) {
	s.total += o.total
	s.ok += o.ok
	s.redirected += o.redirected
	for k, v := range o.methods {
		s.methods[k] += v
	}
	for k, v := range o.failures {
		s.failures[k] += v
	}
	for _, x := range o.samples {
		if len(s.samples) < 20 {
			s.samples = append(s.samples, x)
		}
	}
}

func (s *tally) failed() int {
	n := 0
	for _, v := range s.failures {
		n += v
	}
	return n
}

func (s *tally) String() string {
	keys := make([]string, 0, len(s.failures))
	for k := range s.failures {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var f []string
	for _, k := range keys {
		f = append(f, fmt.Sprintf("%s: %d", k, s.failures[k]))
	}
	out := fmt.Sprintf("%d requests (GET %d, POST %d), %d failed", s.total, s.methods["GET"], s.methods["POST"], s.failed())
	if len(f) > 0 {
		out += " [" + strings.Join(f, ", ") + "]"
	}
	if s.redirected > 0 {
		out += fmt.Sprintf(", %d refused dials sent elsewhere", s.redirected)
	}
	return out
}

// target is where a client loop sends its requests: a base URL per
// choice, and how many choices there are (direct clients fail over).
type target struct {
	urls []string
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// load is the client loops.
type load struct {
	stop    chan struct{}
	wg      sync.WaitGroup
	tallies []*tally
}

// runLoad starts n keep-alive client loops against tg. Each loop has its
// own connection pool (one kept-alive connection), alternates GET and
// POST (a body of 64 B to 4 KiB whose checksum the app returns) and,
// with several URLs, stays on one until a transport error and then moves
// to the next; a refused dial (nothing was sent) is sent again there at
// once.
func runLoad(c *cluster, n int, tg target) *load {
	l := &load{stop: make(chan struct{})}
	for i := range n {
		s := newTally()
		l.tallies = append(l.tallies, s)
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			dial := tg.dial
			if dial == nil {
				dial = (&net.Dialer{Timeout: 2 * time.Second}).DialContext
			}
			tr := &http.Transport{DialContext: dial, MaxIdleConnsPerHost: 1, IdleConnTimeout: time.Minute, ResponseHeaderTimeout: 20 * time.Second}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			buf := make([]byte, 4096)
			for j := range buf {
				buf[j] = byte(rng.UintN(256))
			}
			cur := i % len(tg.urls)
			for k := 0; ; k++ {
				select {
				case <-l.stop:
					return
				default:
				}
				method, body := "GET", []byte(nil)
				if k%2 == 1 {
					method, body = "POST", buf[:64+rng.IntN(len(buf)-64)]
				}
				s.total++
				s.methods[method]++
				for attempt := 0; ; attempt++ {
					fail, kind := c.do(client, tg.urls[cur], method, body)
					if kind == outcomeRefused && attempt < len(tg.urls)-1 {
						s.redirected++
						cur = (cur + 1) % len(tg.urls)
						continue
					}
					if kind == outcomeOK {
						s.ok++
						break
					}
					s.failures[method+" "+fail]++
					if len(s.samples) < 20 {
						since := time.Duration(time.Now().UnixNano() - c.signalAt.Load())
						s.samples = append(s.samples, fmt.Sprintf("%s %s %s (%v after the last signal)", method, tg.urls[cur], fail, since.Round(time.Millisecond)))
					}
					if kind != outcomeHTTP {
						// The connection failed: reconnect elsewhere.
						cur = (cur + 1) % len(tg.urls)
					}
					break
				}
			}
		}()
	}
	return l
}

// Outcomes of one request.
const (
	outcomeOK        = iota
	outcomeHTTP      // a wrong answer
	outcomeTransport // the connection failed
	outcomeRefused   // the dial was refused: nothing was sent
)

// do sends one request and returns what went wrong ("" for a right
// answer) and the outcome.
func (c *cluster) do(client *http.Client, base, method string, body []byte) (fail string, outcome int) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, base+"/app/x", rd)
	if err != nil {
		return "bad request " + err.Error(), outcomeHTTP
	}
	resp, err := client.Do(req)
	if err != nil {
		if testkit.IsRefusedDial(err) {
			return "refused", outcomeRefused
		}
		return errKind(err), outcomeTransport
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return "body " + errKind(err), outcomeTransport
	}
	if resp.StatusCode != http.StatusOK {
		from := "front"
		if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			from = "gateway"
		}
		return fmt.Sprintf("%d %s", resp.StatusCode, from), outcomeHTTP
	}
	want := "ok"
	if body != nil {
		want = fmt.Sprintf("ok %d %08x", len(body), crc32.ChecksumIEEE(body))
	}
	if string(got) != want {
		return "wrong body", outcomeHTTP
	}
	return "", outcomeOK
}

// stopLoad stops the loops and returns their sum.
func (l *load) stopLoad() *tally {
	close(l.stop)
	l.wg.Wait()
	sum := newTally()
	for _, s := range l.tallies {
		sum.add(s)
	}
	return sum
}

func errKind(err error) string {
	var ne net.Error
	switch {
	case testkit.IsRefusedDial(err):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "error"
}
