package workers

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream/redistest"
)

const benchType = "bench:noop"

// BenchmarkTaskThroughput processes b.N no-op tasks through a bare asynq
// server and through Bazaar's stack (Workers' server settings, the logging
// and metrics middleware, the mux, deterministic TaskIDs and retention on
// enqueue), on the same Redis in the same run. Run it with a fixed count:
//
//	go test -run '^$' -bench TaskThroughput -benchtime 5000x ./workers/
func BenchmarkTaskThroughput(b *testing.B) {
	b.Run("bare_asynq", func(b *testing.B) {
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
		b.ResetTimer()
		if err := srv.Start(mux); err != nil {
			b.Fatal(err)
		}
		waitFor(b, &done)
		b.StopTimer()
		srv.Shutdown()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
	})
	b.Run("bazaar", func(b *testing.B) {
		db, _ := storetest.NewDB(b)
		rdb := redis.NewClient(redistest.DB(b))
		defer rdb.Close()
		w, err := New(Config{
			DB: db, Redis: rdb, Mailer: nopMailer{}, Concurrency: 10,
			Logger: slog.New(slog.DiscardHandler),
		})
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
		b.ResetTimer()
		if err := w.Start(ctx); err != nil {
			b.Fatal(err)
		}
		waitFor(b, &done)
		b.StopTimer()
		if err := w.Stop(ctx); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
	})
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
