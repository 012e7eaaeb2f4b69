package workers

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/bazaarhq/bazaar/stream"
	"github.com/bazaarhq/bazaar/stream/redistest"
)

// With tracing on, a task attempt is a span in the trace its payload
// carries, and the handler sees that span as the payload's traceparent
// (so what it records joins the trace under it); other payload fields are
// untouched.
func TestTaskSpanContinuesThePayloadsTrace(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	b := setup(t, setupOpts{noStart: true, mutate: func(c *Config) { c.TracerProvider = tp }})

	type seen struct {
		payload OrderPayload
		ctxTP   string
	}
	got := make(chan seen, 4)
	b.w.Mux().HandleFunc("test:traced", func(ctx context.Context, task *asynq.Task) error {
		var p OrderPayload
		if err := json.Unmarshal(task.Payload(), &p); err != nil {
			return err
		}
		got <- seen{p, stream.TraceParentOf(ctx)}
		if p.Reason == "fail" {
			return errors.New("failing on purpose")
		}
		return nil
	})
	require.NoError(t, b.w.Start(context.Background()))

	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	m := Meta{Version: PayloadVersion, EventID: "evt-1", RequestID: "req-1", TraceParent: parent}
	orderID := uuid.Must(uuid.NewV7())
	task, err := NewOrderTask("test:traced", m, orderID, "")
	require.NoError(t, err)
	require.NoError(t, b.w.Enqueue(context.Background(), task, "traced-1", asynq.MaxRetry(0)))

	var s seen
	select {
	case s = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("task not run")
	}
	require.Equal(t, orderID, s.payload.OrderID)
	require.Equal(t, "req-1", s.payload.RequestID)
	require.Equal(t, "evt-1", s.payload.EventID)

	var span sdktrace.ReadOnlySpan
	require.Eventually(t, func() bool {
		for _, sp := range rec.Ended() {
			if sp.Name() == "task test:traced" {
				span = sp
				return true
			}
		}
		return false
	}, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, trace.SpanKindConsumer, span.SpanKind())
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", span.SpanContext().TraceID().String())
	require.Equal(t, "00f067aa0ba902b7", span.Parent().SpanID().String())
	want := "00-4bf92f3577b34da6a3ce929d0e0e4736-" + span.SpanContext().SpanID().String() + "-01"
	require.Equal(t, want, s.payload.TraceParent)
	require.Equal(t, want, s.ctxTP)

	// A failed attempt is an error span.
	task, err = NewOrderTask("test:traced", m, orderID, "fail")
	require.NoError(t, err)
	require.NoError(t, b.w.Enqueue(context.Background(), task, "traced-2", asynq.MaxRetry(0)))
	<-got
	require.Eventually(t, func() bool {
		for _, sp := range rec.Ended() {
			if sp.Name() == "task test:traced" && sp.Status().Code.String() == "Error" {
				return true
			}
		}
		return false
	}, 5*time.Second, 10*time.Millisecond)
}

func TestWithTraceParentKeepsOtherFields(t *testing.T) {
	t.Parallel()
	out, err := withTraceParent([]byte(`{"v":1,"order_id":"x","traceparent":"old","extra":{"a":[1,2]}}`), "new")
	require.NoError(t, err)
	require.JSONEq(t, `{"v":1,"order_id":"x","traceparent":"new","extra":{"a":[1,2]}}`, string(out))
	_, err = withTraceParent([]byte(`[1]`), "new")
	require.Error(t, err)
	_, err = withTraceParent([]byte(`null`), "new")
	require.Error(t, err)
}

// The queue collector reports each queue's tasks by state as asynq
// counts them.
func TestQueueCollector(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(redistest.DB(t))
	t.Cleanup(func() { _ = rdb.Close() })
	client := asynq.NewClientFromRedisClient(rdb)
	ctx := context.Background()
	enqueue := func(queue, id string, opts ...asynq.Option) {
		t.Helper()
		_, err := client.EnqueueContext(ctx, asynq.NewTask("test:noop", []byte(`{}`)), append(opts, asynq.Queue(queue), asynq.TaskID(id))...)
		require.NoError(t, err)
	}
	enqueue(QueueDefault, "p1")
	enqueue(QueueDefault, "p2")
	enqueue(QueueDefault, "s1", asynq.ProcessIn(time.Hour))
	enqueue(QueueLow, "a1")
	insp := asynq.NewInspectorFromRedisClient(rdb)
	require.NoError(t, insp.ArchiveTask(QueueLow, "a1"))

	c, err := NewQueueCollector(QueueCollectorConfig{Redis: rdb})
	require.NoError(t, err)
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(`
# HELP bazaar_asynq_tasks Tasks per asynq queue and state (pending, active, scheduled, retry, archived, completed).
# TYPE bazaar_asynq_tasks gauge
bazaar_asynq_tasks{queue="default",state="active"} 0
bazaar_asynq_tasks{queue="default",state="archived"} 0
bazaar_asynq_tasks{queue="default",state="completed"} 0
bazaar_asynq_tasks{queue="default",state="pending"} 2
bazaar_asynq_tasks{queue="default",state="retry"} 0
bazaar_asynq_tasks{queue="default",state="scheduled"} 1
bazaar_asynq_tasks{queue="low",state="active"} 0
bazaar_asynq_tasks{queue="low",state="archived"} 1
bazaar_asynq_tasks{queue="low",state="completed"} 0
bazaar_asynq_tasks{queue="low",state="pending"} 0
bazaar_asynq_tasks{queue="low",state="retry"} 0
bazaar_asynq_tasks{queue="low",state="scheduled"} 0
`)))
}
