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

// BenchmarkTaskThroughput processes b.N no-op tasks through a bare asynq
// server and through Bazaar's stack (Workers' server settings, the logging
// and metrics middleware, the mux, deterministic TaskIDs on enqueue), on
// the same Redis in the same run, twice each in turns so all meet the
// same load, and reports the rates and the ratio of Bazaar's to the bare
// one. Two variants of Bazaar's stack tell the costs apart: with the 10
// minute Retention that kept TaskIDs refusing duplicates before
// processed_events did ("retained"), and polling one queue instead of
// the four weighted ones ("one_queue"; asynq dequeues one queue per round
// trip, so empty queues polled first cost round trips). Run it with a
// fixed count:
//
//	go test -run '^$' -bench TaskThroughput -benchtime 5000x ./workers/
func BenchmarkTaskThroughput(b *testing.B) {
	db, _ := storetest.NewDB(b)
	var bare, bazaar, retained, oneQueue time.Duration
	for range 2 {
		bare += bareAsynqRun(b)
		bazaar += bazaarTaskRun(b, db, Config{})
		retained += bazaarTaskRun(b, db, Config{Retention: 10 * time.Minute})
		oneQueue += bazaarTaskRun(b, db, Config{Queues: map[string]int{QueueDefault: 1}})
	}
	rate := func(d time.Duration) float64 { return float64(2*b.N) / d.Seconds() }
	b.ReportMetric(rate(bare), "bare_tasks/s")
	b.ReportMetric(rate(bazaar), "tasks/s")
	b.ReportMetric(bare.Seconds()/bazaar.Seconds(), "ratio")
	b.ReportMetric(rate(retained), "retained_tasks/s")
	b.ReportMetric(rate(oneQueue), "one_queue_tasks/s")
}

// bareAsynqRun enqueues b.N tasks and times a plain asynq server, no
// options, processing them.
func bareAsynqRun(b *testing.B) time.Duration {
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
		Concurrency: 10, TaskCheckInterval: 100 * time.Millisecond, LogLevel: asynq.ErrorLevel,
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
