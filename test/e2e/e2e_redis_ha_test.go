package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authgate/authgate/authn/issuer"
	"github.com/authgate/authgate/authn/state"
	"github.com/authgate/authgate/authn/state/statetest"
	"github.com/authgate/authgate/internal/config"
)

// readyState is the state store part of a /readyz answer.
type readyState struct {
	Status     string   `json:"status"`
	StateStore string   `json:"state_store"`
	Topology   string   `json:"state_topology"`
	Primaries  []string `json:"state_primaries"`
	Changed    string   `json:"state_topology_changed"`
}

func readyOf(t *testing.T, e *gwEnv) readyState {
	t.Helper()
	code, body := adminGet(t, e, "/readyz")
	var r readyState
	if code != http.StatusOK || json.Unmarshal([]byte(body), &r) != nil {
		t.Fatalf("GET /readyz = %d %s", code, body)
	}
	return r
}

// metricLines returns the lines of e's /metrics that start with name.
func metricLines(t *testing.T, e *gwEnv, name string) []string {
	t.Helper()
	_, body := adminGet(t, e, "/metrics")
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, name) {
			out = append(out, l)
		}
	}
	return out
}

// TestE2ERedisCluster runs two gateways on a three-primary Redis Cluster:
// global login limits, rotation, reuse detection and logout across
// replicas, every key tagged and expiring, and readiness and metrics
// naming the three primaries.
func TestE2ERedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node Redis Cluster")
	}
	cl := statetest.StartCluster(t, 3)
	checkNoLeaks(t, nil)
	const prefix = "cluster:"
	usersFile := filepath.Join(t.TempDir(), "users.yaml")
	writeFile(t, usersFile, replicaUsers(t, "alice", "bob", "carol", "dave", "erin"))
	reps := newReplicasSec(t, 2, config.Secrets{JWT: []byte(testSecret)}, prefix, usersFile, sharedFlowsConfig, func(c *config.Config) {
		c.Redis.Cluster.Addresses = cl.Addrs()[:1] // one seed: the rest is discovered
	})
	sharedStateFlows(t, reps)

	t.Run("every key tagged and expiring, on every node", func(t *testing.T) {
		total := map[string]int{}
		for _, addr := range cl.Addrs() {
			for k, n := range assertStateTTLs(t, "redis://"+addr+"/0", prefix, reps[0].app.Config()) {
				total[k] += n
			}
		}
		if total["fam:"] != 4 || total["login:a:{u:"] != 5 {
			t.Errorf("keys over the cluster = %v, want 4 families and 5 accounts", total)
		}
	})

	t.Run("readiness and metrics name the primaries", func(t *testing.T) {
		for _, e := range reps {
			r := readyOf(t, e)
			if r.StateStore != "up" || r.Topology != "cluster" || len(r.Primaries) != 3 || r.Changed == "" {
				t.Errorf("/readyz = %+v, want the cluster up with three primaries", r)
			}
			if got := metricLines(t, e, `authgate_state_store_primary_info{`); len(got) != 3 || !strings.Contains(got[0], `topology="cluster"`) {
				t.Errorf("primary_info series = %q, want three", got)
			}
			if v := storeUpMetric(t, e); v != "1" {
				t.Errorf("authgate_state_store_up = %s, want 1", v)
			}
		}
	})

	t.Run("a primary down is the store down", func(t *testing.T) {
		cl.Nodes[2].Stop()
		deadline := time.Now().Add(10 * time.Second)
		for storeUpMetric(t, reps[0]) != "0" {
			if time.Now().After(deadline) {
				t.Fatal("authgate_state_store_up still 1 with a cluster primary down")
			}
			time.Sleep(100 * time.Millisecond)
		}
		if r := readyOf(t, reps[0]); r.StateStore != "down" {
			t.Errorf("/readyz with a primary down = %+v, want state_store down", r)
		}
	})
}

// haResult counts what one kind of request met during a failover.
type haResult struct {
	ok, failed, other atomic.Int64
	noRetryAfter      atomic.Int64
	transport         atomic.Int64 // requests that got no answer
	busy              atomic.Int64 // 503 for want of a bcrypt slot, not of the store

	mu          sync.Mutex
	first, last time.Time // of the failures
	kill        time.Time // once set, the first success of a request sent later is noted
	back        time.Time // when that request was sent
}

