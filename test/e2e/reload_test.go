package e2e

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authgate/authgate/internal/config"
)

// reloadPolicyA and reloadPolicyB differ in both directions: A opens
// /public/** and B opens /open/**; both keep /admin/** for admins and deny
// everything else.
const (
	reloadPolicyA = `roles: [admin, reader]
rules:
  - id: public
    path: /public/**
    public: true
  - id: admin
    path: /admin/**
    roles: [admin]
`
	reloadPolicyB = `roles: [admin, reader]
rules:
  - id: open
    path: /open/**
    public: true
  - id: admin
    path: /admin/**
    roles: [admin]
`
)

// probe is one request and the status each of the two policies gives it.
type probe struct {
	who, method, path string
	hdr               []string
	a, b              int
}

// reloadProbes exercise both policies; the last two are allowed by neither
// and must never be answered 200.
var reloadProbes = []probe{
	{"anonymous", "GET", "/public/x", nil, 200, 401},
	{"anonymous", "GET", "/open/x", nil, 401, 200},
	{"admin key", "GET", "/admin/x", []string{"X-API-Key", testAPIKey}, 200, 200},
	{"reader key", "GET", "/admin/x", []string{"X-API-Key", testReaderKey}, 403, 403},
	{"anonymous", "GET", "/elsewhere", nil, 401, 401},
}

func (p probe) String() string { return p.method + " " + p.path + " as " + p.who }

// status sends one request through the gateway and returns its status code.
func (e *gwEnv) status(method, path string, hdr ...string) int {
	e.t.Helper()
	resp, _ := e.do(method, path, hdr...)
	return resp.StatusCode
}

// policyDecisions returns the status of every probe.
func (e *gwEnv) policyDecisions() []int {
	e.t.Helper()
	got := make([]int, len(reloadProbes))
	for i, p := range reloadProbes {
		got[i] = e.status(p.method, p.path, p.hdr...)
	}
	return got
}

// wantDecisions returns the statuses policy "A" or "B" gives the probes.
func wantDecisions(which string) []int {
	want := make([]int, len(reloadProbes))
	for i, p := range reloadProbes {
		want[i] = p.a
		if which == "B" {
			want[i] = p.b
		}
	}
	return want
}

// assertDecisions fails the test unless every probe gets the status of
// policy which ("A" or "B").
func (e *gwEnv) assertDecisions(which string) {
	e.t.Helper()
	got, want := e.policyDecisions(), wantDecisions(which)
	for i, p := range reloadProbes {
		if got[i] != want[i] {
			e.t.Errorf("%v = %d, want %d (policy %s)", p, got[i], want[i], which)
		}
	}
}

// eventually polls cond every 10ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// awaitDecisions waits up to 2s for every probe to get policy which's
// status.
func (e *gwEnv) awaitDecisions(which string) {
	e.t.Helper()
	want := fmt.Sprint(wantDecisions(which))
	var got string
	eventually(e.t, 2*time.Second, "decisions of policy "+which, func() bool {
		got = fmt.Sprint(e.policyDecisions())
		return got == want
	})
}

