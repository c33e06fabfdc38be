package state

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/authgate/authgate/authn/state/statetest"
)

// TestRedisOptionsTopology checks that exactly one topology is chosen and
// that settings that do not fit it are refused, naming no password.
func TestRedisOptionsTopology(t *testing.T) {
	sentinel := RedisSentinel{MasterName: "m", Addrs: []string{"127.0.0.1:26379"}}
	cluster := RedisCluster{Addrs: []string{"127.0.0.1:7000"}}
	tests := []struct {
		name    string
		o       RedisOptions
		want    string
		wantErr string
	}{
		{"url", RedisOptions{URL: "redis://127.0.0.1:6379/0"}, TopologySingle, ""},
		{"sentinel", RedisOptions{Sentinel: sentinel, DB: 2}, TopologySentinel, ""},
		{"cluster", RedisOptions{Cluster: cluster}, TopologyCluster, ""},
		{"nothing", RedisOptions{}, "", "needs a url, a sentinel or a cluster"},
		{"url and sentinel", RedisOptions{URL: "redis://x:1", Sentinel: sentinel}, "", "not single and sentinel"},
		{"sentinel and cluster", RedisOptions{Sentinel: sentinel, Cluster: cluster}, "", "not sentinel and cluster"},
		{"sentinel without name", RedisOptions{Sentinel: RedisSentinel{Addrs: sentinel.Addrs}}, "", "master name"},
		{"sentinel without addresses", RedisOptions{Sentinel: RedisSentinel{MasterName: "m"}}, "", "at least one address"},
		{"bad address", RedisOptions{Cluster: RedisCluster{Addrs: []string{"127.0.0.1"}}}, "", `address 1 "127.0.0.1"`},
		{"cluster db", RedisOptions{Cluster: cluster, DB: 1}, "", "only database 0"},
		{"db with url", RedisOptions{URL: "redis://x:1", DB: 1}, "", "go in the url"},
		{"negative db", RedisOptions{Sentinel: sentinel, DB: -1}, "", "db must not be negative"},
		{"wait replicas", RedisOptions{Cluster: cluster, WaitReplicas: MaxWaitReplicas + 1}, "", "wait replicas"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.o.kind()
			if tt.wantErr == "" {
				if err != nil || got != tt.want {
					t.Fatalf("kind() = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("kind() error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestNewClientCarriesSettings checks that every connection setting NewRedis
// makes reaches the Sentinel and Cluster clients too.
func TestNewClientCarriesSettings(t *testing.T) {
	o := RedisOptions{Sentinel: RedisSentinel{MasterName: "m", Addrs: []string{"127.0.0.1:1"}}, Password: "pw", Username: "u", DB: 3}
	opt, err := o.nodeOptions(TopologySentinel)
	if err != nil {
		t.Fatal(err)
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.PoolTimeout = 1, 2, 3, 4
	opt.MaxRetries, opt.DialerRetries, opt.PoolSize = -1, 7, 9
	opt.ContextTimeoutEnabled, opt.DisableIdentity = true, true
	for _, kind := range []string{TopologySentinel, TopologyCluster} {
		c := newClient(kind, opt, o, &topology{kind: kind, now: time.Now})
		var got []any
		switch kind {
		case TopologySentinel:
			// The failover client's options are those of its master
			// connections.
			co := c.(*redis.Client).Options()
			got = []any{co.DialTimeout, co.ReadTimeout, co.WriteTimeout, co.PoolTimeout, co.MaxRetries, co.DialerRetries, co.PoolSize,
				co.ContextTimeoutEnabled, co.DisableIdentity, co.Username, co.Password, co.DB}
		case TopologyCluster:
			co := c.(*redis.ClusterClient).Options()
			got = []any{co.DialTimeout, co.ReadTimeout, co.WriteTimeout, co.PoolTimeout, co.MaxRetries, co.DialerRetries, co.PoolSize,
				co.ContextTimeoutEnabled, co.DisableIdentity, co.Username, co.Password, 3}
		}
		want := []any{time.Duration(1), time.Duration(2), time.Duration(3), time.Duration(4), -1, 7, 9, true, true, "u", "pw", 3}
		if kind == TopologySentinel {
			want[4] = 0 // go-redis normalizes MaxRetries -1 (none) to 0 on a built client
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s client settings = %v, want %v", kind, got, want)
		}
		_ = c.Close()
	}
}

// sentinelBasics runs the store on the Sentinel deployment d, whose data
// nodes and sentinels have passwords: every operation works, the topology
// names the primary, and wrong credentials fail without naming them.
func sentinelBasics(t *testing.T, d *statetest.Sentinel) {
	ctx := context.Background()
	base := RedisOptions{Sentinel: RedisSentinel{MasterName: d.Master, Addrs: d.SentinelAddrs(), Password: "sentinel-secret-1"},
		Password: "data-secret-1", KeyPrefix: "sentinel:", Timeout: 2 * time.Second}
	s, err := NewRedis(ctx, base)
	if err != nil {
		t.Fatalf("NewRedis(sentinel) = %v", err)
	}
	defer s.Close()
	allOps(t, s, time.Now().Add(time.Hour))
	topo := s.Topology()
	if topo.Kind != TopologySentinel || len(topo.Primaries) != 1 || topo.Primaries[0] != d.Nodes[0].Addr() || topo.Since.IsZero() {
		t.Errorf("Topology() = %+v, want sentinel with primary %s", topo, d.Nodes[0].Addr())
	}
	for name, o := range map[string]RedisOptions{
		"wrong data password":     func() RedisOptions { o := base; o.Password = "wrong"; return o }(),
		"wrong sentinel password": func() RedisOptions { o := base; o.Sentinel.Password = "wrong"; return o }(),
		"unknown master":          func() RedisOptions { o := base; o.Sentinel.MasterName = "nope"; return o }(),
	} {
		r, err := NewRedis(ctx, o)
		if err == nil {
			r.Close()
			t.Errorf("NewRedis(%s) = nil error, want one", name)
			continue
		}
		if !errors.Is(err, ErrUnavailable) || strings.Contains(err.Error(), "secret-1") {
			t.Errorf("NewRedis(%s) = %v, want ErrUnavailable without a password", name, err)
		}
	}
}

// TestRedisCluster runs every operation on a three-primary cluster: each
// script call's keys share a slot, by CRC16 and by CLUSTER KEYSLOT, and two
// stores act as one deployment.
func TestRedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	c := statetest.StartCluster(t, 3)
	ctx := context.Background()
	open := func() *Redis {
		r, err := NewRedis(ctx, RedisOptions{Cluster: RedisCluster{Addrs: c.Addrs()[:1]}, KeyPrefix: "cluster:", Timeout: 2 * time.Second})
		if err != nil {
			t.Fatalf("NewRedis(cluster) = %v", err)
		}
		t.Cleanup(func() { _ = r.Close() })
		return r
	}
	a, b := open(), open()
	if a.legacy {
		t.Error("a cluster store reads the untagged layout; its keys would cross slots")
	}
	rec := &scriptRecorder{}
	a.client.AddHook(rec)
	allOps(t, a, time.Now().Add(time.Hour))
	if n := checkScriptSlots(t, rec); n == 0 {
		t.Fatal("no script call recorded")
	}
	rec.mu.Lock()
	slots := map[int]bool{}
	for _, keys := range rec.scripts {
		for _, k := range keys {
			got, err := c.KeySlot(k)
			if err != nil || got != keySlot(k) {
				t.Errorf("CLUSTER KEYSLOT %q = %d, %v; keySlot = %d", k, got, err, keySlot(k))
			}
			slots[got] = true
		}
	}
	rec.mu.Unlock()
	if len(slots) < 10 {
		t.Errorf("the operations touched %d slots, want them spread over the cluster", len(slots))
	}
	topo := a.Topology()
	if topo.Kind != TopologyCluster || len(topo.Primaries) != 3 {
		t.Errorf("Topology() = %+v, want the three primaries", topo)
	}

	// Two stores, one deployment: reuse seen across them, one global
	// limit.
	exp := time.Now().Add(time.Hour)
	mustNil(t, "StartFamily", a.StartFamily(ctx, "shared", "j1", exp))
	mustNil(t, "Rotate on b", b.Rotate(ctx, "shared", "j1", "j2", exp))
	mustIs(t, "Rotate(j1) replayed on a", a.Rotate(ctx, "shared", "j1", "j3", exp), ErrReuse)
	if got, err := b.AccessRevoked(ctx, "x", "shared"); err != nil || !got {
		t.Errorf("AccessRevoked after reuse on b = %v, %v; want true", got, err)
	}
	l := Limit{Every: time.Hour, Burst: 3}
	var allowed int
	for i := range 6 {
		s := a
		if i%2 == 1 {
			s = b
		}
		if ok, _, err := s.Allow(ctx, "t", "global", l); err != nil {
			t.Fatal(err)
		} else if ok {
			allowed++
		}
	}
	if allowed != 3 {
		t.Errorf("6 calls over two stores allowed %d, want the burst of 3", allowed)
	}

	// With WaitReplicas a primary without replicas cannot confirm a
	// write: the pinned per-primary pipelines report it.
	w, err := NewRedis(ctx, RedisOptions{Cluster: RedisCluster{Addrs: c.Addrs()}, KeyPrefix: "cluster:", Timeout: time.Second, WaitReplicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.RaiseNotBefore(ctx, map[string]time.Time{"a": time.Now(), "b": time.Now(), "c": time.Now()}, time.Hour); !errors.Is(err, errNotReplicated) {
		t.Errorf("RaiseNotBefore with WaitReplicas and no replicas = %v, want not replicated", err)
	}
	if err := w.StartFamily(ctx, "w", "j", exp); !errors.Is(err, errNotReplicated) {
		t.Errorf("StartFamily with WaitReplicas and no replicas = %v, want not replicated", err)
	}

	// A primary down is the store down: the keys of its slots cannot be
	// served.
	c.Nodes[2].Stop()
	if err := a.Ping(ctx); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Ping with a primary down = %v, want ErrUnavailable", err)
	}
}

// failoverLoad is the traffic a failover test puts on stores: logins
// (limiter check and settle) and refresh-token rotations, each worker a
// client that retries with the token it holds after a failure, as a client
// told 503 does.
type failoverLoad struct {
	stores []Store
	name   string // keeps the ids of loads on one deployment apart

	stop     chan struct{}
	wg       sync.WaitGroup
	ok, fail atomic.Int64
	reuse    atomic.Int64 // rotations judged reuse: every one is false, nobody replays
	revoked  atomic.Int64 // families lost (a start or rotation that a failover lost)

	mu        sync.Mutex
	firstFail time.Time
	lastFail  time.Time
}

func (l *failoverLoad) failed(err error) {
	l.fail.Add(1)
	now := time.Now()
	l.mu.Lock()
	if l.firstFail.IsZero() {
		l.firstFail = now
	}
	l.lastFail = now
	l.mu.Unlock()
}

// start runs workers logins and workers rotation chains until halt.
func (l *failoverLoad) start(workers int) {
	l.stop = make(chan struct{})
	ctx := context.Background()
	limits := LoginLimits{
		PerClient: Limit{Every: time.Millisecond, Burst: 1000}, User: Limit{Every: time.Millisecond, Burst: 1000},
		Known: Limit{Every: time.Millisecond, Burst: 1000}, Clean: Limit{Every: time.Millisecond, Burst: 1000},
		CleanAfter: time.Second, KnownFor: time.Minute,
	}
	pause := func() bool {
		select {
		case <-l.stop:
			return false
		case <-time.After(20 * time.Millisecond):
			return true
		}
	}
	for w := range workers {
		s := l.stores[w%len(l.stores)]
		l.wg.Go(func() {
			k := LoginKey{Account: fmt.Sprintf("%s-user%d", l.name, w), Known: true, Client: "192.0.2.1"}
			for {
				v, err := s.CheckLogin(ctx, k, limits)
				if err == nil && v.Allowed {
					err = s.SettleLogin(ctx, k, limits, v.Tier, LoginSucceeded)
				}
				if err != nil {
					l.failed(err)
				} else {
					l.ok.Add(1)
				}
				if !pause() {
					return
				}
			}
		})
		l.wg.Go(func() {
			var fam, cur string
			gen := 0
			for {
				exp := time.Now().Add(time.Hour)
				if fam == "" {
					gen++
					fam, cur = fmt.Sprintf("%s-fam-%d-%d", l.name, w, gen), "j0"
					if err := s.StartFamily(ctx, fam, cur, exp); err != nil {
						l.failed(err)
						fam = ""
					}
				} else {
					next := fmt.Sprintf("j%d-%d", gen, time.Now().UnixNano())
					switch err := s.Rotate(ctx, fam, cur, next, exp); {
					case err == nil:
						l.ok.Add(1)
						cur = next
					case errors.Is(err, ErrReuse):
						l.reuse.Add(1)
						fam = ""
					case errors.Is(err, ErrRevoked):
						l.revoked.Add(1)
						fam = ""
					default:
						// 503: keep the token and retry it.
						l.failed(err)
					}
				}
				if !pause() {
					return
				}
			}
		})
	}
}

func (l *failoverLoad) halt() {
	close(l.stop)
	l.wg.Wait()
}

// TestRedisSentinelFailover runs the store on a Sentinel deployment
// (sentinelBasics), then kills the primary under login and refresh load, on
// stores without and with WaitReplicas: operations fail closed
// while no primary is elected and recover on their own once one is, and no
// rotation is judged reuse. With AUTHGATE_FAILOVER_ROUNDS=n it fails over
// n times (default 1).
func TestRedisSentinelFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Sentinel deployment and waits for failovers")
	}
	rounds := 1
	if v := os.Getenv("AUTHGATE_FAILOVER_ROUNDS"); v != "" {
		if _, err := fmt.Sscan(v, &rounds); err != nil || rounds < 1 {
			t.Fatalf("AUTHGATE_FAILOVER_ROUNDS=%q: want a positive integer", v)
		}
	}
	// Two replicas: after a failover one is left to confirm writes, which
	// WaitReplicas 1 requires.
	d := statetest.StartSentinel(t, statetest.SentinelOptions{Replicas: 2, Password: "data-secret-1", SentinelPassword: "sentinel-secret-1"})
	ignore := goleak.IgnoreCurrent()
	t.Run("basics", func(t *testing.T) { sentinelBasics(t, d) })
	ctx := context.Background()
	for round := range rounds {
		t.Run(fmt.Sprintf("round %d", round+1), func(t *testing.T) {
			open := func(wait int) *Redis {
				r, err := NewRedis(ctx, RedisOptions{Sentinel: RedisSentinel{MasterName: d.Master, Addrs: d.SentinelAddrs(), Password: "sentinel-secret-1"},
					Password: "data-secret-1", KeyPrefix: fmt.Sprintf("failover%d:", round), Timeout: 500 * time.Millisecond, WaitReplicas: wait})
				if err != nil {
					t.Fatalf("NewRedis(sentinel) = %v", err)
				}
				t.Cleanup(func() { _ = r.Close() })
				return r
			}
			// Per WaitReplicas setting, two stores: two replicas of one
			// deployment.
			loads := []*failoverLoad{
				{stores: []Store{open(0), open(0)}, name: "nowait"},
				{stores: []Store{open(1), open(1)}, name: "wait"},
			}
			old, err := d.Primary()
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range loads {
				l.start(3)
			}
			halted := false
			halt := func() {
				if !halted {
					for _, l := range loads {
						l.halt()
					}
					halted = true
				}
			}
			defer halt()
			time.Sleep(time.Second)
			killed := time.Now()
			d.Node(old).Stop()
			elected := d.WaitFailover(old, 60*time.Second)
			electedAt := time.Now()
			// Recovered: a full second of traffic without a failure.
			deadline := electedAt.Add(30 * time.Second)
			for {
				time.Sleep(200 * time.Millisecond)
				if p, err := d.Primary(); err == nil && p != elected {
					// On a starved machine the sentinels may miss the new
					// primary's answers too and fail over again.
					t.Logf("the sentinels failed over again, to %s", p)
					elected, electedAt = p, time.Now()
				}
				var last time.Time
				for _, l := range loads {
					l.mu.Lock()
					last = later(last, l.lastFail)
					l.mu.Unlock()
				}
				if time.Since(last) > time.Second && time.Since(electedAt) > time.Second {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("operations still failing 30s after the new primary %s was elected", elected)
				}
			}
			halt()
			t.Logf("primary %s killed; %s elected after %v", old, elected, electedAt.Sub(killed).Round(time.Millisecond))
			for wait, l := range loads {
				first, last := l.firstFail, l.lastFail
				t.Logf("wait_replicas %d: operations failed closed from %v to %v after the kill (%v after the election); %d ok, %d failed closed, %d rotations judged reuse, %d families lost",
					wait, first.Sub(killed).Round(time.Millisecond), last.Sub(killed).Round(time.Millisecond),
					last.Sub(electedAt).Round(time.Millisecond), l.ok.Load(), l.fail.Load(), l.reuse.Load(), l.revoked.Load())
				if l.reuse.Load() != 0 {
					t.Errorf("wait_replicas %d: %d rotations judged reuse; nobody replayed a token", wait, l.reuse.Load())
				}
				if wait > 0 && l.revoked.Load() != 0 {
					t.Errorf("wait_replicas %d: %d families lost", wait, l.revoked.Load())
				}
				if !first.IsZero() && last.Sub(electedAt) > 10*time.Second { // a few seconds, with room for a loaded machine
					t.Errorf("wait_replicas %d: operations failed until %v after the election, want recovery within a few seconds", wait, last.Sub(electedAt))
				}
				for _, s := range l.stores {
					r := s.(*Redis)
					if topo := r.Topology(); len(topo.Primaries) != 1 || topo.Primaries[0] != elected || topo.Changes < 1 {
						t.Errorf("Topology() after the failover = %+v, want primary %s and a change", topo, elected)
					}
					mustNil(t, "Ping after the failover", r.Ping(ctx))
				}
			}
			if round+1 < rounds {
				// The old primary comes back as a replica of the new one,
				// so the next round can fail over again.
				d.Node(old).Restart()
				d.WaitReplicaSynced(old, 30*time.Second)
			}
		})
	}
	goleak.VerifyNone(t, ignore)
}
