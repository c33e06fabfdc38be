package state

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis topologies, as reported by RedisTopology.Kind.
const (
	// TopologySingle is one Redis node named by RedisOptions.URL.
	TopologySingle = "single"
	// TopologySentinel is a primary with replicas, managed by Redis
	// Sentinel, which elects a new primary when it fails.
	TopologySentinel = "sentinel"
	// TopologyCluster is a Redis Cluster: keys are spread over primaries
	// by hash slot.
	TopologyCluster = "cluster"
)

// MaxWaitReplicas bounds RedisOptions.WaitReplicas.
const MaxWaitReplicas = 16

// RedisSentinel names a Sentinel-managed primary. The zero value selects no
// Sentinel.
type RedisSentinel struct {
	// MasterName is the name the sentinels monitor the primary under.
	MasterName string
	// Addrs are the sentinels' host:port. One is enough to start; list them
	// all so that startup does not depend on one sentinel.
	Addrs []string
	// Username and Password authenticate to the sentinels, which often
	// have credentials of their own (or none).
	Username, Password string
}

// RedisCluster names a Redis Cluster. The zero value selects no cluster.
type RedisCluster struct {
	// Addrs are seed nodes' host:port; the rest of the cluster is
	// discovered from them.
	Addrs []string
}

// RedisTopology is what a Redis store knows of the deployment it writes
// to. It is a snapshot; the zero value means nothing is known yet.
type RedisTopology struct {
	// Kind is TopologySingle, TopologySentinel or TopologyCluster.
	Kind string
	// Primaries are the host:port of the node(s) this store writes to,
	// sorted: the one primary, or every cluster primary. Empty until the
	// store first reached one.
	Primaries []string
	// Since is when Primaries took their current value.
	Since time.Time
	// Changes counts how often Primaries changed after the first value:
	// failovers, and for a cluster also resharding onto new primaries.
	Changes int
}

// topology tracks the primaries a store has seen. It is safe for
// concurrent use.
type topology struct {
	kind string
	now  func() time.Time

	mu   sync.Mutex
	snap RedisTopology
}

// observe records primaries (sorted here) as the current ones.
func (t *topology) observe(primaries []string) {
	slices.Sort(primaries)
	t.mu.Lock()
	defer t.mu.Unlock()
	if slices.Equal(primaries, t.snap.Primaries) {
		return
	}
	if t.snap.Primaries != nil {
		t.snap.Changes++
	}
	t.snap.Primaries, t.snap.Since = primaries, t.now()
}

// get returns a copy of the snapshot.
func (t *topology) get() RedisTopology {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.snap
	s.Kind = t.kind
	s.Primaries = slices.Clone(s.Primaries)
	return s
}

// Topology returns what the store knows of its Redis deployment. It does no
// I/O: the primaries are those the store last connected to (one node,
// Sentinel) or found by its last Ping (Cluster).
func (r *Redis) Topology() RedisTopology { return r.topo.get() }

// kind returns the topology o selects, or an error unless it selects
// exactly one.
func (o RedisOptions) kind() (string, error) {
	var kinds []string
	if o.URL != "" {
		kinds = append(kinds, TopologySingle)
	}
	if o.Sentinel.MasterName != "" || len(o.Sentinel.Addrs) > 0 {
		kinds = append(kinds, TopologySentinel)
	}
	if len(o.Cluster.Addrs) > 0 {
		kinds = append(kinds, TopologyCluster)
	}
	switch len(kinds) {
	case 0:
		return "", errors.New("state: redis needs a url, a sentinel or a cluster")
	case 1:
	default:
		return "", fmt.Errorf("state: redis: set one of url, sentinel and cluster, not %s", strings.Join(kinds, " and "))
	}
	var errs []error
	switch kinds[0] {
	case TopologySingle:
		if o.Username != "" || o.DB != 0 || o.TLS != nil {
			errs = append(errs, errors.New("state: redis username, db and tls go in the url for a single node"))
		}
	case TopologySentinel:
		if o.Sentinel.MasterName == "" || len(o.Sentinel.Addrs) == 0 {
			errs = append(errs, errors.New("state: redis sentinel needs a master name and at least one address"))
		}
		errs = append(errs, checkAddrs("sentinel", o.Sentinel.Addrs))
	case TopologyCluster:
		if o.DB != 0 {
			errs = append(errs, errors.New("state: redis cluster has only database 0"))
		}
		errs = append(errs, checkAddrs("cluster", o.Cluster.Addrs))
	}
	if o.DB < 0 {
		errs = append(errs, fmt.Errorf("state: redis db must not be negative, got %d", o.DB))
	}
	if o.WaitReplicas < 0 || o.WaitReplicas > MaxWaitReplicas {
		errs = append(errs, fmt.Errorf("state: redis wait replicas must be in [0, %d], got %d", MaxWaitReplicas, o.WaitReplicas))
	}
	return kinds[0], errors.Join(errs...)
}

