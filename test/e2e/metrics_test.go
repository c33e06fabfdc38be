package e2e

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/authgate/authgate/authn/jwks"
	"github.com/authgate/authgate/authn/jwks/jwkstest"
	"github.com/authgate/authgate/authn/state/statetest"
	"github.com/authgate/authgate/internal/config"
	"github.com/authgate/authgate/internal/testkit/golden"
)

// metricsPolicy is testPolicy with a shadow rule, so that the shadow
// disagreement counter has a series: the dry run would refuse readers the
// reports that the enforced policy gives them.
const metricsPolicy = testPolicy + `  - id: limited
    path: /limited/**
    public: true
    rate_limit: {per: client_ip, every: 1s, burst: 100}
  - id: reports-admin-only
    path: /reports/*
    methods: [GET]
    roles: [admin]
    shadow: true
`

// forbiddenMetricLabels are label names whose values would come from
// unbounded, client-controlled input (raw paths, subjects, addresses); one
// such label lets any client grow the gateway's memory and every scraper's
// storage without limit (cardinality explosion).
var forbiddenMetricLabels = []string{"path", "subject", "user", "username", "client_ip", "remote_addr", "url", "token"}

// maxSeriesPerFamily bounds the series of one family after the traffic
// sent by newFullEnv; a family above it has an unbounded label.
const maxSeriesPerFamily = 40

// newFullEnv starts a gateway with every feature that registers metrics:
// users (login, refresh, logout), API keys, an external JWKS issuer and a
// shadow policy, over plain HTTP. Requests to /public/broken fail upstream:
// the connection is closed without a response.
func newFullEnv(t *testing.T) *gwEnv {
	t.Helper()
	idp := jwkstest.NewIdP(t)
	var e *gwEnv
	upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/public/broken" {
			if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
				c.Close()
			}
			return
		}
		e.up.ServeHTTP(w, r)
	})
	e = newEnv(t, metricsPolicy, upstream, withUsers, func(c *config.Config) {
		c.Sessions.Enabled = true
		c.Issuers = []jwks.IssuerConfig{{
			Issuer: idp.Issuer(), JWKSURI: idp.JWKSURI(), Audiences: []string{"my-app"},
			Algorithms: []string{"RS256"}, RolesClaim: "realm_access.roles",
		}}
	})
	// Ready means the first JWKS fetch is done, so the per-issuer key
	// gauges have their series.
	waitReady(t, e, http.StatusOK)

	tr := e.login("alice", "alice-password-1")
	steps := []struct {
		name   string
		method string
		path   string
		hdr    []string
		want   int
	}{
		{"anonymous public allowed", "GET", "/public/x", nil, http.StatusOK},
		{"anonymous admin denied", "GET", "/admin/x", nil, http.StatusUnauthorized},
		{"reader key on admin denied", "GET", "/admin/x", []string{"X-API-Key", testReaderKey}, http.StatusForbidden},
		{"reader key on reports allowed, shadow disagrees", "GET", "/reports/q1", []string{"X-API-Key", testReaderKey}, http.StatusOK},
		{"admin key allowed", "GET", "/admin/x", []string{"X-API-Key", testAPIKey}, http.StatusOK},
		{"own token allowed", "GET", "/api/x", []string{"Authorization", "Bearer " + tr.AccessToken}, http.StatusOK},
		{"external token allowed", "GET", "/admin/x", []string{"Authorization", "Bearer " + idp.Sign(externalClaims(idp, "admin"), "RS256")}, http.StatusOK},
		{"bad bearer refused", "GET", "/api/x", []string{"Authorization", "Bearer not-a-token"}, http.StatusUnauthorized},
		{"upstream error", "GET", "/public/broken", nil, http.StatusBadGateway},
		{"rate-limited rule", "GET", "/limited/x", nil, http.StatusOK},
	}
	for _, s := range steps {
		resp, body := e.do(s.method, s.path, s.hdr...)
		if resp.StatusCode != s.want {
			t.Fatalf("%s: %s %s = %d, want %d (body %s)", s.name, s.method, s.path, resp.StatusCode, s.want, body)
		}
	}
	resp, body := e.post("/auth/login", url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"wrong-password-1"}})
	if resp.StatusCode == http.StatusOK {
		t.Fatalf("login with a wrong password = 200 %s, want a refusal", body)
	}
	if code, _ := e.refresh(tr.RefreshToken); code != http.StatusOK {
		t.Fatalf("refresh = %d, want 200", code)
	}
	return e
}

