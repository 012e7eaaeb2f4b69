package workers

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/bazaarhq/bazaar/stream/redistest"
)

// BenchmarkFollowUpLatenessDuringInvoicing measures how late follow-ups
// run while an invoice run's backlog fills the low queue: 2,000 account
// tasks of 20 ms each on an asynq server of concurrency 10 with the
// default queue weights, and 40 follow-ups due one every 250 ms. It runs
// the follow-ups in the low queue (as before the deferred queue existed,
// the baseline) and in the deferred queue, and reports the p50 and p99
// lateness of each (due time to handler start). The account task stands
// in for billing: what is measured is the queues' scheduling, not SQL.
func BenchmarkFollowUpLatenessDuringInvoicing(b *testing.B) {
	for _, tc := range []struct{ name, queue string }{{"low", QueueLow}, {"deferred", QueueDeferred}} {
		b.Run("followups_in_"+tc.name, func(b *testing.B) {
			for range b.N {
				p50, p99 := followUpLateness(b, tc.queue)
				b.ReportMetric(p50.Seconds(), "p50_late_s")
				b.ReportMetric(p99.Seconds(), "p99_late_s")
			}
		})
	}
}

func followUpLateness(b *testing.B, followUpQueue string) (p50, p99 time.Duration) {
	b.Helper()
	ctx := context.Background()
	rdb := redis.NewClient(redistest.DB(b))
	defer rdb.Close()
	const accounts, followUps = 2000, 40
	var mu sync.Mutex
	var late []time.Duration
	done := make(chan struct{})
	mux := asynq.NewServeMux()
	mux.HandleFunc(TypeInvoiceAccount, func(context.Context, *asynq.Task) error {
		time.Sleep(20 * time.Millisecond)
		return nil
	})
	mux.HandleFunc(TypeOrderFollowUp, func(_ context.Context, t *asynq.Task) error {
		due, err := time.Parse(time.RFC3339Nano, string(t.Payload()))
		if err != nil {
			return err
		}
		mu.Lock()
		late = append(late, time.Since(due))
		if len(late) == followUps {
			close(done)
		}
		mu.Unlock()
		return nil
	})
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency: 10, Queues: DefaultQueues(), LogLevel: asynq.FatalLevel,
		TaskCheckInterval: 100 * time.Millisecond, DelayedTaskCheckInterval: time.Second,
	})
	client := asynq.NewClientFromRedisClient(rdb)
	defer client.Close()
	for range accounts {
		if _, err := client.EnqueueContext(ctx, asynq.NewTask(TypeInvoiceAccount, nil), asynq.Queue(QueueLow)); err != nil {
			b.Fatal(err)
		}
	}
	start := time.Now().Add(time.Second)
	for i := range followUps {
		due := notBefore(start.Add(time.Duration(i) * 250 * time.Millisecond))
		if _, err := client.EnqueueContext(ctx, asynq.NewTask(TypeOrderFollowUp, []byte(due.Format(time.RFC3339Nano))),
			asynq.Queue(followUpQueue), asynq.ProcessAt(due)); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	if err := srv.Start(mux); err != nil {
		b.Fatal(err)
	}
	defer srv.Shutdown()
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		b.Fatal("follow-ups did not all run")
	}
	b.StopTimer()
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(late)
	return late[len(late)/2], late[len(late)*99/100]
}
