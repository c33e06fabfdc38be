package statetest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelOptions shape StartSentinel's deployment. The zero value is one
// replica, three sentinels with a quorum of two and a 2s down-after.
type SentinelOptions struct {
	// Replicas is the number of replicas; 0 means 1.
	Replicas int
	// Sentinels is the number of sentinels; 0 means 3. The quorum is a
	// majority.
	Sentinels int
	// DownAfter is how long the primary must not answer before the
	// sentinels call it down (down-after-milliseconds); 0 means 2s, which
	// a machine loaded by parallel tests does not trip by accident.
	DownAfter time.Duration
	// Password, if set, is required by the data nodes (requirepass, and
	// masterauth for the replicas); SentinelPassword by the sentinels.
	Password, SentinelPassword string
}

// Sentinel is a primary, its replicas and the sentinels that monitor them,
// every one a process on a loopback port owned by one test and stopped when
// it ends. Create it with StartSentinel. Its methods are safe for
// concurrent use.
type Sentinel struct {
	t testing.TB
	// Master is the name the sentinels monitor the primary under.
	Master string
	// Nodes are the data nodes; Nodes[0] is the first primary.
	Nodes []*Server
	// Sentinels are the sentinels.
	Sentinels []*Server

	password, sentinelPassword string
}

// sentinelMaster is the monitored name StartSentinel uses.
const sentinelMaster = "authgate"

// StartSentinel starts a Sentinel deployment for t and waits until every
// sentinel knows every other one and every replica is in sync, so that a
// failover can be elected at once. It is skipped like StartServer when
// redis-server or redis-sentinel is missing.
func StartSentinel(t testing.TB, o SentinelOptions) *Sentinel {
	t.Helper()
	o.Replicas = cmpOr(o.Replicas, 1)
	o.Sentinels = cmpOr(o.Sentinels, 3)
	o.DownAfter = cmpOr(o.DownAfter, 2*time.Second)
	serverBin := lookPath(t, "redis-server", "redis-server")
	sentinelBin := lookPath(t, "redis-sentinel", "redis-sentinel")
	d := &Sentinel{t: t, Master: sentinelMaster, password: o.Password, sentinelPassword: o.SentinelPassword}
	node := func(replicaOf int) func(port int, dir string) ([]string, error) {
		return func(port int, dir string) ([]string, error) {
			args := []string{"--save", "", "--appendonly", "no", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir}
			if o.Password != "" {
				args = append(args, "--requirepass", o.Password, "--masterauth", o.Password)
			}
			if replicaOf != 0 {
				args = append(args, "--replicaof", "127.0.0.1", strconv.Itoa(replicaOf))
			}
			return args, nil
		}
	}
	primary := startServer(t, serverBin, node(0))
	d.Nodes = append(d.Nodes, primary)
	for range o.Replicas {
		d.Nodes = append(d.Nodes, startServer(t, serverBin, node(primary.Port())))
	}
	quorum := o.Sentinels/2 + 1
	for range o.Sentinels {
		d.Sentinels = append(d.Sentinels, startServer(t, sentinelBin, func(port int, dir string) ([]string, error) {
			// The sentinel rewrites its file with what it learns; a
			// restart keeps it.
			conf := filepath.Join(dir, fmt.Sprintf("sentinel-%d.conf", port))
			if _, err := os.Stat(conf); err == nil {
				return []string{conf}, nil
			}
			text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\n"+
				"sentinel monitor %s 127.0.0.1 %d %d\n"+
				"sentinel down-after-milliseconds %s %d\n"+
				"sentinel failover-timeout %s 10000\n"+
				"sentinel parallel-syncs %s 1\n",
				port, dir, sentinelMaster, primary.Port(), quorum,
				sentinelMaster, o.DownAfter.Milliseconds(), sentinelMaster, sentinelMaster)
			if o.Password != "" {
				text += fmt.Sprintf("sentinel auth-pass %s %s\n", sentinelMaster, o.Password)
			}
			if o.SentinelPassword != "" {
				// Sentinels talk to each other with it too.
				text += fmt.Sprintf("requirepass %s\nsentinel sentinel-pass %s\n", o.SentinelPassword, o.SentinelPassword)
			}
			if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
				return nil, err
			}
			return []string{conf}, nil
		}))
	}
	d.waitSettled(o.Sentinels-1, o.Replicas)
	return d
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// SentinelAddrs returns the sentinels' host:port.
func (d *Sentinel) SentinelAddrs() []string {
	addrs := make([]string, len(d.Sentinels))
	for i, s := range d.Sentinels {
		addrs[i] = s.Addr()
	}
	return addrs
}