// metricFamilies gathers e's registry and returns the families the gateway
// owns, without the Go runtime and process collectors.
func metricFamilies(t *testing.T, e *gwEnv) []*dto.MetricFamily {
	t.Helper()
	mfs, err := e.app.Registry().Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	var own []*dto.MetricFamily
	for _, mf := range mfs {
		if n := mf.GetName(); strings.HasPrefix(n, "go_") || strings.HasPrefix(n, "process_") {
			continue
		}
		own = append(own, mf)
	}
	slices.SortFunc(own, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	return own
}

// TestMetrics runs the metric checks on one fully featured gateway.
func TestMetrics(t *testing.T) {
	e := newFullEnv(t)
	mfs := metricFamilies(t, e)
	if len(mfs) == 0 {
		t.Fatal("the gateway exposes no metric family")
	}
	t.Run("golden", func(t *testing.T) { testMetricsGolden(t, e, mfs) })
	t.Run("label invariants", func(t *testing.T) { testMetricsLabelInvariants(t, e, mfs) })
	t.Run("README table", func(t *testing.T) { testMetricsREADME(t, append(mfs, redisOnlyFamilies(t, mfs)...)) })
}

// redisOnlyFamilies returns the metric families that a gateway on a real
// Redis state store exposes and the fully featured in-memory one (mfs) does
// not: the store's topology metrics.
func redisOnlyFamilies(t *testing.T, mfs []*dto.MetricFamily) []*dto.MetricFamily {
	t.Helper()
	srv := statetest.StartServer(t)
	e := newEnvSecrets(t, config.Secrets{JWT: []byte(testSecret), RedisURL: srv.URL(0)}, testPolicy, nil)
	t.Cleanup(func() { _ = e.app.State().Close() })
	have := map[string]bool{}
	for _, mf := range mfs {
		have[mf.GetName()] = true
	}
	var extra []*dto.MetricFamily
	for _, mf := range metricFamilies(t, e) {
		if !have[mf.GetName()] {
			extra = append(extra, mf)
		}
	}
	if len(extra) == 0 {
		t.Error("a gateway on Redis exposes no metric family beyond the in-memory one's")
	}
	return extra
}

// testMetricsGolden pins the name and type of every metric family a fully
// featured gateway exposes: renaming or retyping one breaks dashboards and
// alerts, so it must show up as a diff of testdata/metrics.golden.
func testMetricsGolden(t *testing.T, e *gwEnv, mfs []*dto.MetricFamily) {
	var b strings.Builder
	for _, mf := range mfs {
		b.WriteString(mf.GetName() + " " + strings.ToLower(mf.GetType().String()) + "\n")
	}
	got := b.String()
	path := filepath.Join("testdata", "metrics.golden")
	if golden.Updating() {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	wantBytes, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestMetrics -update to create it)", err)
	}
	want := string(wantBytes)
	if got != want {
		gotLines, wantLines := strings.Split(got, "\n"), strings.Split(want, "\n")
		for _, l := range wantLines {
			if l != "" && !slices.Contains(gotLines, l) {
				t.Errorf("metric gone or changed: %s", l)
			}
		}
		for _, l := range gotLines {
			if l != "" && !slices.Contains(wantLines, l) {
				t.Errorf("metric new or changed: %s", l)
			}
		}
		t.Errorf("metric families differ from %s (run with -update after checking the change)\n--- got\n%s--- want\n%s", path, got, want)
	}

	// Every pinned family is exposed with at least one series, counted
	// through the registry as a scraper would see it.
	for _, l := range strings.Split(strings.TrimSpace(want), "\n") {
		name, _, _ := strings.Cut(l, " ")
		n, err := testutil.GatherAndCount(e.app.Registry(), name)
		if err != nil {
			t.Fatalf("GatherAndCount(%s): %v", name, err)
		}
		if n == 0 {
			t.Errorf("GatherAndCount(%s) = 0, want at least one series", name)
		}
	}
}

