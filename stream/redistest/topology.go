package redistest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster of three masters (no replicas) of the test's
// own, on free ports of 127.0.0.1, with nothing kept on disk beyond the
// node files in t.TempDir().
type Cluster struct {
	Nodes []*Server
}

// StartCluster starts three redis-server nodes in cluster mode, joins them
// with redis-cli --cluster create, waits until every node reports
// cluster_state:ok, and stops them all in t.Cleanup.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	c := &Cluster{}
	t.Cleanup(c.Stop)
	for range 3 {
		s, err := startNode(t.TempDir(), func(dir string, port int) ([]string, error) {
			bus, err := freePort()
			if err != nil {
				return nil, err
			}
			return []string{
				"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
				"--cluster-port", strconv.Itoa(bus), "--cluster-config-file", filepath.Join(dir, "nodes.conf"),
				"--cluster-node-timeout", "2000", "--dir", dir, "--save", "", "--appendonly", "no",
			}, nil
		})
		if err != nil {
			t.Fatalf("redistest: cluster node: %v", err)
		}
		c.Nodes = append(c.Nodes, s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append(c.Addrs(), "--cluster-yes")
	out, err := exec.CommandContext(ctx, "redis-cli", append([]string{"--cluster", "create"}, args...)...).CombinedOutput() //nolint:gosec // fixed program, our own addresses
	if err != nil {
		t.Fatalf("redistest: redis-cli --cluster create (is redis-tools installed?): %v\n%s", err, out)
	}
	for _, n := range c.Nodes {
		nc := redis.NewClient(&redis.Options{Addr: n.Addr()})
		err := waitUntil(ctx, func() bool {
			info, err := nc.ClusterInfo(ctx).Result()
			return err == nil && strings.Contains(info, "cluster_state:ok")
		})
		_ = nc.Close()
		if err != nil {
			t.Fatalf("redistest: cluster node %s never reported cluster_state:ok: %v", n.Addr(), err)
		}
	}
	// Every node must also agree on who serves each slot before a client
	// that picked any of them as seed routes correctly.
	cc := c.client()
	defer cc.Close()
	if err := waitUntil(ctx, func() bool {
		for i := range 3 {
			key := fmt.Sprintf("redistest:probe:{%d}", i)
			if cc.Set(ctx, key, "1", time.Second).Err() != nil {
				return false
			}
		}
		return true
	}); err != nil {
		t.Fatalf("redistest: cluster does not take writes: %v", err)
	}
	return c
}

// Addrs are the nodes' host:port addresses, the seeds a client takes.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr()
	}
	return out
}

func (c *Cluster) client() *redis.ClusterClient {
	return redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
}

// Client returns a cluster client on the nodes, closed in t.Cleanup.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	cc := c.client()
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// Stop kills every node. Stopping twice does nothing.
func (c *Cluster) Stop() {
	for _, n := range c.Nodes {
		n.Stop()
	}
}

// MasterName is the name the sentinels of StartSentinel monitor.
const MasterName = "bazaar-test"

// Sentinel is a primary, one replica and three sentinels watching them, of
// the test's own, on free ports of 127.0.0.1, keeping nothing on disk.
type Sentinel struct {
	Primary   *Server
	Replica   *Server
	Sentinels []*Server
}