// record counts one answer to a request sent at sent.
func (r *haResult) record(status int, h http.Header, sent time.Time) {
	switch status {
	case http.StatusOK:
		r.ok.Add(1)
		r.mu.Lock()
		if !r.kill.IsZero() && sent.After(r.kill) && (r.back.IsZero() || sent.Before(r.back)) {
			r.back = sent
		}
		r.mu.Unlock()
		return
	case http.StatusServiceUnavailable:
		if h.Get("Retry-After") == "2" {
			// The bcrypt pool's answer (issuer.retryBcryptBusy), on a
			// machine loaded by -race: not the store's.
			r.busy.Add(1)
			return
		}
		r.failed.Add(1)
		if h.Get("Retry-After") == "" {
			r.noRetryAfter.Add(1)
		}
	default:
		r.other.Add(1)
	}
	now := time.Now()
	r.mu.Lock()
	if r.first.IsZero() {
		r.first = now
	}
	r.last = now
	r.mu.Unlock()
}

func (r *haResult) window() (first, last time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.first, r.last
}

func (r *haResult) killed(at time.Time) {
	r.mu.Lock()
	r.kill = at
	r.mu.Unlock()
}

// recovered returns when the first request that succeeded after the kill
// was sent.
func (r *haResult) recovered() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.back
}

