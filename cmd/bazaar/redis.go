package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/bazaarhq/bazaar/stream"
)

// Redis topologies every role can run on.
const (
	topologySingle   = "single"
	topologyCluster  = "cluster"
	topologySentinel = "sentinel"
)

// redisConfig is the Redis topology and the credentials that go with it.
// REDIS_URL alone is one node; BAZAAR_REDIS_CLUSTER_ADDRS selects Redis
// Cluster and BAZAAR_REDIS_SENTINEL_ADDRS with BAZAAR_REDIS_SENTINEL_MASTER
// selects Sentinel. In those two, REDIS_URL still supplies the username,
// password, TLS (rediss://) and database (Sentinel only; Cluster has only
// database 0); its host is not used.
type redisConfig struct {
	Topology string
	// URL is REDIS_URL.
	URL string
	// ClusterAddrs are the seed nodes of a Redis Cluster.
	ClusterAddrs []string
	// SentinelAddrs and SentinelMaster name the sentinels and the primary
	// they watch; SentinelPassword is the sentinels' own password.
	SentinelAddrs    []string
	SentinelMaster   string
	SentinelPassword string
	// MinReplicas is how many replicas must acknowledge a relay batch
	// (WAIT) before it counts as published; 0 skips the wait.
	MinReplicas int
	// WaitTimeout bounds that wait; past it the batch is retried.
	WaitTimeout time.Duration
}

// loadRedisConfig reads the topology variables; url is REDIS_URL, already
// checked to be a redis:// or rediss:// URL.
func loadRedisConfig(r *envReader, url string) redisConfig {
	c := redisConfig{
		Topology:         topologySingle,
		URL:              url,
		ClusterAddrs:     r.addrList("BAZAAR_REDIS_CLUSTER_ADDRS"),
		SentinelAddrs:    r.addrList("BAZAAR_REDIS_SENTINEL_ADDRS"),
		SentinelMaster:   r.str("BAZAAR_REDIS_SENTINEL_MASTER", ""),
		SentinelPassword: r.str("BAZAAR_REDIS_SENTINEL_PASSWORD", ""),
		MinReplicas:      int(r.integer("BAZAAR_REDIS_MIN_REPLICAS", 0)),
		WaitTimeout:      r.duration("BAZAAR_REDIS_WAIT_TIMEOUT", time.Second),
	}
	switch {
	case len(c.ClusterAddrs) > 0 && (len(c.SentinelAddrs) > 0 || c.SentinelMaster != ""):
		r.fail("BAZAAR_REDIS_CLUSTER_ADDRS", "set together with BAZAAR_REDIS_SENTINEL_*; choose Cluster or Sentinel, not both")
	case len(c.ClusterAddrs) > 0:
		c.Topology = topologyCluster
	case len(c.SentinelAddrs) > 0 && c.SentinelMaster == "":
		r.fail("BAZAAR_REDIS_SENTINEL_MASTER", "is required with BAZAAR_REDIS_SENTINEL_ADDRS (the name the sentinels monitor, such as mymaster)")
	case len(c.SentinelAddrs) == 0 && c.SentinelMaster != "":
		r.fail("BAZAAR_REDIS_SENTINEL_ADDRS", "is required with BAZAAR_REDIS_SENTINEL_MASTER (comma-separated sentinel host:port addresses)")
	case len(c.SentinelAddrs) > 0:
		c.Topology = topologySentinel
	}
	if c.SentinelPassword != "" && c.Topology != topologySentinel {
		r.fail("BAZAAR_REDIS_SENTINEL_PASSWORD", "is set but BAZAAR_REDIS_SENTINEL_ADDRS is not")
	}
	if c.MinReplicas > 0 && c.WaitTimeout <= 0 {
		r.fail("BAZAAR_REDIS_WAIT_TIMEOUT", "must be more than 0 when BAZAAR_REDIS_MIN_REPLICAS is set")
	}
	if r.err == nil {
		opt, err := redis.ParseURL(url)
		switch {
		case err != nil:
			r.fail("REDIS_URL", "%s", err)
		case c.Topology == topologyCluster && opt.DB != 0:
			r.fail("REDIS_URL", "selects database %d, but Redis Cluster has only database 0", opt.DB)
		}
	}
	return c
}