// checkAddrs reports addresses that are not host:port.
func checkAddrs(what string, addrs []string) error {
	var errs []error
	for i, a := range addrs {
		if host, port, err := net.SplitHostPort(a); err != nil || host == "" || port == "" {
			errs = append(errs, fmt.Errorf("state: redis %s address %d %q: want host:port", what, i+1, a))
		}
	}
	return errors.Join(errs...)
}

// nodeOptions returns the options of a connection to a data node: parsed
// from the URL for one node, or built from the fields for Sentinel and
// Cluster. The password never appears in errors.
func (o RedisOptions) nodeOptions(kind string) (*redis.Options, error) {
	if kind != TopologySingle {
		var tc *tls.Config
		if o.TLS != nil {
			tc = o.TLS.Clone()
		}
		return &redis.Options{Username: o.Username, Password: o.Password, DB: o.DB, TLSConfig: tc}, nil
	}
	opt, err := redis.ParseURL(o.URL)
	if err != nil {
		// The parse error is not included: it may quote the URL, which
		// can carry a password.
		return nil, errors.New("state: redis url is invalid")
	}
	if o.Password != "" {
		opt.Password = o.Password
	}
	return opt, nil
}

// newClient builds the client of topology kind. opt carries every
// connection setting (credentials, timeouts, pool, retries); for Sentinel
// and Cluster each of them is carried over by name, so a setting is made
// once, in NewRedis, for all three topologies.
func newClient(kind string, opt *redis.Options, o RedisOptions, topo *topology) redis.UniversalClient {
	switch kind {
	case TopologySentinel:
		fo := &redis.FailoverOptions{
			MasterName:       o.Sentinel.MasterName,
			SentinelAddrs:    slices.Clone(o.Sentinel.Addrs),
			SentinelUsername: o.Sentinel.Username,
			SentinelPassword: o.Sentinel.Password,
		}
		copyOptions(fo, opt)
		c := redis.NewFailoverClient(fo)
		c.AddHook(primaryHook{topo})
		return c
	case TopologyCluster:
		co := &redis.ClusterOptions{Addrs: slices.Clone(o.Cluster.Addrs)}
		copyOptions(co, opt)
		return redis.NewClusterClient(co)
	}
	c := redis.NewClient(opt)
	c.AddHook(primaryHook{topo})
	return c
}

// copyOptions sets every exported field of dst that src has too, with the
// same type, to src's value when that is not the zero value.
func copyOptions(dst any, src *redis.Options) {
	d := reflect.ValueOf(dst).Elem()
	s := reflect.ValueOf(src).Elem()
	for i := range s.NumField() {
		f := s.Type().Field(i)
		v := s.Field(i)
		if !f.IsExported() || v.IsZero() {
			continue
		}
		if df := d.FieldByName(f.Name); df.IsValid() && df.CanSet() && df.Type() == f.Type {
			df.Set(v)
		}
	}
}

// primaryHook records the node each new connection reaches: for Sentinel,
// the primary the sentinels named at that moment.
type primaryHook struct{ topo *topology }

func (h primaryHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		if err == nil {
			h.topo.observe([]string{c.RemoteAddr().String()})
		}
		return c, err
	}
}

func (h primaryHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (h primaryHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// probe checks that the store can serve every key: the primary answers, or
// on a cluster every primary does (a cluster with one primary down refuses
// the keys of its slots). On a cluster it also refreshes the known
// primaries.
func (r *Redis) probe(ctx context.Context) error {
	cc, ok := r.client.(*redis.ClusterClient)
	if !ok {
		return r.client.Ping(ctx).Err()
	}
	var mu sync.Mutex
	var addrs []string
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		mu.Lock()
		addrs = append(addrs, c.Options().Addr)
		mu.Unlock()
		return c.Ping(ctx).Err()
	})
	if err != nil {
		return err
	}
	if len(addrs) == 0 {
		return errors.New("cluster has no primary")
	}
	r.topo.observe(addrs)
	return nil
}

// errNotReplicated is the cause when WaitReplicas replicas did not confirm
// a write in time. The write may survive or be lost in a failover, so the
// caller reports failure and the client retries.
var errNotReplicated = errors.New("write not confirmed by enough replicas")

// pinned returns a pipeline on one connection to the primary that holds
// key, so that a WAIT in it covers the writes before it.
func (r *Redis) pinned(ctx context.Context, key string) (redis.Pipeliner, error) {
	if cc, ok := r.client.(*redis.ClusterClient); ok {
		node, err := cc.MasterForKey(ctx, key)
		if err != nil {
			return nil, err
		}
		return node.Pipeline(), nil
	}
	return r.client.Pipeline(), nil
}

// queueWait queues WAIT for WaitReplicas replicas on p.
func (r *Redis) queueWait(ctx context.Context, p redis.Pipeliner) *redis.IntCmd {
	cmd := redis.NewIntCmd(ctx, "wait", r.waitReplicas, r.waitTimeout.Milliseconds())
	_ = p.Process(ctx, cmd)
	return cmd
}

