package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream/redistest"
)

func TestLoadRedisConfig(t *testing.T) {
	t.Parallel()
	c, err := loadConfig(envOf(nil))
	require.NoError(t, err)
	require.Equal(t, topologySingle, c.Redis.Topology)
	require.Zero(t, c.Redis.MinReplicas, "no replica wait by default")

	// A made-up password, to see that it reaches the client and not the log.
	c, err = loadConfig(envOf(map[string]string{ //nolint:gosec // not a credential
		"REDIS_URL":                  "redis://app:s3cret@ignored:6379/0",
		"BAZAAR_REDIS_CLUSTER_ADDRS": "10.0.0.1:6379, 10.0.0.2:6379,10.0.0.3:6379",
		"BAZAAR_REDIS_MIN_REPLICAS":  "1",
	}))
	require.NoError(t, err)
	require.Equal(t, topologyCluster, c.Redis.Topology)
	require.Equal(t, []string{"10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379"}, c.Redis.ClusterAddrs)
	rdb, err := newRedisClient(c.Redis)
	require.NoError(t, err)
	cc, ok := rdb.(*redis.ClusterClient)
	require.True(t, ok, "%T", rdb)
	require.Equal(t, "app", cc.Options().Username)
	require.Equal(t, "s3cret", cc.Options().Password, "the password comes from REDIS_URL")
	require.NoError(t, rdb.Close())
	opt, err := asynqConnOpt(c.Redis)
	require.NoError(t, err)
	require.Equal(t, asynq.RedisClusterClientOpt{Addrs: c.Redis.ClusterAddrs, Username: "app", Password: "s3cret"}, opt)
	require.NotContains(t, logged(c), "s3cret")

	c, err = loadConfig(envOf(map[string]string{
		"REDIS_URL":                      "redis://:pw@ignored:6379/2",
		"BAZAAR_REDIS_SENTINEL_ADDRS":    "10.0.0.1:26379,10.0.0.2:26379",
		"BAZAAR_REDIS_SENTINEL_MASTER":   "mymaster",
		"BAZAAR_REDIS_SENTINEL_PASSWORD": "sentinel-pw",
	}))
	require.NoError(t, err)
	require.Equal(t, topologySentinel, c.Redis.Topology)
	opt, err = asynqConnOpt(c.Redis)
	require.NoError(t, err)
	require.Equal(t, asynq.RedisFailoverClientOpt{
		MasterName: "mymaster", SentinelAddrs: []string{"10.0.0.1:26379", "10.0.0.2:26379"}, SentinelPassword: "sentinel-pw",
		Password: "pw", DB: 2,
	}, opt)
	require.NotContains(t, logged(c), "sentinel-pw")
	require.Contains(t, logged(c), `"topology":"sentinel"`)

	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"BAZAAR_REDIS_CLUSTER_ADDRS": "a:1", "BAZAAR_REDIS_SENTINEL_ADDRS": "b:2", "BAZAAR_REDIS_SENTINEL_MASTER": "m"}, "BAZAAR_REDIS_CLUSTER_ADDRS: set together with BAZAAR_REDIS_SENTINEL_*"},
		{map[string]string{"BAZAAR_REDIS_SENTINEL_ADDRS": "b:2"}, "BAZAAR_REDIS_SENTINEL_MASTER: is required"},
		{map[string]string{"BAZAAR_REDIS_SENTINEL_MASTER": "m"}, "BAZAAR_REDIS_SENTINEL_ADDRS: is required"},
		{map[string]string{"BAZAAR_REDIS_SENTINEL_PASSWORD": "x"}, "BAZAAR_REDIS_SENTINEL_PASSWORD: is set but"},
		{map[string]string{"BAZAAR_REDIS_CLUSTER_ADDRS": "10.0.0.1"}, `BAZAAR_REDIS_CLUSTER_ADDRS: "10.0.0.1" is not a host:port`},
		{map[string]string{"BAZAAR_REDIS_CLUSTER_ADDRS": "a:1", "REDIS_URL": "redis://h:6379/3"}, "REDIS_URL: selects database 3, but Redis Cluster has only database 0"},
		{map[string]string{"BAZAAR_REDIS_MIN_REPLICAS": "one"}, "BAZAAR_REDIS_MIN_REPLICAS"},
		{map[string]string{"BAZAAR_REDIS_MIN_REPLICAS": "1", "BAZAAR_REDIS_WAIT_TIMEOUT": "0s"}, "BAZAAR_REDIS_WAIT_TIMEOUT: must be more than 0"},
	} {
		_, err := loadConfig(envOf(tc.env))
		require.ErrorContains(t, err, tc.want, "%v", tc.env)
		require.NotContains(t, err.Error(), "\n")
	}
	// The command line answers a bad combination in one line.
	err = run(context.Background(), []string{"bazaar", "dlq", "list"}, envOf(map[string]string{"BAZAAR_REDIS_SENTINEL_ADDRS": "b:2"}), io.Discard, io.Discard)
	require.ErrorContains(t, err, "config: BAZAAR_REDIS_SENTINEL_MASTER: is required")
}