// addrList reads a comma-separated list of host:port addresses.
func (r *envReader) addrList(key string) []string {
	v := r.str(key, "")
	if v == "" {
		return nil
	}
	var out []string
	for a := range strings.SplitSeq(v, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if host, port, err := net.SplitHostPort(a); err != nil || host == "" || port == "" {
			r.fail(key, "%q is not a host:port address such as 10.0.0.1:6379", a)
			return nil
		}
		out = append(out, a)
	}
	return out
}

// LogValue masks the credentials.
func (c redisConfig) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("topology", c.Topology)}
	switch c.Topology {
	case topologyCluster:
		attrs = append(attrs, slog.String("cluster_addrs", strings.Join(c.ClusterAddrs, ",")))
	case topologySentinel:
		attrs = append(attrs, slog.String("sentinel_addrs", strings.Join(c.SentinelAddrs, ",")),
			slog.String("sentinel_master", c.SentinelMaster), slog.String("sentinel_password", mask(c.SentinelPassword)))
	}
	attrs = append(attrs, slog.Int("min_replicas", c.MinReplicas), slog.Duration("wait_timeout", c.WaitTimeout))
	return slog.GroupValue(attrs...)
}

// where names the servers in messages, without credentials.
func (c redisConfig) where() string {
	switch c.Topology {
	case topologyCluster:
		return "Redis Cluster " + strings.Join(c.ClusterAddrs, ",")
	case topologySentinel:
		return fmt.Sprintf("Redis primary %q of sentinels %s", c.SentinelMaster, strings.Join(c.SentinelAddrs, ","))
	}
	return "redis at " + redactURL(c.URL)
}

// urlOptions are the credentials, TLS and database of REDIS_URL. For Cluster
// and Sentinel the TLS server name is left to each address dialled.
func (c redisConfig) urlOptions() (*redis.Options, error) {
	opt, err := redis.ParseURL(c.URL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	if opt.TLSConfig != nil && c.Topology != topologySingle {
		opt.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return opt, nil
}

// newRedisClient is the one constructor of the Redis client of every role:
// a Client, a ClusterClient or a FailoverClient, by topology.
func newRedisClient(c redisConfig) (redis.UniversalClient, error) {
	opt, err := c.urlOptions()
	if err != nil {
		return nil, err
	}
	switch c.Topology {
	case topologyCluster:
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: c.ClusterAddrs, Username: opt.Username, Password: opt.Password, TLSConfig: opt.TLSConfig,
		}), nil
	case topologySentinel:
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: c.SentinelMaster, SentinelAddrs: c.SentinelAddrs, SentinelPassword: c.SentinelPassword,
			Username: opt.Username, Password: opt.Password, DB: opt.DB, TLSConfig: opt.TLSConfig,
		}), nil
	}
	return redis.NewClient(opt), nil
}

// asynqConnOpt is the same topology for what asynq connects to by itself
// (asynqmon at /monitor); the workers, scheduler and inspectors share the
// client of newRedisClient.
func asynqConnOpt(c redisConfig) (asynq.RedisConnOpt, error) {
	opt, err := c.urlOptions()
	if err != nil {
		return nil, err
	}
	switch c.Topology {
	case topologyCluster:
		return asynq.RedisClusterClientOpt{
			Addrs: c.ClusterAddrs, Username: opt.Username, Password: opt.Password, TLSConfig: opt.TLSConfig,
		}, nil
	case topologySentinel:
		return asynq.RedisFailoverClientOpt{
			MasterName: c.SentinelMaster, SentinelAddrs: c.SentinelAddrs, SentinelPassword: c.SentinelPassword,
			Username: opt.Username, Password: opt.Password, DB: opt.DB, TLSConfig: opt.TLSConfig,
		}, nil
	}
	return asynq.RedisClientOpt{
		Network: opt.Network, Addr: opt.Addr, Username: opt.Username, Password: opt.Password, DB: opt.DB, TLSConfig: opt.TLSConfig,
	}, nil
}

// openRedis builds the client and checks that Redis answers.
func openRedis(ctx context.Context, c Config) (redis.UniversalClient, error) {
	rdb, err := newRedisClient(c.Redis)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("%s is not reachable (start it with \"make up\"): %w", c.Redis.where(), err)
	}
	return rdb, nil
}

// replicated sets the relay's replica wait (BAZAAR_REDIS_MIN_REPLICAS).
func (c redisConfig) replicated(rc stream.RelayConfig) stream.RelayConfig {
	rc.MinReplicas = c.MinReplicas
	rc.ReplicaTimeout = c.WaitTimeout
	return rc
}