// durable runs the write queue makes for key and, when WaitReplicas is
// set, waits until that many replicas confirm it (WAIT), so that a write
// the store reports done survives a failover to one of them. Writes that
// only limiters depend on do not use it.
func durable[C redis.Cmder](ctx context.Context, r *Redis, key string, queue func(ctx context.Context, c redis.Cmdable) C) (C, error) {
	if r.waitReplicas == 0 {
		cmd := queue(ctx, r.client)
		return cmd, cmd.Err()
	}
	pipe, err := r.pinned(ctx, key)
	if err != nil {
		var zero C
		return zero, err
	}
	cmd := queue(ctx, pipe)
	wait := r.queueWait(ctx, pipe)
	_, _ = pipe.Exec(ctx)
	if err := cmd.Err(); err != nil {
		return cmd, err
	}
	if err := wait.Err(); err != nil {
		return cmd, err
	}
	if wait.Val() < int64(r.waitReplicas) {
		return cmd, errNotReplicated
	}
	return cmd, nil
}

// runDurable runs script s on keys as durable does. Without WAIT it is
// s.Run: EVALSHA, and EVAL when the node does not have the script (after a
// failover the new primary's script cache is empty; NOSCRIPT means the
// script did not run, so running it again is safe). With WAIT it sends the
// source at once, so that a NOSCRIPT never makes the caller wait twice.
func (r *Redis) runDurable(ctx context.Context, s *redis.Script, keys []string, args ...any) (*redis.Cmd, error) {
	if r.waitReplicas == 0 {
		cmd := s.Run(ctx, r.client, keys, args...)
		return cmd, cmd.Err()
	}
	return durable(ctx, r, keys[0], func(ctx context.Context, c redis.Cmdable) *redis.Cmd {
		return s.Eval(ctx, c, keys, args...)
	})
}

// durableEach runs script s once per key (keys[i] with args[i]), pipelined
// into one round trip per primary, and, when WaitReplicas is set, waits on
// every primary it wrote to as durable does. Calls that met an empty script
// cache (NOSCRIPT: not run) run again with the script's source.
func (r *Redis) durableEach(ctx context.Context, s *redis.Script, keys []string, args [][]any) error {
	todo := make([]int, len(keys))
	for i := range todo {
		todo[i] = i
	}
	// With WAIT the source is sent at once, as in runDurable.
	for _, eval := range []bool{r.waitReplicas > 0, true} {
		groups, err := r.groupByPrimary(ctx, keys, todo)
		if err != nil {
			return err
		}
		var again []int
		for _, g := range groups {
			cmds := make([]*redis.Cmd, len(g.idx))
			for j, i := range g.idx {
				if eval {
					cmds[j] = s.Eval(ctx, g.pipe, keys[i:i+1], args[i]...)
				} else {
					cmds[j] = s.EvalSha(ctx, g.pipe, keys[i:i+1], args[i]...)
				}
			}
			var wait *redis.IntCmd
			if r.waitReplicas > 0 {
				wait = r.queueWait(ctx, g.pipe)
			}
			_, _ = g.pipe.Exec(ctx)
			for j, c := range cmds {
				switch err := c.Err(); {
				case err == nil:
				case !eval && redis.HasErrorPrefix(err, "NOSCRIPT"):
					again = append(again, g.idx[j])
				default:
					return err
				}
			}
			if wait != nil {
				if err := wait.Err(); err != nil {
					return err
				}
				if wait.Val() < int64(r.waitReplicas) {
					return errNotReplicated
				}
			}
		}
		if todo = again; len(todo) == 0 {
			return nil
		}
	}
	return nil
}

// primaryGroup is a pipeline and the indices of the keys queued in it.
type primaryGroup struct {
	pipe redis.Pipeliner
	idx  []int
}

// groupByPrimary splits the keys at idx into pipelines: one for them all,
// unless a WAIT must follow the writes of each cluster primary, which needs
// a pipeline on one connection per primary.
func (r *Redis) groupByPrimary(ctx context.Context, keys []string, idx []int) ([]primaryGroup, error) {
	cc, ok := r.client.(*redis.ClusterClient)
	if !ok || r.waitReplicas == 0 {
		return []primaryGroup{{pipe: r.client.Pipeline(), idx: idx}}, nil
	}
	byAddr := map[string]*primaryGroup{}
	var groups []*primaryGroup
	for _, i := range idx {
		node, err := cc.MasterForKey(ctx, keys[i])
		if err != nil {
			return nil, err
		}
		addr := node.Options().Addr
		g := byAddr[addr]
		if g == nil {
			g = &primaryGroup{pipe: node.Pipeline()}
			byAddr[addr] = g
			groups = append(groups, g)
		}
		g.idx = append(g.idx, i)
	}
	out := make([]primaryGroup, len(groups))
	for i, g := range groups {
		out[i] = *g
	}
	return out, nil
}