// waitSettled waits until every sentinel sees others sentinels and
// replicas replicas of the primary, all of them connected.
func (d *Sentinel) waitSettled(others, replicas int) {
	d.t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range d.Sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr(), Password: d.sentinelPassword})
		for {
			m, err := c.Master(ctx, d.Master).Result()
			ok := err == nil && m["num-other-sentinels"] == strconv.Itoa(others) && m["num-slaves"] == strconv.Itoa(replicas)
			if ok {
				reps, err := c.Replicas(ctx, d.Master).Result()
				ok = err == nil && len(reps) == replicas
				for _, r := range reps {
					ok = ok && r["master-link-status"] == "ok" && !strings.Contains(r["flags"], "down")
				}
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				_ = c.Close()
				d.t.Fatalf("statetest: sentinel %s did not settle within 30s: %v %v", s.Addr(), m, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		_ = c.Close()
	}
}

// Primary returns the primary the first answering sentinel names.
func (d *Sentinel) Primary() (string, error) {
	ctx := context.Background()
	var lastErr error
	for _, s := range d.Sentinels {
		if !s.Running() {
			continue
		}
		c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr(), Password: d.sentinelPassword, DialTimeout: time.Second, ReadTimeout: time.Second})
		addr, err := c.GetMasterAddrByName(ctx, d.Master).Result()
		_ = c.Close()
		if err == nil && len(addr) == 2 {
			return net.JoinHostPort(addr[0], addr[1]), nil
		}
		lastErr = err
	}
	return "", fmt.Errorf("statetest: no sentinel names a primary: %v", lastErr)
}

// Node returns the data node at addr, or nil.
func (d *Sentinel) Node(addr string) *Server {
	for _, n := range d.Nodes {
		if n.Addr() == addr {
			return n
		}
	}
	return nil
}

// WaitFailover waits until the sentinels name a primary other than old
// and that node answers as a primary, and returns it.
func (d *Sentinel) WaitFailover(old string, within time.Duration) string {
	d.t.Helper()
	deadline := time.Now().Add(within)
	for {
		addr, err := d.Primary()
		if err == nil && addr != old && isPrimary(addr, d.password) {
			return addr
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("statetest: no failover away from %s within %v (sentinels name %q, %v)", old, within, addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitReplicaSynced waits until the node at addr replicates the current
// primary with its link up (after a restart the sentinels turn a former
// primary into a replica).
func (d *Sentinel) WaitReplicaSynced(addr string, within time.Duration) {
	d.t.Helper()
	deadline := time.Now().Add(within)
	for {
		c := redis.NewClient(&redis.Options{Addr: addr, Password: d.password, DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1})
		role, err := c.Do(context.Background(), "role").Slice()
		_ = c.Close()
		if err == nil && len(role) >= 4 && role[0] == "slave" && role[3] == "connected" {
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("statetest: %s not a synced replica within %v: %v %v", addr, within, role, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// isPrimary reports whether the node at addr answers ROLE as a master.
func isPrimary(addr, password string) bool {
	c := redis.NewClient(&redis.Options{Addr: addr, Password: password, DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1})
	defer c.Close()
	role, err := c.Do(context.Background(), "role").Slice()
	return err == nil && len(role) > 0 && role[0] == "master"
}

// Cluster is a Redis Cluster of primaries on loopback ports, owned by one
// test and stopped when it ends. Create it with StartCluster.
type Cluster struct {
	// Nodes are the primaries.
	Nodes []*Server
}

// StartCluster starts n cluster-enabled redis-servers, joins them into one
// cluster with redis-cli --cluster create (no replicas) and waits until
// every node reports the cluster ok. It is skipped like StartServer when
// redis-server or redis-cli is missing.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	bin := lookPath(t, "redis-server", "redis-server")
	cli := lookPath(t, "redis-cli", "redis-tools")
	c := &Cluster{}
	for range n {
		bus, busFor := 0, 0
		c.Nodes = append(c.Nodes, startServer(t, bin, func(port int, dir string) ([]string, error) {
			// The cluster bus gets a port of its own (cluster-port), as
			// port+10000 may be taken or out of range. A restart on the
			// same port keeps it.
			if busFor != port {
				p, err := freePort()
				if err != nil {
					return nil, err
				}
				bus, busFor = p, port
			}
			return []string{"--save", "", "--appendonly", "no", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
				"--dir", dir, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
				"--cluster-port", strconv.Itoa(bus), "--cluster-node-timeout", "2000"}, nil
		}))
	}
	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("statetest: redis-cli --cluster create: %v\n%s", err, out)
	}
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for _, node := range c.Nodes {
		rc := redis.NewClient(&redis.Options{Addr: node.Addr()})
		for {
			info, err := rc.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(n)) {
				break
			}
			if time.Now().After(deadline) {
				_ = rc.Close()
				t.Fatalf("statetest: cluster node %s not ok within 30s: %v\n%s", node.Addr(), err, info)
			}
			time.Sleep(100 * time.Millisecond)
		}
		_ = rc.Close()
	}
	return c
}

// Addrs returns the nodes' host:port.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// KeySlot asks the cluster which slot key hashes to (CLUSTER KEYSLOT).
func (c *Cluster) KeySlot(key string) (int, error) {
	rc := redis.NewClient(&redis.Options{Addr: c.Nodes[0].Addr()})
	defer rc.Close()
	n, err := rc.ClusterKeySlot(context.Background(), key).Result()
	return int(n), err
}
