package stream

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream/redistest"
)

// TestRelayWaitsForReplicas: with MinReplicas set, a batch the replica has
// not acknowledged stays unpublished (it was added to the primary, which
// could fail over without it) and is published again once the replica is
// back.
func TestRelayWaitsForReplicas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	primary := redistest.StartServer(t, redistest.ServerOptions{})
	replica := redistest.StartReplica(t, primary)
	rdb := redis.NewClient(&redis.Options{Addr: primary.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	db, _ := storetest.NewDB(t)
	// A prefix of its own: a test that stops its server frees the port, and
	// its clients would write to whichever server takes it next.
	b := testBundle{db: db, rdb: rdb, names: Names{Prefix: fmt.Sprintf("bazaar:wait%d:", time.Now().UnixNano())}, log: testLogger(t)}
	r := newRelay(t, b, RelayConfig{MinReplicas: 1, ReplicaTimeout: 200 * time.Millisecond})
	key := b.names.Stream("order", 0)

	record(t, db, "order.created", "ord-1", "ord-2", "ord-3")
	drain(t, r)
	require.Zero(t, unpublished(t, db), "published once the replica acknowledged")

	replica.Stop()
	record(t, db, "order.confirmed", "ord-1", "ord-2")
	_, err := r.PublishBatch(ctx)
	require.ErrorIs(t, err, ErrReplicas)
	require.EqualValues(t, 2, unpublished(t, db), "a batch no replica acknowledged stays unpublished")
	n, err := rdb.XLen(ctx, key).Result()
	require.NoError(t, err)
	require.EqualValues(t, 5, n, "the entries reached the primary only")

	require.NoError(t, replica.Start())
	require.NoError(t, replica.WaitInSync(ctx))
	drain(t, r)
	require.Zero(t, unpublished(t, db), "published once the replica is back")
	rows, err := store.EventsBySubject(ctx, db, "ord-1")
	require.NoError(t, err)
	last, err := rdb.XRevRangeN(ctx, key, "+", "-", 2).Result()
	require.NoError(t, err)
	require.Contains(t, []string{last[0].ID, last[1].ID}, *rows[1].StreamID, "marked with the entry of the retried batch")
	rc := redis.NewClient(&redis.Options{Addr: replica.Addr()})
	t.Cleanup(func() { _ = rc.Close() })
	eventually(t, "replica holds every entry", func() bool {
		n, err := rc.XLen(ctx, key).Result()
		return err == nil && n == 7
	})
}

// testRelayWaitsOnEveryPrimary (on Cluster, whose test nodes have no
// replicas): the wait goes to every primary that got entries of the batch,
// each on its own connection, and the batch stays unpublished.
func testRelayWaitsOnEveryPrimary(t *testing.T, b testBundle) {
	ctx := context.Background()
	b.names.Partitions = 16
	recordMany(t, b.db, "order.created", 64, 64)
	r := newRelay(t, b, RelayConfig{MinReplicas: 1, ReplicaTimeout: 50 * time.Millisecond})
	_, err := r.PublishBatch(ctx)
	require.ErrorIs(t, err, ErrReplicas)
	require.EqualValues(t, 64, unpublished(t, b.db))

	cc := b.rdb.(*redis.ClusterClient)
	var mu sync.Mutex
	var holding []string
	require.NoError(t, cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		keys, _, err := node.Scan(ctx, 0, b.names.Prefix+"events:*", 1000).Result()
		if err == nil && len(keys) > 0 {
			mu.Lock()
			holding = append(holding, node.Options().Addr)
			mu.Unlock()
		}
		return err
	}))
	require.Greater(t, len(holding), 1, "16 partitions spread over the nodes")
	var named []string
	for line := range strings.SplitSeq(err.Error(), "\n") {
		_, after, ok := strings.Cut(line, "replicas of ")
		require.True(t, ok, line)
		addr, _, _ := strings.Cut(after, " ")
		named = append(named, addr)
	}
	sort.Strings(holding)
	sort.Strings(named)
	require.Equal(t, holding, named, "every primary with entries of the batch was asked, once")
}

// BenchmarkRelayWait measures what BAZAAR_REDIS_MIN_REPLICAS=1 costs the
// relay on a primary with one replica (both on loopback): the same number
// of events drained without the wait, then with it, in the same run;
// "wait/none" is the ratio of their throughputs.
func BenchmarkRelayWait(b *testing.B) {
	primary := redistest.StartServer(b, redistest.ServerOptions{})
	redistest.StartReplica(b, primary)
	rdb := redis.NewClient(&redis.Options{Addr: primary.Addr()})
	b.Cleanup(func() { _ = rdb.Close() })
	db, _ := storetest.NewDB(b)
	tb := testBundle{db: db, rdb: rdb, names: Names{Prefix: fmt.Sprintf("bazaar:wait%d:", time.Now().UnixNano())}, log: testLogger(b)}
	rate := func(cfg RelayConfig) float64 {
		b.StopTimer()
		benchEvents(b, db, b.N)
		r := newRelay(b, tb, cfg)
		b.StartTimer()
		start := time.Now()
		drain(b, r)
		elapsed := time.Since(start)
		require.Zero(b, unpublished(b, db))
		return float64(b.N) / elapsed.Seconds()
	}
	b.ResetTimer()
	none := rate(RelayConfig{BatchSize: 500})
	wait := rate(RelayConfig{BatchSize: 500, MinReplicas: 1, ReplicaTimeout: time.Second})
	b.ReportMetric(none, "events/s-none")
	b.ReportMetric(wait, "events/s-wait")
	b.ReportMetric(wait/none, "wait/none")
}
