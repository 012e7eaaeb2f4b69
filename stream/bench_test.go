package stream

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream/redistest"
)

// benchEvents records n events over 1000 subjects in transactions of 1000.
func benchEvents(b *testing.B, db *sqlx.DB, n int) {
	b.Helper()
	for done := 0; done < n; done += 1000 {
		recordMany(b, db, "order.created", min(1000, n-done), 1000)
	}
}

func benchBundle(b *testing.B) testBundle {
	b.Helper()
	db, _ := storetest.NewDB(b)
	return testBundle{db: db, rdb: redistest.Client(b), names: Names{Prefix: redistest.Prefix(b)}, log: testLogger(b)}
}

// BenchmarkRelay measures outbox-to-stream throughput: claim, per-subject
// check, pipelined XADD and the publish marks, one transaction per batch.
func BenchmarkRelay(b *testing.B) {
	for _, batch := range []int{100, 500} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			tb := benchBundle(b)
			benchEvents(b, tb.db, b.N)
			r := newRelay(b, tb, RelayConfig{BatchSize: batch})
			b.ResetTimer()
			start := time.Now()
			drain(b, r)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
			require.Zero(b, unpublished(b, tb.db))
		})
	}
}

// BenchmarkRelayDrain measures one relay draining a backlog of 100,000
// events over 1,000 subjects with its default batch, once per lane count,
// and in the same run redis-benchmark's XADD rate on the same
// redis-server, pipelined 32 deep and not: the relay's rate is reported
// beside both and as a ratio of each. Run it with -benchtime 1x (each
// iteration drains a fresh backlog); BAZAAR_BENCH_RELAY_EVENTS changes the
// backlog.
func BenchmarkRelayDrain(b *testing.B) {
	backlog := 100_000
	if v := os.Getenv("BAZAAR_BENCH_RELAY_EVENTS"); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(b, err, "BAZAAR_BENCH_RELAY_EVENTS")
		backlog = n
	}
	for _, lanes := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("lanes=%d", lanes), func(b *testing.B) {
			tb := benchBundle(b)
			r := newRelay(b, tb, RelayConfig{Lanes: lanes})
			var elapsed time.Duration
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				benchEvents(b, tb.db, backlog)
				_, err := tb.db.Exec(`VACUUM ANALYZE outbox`)
				require.NoError(b, err)
				b.StartTimer()
				start := time.Now()
				drain(b, r)
				elapsed += time.Since(start)
			}
			b.StopTimer()
			require.Zero(b, unpublished(b, tb.db))
			var positions int
			require.NoError(b, tb.db.Get(&positions, `SELECT count(*) FROM event_positions`))
			require.Equal(b, backlog*b.N, positions, "every event published once")
			rate := float64(backlog*b.N) / elapsed.Seconds()
			pipelined := xaddRate(b, tb, 32)
			plain := xaddRate(b, tb, 1)
			b.ReportMetric(rate, "events/s")
			b.ReportMetric(pipelined, "xadd-p32/s")
			b.ReportMetric(plain, "xadd/s")
			b.ReportMetric(rate/pipelined, "ratio-p32")
			b.ReportMetric(rate/plain, "ratio-xadd")
		})
	}
}

