package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/authgate/authgate/authn/issuer"
	"github.com/authgate/authgate/authn/state"
	"github.com/authgate/authgate/authn/state/statetest"
	"github.com/authgate/authgate/internal/config"
)

// replicaPassword is the password of every user in replicaUsers.
const replicaPassword = "replica-password-1"

// replicaUsers is a users file with one user per flow, so that the per-user
// login limit of one flow never spends another flow's quota.
func replicaUsers(t *testing.T, names ...string) string {
	t.Helper()
	h := hashOf(t, replicaPassword)
	var b strings.Builder
	b.WriteString("users:\n")
	for _, n := range names {
		b.WriteString("  - username: " + n + "\n    password_hash: \"" + h + "\"\n    roles: [user]\n")
	}
	return b.String()
}

// newReplicas starts n gateways that share one Redis database under prefix,
// the JWT secret and one users file, as replicas of one deployment do. Each
// gateway's store is closed when the test ends.
func newReplicas(t *testing.T, n int, redisURL, prefix, usersFile string, opts ...envOption) []*gwEnv {
	t.Helper()
	return newReplicasSec(t, n, config.Secrets{JWT: []byte(testSecret), RedisURL: redisURL}, prefix, usersFile, opts...)
}

// newReplicasSec is newReplicas with the secrets given: for Sentinel and
// Cluster, whose addresses opts set in the config, no URL.
func newReplicasSec(t *testing.T, n int, sec config.Secrets, prefix, usersFile string, opts ...envOption) []*gwEnv {
	t.Helper()
	shared := func(c *config.Config) {
		c.UsersFile = usersFile
		c.Redis.KeyPrefix = prefix
	}
	envs := make([]*gwEnv, n)
	for i := range envs {
		e := newEnvSecrets(t, sec, "", nil, append([]envOption{shared}, opts...)...)
		if _, ok := e.app.State().(*state.Redis); !ok {
			t.Fatalf("replica %d state store is %T, want *state.Redis", i, e.app.State())
		}
		t.Cleanup(func() { _ = e.app.State().Close() })
		envs[i] = e
	}
	return envs
}

// reportTo makes the envs' helpers report failures to t, a subtest of the
// test that started them, until t ends.
func reportTo(t *testing.T, envs ...*gwEnv) {
	for _, e := range envs {
		parent := e.t
		e.t = t
		t.Cleanup(func() { e.t = parent })
	}
}