// TestDevOnRedisCluster: "bazaar dev" with BAZAAR_REDIS_CLUSTER_ADDRS on a
// local three-node cluster (and partitioned streams) takes the README's
// walk-through order to confirmed, with its events live on /v1/events.
func TestDevOnRedisCluster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t)
	testDevOn(t, map[string]string{
		"BAZAAR_REDIS_CLUSTER_ADDRS": strings.Join(c.Addrs(), ","),
		"BAZAAR_STREAM_PARTITIONS":   "4",
	}, "bazaar:events:{order:")
}

// TestDevOnRedisSentinel: the same through the sentinels, with the relay
// waiting for the replica.
func TestDevOnRedisSentinel(t *testing.T) {
	t.Parallel()
	sn := redistest.StartSentinel(t)
	testDevOn(t, map[string]string{
		"BAZAAR_REDIS_SENTINEL_ADDRS":  strings.Join(sn.Addrs(), ","),
		"BAZAAR_REDIS_SENTINEL_MASTER": redistest.MasterName,
		"BAZAAR_REDIS_MIN_REPLICAS":    "1",
	}, "bazaar:events:order")
}

// testDevOn runs "bazaar dev" with the Redis variables of redisEnv; an
// order stream's name contains orderStream.
func testDevOn(t *testing.T, redisEnv map[string]string, orderStream string) {
	_, dsn := storetest.NewDB(t)
	env := map[string]string{
		"DATABASE_URL":         dsn,
		"BAZAAR_HTTP_ADDR":     freeAddr(t),
		"BAZAAR_DEV_SMTP_ADDR": freeAddr(t),
		"BAZAAR_ADMIN_TOKEN":   testAdmin,
		"BAZAAR_LOG_FORMAT":    "json",
	}
	maps.Copy(env, redisEnv)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logs := &syncBuffer{}
	go func() { done <- run(ctx, []string{"bazaar", "dev"}, envOf(env), logs, logs) }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("bazaar dev logs:\n%s", logs.String())
		}
	})
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Error("bazaar dev did not stop")
		}
	})
	base := "http://" + env["BAZAAR_HTTP_ADDR"]
	client := &http.Client{Timeout: 10 * time.Second}
	require.Eventually(t, func() bool {
		select {
		case err := <-done:
			t.Fatalf("bazaar dev exited: %v", err)
		default:
		}
		res, err := client.Get(base + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	}, 60*time.Second, 50*time.Millisecond, "bazaar dev ready")
	s := &stack{t: t, url: base, client: client}
	sh := s.shop()

	req, err := http.NewRequest(http.MethodGet, base+"/v1/events?topics=order.%23", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+sh.storefront)
	res, err := (&http.Client{}).Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { res.Body.Close() })
	require.Equal(t, http.StatusOK, res.StatusCode)
	live := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "event: ") {
				live <- strings.TrimPrefix(sc.Text(), "event: ")
			}
		}
		close(live)
	}()

	orderID := s.order(sh) // waits for confirmed
	require.NotEmpty(t, orderID)
	seen := map[string]bool{}
	deadline := time.After(20 * time.Second)
	for !seen["order.created"] || !seen["order.confirmed"] {
		select {
		case typ, ok := <-live:
			require.True(t, ok, "the event stream ended; saw %v", seen)
			seen[typ] = true
		case <-deadline:
			t.Fatalf("live events seen: %v; want order.created and order.confirmed", seen)
		}
	}
	// The streams page reads every partition across the nodes.
	areq, err := http.NewRequest(http.MethodGet, base+"/v1/admin/streams", nil)
	require.NoError(t, err)
	areq.Header.Set("Authorization", "Bearer "+testAdmin)
	began := time.Now()
	ares, err := client.Do(areq)
	require.NoError(t, err)
	t.Logf("GET /v1/admin/streams took %s", time.Since(began))
	abody, _ := io.ReadAll(ares.Body)
	ares.Body.Close()
	require.Equal(t, http.StatusOK, ares.StatusCode, "%s", abody)
	require.Contains(t, string(abody), orderStream)
	// The asynq workers ran the saga's tasks on the cluster: asynqmon at
	// /monitor reads the same queues.
	mreq, err := http.NewRequest(http.MethodGet, base+"/monitor/api/queues", nil)
	require.NoError(t, err)
	mreq.Header.Set("Authorization", "Bearer "+testAdmin)
	mres, err := client.Do(mreq)
	require.NoError(t, err)
	body, _ := io.ReadAll(mres.Body)
	mres.Body.Close()
	require.Equal(t, http.StatusOK, mres.StatusCode, "%s", body)
	require.Contains(t, string(body), `"processed"`)
}

// logged is the config as the roles log it at start.
func logged(c Config) string {
	var b strings.Builder
	slog.New(slog.NewJSONHandler(&b, nil)).Info("config", "config", c)
	return b.String()
}

// syncBuffer collects the logs of a process run in a goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