// getBearer is a GET through e with token, safe on any goroutine.
func getBearer(e *gwEnv, path, token string) (int, error) {
	req, err := http.NewRequest(http.MethodGet, e.gw.URL+path, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := e.client.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestE2ERedisSentinelFailover kills the Sentinel-managed primary under
// proxied, login and refresh load on two gateways: login and refresh fail
// closed (503 with Retry-After) and recover on their own shortly after the
// new primary is elected, proxied requests with valid tokens never fail,
// and no rotation is judged reuse. A third gateway checks access tokens
// against the revocation list (fail closed): its proxied requests fail
// during the failover, as documented. AUTHGATE_FAILOVER_ROUNDS=n fails
// over n times (default 1).
func TestE2ERedisSentinelFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Sentinel deployment and fails it over")
	}
	rounds := 1
	if v := os.Getenv("AUTHGATE_FAILOVER_ROUNDS"); v != "" {
		if _, err := fmt.Sscan(v, &rounds); err != nil || rounds < 1 {
			t.Fatalf("AUTHGATE_FAILOVER_ROUNDS=%q: want a positive integer", v)
		}
	}
	const dataPassword, sentinelPassword = "sentinel-e2e-data-secret", "sentinel-e2e-sentinel-secret"
	registerSecret(dataPassword)
	registerSecret(sentinelPassword)
	// Two replicas: one is left after a failover to confirm writes
	// (wait_replicas 1).
	began := time.Now()
	d := statetest.StartSentinel(t, statetest.SentinelOptions{Replicas: 2, Password: dataPassword, SentinelPassword: sentinelPassword})
	t.Logf("sentinel deployment up in %v", time.Since(began).Round(10*time.Millisecond))
	checkNoLeaks(t, nil)
	const prefix = "failover:"
	const workers = 3
	var names []string
	for i := range 2 * workers {
		names = append(names, fmt.Sprintf("user%d", i))
	}
	usersFile := filepath.Join(t.TempDir(), "users.yaml")
	writeFile(t, usersFile, replicaUsers(t, names...))
	sec := config.Secrets{JWT: []byte(testSecret), RedisPass: dataPassword, RedisSentinelPass: sentinelPassword}
	ha := func(revocation bool) envOption {
		return func(c *config.Config) {
			c.Redis.Sentinel = config.RedisSentinelConfig{MasterName: d.Master, Addresses: d.SentinelAddrs()}
			c.Redis.WaitReplicas = 1
			c.Redis.Timeout = 500 * time.Millisecond
			c.Auth.StateTimeout = time.Second
			c.Auth.Limits = issuer.Limits{
				LoginPerIP:   state.Limit{Every: time.Millisecond, Burst: 10000},
				LoginPerUser: state.Limit{Every: time.Millisecond, Burst: 10000},
				RefreshPerIP: state.Limit{Every: time.Millisecond, Burst: 10000},
			}
			c.Auth.AccessRevocation = config.RevocationConfig{Enabled: revocation}
			c.Auth.BcryptConcurrency = workers
		}
	}
	reps := newReplicasSec(t, 2, sec, prefix, usersFile, ha(false))
	revoking := newReplicasSec(t, 1, sec, prefix, usersFile, ha(true))[0]
	t.Logf("gateways up after %v", time.Since(began).Round(10*time.Millisecond))

	for round := range rounds {
		t.Run(fmt.Sprintf("round %d", round+1), func(t *testing.T) {
			reportTo(t, append([]*gwEnv{revoking}, reps...)...)
			var proxied, proxiedRevoking, logins, refreshes, logouts haResult
			stop := make(chan struct{})
			var wg sync.WaitGroup
			pause := func(d time.Duration) bool {
				select {
				case <-stop:
					return false
				case <-time.After(d):
					return true
				}
			}
			reuseBefore := 0
			for _, n := range names {
				reuseBefore += reuseEvents(n, reps...)
			}
			for w := range workers {
				e := reps[w%2]
				other := reps[(w+1)%2]
				loginUser, refreshUser := names[2*w], names[2*w+1]
				tr := e.login(refreshUser, replicaPassword)
				access := tr.AccessToken
				wg.Go(func() { // proxied requests with a valid access token, on both kinds of gateway
					for {
						sent := time.Now()
						if code, err := getBearer(e, "/api/x", access); err != nil {
							proxied.transport.Add(1)
							t.Logf("proxied request: %v", err)
						} else {
							proxied.record(code, nil, sent)
						}
						sent = time.Now()
						if code, err := getBearer(revoking, "/api/x", access); err != nil {
							proxiedRevoking.transport.Add(1)
						} else {
							proxiedRevoking.record(code, nil, sent)
						}
						if !pause(10 * time.Millisecond) {
							return
						}
					}
				})
				wg.Go(func() { // logins
					for {
						sent := time.Now()
						if r, err := postForm(e, "/auth/login", loginForm(loginUser, replicaPassword)); err != nil {
							logins.transport.Add(1)
						} else {
							logins.record(r.status, r.header, sent)
						}
						if !pause(100 * time.Millisecond) {
							return
						}
					}
				})
				ended := e.login(loginUser, replicaPassword)
				wg.Go(func() { // logouts of one session on the other replica: each revokes its family again
					for {
						sent := time.Now()
						if r, err := postForm(other, "/auth/logout", url.Values{"refresh_token": {ended.RefreshToken}}); err != nil {
							logouts.transport.Add(1)
						} else {
							logouts.record(r.status, r.header, sent)
						}
						if !pause(100 * time.Millisecond) {
							return
						}
					}
				})
				wg.Go(func() { // a refresh chain that alternates replicas and retries its token after a 503
					rt := tr.RefreshToken
					for i := 0; ; i++ {
						target := e
						if i%2 == 1 {
							target = other
						}
						sent := time.Now()
						r, err := postForm(target, "/auth/refresh", refreshForm(rt))
						switch {
						case err != nil:
							refreshes.transport.Add(1)
						case r.status == http.StatusOK:
							rt = r.token.RefreshToken
						}
						if err == nil {
							refreshes.record(r.status, r.header, sent)
						}
						if !pause(50 * time.Millisecond) {
							return
						}
					}
				})
			}
			halted := false
			halt := func() {
				if !halted {
					close(stop)
					wg.Wait()
					halted = true
				}
			}
			defer halt()
			time.Sleep(time.Second)
			old, err := d.Primary()
			if err != nil {
				t.Fatal(err)
			}
			killed := time.Now()
			for _, r := range []*haResult{&logins, &refreshes, &logouts, &proxiedRevoking} {
				r.killed(killed)
			}
			d.Node(old).Stop()
			elected := d.WaitFailover(old, 60*time.Second)
			electedAt := time.Now()
			deadline := electedAt.Add(60 * time.Second)
			for {
				time.Sleep(200 * time.Millisecond)
				if p, err := d.Primary(); err == nil && p != elected {
					// On a starved machine the sentinels may miss the new
					// primary's answers too and fail over again.
					t.Logf("the sentinels failed over again, to %s", p)
					elected, electedAt = p, time.Now()
				}
				_, l1 := logins.window()
				_, l2 := refreshes.window()
				last := l1
				if l2.After(last) {
					last = l2
				}
				if time.Since(last) > 2*time.Second && time.Since(electedAt) > 2*time.Second &&
					!logins.recovered().IsZero() && !refreshes.recovered().IsZero() && !logouts.recovered().IsZero() {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("login or refresh still failing 60s after %s was elected", elected)
				}
			}
			halt()

			reuse := -reuseBefore
			for _, n := range names {
				reuse += reuseEvents(n, reps...)
			}
			lf, ll := logins.window()
			rf, rl := refreshes.window()
			pf, pl := proxiedRevoking.window()
			since := func(at time.Time) time.Duration {
				if at.IsZero() {
					return 0
				}
				return at.Sub(killed).Round(10 * time.Millisecond)
			}
			t.Logf("primary %s killed, %s elected %v later", old, elected, electedAt.Sub(killed).Round(10*time.Millisecond))
			t.Logf("login: unavailable for %v (the first login sent after the kill that succeeded was sent %v after the election); %d ok, %d answered 503 by the store from %v to %v after the kill, %d bcrypt busy",
				logins.recovered().Sub(killed).Round(10*time.Millisecond), logins.recovered().Sub(electedAt).Round(10*time.Millisecond),
				logins.ok.Load(), logins.failed.Load(), since(lf), since(ll), logins.busy.Load())
			t.Logf("refresh: unavailable for %v; %d ok, %d answered 503 from %v to %v after the kill; %d rotations judged reuse",
				refreshes.recovered().Sub(killed).Round(10*time.Millisecond), refreshes.ok.Load(), refreshes.failed.Load(), since(rf), since(rl), reuse)
			of, ol := logouts.window()
			t.Logf("logout: unavailable for %v; %d ok, %d answered 503 from %v to %v after the kill",
				logouts.recovered().Sub(killed).Round(10*time.Millisecond), logouts.ok.Load(), logouts.failed.Load(), since(of), since(ol))
			t.Logf("proxied, no revocation check: %d ok, %d failed; with the revocation check (fail closed): %d ok, %d failed from %v to %v",
				proxied.ok.Load(), proxied.failed.Load()+proxied.other.Load(), proxiedRevoking.ok.Load(),
				proxiedRevoking.failed.Load()+proxiedRevoking.other.Load(), since(pf), since(pl))

			if n := proxied.failed.Load() + proxied.other.Load() + proxied.transport.Load(); n != 0 {
				t.Errorf("%d proxied requests with valid tokens failed (or transport errors), want 0", n)
			}
			if reuse != 0 {
				t.Errorf("%d rotations judged reuse during the failover; nobody replayed a token", reuse)
			}
			for name, r := range map[string]*haResult{"login": &logins, "refresh": &refreshes, "logout": &logouts} {
				if r.other.Load() != 0 || r.transport.Load() != 0 {
					t.Errorf("%s: %d answers neither 200 nor 503, %d requests without an answer", name, r.other.Load(), r.transport.Load())
				}
				if r.noRetryAfter.Load() != 0 {
					t.Errorf("%s: %d answers 503 without Retry-After", name, r.noRetryAfter.Load())
				}
				// A few seconds, with room for a machine loaded by -race
				// and other tests.
				if back := r.recovered(); back.Sub(electedAt) > 10*time.Second {
					t.Errorf("%s recovered %v after the election, want within a few seconds", name, back.Sub(electedAt))
				}
			}
			for _, e := range reps {
				if r := readyOf(t, e); r.StateStore != "up" || r.Topology != "sentinel" || len(r.Primaries) != 1 || r.Primaries[0] != elected {
					t.Errorf("/readyz after the failover = %+v, want sentinel up with primary %s", r, elected)
				}
				if got := metricLines(t, e, "authgate_state_store_topology_changes_total"); len(got) != 1 || strings.HasSuffix(got[0], " 0") {
					t.Errorf("topology changes = %q, want at least %d", got, round+1)
				}
				if got := metricLines(t, e, `authgate_state_store_primary_info{primary="`+elected+`",topology="sentinel"} 1`); len(got) != 1 {
					t.Errorf("no primary_info series for %s", elected)
				}
			}
			if round+1 < rounds {
				d.Node(old).Restart()
				d.WaitReplicaSynced(old, 30*time.Second)
			}
		})
	}
}