// checkNoLeaks snapshots the running goroutines and, when the test ends,
// after every later-registered cleanup has closed the gateways, servers and
// stores, checks that none was left behind. With a running srv it also
// checks that no connection to Redis was left open: an idle pool holds no
// goroutine, so only the server sees a store that was never closed. It
// returns the goroutine snapshot.
func checkNoLeaks(t *testing.T, srv *statetest.Server) goleak.Option {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	// Cleanups run last-registered first, so this one runs after the
	// gateways' own cleanups.
	t.Cleanup(func() {
		if srv != nil {
			c := rawRedis(t, srv.URL(0))
			ctx := context.Background()
			deadline := time.Now().Add(2 * time.Second)
			for {
				// The list includes this client's own connection.
				list, err := c.ClientList(ctx).Result()
				n := strings.Count(strings.TrimSpace(list), "\n") + 1
				if err == nil && n == 1 {
					break
				}
				if time.Now().After(deadline) {
					t.Errorf("Redis still has %d client connections after the gateways closed (err %v):\n%s", n-1, err, list)
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			_ = c.Close()
		}
		goleak.VerifyNone(t, ignore)
	})
	return ignore
}

// formResult is one answer of the gateway to postForm.
type formResult struct {
	status int
	header http.Header
	body   string
	token  tokenResponse
}

// postForm posts form to path on e's gateway. Unlike e.post it reports
// transport errors instead of failing the test, so it may be called from
// any goroutine.
func postForm(e *gwEnv, path string, form url.Values, hdr ...string) (formResult, error) {
	req, err := http.NewRequest(http.MethodPost, e.gw.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		return formResult{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return formResult{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return formResult{}, err
	}
	r := formResult{status: resp.StatusCode, header: resp.Header, body: string(body)}
	_ = json.Unmarshal(body, &r.token)
	if r.token.AccessToken != "" {
		registerSecret(r.token.AccessToken)
		registerSecret(r.token.RefreshToken)
	}
	return r, nil
}

func loginForm(user, password string) url.Values {
	return url.Values{"grant_type": {"password"}, "username": {user}, "password": {password}}
}

func refreshForm(rt string) url.Values {
	return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
}

// mustPost is postForm on the test goroutine.
func mustPost(t *testing.T, e *gwEnv, path string, form url.Values, hdr ...string) formResult {
	t.Helper()
	r, err := postForm(e, path, form, hdr...)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	return r
}

// retryAfter returns the Retry-After seconds of r, failing unless it is a
// positive integer of at most maxSecs.
func retryAfter(t *testing.T, h http.Header, maxSecs int) int {
	t.Helper()
	v := h.Get("Retry-After")
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxSecs {
		t.Errorf("Retry-After = %q, want an integer in [1, %d]", v, maxSecs)
	}
	return n
}

// reuseEvents counts the refresh-token reuse events logged for subject.
func reuseEvents(subject string, envs ...*gwEnv) int {
	n := 0
	for _, e := range envs {
		n += e.logs.FilterField(zap.String("event", "refresh_token_reuse")).FilterField(zap.String("subject", subject)).Len()
	}
	return n
}

// rawRedis is a plain client on the database at redisURL.
func rawRedis(t *testing.T, redisURL string) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	return redis.NewClient(opt)
}

// assertStateTTLs scans every key under prefix in the Redis database at
// redisURL and checks that each one expires, and no later than the lifetime
// of what it serves: a limiter bucket its window, a refresh-token family the
// refresh token lifetime, a revoked access token the access token lifetime.
// A key that never expires would grow the store without bound. It returns
// the number of keys of each kind.
func assertStateTTLs(t *testing.T, redisURL, prefix string, cfg *config.Config) map[string]int {
	t.Helper()
	lim := cfg.Auth.Limits.WithDefaults()
	// The limiter stores its expiry rounded up to the millisecond.
	window := func(l state.Limit) time.Duration { return time.Duration(l.Burst)*l.Every + time.Millisecond }
	kinds := []struct {
		prefix string
		max    time.Duration
	}{
		{"rl:login:ip:", window(lim.LoginPerIP)},
		{"login:a:{u:", lim.LoginKnownFor + time.Millisecond},
		{"login:a:{x:", max(window(lim.LoginPerUser), window(lim.LoginCleanClient))},
		{"login:c:", max(window(lim.LoginPerUserClient), lim.LoginCleanAfter+time.Millisecond)},
		{"rl:refresh:ip:", window(lim.RefreshPerIP)},
		{"rl:logout:ip:", window(lim.RefreshPerIP)},
		{"fam:", cfg.JWT.RefreshTTL},
		{"rev:", cfg.JWT.AccessTTL},
	}
	c := rawRedis(t, redisURL)
	defer c.Close()
	ctx := context.Background()
	found := map[string]int{}
	iter := c.Scan(ctx, 0, prefix+"*", 100).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		rest := strings.TrimPrefix(key, prefix)
		var bound time.Duration
		kind := ""
		for _, k := range kinds {
			if strings.HasPrefix(rest, k.prefix) {
				kind, bound = k.prefix, k.max
				break
			}
		}
		if kind == "" {
			t.Errorf("key %q under %q is of no known kind", key, prefix)
			continue
		}
		if !strings.Contains(rest, "{") {
			t.Errorf("key %q has no hash tag: a script using it could not run on a cluster", key)
		}
		found[kind]++
		ttl, err := c.PTTL(ctx, key).Result()
		if err != nil {
			t.Fatalf("PTTL(%s): %v", key, err)
		}
		if ttl <= 0 || ttl > bound {
			t.Errorf("PTTL(%s) = %v, want in (0, %v]", key, ttl, bound)
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("SCAN %s*: %v", prefix, err)
	}
	return found
}

// adminGet fetches path from e's admin listener.
func adminGet(t *testing.T, e *gwEnv, path string) (int, string) {
	t.Helper()
	resp, err := e.client.Get(e.gw.AdminURL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// storeUpMetric returns the value of authgate_state_store_up on e's
// metrics endpoint.
func storeUpMetric(t *testing.T, e *gwEnv) string {
	t.Helper()
	code, body := adminGet(t, e, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics = %d", code)
	}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "authgate_state_store_up "); ok {
			return v
		}
	}
	t.Fatal("authgate_state_store_up missing from /metrics")
	return ""
}

// TestE2ERedisReplicas runs two gateways against one Redis: the login
// limiter, refresh-token rotation, reuse detection and logout act as one
// deployment whichever replica a request reaches.
func TestE2ERedisReplicas(t *testing.T) {
	srv := statetest.StartServer(t)
	checkNoLeaks(t, srv)
	const prefix = "replicas:"
	usersFile := filepath.Join(t.TempDir(), "users.yaml")
	writeFile(t, usersFile, replicaUsers(t, "alice", "bob", "carol", "dave", "erin"))
	reps := newReplicas(t, 2, srv.URL(1), prefix, usersFile, sharedFlowsConfig)
	a := reps[0]
	sharedStateFlows(t, reps)

	t.Run("every key expires", func(t *testing.T) {
		found := assertStateTTLs(t, srv.URL(1), prefix, a.app.Config())
		// The logout bucket is not required: one spent token of a 100ms
		// interval refills, and its key expires, before the scan.
		for _, k := range []string{"rl:login:ip:", "login:a:{u:", "rl:refresh:ip:", "fam:"} {
			if found[k] == 0 {
				t.Errorf("no %s key under %s after the flows: %v", k, prefix, found)
			}
		}
		if want := 5; found["login:a:{u:"] != want {
			t.Errorf("%d per-user buckets, want %d (alice, bob, carol, dave, erin)", found["rl:login:user:"], want)
		}
		if want := 4; found["fam:"] != want {
			t.Errorf("%d families, want %d (one per successful login)", found["fam:"], want)
		}
	})

	// Nothing is written outside the configured database.
	c := rawRedis(t, srv.URL(0))
	defer c.Close()
	if keys, err := c.Keys(context.Background(), "*").Result(); err != nil || len(keys) != 0 {
		t.Errorf("database 0 holds %v (err %v), want nothing", keys, err)
	}
}

// sharedFlowsConfig is the config sharedStateFlows expects.
func sharedFlowsConfig(c *config.Config) {
	c.JWT.RefreshTTL = 2 * time.Hour
	// Generous timeouts: the flows are about shared state, not about a
	// slow store, and must not flake on a loaded machine.
	c.Redis.Timeout = 2 * time.Second
	c.Auth.StateTimeout = 3 * time.Second
	c.Auth.Limits = issuer.Limits{
		LoginPerIP:   state.Limit{Every: time.Minute, Burst: 50},
		LoginPerUser: state.Limit{Every: time.Hour, Burst: 3},
		// 50 parallel refreshes from one client must reach the store.
		RefreshPerIP: state.Limit{Every: 100 * time.Millisecond, Burst: 200},
	}
}

// sharedStateFlows checks, on two gateways a and b sharing one Redis
// deployment, that the login limiter, refresh-token rotation, reuse
// detection and logout act as one deployment whichever replica a request
// reaches. The users file must have alice, bob, carol, dave and erin, and
// the config be sharedFlowsConfig's.
func sharedStateFlows(t *testing.T, reps []*gwEnv) {
	a, b := reps[0], reps[1]

	t.Run("login limit is global", func(t *testing.T) {
		reportTo(t, a, b)
		// Alternating replicas must not double the per-user quota
		// (distributed brute force against one account).
		for i := range 6 {
			e, name := reps[i%2], string(rune('A'+i%2))
			password := "wrong-password-1"
			if i == 5 {
				// The correct password is refused too: the limit is
				// checked before any bcrypt work.
				password = replicaPassword
			}
			r := mustPost(t, e, "/auth/login", loginForm("alice", password))
			want := http.StatusBadRequest
			if i >= 3 {
				want = http.StatusTooManyRequests
			}
			if r.status != want {
				t.Fatalf("attempt %d on %s = %d %s, want %d", i+1, name, r.status, r.body, want)
			}
			if want == http.StatusTooManyRequests {
				retryAfter(t, r.header, 3600)
			}
		}
		// The bucket is the user's: another user is not limited.
		if r := mustPost(t, b, "/auth/login", loginForm("bob", replicaPassword)); r.status != http.StatusOK {
			t.Errorf("login bob on B = %d %s, want 200", r.status, r.body)
		}
	})

	t.Run("reuse on another replica revokes the family everywhere", func(t *testing.T) {
		reportTo(t, a, b)
		tr := a.login("carol", replicaPassword)
		code, tr2 := a.refresh(tr.RefreshToken)
		if code != http.StatusOK || tr2.RefreshToken == "" {
			t.Fatalf("refresh on A = %d, want 200", code)
		}
		if code, _ := b.refresh(tr.RefreshToken); code != http.StatusBadRequest {
			t.Errorf("rotated token replayed on B = %d, want 400", code)
		}
		if n := reuseEvents("carol", b); n != 1 {
			t.Errorf("reuse events logged by B = %d, want 1", n)
		}
		if code, _ := a.refresh(tr2.RefreshToken); code != http.StatusBadRequest {
			t.Errorf("newest token on A after the reuse = %d, want 400", code)
		}
		if code, _ := b.refresh(tr2.RefreshToken); code != http.StatusBadRequest {
			t.Errorf("newest token on B after the reuse = %d, want 400", code)
		}
	})

	t.Run("logout on one replica ends the family on the other", func(t *testing.T) {
		reportTo(t, a, b)
		tr := a.login("dave", replicaPassword)
		code, tr2 := b.refresh(tr.RefreshToken)
		if code != http.StatusOK {
			t.Fatalf("refresh on B = %d, want 200", code)
		}
		if r := mustPost(t, a, "/auth/logout", url.Values{"refresh_token": {tr2.RefreshToken}}); r.status != http.StatusOK {
			t.Fatalf("logout on A = %d %s", r.status, r.body)
		}
		if code, _ := b.refresh(tr2.RefreshToken); code != http.StatusBadRequest {
			t.Errorf("refresh on B after logout on A = %d, want 400", code)
		}
		if n := reuseEvents("dave", a, b); n != 0 {
			t.Errorf("reuse events after logout = %d, want 0 (a logged-out family is revoked, not reused)", n)
		}
	})

	t.Run("parallel refreshes of one token", func(t *testing.T) {
		reportTo(t, a, b)
		tr := b.login("erin", replicaPassword)
		const n = 50
		var (
			wg     sync.WaitGroup
			start  = make(chan struct{})
			codes  = make([]int, n)
			errs   = make([]error, n)
			tokens = make([]string, n)
		)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				r, err := postForm(reps[i%2], "/auth/refresh", refreshForm(tr.RefreshToken))
				codes[i], errs[i], tokens[i] = r.status, err, r.token.RefreshToken
			}()
		}
		close(start)
		wg.Wait()
		count := map[int]int{}
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("refresh %d: %v", i, errs[i])
			}
			count[codes[i]]++
			if codes[i] == http.StatusServiceUnavailable {
				// Arrived while the winning rotation was being settled:
				// the client retries the token it holds, and that retry
				// is judged like the others.
				r, err := postForm(reps[i%2], "/auth/refresh", refreshForm(tr.RefreshToken))
				if err != nil {
					t.Fatalf("retry of refresh %d: %v", i, err)
				}
				count[codes[i]]--
				codes[i], tokens[i] = r.status, r.token.RefreshToken
				count[codes[i]]++
			}
		}
		// One rotation wins; the first loser is reuse and revokes the
		// family, every later one finds it revoked.
		if count[http.StatusOK] != 1 || count[http.StatusBadRequest] != n-1 {
			t.Errorf("statuses = %v, want exactly one 200 and %d × 400", count, n-1)
		}
		if got := reuseEvents("erin", a, b); got != 1 {
			t.Errorf("reuse events across replicas = %d, want exactly 1", got)
		}
		// The reuse revoked the whole family, the winner's new token too.
		for i := range n {
			if codes[i] != http.StatusOK {
				continue
			}
			for name, e := range map[string]*gwEnv{"A": a, "B": b} {
				if code, _ := e.refresh(tokens[i]); code != http.StatusBadRequest {
					t.Errorf("the winning rotation's token on %s = %d, want 400", name, code)
				}
			}
		}
	})
}

