package workers

import (
	"cmp"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

// BenchmarkRedisMemoryPerOrder runs orders through the whole flow (relay,
// consumer groups, saga, mails, follow-ups) on this benchmark's own Redis
// database and reports the Redis memory asynq holds per order once the
// tasks settled (MEMORY USAGE of its keys: the finished tasks kept for
// Config.Retention, the task id index, queue bookkeeping), and the stream
// entries per order under this run's key prefix. Follow-ups are due in
// the future, so they are counted as scheduled tasks.
func BenchmarkRedisMemoryPerOrder(b *testing.B) {
	const orders = 200
	for range b.N {
		b.StopTimer()
		tb := setup(b)
		s := tb.seller(b)
		p := tb.product(b, s.ID, orders*2, 1500)
		u := tb.register(b, "mem@bazaar.test", false)
		b.StartTimer()
		for range orders {
			tb.order(b, u, p, 1, "tok_visa", nil)
		}
		eventually(b, 5*time.Minute, func() bool {
			var n int
			return tb.db.Get(&n, `SELECT count(*) FROM orders WHERE status = 'confirmed'`) == nil && n == orders
		}, "orders not confirmed")
		tb.settle(b, 5*time.Minute)
		b.StopTimer()
		ctx := context.Background()
		asynqBytes, streamBytes := int64(0), int64(0)
		keys, err := tb.rdb.Keys(ctx, "asynq:*").Result()
		if err != nil {
			b.Fatal(err)
		}
		for _, k := range keys {
			n, err := tb.rdb.MemoryUsage(ctx, k, 0).Result()
			if err != nil {
				b.Fatal(err)
			}
			asynqBytes += n
		}
		sk, err := tb.streams.Keys(ctx, tb.prefix+"*").Result()
		if err != nil {
			b.Fatal(err)
		}
		for _, k := range sk {
			if !strings.Contains(k, "events") {
				continue
			}
			n, err := tb.streams.MemoryUsage(ctx, k, 0).Result()
			if err != nil {
				b.Fatal(err)
			}
			streamBytes += n
		}
		b.ReportMetric(float64(asynqBytes)/orders, "asynq_B/order")
		b.ReportMetric(float64(streamBytes)/orders, "stream_B/order")
		b.ReportMetric(float64(len(keys)), "asynq_keys")
	}
}

// Finished event tasks are kept only while their event could come again:
// longer than the consumer groups redeliver (visibility timeout times the
// delivery limit), far shorter than the day that cost 13 GB of Redis at
// 30 orders/s.
func TestEventTasksAreKeptOnlyForTheRedeliveryWindow(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noStart: true})
	ctx := context.Background()
	task, err := NewUserTask(TypeEmailWelcome, Meta{Version: PayloadVersion}, uuid.New())
	require.NoError(t, err)
	require.NoError(t, b.w.Enqueue(ctx, task, "retention-check"))
	info, err := b.insp.GetTaskInfo(QueueDefault, "retention-check")
	require.NoError(t, err)
	require.Equal(t, DefaultRetention, info.Retention)
	sub := b.w.Subscriptions(SubscriptionOptions{})[0]
	redelivery := cmp.Or(sub.VisibilityTimeout, 30*time.Second) * time.Duration(cmp.Or(sub.MaxDeliveries, 5))
	require.Greater(t, DefaultRetention, redelivery, "kept past the last redelivery")
	require.LessOrEqual(t, DefaultRetention, time.Hour)
}