// testMetricsLabelInvariants checks the observability vocabulary: every
// family is the gateway's own (authgate_*) or the metrics handler's
// (promhttp_*), and every authgate_* family is documented, has a bounded
// number of series and carries no label that would hold a raw path,
// subject or address.
func testMetricsLabelInvariants(t *testing.T, e *gwEnv, mfs []*dto.MetricFamily) {
	var own []string
	for _, mf := range mfs {
		name := mf.GetName()
		if !strings.HasPrefix(name, "authgate_") {
			if !strings.HasPrefix(name, "promhttp_") {
				t.Errorf("family %s is neither authgate_* nor promhttp_*", name)
			}
			continue
		}
		own = append(own, name)
		t.Run(name, func(t *testing.T) {
			if strings.TrimSpace(mf.GetHelp()) == "" {
				t.Errorf("family %s has no HELP text", name)
			}
			for _, m := range mf.GetMetric() {
				for _, lp := range m.GetLabel() {
					if slices.Contains(forbiddenMetricLabels, lp.GetName()) {
						t.Errorf("family %s has label %q (value %q): unbounded cardinality", name, lp.GetName(), lp.GetValue())
					}
				}
			}
			n, err := testutil.GatherAndCount(e.app.Registry(), name)
			if err != nil {
				t.Fatalf("GatherAndCount(%s): %v", name, err)
			}
			if n > maxSeriesPerFamily {
				t.Errorf("GatherAndCount(%s) = %d series, want at most %d", name, n, maxSeriesPerFamily)
			}
		})
	}
	if len(own) == 0 {
		t.Fatal("no authgate_* family")
	}

	// The linter's view of the same families: no problem at all, which
	// includes "no help text" and counters without the _total suffix.
	problems, err := testutil.GatherAndLint(e.app.Registry(), own...)
	if err != nil {
		t.Fatalf("GatherAndLint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("lint %s: %s", p.Metric, p.Text)
	}
}

// testMetricsREADME holds the README's metrics table to the registry: every
// authgate_ family the gateway exposes is documented, every documented one
// exists, and every label the table names (in backticks) is a label of
// each family of its row.
func testMetricsREADME(t *testing.T, mfs []*dto.MetricFamily) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	start := strings.Index(text, "\n### Metrics\n")
	if start < 0 {
		t.Fatal("README has no ### Metrics section")
	}
	section := text[start+1:]
	if end := strings.Index(section[4:], "\n#"); end >= 0 {
		section = section[:end+4]
	}
	exposed := map[string]map[string]bool{}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "authgate_") {
			continue
		}
		labels := map[string]bool{}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = true
			}
		}
		exposed[mf.GetName()] = labels
	}
	code := regexp.MustCompile("`([a-z0-9_]+)`")
	documented := map[string]bool{}
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || !strings.Contains(cells[1], "authgate_") {
			continue
		}
		var names []string
		for _, m := range code.FindAllStringSubmatch(cells[1], -1) {
			names = append(names, m[1])
			documented[m[1]] = true
		}
		rowLabels := map[string]bool{}
		for _, m := range code.FindAllStringSubmatch(cells[2], -1) {
			label := m[1]
			rowLabels[label] = true
			if !rowLabelOfAnother(label, names, exposed) {
				t.Errorf("README: no metric of the row %v has the label %q", names, label)
			}
		}
		for _, n := range names {
			for label := range exposed[n] {
				if !rowLabels[label] {
					t.Errorf("README: the label %q of %s is not documented", label, n)
				}
			}
		}
	}
	for n := range exposed {
		if !documented[n] {
			t.Errorf("metric %s is not in the README's metrics table", n)
		}
	}
	for n := range documented {
		if _, ok := exposed[n]; !ok {
			t.Errorf("README documents %s, which the gateway does not expose", n)
		}
	}
}

// rowLabelOfAnother reports whether label belongs to another family of the
// same row: a row like "a, b | x; y" gives a the label x and b the label y.
func rowLabelOfAnother(label string, names []string, exposed map[string]map[string]bool) bool {
	for _, n := range names {
		if exposed[n][label] {
			return true
		}
	}
	return false
}
