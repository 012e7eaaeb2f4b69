package workers

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"

	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream/redistest"
)

const benchType = "bench:noop"

// BenchmarkTaskThroughput processes b.N no-op tasks through bare asynq
// servers and through Bazaar's stack (Workers' server settings, the logging
// and metrics middleware, the mux, deterministic TaskIDs on enqueue), on
// the same Redis in the same run, twice each in turns so all meet the
// same load, and reports the rates and the ratios of Bazaar's to the bare
// ones. There are two bare servers: one polling a single queue
// ("bare_tasks/s", asynq with no options) and one polling the same
// weighted queues as Bazaar's server ("bare_queues_tasks/s"), since asynq
// dequeues one queue per round trip and so the queue count costs asynq
// itself. "retained_tasks/s" is Bazaar's stack keeping finished tasks for
// the redelivery window (Config.Retention = 10 minutes). Run it with a
// fixed count:
//
//	go test -run '^$' -bench TaskThroughput -benchtime 5000x ./workers/
func BenchmarkTaskThroughput(b *testing.B) {
	db, _ := storetest.NewDB(b)
	queues := bazaarQueues(b, db)
	var bare, bareQueues, bazaar, retained time.Duration
	for range 2 {
		bare += bareAsynqRun(b, nil)
		bareQueues += bareAsynqRun(b, queues)
		bazaar += bazaarTaskRun(b, db, Config{})
		retained += bazaarTaskRun(b, db, Config{Retention: 10 * time.Minute})
	}
	rate := func(d time.Duration) float64 { return float64(2*b.N) / d.Seconds() }
	b.ReportMetric(rate(bare), "bare_tasks/s")
	b.ReportMetric(rate(bareQueues), "bare_queues_tasks/s")
	b.ReportMetric(rate(bazaar), "tasks/s")
	b.ReportMetric(rate(retained), "retained_tasks/s")
	b.ReportMetric(bare.Seconds()/bazaar.Seconds(), "ratio")
	b.ReportMetric(bareQueues.Seconds()/bazaar.Seconds(), "queues_ratio")
}

// bazaarQueues returns the queues and weights Bazaar's server polls by
// default, the fair queues' overflow queues included.
func bazaarQueues(b *testing.B, db *sqlx.DB) map[string]int {
	b.Helper()
	rdb := redis.NewClient(redistest.DB(b))
	defer rdb.Close()
	w, err := New(Config{DB: db, Redis: rdb, Mailer: nopMailer{}})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = w.Stop(context.Background()) }()
	return w.cfg.Queues
}

// bareAsynqRun enqueues b.N tasks in the default queue and times a plain
// asynq server processing them: with no options but the worker count and
// poll interval Bazaar uses, polling queues when given (else asynq's one
// default queue).
func bareAsynqRun(b *testing.B, queues map[string]int) time.Duration {
	b.Helper()
	rdb := redis.NewClient(redistest.DB(b))
	defer rdb.Close()
	client := asynq.NewClientFromRedisClient(rdb)
	defer client.Close()
	for i := range b.N {
		if _, err := client.Enqueue(asynq.NewTask(benchType, fmt.Appendf(nil, `{"v":1,"n":%d}`, i))); err != nil {
			b.Fatal(err)
		}
	}
	var done atomic.Int64
	mux := asynq.NewServeMux()
	mux.HandleFunc(benchType, func(context.Context, *asynq.Task) error { done.Add(1); return nil })
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency: 10, Queues: queues, TaskCheckInterval: 100 * time.Millisecond, LogLevel: asynq.ErrorLevel,
	})
	start := time.Now()
	if err := srv.Start(mux); err != nil {
		b.Fatal(err)
	}
	waitFor(b, &done)
	elapsed := time.Since(start)
	srv.Shutdown()
	return elapsed
}

