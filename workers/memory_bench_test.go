package workers

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/stream"
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

// A redelivered event enqueues its tasks once per group, refused in
// PostgreSQL rather than by a finished task kept in Redis: not while the
// first task waits, not after it finished and asynq forgot its id (no
// retention), not when two deliveries race.
func TestRedeliveredEventIsEnqueuedOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noStart: true})
	ctx := context.Background()
	notify := b.group(t, GroupNotifications)
	user := uuid.New()
	env := stream.Envelope{ID: uuid.NewString(), Type: eventUserRegistered, Subject: user.String(), SpecVersion: "1.0", Data: []byte(`{}`)}
	id := TaskID(GroupNotifications, env.ID, "")

	require.NoError(t, notify.Handle(ctx, env))
	info, err := b.insp.GetTaskInfo(QueueDefault, id)
	require.NoError(t, err)
	require.Zero(t, info.Retention, "finished tasks are not kept")
	require.NoError(t, notify.Handle(ctx, env), "a duplicate counts as handled")

	// The task finished and is gone: the event comes again.
	require.NoError(t, b.insp.DeleteTask(QueueDefault, id))
	require.NoError(t, notify.Handle(ctx, env))
	_, err = b.insp.GetTaskInfo(QueueDefault, id)
	require.ErrorIs(t, err, asynq.ErrTaskNotFound, "the redelivered event enqueued nothing")

	// Two deliveries of a new event at once: one task.
	env2 := env
	env2.ID = uuid.NewString()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = notify.Handle(ctx, env2) }()
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	var marks int
	require.NoError(t, b.db.Get(&marks, `SELECT count(*) FROM processed_events WHERE event_id = $1`, env2.ID))
	require.Equal(t, 1, marks)
	pending, err := b.insp.ListPendingTasks(QueueDefault)
	require.NoError(t, err)
	n := 0
	for _, ti := range pending {
		if ti.ID == TaskID(GroupNotifications, env2.ID, "") {
			n++
		}
	}
	require.Equal(t, 1, n)
}