// StartSentinel starts the primary, its replica (waiting until it is in
// sync) and three sentinels (redis-server --sentinel) that fail over after
// the primary has not answered for one second, and stops them all in
// t.Cleanup.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	s := &Sentinel{}
	t.Cleanup(s.Stop)
	var err error
	if s.Primary, err = startServer("", ""); err != nil {
		t.Fatalf("redistest: sentinel primary: %v", err)
	}
	if s.Replica, err = startReplica(t.TempDir(), s.Primary); err != nil {
		t.Fatalf("redistest: sentinel replica: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Replica.WaitInSync(ctx); err != nil {
		t.Fatalf("redistest: %v", err)
	}
	for range 3 {
		sn, err := startNode(t.TempDir(), func(dir string, port int) ([]string, error) {
			conf := filepath.Join(dir, "sentinel.conf")
			text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\n"+
				"sentinel monitor %s 127.0.0.1 %d 2\n"+
				"sentinel down-after-milliseconds %s 1000\n"+
				"sentinel failover-timeout %s 10000\n"+
				"sentinel parallel-syncs %s 1\n",
				port, dir, MasterName, s.Primary.port, MasterName, MasterName, MasterName)
			if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
				return nil, err
			}
			return []string{conf, "--sentinel"}, nil
		})
		if err != nil {
			t.Fatalf("redistest: sentinel: %v", err)
		}
		s.Sentinels = append(s.Sentinels, sn)
	}
	// Ready once every sentinel sees the replica and the other sentinels.
	for _, sn := range s.Sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr()})
		err := waitUntil(ctx, func() bool {
			m, err := sc.Master(ctx, MasterName).Result()
			if err != nil {
				return false
			}
			reps, err := sc.Replicas(ctx, MasterName).Result()
			return err == nil && len(reps) == 1 && m["num-other-sentinels"] == "2"
		})
		_ = sc.Close()
		if err != nil {
			t.Fatalf("redistest: sentinel %s never saw the replica and the other sentinels: %v", sn.Addr(), err)
		}
	}
	return s
}

// Addrs are the sentinels' host:port addresses.
func (s *Sentinel) Addrs() []string {
	out := make([]string, len(s.Sentinels))
	for i, n := range s.Sentinels {
		out[i] = n.Addr()
	}
	return out
}

// Client returns a failover client (asks the sentinels for the primary),
// closed in t.Cleanup.
func (s *Sentinel) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: MasterName, SentinelAddrs: s.Addrs()})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// WaitPromoted waits until the sentinels name a primary other than old,
// and returns its address.
func (s *Sentinel) WaitPromoted(ctx context.Context, old string) (string, error) {
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinels[0].Addr()})
	defer sc.Close()
	var addr string
	err := waitUntil(ctx, func() bool {
		a, err := sc.GetMasterAddrByName(ctx, MasterName).Result()
		if err != nil || len(a) != 2 {
			return false
		}
		addr = a[0] + ":" + a[1]
		return addr != old
	})
	return addr, err
}

// Stop kills the sentinels, then the servers. Stopping twice does nothing.
func (s *Sentinel) Stop() {
	for _, n := range s.Sentinels {
		n.Stop()
	}
	for _, n := range []*Server{s.Primary, s.Replica} {
		if n != nil {
			n.Stop()
		}
	}
}

// startNode starts a redis-server with the arguments args builds for a
// free port, trying other ports when the one picked is taken first.
func startNode(dir string, args func(dir string, port int) ([]string, error)) (*Server, error) {
	var last error
	for range 5 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		a, err := args(dir, port)
		if err != nil {
			return nil, err
		}
		s := &Server{port: port, args: a}
		if last = s.Start(); last == nil {
			return s, nil
		}
	}
	return nil, last
}

// waitUntil polls ok until it holds or ctx ends.
func waitUntil(ctx context.Context, ok func() bool) error {
	for !ok() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// StartReplica starts a replica of primary (keeping nothing on disk),
// waits until it is in sync, and stops it in t.Cleanup. Its Stop and
// Start take it away and bring it back, when it syncs again.
func StartReplica(t testing.TB, primary *Server) *Server {
	t.Helper()
	r, err := startReplica(t.TempDir(), primary)
	if err != nil {
		t.Fatalf("redistest: replica: %v", err)
	}
	t.Cleanup(r.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.WaitInSync(ctx); err != nil {
		t.Fatalf("redistest: %v", err)
	}
	return r
}

func startReplica(dir string, primary *Server) (*Server, error) {
	return startNode(dir, func(dir string, port int) ([]string, error) {
		return []string{
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir,
			"--replicaof", "127.0.0.1", strconv.Itoa(primary.port),
		}, nil
	})
}

// WaitInSync waits until the server, a replica, has its link to the
// primary up.
func (s *Server) WaitInSync(ctx context.Context) error {
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer c.Close()
	err := waitUntil(ctx, func() bool {
		info, err := c.Info(ctx, "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up")
	})
	if err != nil {
		return fmt.Errorf("replica %s never in sync: %w", s.Addr(), err)
	}
	return nil
}