// TestE2ERedisOutage stops and pauses Redis under a running gateway: the
// issuer fails closed within its timeout, proxied traffic with valid access
// tokens keeps flowing, readiness reports the store down without leaving
// rotation, and the gateway recovers by itself.
func TestE2ERedisOutage(t *testing.T) {
	srv := statetest.StartServer(t)
	ignore := checkNoLeaks(t, srv)
	const prefix = "outage:"
	usersFile := filepath.Join(t.TempDir(), "users.yaml")
	writeFile(t, usersFile, replicaUsers(t, "alice"))
	e := newReplicas(t, 1, srv.URL(0), prefix, usersFile, func(c *config.Config) {
		c.Redis.Timeout = 200 * time.Millisecond
		c.Auth.StateTimeout = 300 * time.Millisecond
		// A paused server may still run the commands queued before the
		// pause once it resumes; the limits leave room for them.
		c.Auth.Limits = issuer.Limits{
			LoginPerIP:   state.Limit{Every: time.Second, Burst: 100},
			LoginPerUser: state.Limit{Every: time.Second, Burst: 100},
			RefreshPerIP: state.Limit{Every: time.Second, Burst: 100},
		}
	})[0]
	// The check below is only meaningful if the running gateway has
	// goroutines for it to find.
	if goleak.Find(ignore) == nil {
		t.Fatal("goleak finds no goroutine while the gateway runs; the leak check would prove nothing")
	}

	// The issuer answers within the state timeout plus slack for -race.
	const bound = 1500 * time.Millisecond
	phases := []struct {
		name       string
		down, back func()
	}{
		{"stopped", srv.Stop, srv.Restart},
		// A hung server accepts connections but never answers: only the
		// timeouts end the wait.
		{"paused", srv.Pause, srv.Resume},
	}
	for _, ph := range phases {
		t.Run(ph.name, func(t *testing.T) {
			reportTo(t, e)
			tr := e.login("alice", replicaPassword)
			if got := e.bearerStatus("/api/x", tr.AccessToken); got != http.StatusOK {
				t.Fatalf("proxied call before the outage = %d, want 200", got)
			}
			ph.down()

			calls := []struct {
				name string
				path string
				form url.Values
			}{
				{"login", "/auth/login", loginForm("alice", replicaPassword)},
				{"refresh", "/auth/refresh", refreshForm(tr.RefreshToken)},
				{"logout", "/auth/logout", url.Values{"refresh_token": {tr.RefreshToken}}},
			}
			for _, c := range calls {
				start := time.Now()
				r := mustPost(t, e, c.path, c.form)
				took := time.Since(start)
				if r.status != http.StatusServiceUnavailable {
					t.Errorf("%s with Redis %s = %d %s, want 503", c.name, ph.name, r.status, r.body)
				}
				retryAfter(t, r.header, 60)
				if took >= bound {
					t.Errorf("%s with Redis %s took %v, want < %v", c.name, ph.name, took, bound)
				}
				t.Logf("%s with Redis %s: %d in %v", c.name, ph.name, r.status, took)
			}

			before := e.up.count()
			if got := e.bearerStatus("/api/x", tr.AccessToken); got != http.StatusOK {
				t.Errorf("proxied call with a valid access token during the outage = %d, want 200", got)
			}
			if e.up.count() != before+1 {
				t.Error("the upstream did not receive the proxied call")
			}
			if code, body := adminGet(t, e, "/readyz"); code != http.StatusOK || !strings.Contains(body, `"state_store":"down"`) {
				t.Errorf("/readyz during the outage = %d %s, want 200 with state_store down", code, body)
			}
			if v := storeUpMetric(t, e); v != "0" {
				t.Errorf("authgate_state_store_up during the outage = %s, want 0", v)
			}
			// A busy gateway keeps calling the store during an outage;
			// enough failed dials open the client's dial circuit breaker,
			// which must not keep the gateway down once Redis is back.
			for range 20 {
				adminGet(t, e, "/readyz")
			}

			ph.back()
			// The first calls after the outage may meet a pooled
			// connection the server dropped; the gateway must recover
			// without a restart.
			backAt := time.Now()
			deadline := backAt.Add(10 * time.Second)
			for attempt := 1; ; attempt++ {
				r := mustPost(t, e, "/auth/login", loginForm("alice", replicaPassword))
				if r.status == http.StatusOK {
					t.Logf("login answered 200 at attempt %d, %v after Redis came back", attempt, time.Since(backAt))
					break
				}
				if r.status != http.StatusServiceUnavailable || time.Now().After(deadline) {
					t.Fatalf("login after Redis came back = %d %s, want 200 within 10s", r.status, r.body)
				}
				time.Sleep(50 * time.Millisecond)
			}
			if code, body := adminGet(t, e, "/readyz"); code != http.StatusOK || !strings.Contains(body, `"state_store":"up"`) {
				t.Errorf("/readyz after recovery = %d %s, want state_store up", code, body)
			}
			if r := readyOf(t, e); r.Topology != "single" || len(r.Primaries) != 1 || r.Primaries[0] != srv.Addr() || r.Changed == "" {
				t.Errorf("/readyz after recovery = %+v, want topology single with primary %s", r, srv.Addr())
			}
			if v := storeUpMetric(t, e); v != "1" {
				t.Errorf("authgate_state_store_up after recovery = %s, want 1", v)
			}
		})
	}
}