// replaceByRename writes content to a temporary file in path's directory and
// renames it over path, as editors and config management tools do.
func replaceByRename(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	writeFile(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// kubeMount lays out a directory the way the kubelet mounts a ConfigMap:
// dir/..<timestamp>/policy.yaml holds the content, dir/..data links to the
// timestamped directory and dir/policy.yaml links to ..data/policy.yaml.
type kubeMount struct {
	dir     string
	current string // name of the timestamped directory ..data points to
	serial  int
}

func newKubeMount(t *testing.T, content string) *kubeMount {
	t.Helper()
	m := &kubeMount{dir: t.TempDir()}
	m.current = m.writeVersion(t, content)
	if err := os.Symlink(m.current, filepath.Join(m.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", "policy.yaml"), filepath.Join(m.dir, "policy.yaml")); err != nil {
		t.Fatal(err)
	}
	return m
}

func (m *kubeMount) path() string { return filepath.Join(m.dir, "policy.yaml") }

func (m *kubeMount) writeVersion(t *testing.T, content string) string {
	t.Helper()
	m.serial++
	name := fmt.Sprintf("..2026_11_28_10_00_00.%09d", m.serial)
	if err := os.Mkdir(filepath.Join(m.dir, name), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(m.dir, name, "policy.yaml"), content)
	return name
}

// update swaps in new content exactly as the kubelet's atomic writer does:
// a new timestamped directory, a ..data_tmp symlink to it renamed over
// ..data, then removal of the old directory.
func (m *kubeMount) update(t *testing.T, content string) {
	t.Helper()
	next := m.writeVersion(t, content)
	tmpLink := filepath.Join(m.dir, "..data_tmp")
	if err := os.Symlink(next, tmpLink); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmpLink, filepath.Join(m.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(m.dir, m.current)); err != nil {
		t.Fatal(err)
	}
	m.current = next
}

// metric scrapes the admin /metrics endpoint and returns the value of the
// series name{labels}, where labels is the exposition text between the
// braces (e.g. `result="failure"`) or "" for an unlabelled series.
func (e *gwEnv) metric(name, labels string) float64 {
	e.t.Helper()
	resp, err := e.client.Get(e.gw.AdminURL + "/metrics")
	if err != nil {
		e.t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	series := name
	if labels != "" {
		series += "{" + labels + "}"
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, series+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			e.t.Fatalf("metric line %q: %v", line, err)
		}
		return v
	}
	if err := sc.Err(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Fatalf("metric %s not exposed", series)
	return 0
}

func (e *gwEnv) reloadFailures() float64 {
	e.t.Helper()
	return e.metric("authgate_policy_reload_total", `result="failure"`)
}

func (e *gwEnv) lastReloadOK() float64 {
	e.t.Helper()
	return e.metric("authgate_policy_last_reload_success", "")
}

// rejectedReloadErrors returns the error text of every logged rejected
// reload of file.
func (e *gwEnv) rejectedReloadErrors(file string) []string {
	var out []string
	for _, entry := range e.logs.FilterMessage("reload rejected, keeping the last good version").All() {
		ctx := entry.ContextMap()
		if ctx["file"] != file {
			continue
		}
		msg, _ := ctx["error"].(string)
		out = append(out, msg)
	}
	return out
}

func TestReloadAppliesReplacedPolicy(t *testing.T) {
	tests := []struct {
		name string
		// mount prepares the policy file holding content and returns its
		// path and a function that replaces its content.
		mount func(t *testing.T, content string) (string, func(t *testing.T, content string))
	}{
		{"write and rename", func(t *testing.T, content string) (string, func(*testing.T, string)) {
			path := filepath.Join(t.TempDir(), "policy.yaml")
			writeFile(t, path, content)
			return path, func(t *testing.T, c string) { replaceByRename(t, path, c) }
		}},
		{"kubernetes ..data symlink swap", func(t *testing.T, content string) (string, func(*testing.T, string)) {
			m := newKubeMount(t, content)
			return m.path(), m.update
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path, replace := tc.mount(t, reloadPolicyA)
			e := newEnv(t, reloadPolicyA, nil, func(c *config.Config) { c.PolicyFile = path })
			e.assertDecisions("A")

			replace(t, reloadPolicyB)
			e.awaitDecisions("B")

			// And back: the reverse edit applies too.
			replace(t, reloadPolicyA)
			e.awaitDecisions("A")
			if got := e.reloadFailures(); got != 0 {
				t.Errorf("authgate_policy_reload_total{result=\"failure\"} = %v, want 0", got)
			}
			if got := e.lastReloadOK(); got != 1 {
				t.Errorf("authgate_policy_last_reload_success = %v, want 1", got)
			}
		})
	}
}

func TestReloadRejectsInvalidPolicyAndKeepsLastGood(t *testing.T) {
	tests := []struct {
		name     string
		content  string
		wantLine int    // line the logged error names; 0 for any line
		wantMsg  string // part of the logged error
	}{
		{
			name: "bad yaml",
			content: `roles: [admin, reader]
rules:
  - id: open
    path: [/open/**
    public: true
`,
			// yaml.v3 reports syntax errors a line early; any line will do.
			wantLine: 0,
			wantMsg:  "did not find expected",
		},
		{
			name: "unknown key",
			content: `roles: [admin, reader]
rules:
  - id: open
    path: /open/**
    public: true
  - id: admin
    path: /admin/**
    role: [admin]
`,
			wantLine: 8,
			wantMsg:  `unknown key "role"`,
		},
		{
			name: "unknown role with roles declared",
			content: `roles: [admin, reader]
rules:
  - id: open
    path: /open/**
    public: true
  - id: admin
    path: /admin/**
    roles: [amdin]
`,
			wantLine: 8,
			wantMsg:  `unknown role "amdin"`,
		},
		{
			name: "conflicting rules",
			content: `roles: [admin, reader]
rules:
  - id: open
    path: /open/**
    public: true
  - id: admin
    path: /open/**
    roles: [admin]
`,
			wantLine: 6,
			wantMsg:  "conflicts with rule 1 (line 3)",
		},
		{
			name: "failing inline test",
			content: `roles: [admin, reader]
rules:
  - id: open
    path: /open/**
    public: true
  - id: admin
    path: /admin/**
    roles: [admin]
tests:
  - name: readers administer
    path: /admin/users
    roles: [reader]
    expect: allow
`,
			wantLine: 10,
			wantMsg:  `test "readers administer": failed`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, reloadPolicyA, nil)
			path := e.app.Config().PolicyFile
			e.assertDecisions("A")
			if got := e.lastReloadOK(); got != 1 {
				t.Fatalf("authgate_policy_last_reload_success before the edit = %v, want 1", got)
			}
			failures := e.reloadFailures()

			replaceByRename(t, path, tc.content)
			eventually(t, 2*time.Second, "failed reload counted", func() bool { return e.reloadFailures() > failures })
			if got := e.reloadFailures(); got != failures+1 {
				t.Errorf("authgate_policy_reload_total{result=\"failure\"} = %v, want %v", got, failures+1)
			}
			if got := e.lastReloadOK(); got != 0 {
				t.Errorf("authgate_policy_last_reload_success after a bad edit = %v, want 0", got)
			}
			e.assertDecisions("A")

			errs := e.rejectedReloadErrors(path)
			if len(errs) != 1 {
				t.Fatalf("logged %d rejected reloads of %s, want 1: %q", len(errs), path, errs)
			}
			line := `[1-9][0-9]*`
			if tc.wantLine > 0 {
				line = strconv.Itoa(tc.wantLine)
			}
			loc := regexp.QuoteMeta(path) + ":" + line + ": "
			if !regexp.MustCompile(loc).MatchString(errs[0]) || !strings.Contains(errs[0], tc.wantMsg) {
				t.Errorf("logged error %q, want it to match %q and contain %q", errs[0], loc, tc.wantMsg)
			}

			// The rejected content is not retried on every poll.
			time.Sleep(3 * e.app.Config().ReloadInterval)
			if got := e.reloadFailures(); got != failures+1 {
				t.Errorf("after more polls, failures = %v, want %v", got, failures+1)
			}

			replaceByRename(t, path, reloadPolicyB)
			e.awaitDecisions("B")
			if got := e.lastReloadOK(); got != 1 {
				t.Errorf("authgate_policy_last_reload_success after recovery = %v, want 1", got)
			}
		})
	}
}

func TestReloadDeletedPolicyKeepsLastGood(t *testing.T) {
	tests := []struct {
		name     string
		restored string // content written back after the delete
		want     string // policy in force afterwards
	}{
		{"restored with new content", reloadPolicyB, "B"},
		{"restored with the same content", reloadPolicyA, "A"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, reloadPolicyA, nil)
			path := e.app.Config().PolicyFile
			e.assertDecisions("A")
			failures := e.reloadFailures()

			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			eventually(t, 2*time.Second, "missing file reported", func() bool { return len(e.rejectedReloadErrors(path)) > 0 })
			e.assertDecisions("A")
			if got := e.lastReloadOK(); got != 0 {
				t.Errorf("authgate_policy_last_reload_success with the file missing = %v, want 0", got)
			}
			if got := e.reloadFailures(); got != failures+1 {
				t.Errorf("authgate_policy_reload_total{result=\"failure\"} = %v, want %v", got, failures+1)
			}
			if errs := e.rejectedReloadErrors(path); len(errs) != 1 || !strings.Contains(errs[0], path) {
				t.Errorf("logged rejected reloads %q, want one naming %s", errs, path)
			}

			replaceByRename(t, path, tc.restored)
			e.awaitDecisions(tc.want)
			// Restoring the file clears the failure signal, whatever the
			// content: alerts on the gauge must not fire forever.
			eventually(t, 2*time.Second, "authgate_policy_last_reload_success back to 1", func() bool { return e.lastReloadOK() == 1 })
		})
	}
}