// xaddRate runs redis-benchmark's XADD with the given pipeline depth on a
// stream of the benchmark's own, against the server the relay used, and
// returns its requests per second. The stream is deleted afterwards.
func xaddRate(b *testing.B, tb testBundle, pipeline int) float64 {
	b.Helper()
	bin, err := exec.LookPath("redis-benchmark")
	if err != nil {
		b.Fatalf("redis-benchmark is needed for the baseline (Debian redis-tools): %v", err)
	}
	c, ok := tb.rdb.(*redis.Client)
	if !ok {
		b.Fatalf("the XADD baseline needs a single-node client, got %T", tb.rdb)
	}
	opt := c.Options()
	host, port, err := net.SplitHostPort(opt.Addr)
	require.NoError(b, err)
	key := tb.names.prefix() + "bench:xadd"
	b.Cleanup(func() { _ = tb.rdb.Del(context.Background(), key).Err() })
	n := 200_000
	if pipeline == 1 {
		n = 50_000
	}
	args := []string{
		"-h", host, "-p", port, "--dbnum", strconv.Itoa(opt.DB), "-c", "50", "-n", strconv.Itoa(n),
		"-P", strconv.Itoa(pipeline), "-q", "XADD", key, "*", "envelope", strings.Repeat("x", 300),
	}
	if opt.Password != "" {
		args = append([]string{"-a", opt.Password}, args...)
	}
	out, err := exec.CommandContext(context.Background(), bin, args...).CombinedOutput()
	require.NoError(b, err, "%s", out)
	// "XADD ...: 615384.62 requests per second, p50=..."
	m := regexp.MustCompile(`([0-9.]+) requests per second`).FindSubmatch(out)
	if m == nil {
		b.Fatalf("redis-benchmark: no rate in %q", out)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	require.NoError(b, err)
	return v
}

// BenchmarkConsumer measures a consumer group reading entries in batches,
// matching them against its patterns, calling a no-op handler and
// acknowledging each batch in one call.
func BenchmarkConsumer(b *testing.B) {
	for _, conc := range []int{1, 8} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			tb := benchBundle(b)
			ctx := context.Background()
			s := tb.names.Stream("order", 0)
			env := Envelope{ID: "0191e0a8-0000-7000-8000-000000000001", Type: "order.created", Subject: "ord-1", SpecVersion: "1.0", Data: []byte(`{"total":1250}`)}
			values, err := env.Values()
			require.NoError(b, err)
			for done := 0; done < b.N; done += 1000 {
				pipe := tb.rdb.Pipeline()
				for range min(1000, b.N-done) {
					pipe.XAdd(ctx, &redis.XAddArgs{Stream: s, Values: values})
				}
				_, err := pipe.Exec(ctx)
				require.NoError(b, err)
			}
			var handled atomic.Int64
			all := make(chan struct{})
			h := func(context.Context, Message) error {
				if handled.Add(1) == int64(b.N) {
					close(all)
				}
				return nil
			}
			g, err := NewGroups(GroupsConfig{Redis: tb.rdb, Names: tb.names, Consumer: "bench", BatchSize: 500, Block: 100 * time.Millisecond})
			require.NoError(b, err)
			require.NoError(b, g.Add(Subscription{Group: "bench", Patterns: []string{"order.#"}, Handler: h, Concurrency: conc, StartFrom: StartBeginning}))
			b.ResetTimer()
			start := time.Now()
			require.NoError(b, g.Start(ctx))
			<-all
			elapsed := time.Since(start)
			b.StopTimer()
			require.NoError(b, g.Stop(ctx))
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
			p, err := tb.rdb.XPending(ctx, s, "bench").Result()
			require.NoError(b, err)
			require.Zero(b, p.Count, "everything acknowledged")
		})
	}
}

// BenchmarkCommit compares recording an event without a NOTIFY
// (notify=false), with one in the same transaction (notify=true) and with
// the Notifier's coalesced NOTIFY after the commit (notify=after), with 8
// concurrent writers: a NOTIFY in the transaction takes a global lock at
// commit, which is why the Notifier sends it afterwards.
func BenchmarkCommit(b *testing.B) {
	for _, notify := range []string{"false", "true", "after"} {
		b.Run("notify="+notify, func(b *testing.B) {
			tb := benchBundle(b)
			tb.db.SetMaxOpenConns(16)
			ctx := context.Background()
			var observer store.TxObserver = nopObserver{}
			if notify == "after" {
				n, err := NewNotifier(NotifierConfig{DB: tb.db})
				require.NoError(b, err)
				require.NoError(b, n.Start(ctx))
				b.Cleanup(func() { require.NoError(b, n.Stop(ctx)) })
				observer = n
			}
			b.SetParallelism(4) // 4 x GOMAXPROCS writers
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					e, err := store.NewEvent("order.created", "ord", nil, 1, map[string]int{"n": 1})
					if err != nil {
						b.Error(err)
						return
					}
					err = store.WithTx(ctx, tb.db, func(tx *sqlx.Tx) error {
						if err := store.InsertEvents(ctx, tx, e); err != nil {
							return err
						}
						if notify == "true" {
							_, err := tx.ExecContext(ctx, `SELECT pg_notify('bazaar_events', '')`)
							return err
						}
						return nil
					})
					if err != nil {
						b.Error(err)
						return
					}
					observer.EventsCommitted()
				}
			})
		})
	}
}

type nopObserver struct{}

func (nopObserver) EventsCommitted() {}

// BenchmarkIdlePoll measures one empty relay poll: the cost of polling
// every 100ms when nothing waits.
func BenchmarkIdlePoll(b *testing.B) {
	tb := benchBundle(b)
	r := newRelay(b, tb, RelayConfig{})
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if _, err := r.PublishBatch(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAudit measures a consistency audit over published events, and
// publishing the same events as its baseline: it reports the audit's rate
// and its cost as a fraction of the relay's (audit/relay, in time).
func BenchmarkAudit(b *testing.B) {
	tb := benchBundle(b)
	benchEvents(b, tb.db, b.N)
	r := newRelay(b, tb, RelayConfig{BatchSize: 500})
	start := time.Now()
	drain(b, r)
	relayTime := time.Since(start)
	a, err := NewAuditor(AuditConfig{DB: tb.db, Redis: tb.rdb, Names: tb.names})
	require.NoError(b, err)
	b.ResetTimer()
	start = time.Now()
	rep, err := a.Run(context.Background(), AuditOptions{Since: time.Now().Add(-time.Hour)})
	b.StopTimer()
	auditTime := time.Since(start)
	require.NoError(b, err)
	require.Equal(b, b.N, rep.Checked)
	require.Zero(b, rep.Missing)
	b.ReportMetric(float64(b.N)/auditTime.Seconds(), "events/s")
	b.ReportMetric(auditTime.Seconds()/relayTime.Seconds(), "audit/relay")
}