// bazaarTaskRun enqueues b.N tasks with Workers.Enqueue (TaskID, MaxRetry,
// Timeout, queue) and times Workers of cfg (DB, Redis, Mailer, Concurrency
// and Logger set here) processing them.
func bazaarTaskRun(b *testing.B, db *sqlx.DB, cfg Config) time.Duration {
	b.Helper()
	rdb := redis.NewClient(redistest.DB(b))
	defer rdb.Close()
	cfg.DB, cfg.Redis, cfg.Mailer, cfg.Concurrency = db, rdb, nopMailer{}, 10
	cfg.Logger = slog.New(slog.DiscardHandler)
	w, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	var done atomic.Int64
	w.Mux().HandleFunc(benchType, func(ctx context.Context, t *asynq.Task) error {
		if _, err := decode[Meta](t); err != nil {
			return err
		}
		done.Add(1)
		return nil
	})
	ctx := context.Background()
	for i := range b.N {
		t, err := newTask(benchType, Meta{Version: PayloadVersion, EventID: fmt.Sprint(i), RequestID: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		if err := w.Enqueue(ctx, t, TaskID("bench", fmt.Sprint(i), "")); err != nil {
			b.Fatal(err)
		}
	}
	start := time.Now()
	if err := w.Start(ctx); err != nil {
		b.Fatal(err)
	}
	waitFor(b, &done)
	elapsed := time.Since(start)
	if err := w.Stop(ctx); err != nil {
		b.Fatal(err)
	}
	return elapsed
}

func waitFor(b *testing.B, done *atomic.Int64) {
	deadline := time.Now().Add(5 * time.Minute)
	for done.Load() < int64(b.N) {
		if time.Now().After(deadline) {
			b.Fatalf("processed %d of %d", done.Load(), b.N)
		}
		time.Sleep(time.Millisecond)
	}
}

type nopMailer struct{}

func (nopMailer) Send(context.Context, Mail) error { return nil }

// BenchmarkInstrument runs a no-op task through the task middleware
// (logger, metrics, fair-share release) with the context and payload of
// a task asynq really delivered, and reports its allocations per task:
//
//	go test -run '^$' -bench Instrument -benchmem ./workers/
func BenchmarkInstrument(b *testing.B) {
	rdb := redis.NewClient(redistest.DB(b))
	defer rdb.Close()
	meta := Meta{Version: PayloadVersion, EventID: "0192e4f0-7b1a-7000-8000-000000000001", EventType: "user.registered", RequestID: "bench"}
	task, err := newTask(benchType, meta)
	if err != nil {
		b.Fatal(err)
	}
	client := asynq.NewClientFromRedisClient(rdb)
	defer client.Close()
	if _, err := client.Enqueue(task, asynq.Queue(QueueDefault), asynq.TaskID(TaskID("bench", "1", ""))); err != nil {
		b.Fatal(err)
	}
	got := make(chan context.Context, 1)
	mux := asynq.NewServeMux()
	mux.HandleFunc(benchType, func(ctx context.Context, _ *asynq.Task) error { got <- ctx; return nil })
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Queues: map[string]int{QueueDefault: 1}, TaskCheckInterval: 10 * time.Millisecond, LogLevel: asynq.ErrorLevel,
	})
	if err := srv.Start(mux); err != nil {
		b.Fatal(err)
	}
	// The context outlives its task for its values (task id, queue, retry
	// count), which is all the middleware reads of it.
	ctx := <-got
	srv.Shutdown()

	m, err := newMetrics(nil)
	if err != nil {
		b.Fatal(err)
	}
	w := &Workers{
		cfg: Config{Fairness: FairnessConfig{Queues: []string{QueueDefault}}},
		log: slog.New(slog.DiscardHandler), metrics: m,
	}
	h := w.instrument(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil }))
	b.ReportAllocs()
	for b.Loop() {
		if err := h.ProcessTask(ctx, task); err != nil {
			b.Fatal(err)
		}
	}
}