// TestE2ERedisAccessRevocation checks the shared access-token revocation
// list: a logout on one replica ends the access token on every replica, and
// an unreadable list fails closed unless fail_open is set.
func TestE2ERedisAccessRevocation(t *testing.T) {
	srv := statetest.StartServer(t)
	// Redis is stopped when the test ends, so only goroutines are checked.
	checkNoLeaks(t, nil)
	const prefix = "revocation:"
	usersFile := filepath.Join(t.TempDir(), "users.yaml")
	writeFile(t, usersFile, replicaUsers(t, "alice"))
	revocation := func(failOpen bool) envOption {
		return func(c *config.Config) {
			c.Redis.Timeout = 200 * time.Millisecond
			c.Auth.StateTimeout = 300 * time.Millisecond
			c.Auth.AccessRevocation = config.RevocationConfig{Enabled: true, FailOpen: failOpen}
		}
	}
	closed := newReplicas(t, 2, srv.URL(2), prefix, usersFile, revocation(false))
	a, b := closed[0], closed[1]
	open := newReplicas(t, 1, srv.URL(2), prefix, usersFile, revocation(true))[0]

	tr := a.login("alice", replicaPassword)
	for _, e := range []*gwEnv{a, b, open} {
		if got := e.bearerStatus("/api/x", tr.AccessToken); got != http.StatusOK {
			t.Fatalf("access token before logout = %d, want 200", got)
		}
	}
	r := mustPost(t, a, "/auth/logout", url.Values{"refresh_token": {tr.RefreshToken}}, "Authorization", "Bearer "+tr.AccessToken)
	if r.status != http.StatusOK {
		t.Fatalf("logout on A = %d %s", r.status, r.body)
	}
	for name, e := range map[string]*gwEnv{"A": a, "B": b, "fail-open replica": open} {
		if got := e.bearerStatus("/api/x", tr.AccessToken); got != http.StatusUnauthorized {
			t.Errorf("revoked access token on %s = %d, want 401", name, got)
		}
	}
	if code, _ := b.refresh(tr.RefreshToken); code != http.StatusBadRequest {
		t.Errorf("refresh on B after logout on A = %d, want 400", code)
	}

	live := a.login("alice", replicaPassword)
	found := assertStateTTLs(t, srv.URL(2), prefix, a.app.Config())
	if found["rev:"] != 1 {
		t.Errorf("%d revocation entries, want 1: %v", found["rev:"], found)
	}

	srv.Stop()
	// A revocation list that cannot be read must not let a revoked token
	// through: the fail-closed replicas refuse every token until it
	// answers.
	tests := []struct {
		name string
		e    *gwEnv
		want int
	}{
		{"A fails closed", a, http.StatusServiceUnavailable},
		{"B fails closed", b, http.StatusServiceUnavailable},
		{"fail-open replica", open, http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reportTo(t, tc.e)
			start := time.Now()
			resp, body := tc.e.do("GET", "/api/x", "Authorization", "Bearer "+live.AccessToken)
			if resp.StatusCode != tc.want {
				t.Errorf("valid access token with Redis down = %d %s, want %d", resp.StatusCode, body, tc.want)
			}
			if tc.want == http.StatusServiceUnavailable {
				retryAfter(t, resp.Header, 60)
			}
			if took := time.Since(start); took >= 1500*time.Millisecond {
				t.Errorf("answer took %v, want < 1.5s", took)
			}
		})
	}
	if open.logs.FilterMessage("revocation list unavailable").Len() == 0 {
		t.Error("the fail-open replica accepted a token without logging that the list was unavailable")
	}
}

