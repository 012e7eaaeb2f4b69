package stream

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream/redistest"
)

type testBundle struct {
	db    *sqlx.DB
	rdb   redis.UniversalClient
	names Names
	log   *slog.Logger
}

func setup(t *testing.T) testBundle { t.Helper(); return setupVia(t, storetest.Direct) }

// setupVia is setup with the database reached the way p says.
func setupVia(t *testing.T, p storetest.Pool) testBundle {
	t.Helper()
	db, _, _ := storetest.NewDBVia(t, p)
	return testBundle{db: db, rdb: redistest.Client(t), names: Names{Prefix: redistest.Prefix(t)}, log: testLogger(t)}
}

// eachPool runs test once per way of reaching PostgreSQL: directly and
// through PgBouncer in transaction pooling mode.
func eachPool(t *testing.T, test func(t *testing.T, b testBundle)) {
	t.Helper()
	for _, p := range storetest.Pools {
		t.Run(p.String(), func(t *testing.T) {
			t.Parallel()
			test(t, setupVia(t, p))
		})
	}
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("STREAM_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// record inserts events as the API would, one transaction each.
func record(t testing.TB, db *sqlx.DB, typ string, subjects ...string) []store.Event {
	t.Helper()
	out := make([]store.Event, 0, len(subjects))
	for _, s := range subjects {
		e, err := store.NewEvent(typ, s, nil, 1, map[string]string{"subject": s})
		require.NoError(t, err)
		require.NoError(t, store.InsertEvents(context.Background(), db, e))
		out = append(out, e)
	}
	return out
}

// recordMany inserts n events spread over subjects, in one transaction.
func recordMany(t testing.TB, db *sqlx.DB, typ string, n, subjects int) {
	t.Helper()
	events := make([]store.Event, n)
	for i := range n {
		e, err := store.NewEvent(typ, fmt.Sprintf("subj-%d", i%subjects), nil, 1, map[string]int{"n": i})
		require.NoError(t, err)
		events[i] = e
	}
	require.NoError(t, store.WithTx(context.Background(), db, func(tx *sqlx.Tx) error {
		return store.InsertEvents(context.Background(), tx, events...)
	}))
}

func newRelay(t testing.TB, b testBundle, cfg RelayConfig) *Relay {
	t.Helper()
	cfg.DB, cfg.Redis, cfg.Names, cfg.Logger = b.db, b.rdb, b.names, b.log
	r, err := NewRelay(cfg)
	require.NoError(t, err)
	return r
}

func startRelay(t testing.TB, b testBundle, cfg RelayConfig) *Relay {
	t.Helper()
	r := newRelay(t, b, cfg)
	require.NoError(t, r.Start(context.Background()))
	t.Cleanup(func() { require.NoError(t, r.Stop(context.Background())) })
	return r
}

// drain publishes until nothing waits.
func drain(t testing.TB, r *Relay) {
	t.Helper()
	for {
		n, err := r.PublishBatch(context.Background())
		require.NoError(t, err)
		if n == 0 {
			return
		}
	}
}

func unpublished(t testing.TB, db *sqlx.DB) int64 {
	t.Helper()
	b, err := store.OutboxBacklog(context.Background(), db)
	require.NoError(t, err)
	return b.Count
}

func newGroups(t testing.TB, b testBundle, consumer string, subs ...Subscription) *Groups {
	t.Helper()
	g, err := NewGroups(GroupsConfig{
		Redis: b.rdb, DB: b.db, Names: b.names, Logger: b.log.With("consumer", consumer),
		Consumer: consumer, Block: 50 * time.Millisecond, LeaseTTL: time.Second,
	})
	require.NoError(t, err)
	for _, s := range subs {
		require.NoError(t, g.Add(s))
	}
	return g
}

func startGroups(t testing.TB, b testBundle, consumer string, subs ...Subscription) *Groups {
	t.Helper()
	g := newGroups(t, b, consumer, subs...)
	require.NoError(t, g.Start(context.Background()))
	t.Cleanup(func() { require.NoError(t, g.Stop(context.Background())) })
	return g
}

// recorder is a handler that remembers what it saw.
type recorder struct {
	mu   sync.Mutex
	msgs []Message
}

func (r *recorder) handle(_ context.Context, m Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, m)
	return nil
}

func (r *recorder) seen() []Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Message(nil), r.msgs...)
}

func (r *recorder) count() int { return len(r.seen()) }

// countByID counts deliveries per event id.
func countByID(msgs []Message) map[string]int {
	out := map[string]int{}
	for _, m := range msgs {
		out[m.ID]++
	}
	return out
}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, 20*time.Second, 10*time.Millisecond, what)
}

func mustUUID(t testing.TB) uuid.UUID {
	t.Helper()
	id, err := uuid.NewV7()
	require.NoError(t, err)
	return id
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// recordN records one order event of subject carrying n.
func recordN(t testing.TB, b testBundle, subject string, n int) {
	t.Helper()
	e, err := store.NewEvent("order.updated", subject, nil, 1, map[string]int{"n": n})
	require.NoError(t, err)
	require.NoError(t, store.InsertEvents(context.Background(), b.db, e))
}

type redisXAdd struct{ stream string }

func (x *redisXAdd) args() *redis.XAddArgs {
	return &redis.XAddArgs{Stream: x.stream, Values: map[string]any{"k": "v"}}
}

func redisRead(stream, group, consumer string) *redis.XReadGroupArgs {
	return &redis.XReadGroupArgs{Group: group, Consumer: consumer, Streams: []string{stream, ">"}, Count: 10}
}