func TestReloadUnderConcurrentTraffic(t *testing.T) {
	e := newEnv(t, reloadPolicyA, nil)
	path := e.app.Config().PolicyFile
	invalid := strings.Replace(reloadPolicyB, "roles: [admin]", "roles: [amdin]", 1)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	t.Cleanup(client.CloseIdleConnections)

	stop := make(chan struct{})
	var (
		wg       sync.WaitGroup
		requests atomic.Int64
		// seenA and seenB count responses only one policy explains, to
		// show that the reloads took effect while traffic flowed.
		seenA, seenB atomic.Int64
	)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				p := reloadProbes[i%len(reloadProbes)]
				req, err := http.NewRequest(p.method, e.gw.URL+p.path, nil)
				if err != nil {
					t.Error(err)
					return
				}
				for j := 0; j+1 < len(p.hdr); j += 2 {
					req.Header.Set(p.hdr[j], p.hdr[j+1])
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Errorf("%v: %v", p, err)
					return
				}
				resp.Body.Close()
				requests.Add(1)
				switch got := resp.StatusCode; {
				case got >= 500:
					t.Errorf("%v = %d during reloads, want no 5xx", p, got)
				case got != p.a && got != p.b:
					t.Errorf("%v = %d during reloads, want %d (policy A) or %d (policy B)", p, got, p.a, p.b)
				case p.a != p.b && got == p.a:
					seenA.Add(1)
				case p.a != p.b && got == p.b:
					seenB.Add(1)
				}
			}
		}()
	}

	failuresBefore := e.reloadFailures()
	// At least 1s and 30 reloads, however slow the machine, within 10s.
	var reloads, invalids int
	start := time.Now()
	for i := 0; (time.Since(start) < time.Second || reloads < 30) && time.Since(start) < 10*time.Second; i++ {
		content := reloadPolicyA
		switch {
		case i%3 == 2:
			content = invalid
			invalids++
		case i%2 == 1:
			content = reloadPolicyB
		}
		replaceByRename(t, path, content)
		e.app.CheckFiles()
		reloads++
		time.Sleep(2 * time.Millisecond)
	}
	close(stop)
	wg.Wait()

	t.Logf("%d reloads (%d invalid), %d requests, %d answered as policy A only, %d as policy B only",
		reloads, invalids, requests.Load(), seenA.Load(), seenB.Load())
	if requests.Load() < 100 || reloads < 30 {
		t.Errorf("only %d requests and %d reloads: the test did not exercise concurrency", requests.Load(), reloads)
	}
	if seenA.Load() == 0 || seenB.Load() == 0 {
		t.Errorf("answers by policy A only: %d, by policy B only: %d; want both, reloads did not take effect under load", seenA.Load(), seenB.Load())
	}
	if got := e.reloadFailures(); got <= failuresBefore {
		t.Errorf("authgate_policy_reload_total{result=\"failure\"} = %v after %d invalid edits, want it to grow", got, invalids)
	}

	// Quiesced, the last valid content is in force.
	replaceByRename(t, path, reloadPolicyB)
	e.app.CheckFiles()
	e.assertDecisions("B")
}