// BenchmarkLoginLimiter measures the login limiter alone, as a flood from
// one client meets it: the per-IP bucket is spent, so every attempt is
// refused before any bcrypt work.
func BenchmarkLoginLimiter(b *testing.B) {
	stores := []struct {
		name string
		open func(b *testing.B) state.Store
	}{
		{"memory", func(b *testing.B) state.Store {
			m, err := state.NewMemory(state.MemoryOptions{})
			if err != nil {
				b.Fatal(err)
			}
			return m
		}},
		{"redis", func(b *testing.B) state.Store {
			srv := statetest.StartServer(b)
			r, err := state.NewRedis(context.Background(), state.RedisOptions{URL: srv.URL(0), KeyPrefix: "bench:",
				// Throughput, not the timeout, is measured: a loaded
				// machine must not turn a slow reply into a failure.
				Timeout: 2 * time.Second})
			if err != nil {
				b.Fatal(err)
			}
			return r
		}},
	}
	limit := state.Limit{Every: time.Hour, Burst: 1}
	for _, s := range stores {
		b.Run(s.name, func(b *testing.B) {
			st := s.open(b)
			defer st.Close()
			ctx := context.Background()
			// The issuer's key shape for the per-IP login bucket.
			const scope, key = "login:ip", "192.0.2.10"
			if ok, _, err := st.Allow(ctx, scope, key, limit); !ok || err != nil {
				b.Fatalf("first Allow = %v, %v; want allowed", ok, err)
			}
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					ok, retry, err := st.Allow(ctx, scope, key, limit)
					if err != nil || ok || retry <= 0 {
						b.Errorf("Allow = %v, %v, %v; want refused with a retry", ok, retry, err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "logins/s")
		})
	}
}
