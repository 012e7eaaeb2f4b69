package stream

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/bazaarhq/bazaar/sql/store"
)

const parentTraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

func TestTraceParentRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := ContextWithTraceParent(context.Background(), parentTraceParent)
	require.Equal(t, parentTraceParent, TraceParentOf(ctx))
	sc := trace.SpanContextFromContext(ctx)
	require.True(t, sc.IsRemote())
	require.Equal(t, "0af7651916cd43dd8448eb211c80319c", sc.TraceID().String())

	for _, bad := range []string{"", "garbage", "00-00000000000000000000000000000000-b7ad6b7169203331-01"} {
		require.Empty(t, TraceParentOf(ContextWithTraceParent(context.Background(), bad)), bad)
	}
}

func newTracer(t *testing.T) (*sdktrace.TracerProvider, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp, rec
}

func spansNamed(rec *tracetest.SpanRecorder, prefix string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if strings.HasPrefix(s.Name(), prefix) {
			out = append(out, s)
		}
	}
	return out
}

// The relay counts what it published and how long it waited, and with
// tracing on each entry carries its publish span, a child of the span that
// recorded the event; the outbox row keeps the recording span.
func TestRelayMetricsAndPublishSpans(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	reg := prometheus.NewPedanticRegistry()
	tp, rec := newTracer(t)

	e, err := store.NewEvent("order.created", "ord-1", nil, 1, map[string]int{"n": 1})
	require.NoError(t, err)
	e.TraceParent = parentTraceParent
	require.NoError(t, store.InsertEvents(ctx, b.db, e))
	record(t, b.db, "user.registered", "usr-1", "usr-2")

	r := newRelay(t, b, RelayConfig{Registry: reg, TracerProvider: tp})
	drain(t, r)

	require.Equal(t, 3.0, testutil.ToFloat64(r.tel.published))
	n, err := testutil.GatherAndCount(reg, "bazaar_relay_publish_latency_seconds")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP bazaar_relay_published_total Events the relay published to streams.
# TYPE bazaar_relay_published_total counter
bazaar_relay_published_total 3
`), "bazaar_relay_published_total"))
	hist := histogramCount(t, reg, "bazaar_relay_publish_latency_seconds")
	require.EqualValues(t, 3, hist)

	publish := spansNamed(rec, "publish order.created")
	require.Len(t, publish, 1)
	span := publish[0]
	require.Equal(t, trace.SpanKindProducer, span.SpanKind())
	require.Equal(t, "0af7651916cd43dd8448eb211c80319c", span.SpanContext().TraceID().String())
	require.Equal(t, "b7ad6b7169203331", span.Parent().SpanID().String())

	orders, err := b.rdb.XRange(ctx, b.names.Stream("order", 0), "-", "+").Result()
	require.NoError(t, err)
	env, err := DecodeEnvelope(orders[0].Values)
	require.NoError(t, err)
	require.Equal(t, "00-0af7651916cd43dd8448eb211c80319c-"+span.SpanContext().SpanID().String()+"-01", env.TraceParent)
	rows, err := store.EventsBySubject(ctx, b.db, "ord-1")
	require.NoError(t, err)
	require.Equal(t, parentTraceParent, rows[0].TraceParent)

	// Events recorded without trace context start a trace of their own.
	require.Len(t, spansNamed(rec, "publish user.registered"), 2)
}

func histogramCount(t *testing.T, g prometheus.Gatherer, name string) uint64 {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	var total uint64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				total += m.GetHistogram().GetSampleCount()
			}
		}
	}
	return total
}

// Handler calls are timed and their failures counted by group and event
// type; the consumer span continues the entry's trace and the handler sees
// it as the message's traceparent.
func TestGroupHandlerMetricsAndSpans(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	reg := prometheus.NewPedanticRegistry()
	tp, rec := newTracer(t)

	type call struct {
		msg       Message
		ctxParent string // the traceparent of the handler's context
	}
	seen := make(chan call, 10)
	g, err := NewGroups(GroupsConfig{
		Redis: b.rdb, Names: b.names, Logger: b.log, Consumer: "c1", Block: 50 * time.Millisecond,
		Registry: reg, TracerProvider: tp,
	})
	require.NoError(t, err)
	require.NoError(t, g.Add(Subscription{
		Group: "audit", Patterns: []string{"order.#"}, MaxDeliveries: 2, VisibilityTimeout: 50 * time.Millisecond,
		Handler: func(ctx context.Context, m Message) error {
			seen <- call{m, TraceParentOf(ctx)}
			if m.Type == "order.broken" {
				return errors.New("cannot handle")
			}
			return nil
		},
	}))
	require.NoError(t, g.Start(ctx))
	t.Cleanup(func() { require.NoError(t, g.Stop(context.Background())) })

	e, err := store.NewEvent("order.created", "ord-1", nil, 1, map[string]int{"n": 1})
	require.NoError(t, err)
	e.TraceParent = parentTraceParent
	require.NoError(t, store.InsertEvents(ctx, b.db, e))
	record(t, b.db, "order.broken", "ord-2")
	drain(t, newRelay(t, b, RelayConfig{}))

	eventually(t, "the broken event is dead-lettered", func() bool {
		n, _ := b.rdb.XLen(ctx, b.names.DLQ("audit")).Result()
		return n == 1
	})
	require.Equal(t, 2.0, testutil.ToFloat64(g.tel.errors.WithLabelValues("audit", "order.broken")),
		"each failed delivery counts")
	require.Zero(t, testutil.ToFloat64(g.tel.errors.WithLabelValues("audit", "order.created")))
	require.EqualValues(t, 3, histogramCount(t, reg, "bazaar_consumer_handler_duration_seconds"))

	var created call
	for c := range seen {
		if c.msg.Type == "order.created" {
			created = c
			break
		}
	}
	spans := spansNamed(rec, "process order.created")
	require.Len(t, spans, 1)
	span := spans[0]
	require.Equal(t, trace.SpanKindConsumer, span.SpanKind())
	require.Equal(t, "0af7651916cd43dd8448eb211c80319c", span.SpanContext().TraceID().String())
	require.Equal(t, "b7ad6b7169203331", span.Parent().SpanID().String(), "the relay ran without tracing: the entry kept the recording span")
	require.Equal(t, "00-0af7651916cd43dd8448eb211c80319c-"+span.SpanContext().SpanID().String()+"-01", created.msg.TraceParent)
	require.Equal(t, created.msg.TraceParent, created.ctxParent, "the handler's context holds the consumer span")

	broken := spansNamed(rec, "process order.broken")
	require.Len(t, broken, 2)
	require.Equal(t, "Error", broken[0].Status().Code.String())
}

// Without a TracerProvider nothing is rewritten: the handler gets the
// entry's traceparent as it was published.
func TestGroupsWithoutTracingPassTraceParentThrough(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	var got recorder
	startGroups(t, b, "c1", Subscription{Group: "audit", Patterns: []string{"order.#"}, Handler: got.handle})
	e, err := store.NewEvent("order.created", "ord-1", nil, 1, map[string]int{"n": 1})
	require.NoError(t, err)
	e.TraceParent = parentTraceParent
	require.NoError(t, store.InsertEvents(ctx, b.db, e))
	drain(t, newRelay(t, b, RelayConfig{}))
	eventually(t, "handled", func() bool { return got.count() == 1 })
	require.Equal(t, parentTraceParent, got.seen()[0].TraceParent)
}

// The collector reports the outbox, stream lengths and each group's lag,
// pending entries, oldest pending age and dead letters as they are.
func TestCollector(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	orders := b.names.Stream("order", 0)
	for range 3 {
		require.NoError(t, b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: orders, Values: map[string]any{"k": "v"}}).Err())
	}
	require.NoError(t, b.rdb.XGroupCreateMkStream(ctx, orders, "audit", "0").Err())
	// One entry delivered and not acknowledged: pending 1, lag 2.
	require.NoError(t, b.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: "audit", Consumer: "c1", Streams: []string{orders, ">"}, Count: 1,
	}).Err())
	require.NoError(t, b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: b.names.DLQ("audit"), Values: map[string]any{"k": "v"}}).Err())
	record(t, b.db, "order.created", "ord-1", "ord-2")

	c, err := NewCollector(CollectorConfig{Redis: b.rdb, DB: b.db, Names: b.names})
	require.NoError(t, err)
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP bazaar_outbox_backlog Outbox events not yet published.
# TYPE bazaar_outbox_backlog gauge
bazaar_outbox_backlog 2
# HELP bazaar_consumer_lag Entries of the stream not yet delivered to the group.
# TYPE bazaar_consumer_lag gauge
bazaar_consumer_lag{group="audit",stream="`+orders+`"} 2
# HELP bazaar_consumer_pending Entries delivered to the group and not yet acknowledged.
# TYPE bazaar_consumer_pending gauge
bazaar_consumer_pending{group="audit"} 1
# HELP bazaar_dlq_depth Dead letters waiting in the group's dead-letter stream.
# TYPE bazaar_dlq_depth gauge
bazaar_dlq_depth{group="audit"} 1
`), "bazaar_outbox_backlog", "bazaar_consumer_lag", "bazaar_consumer_pending", "bazaar_dlq_depth"))
	// Every domain stream is reported, empty or not.
	lengths := map[string]float64{}
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == "bazaar_stream_length" {
			for _, m := range mf.GetMetric() {
				lengths[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
			}
		}
	}
	require.Len(t, lengths, len(Domains))
	require.Equal(t, 3.0, lengths[orders])
	require.Equal(t, 0.0, lengths[b.names.Stream("user", 0)])

	age := gaugeValue(t, reg, "bazaar_outbox_oldest_unpublished_age_seconds")
	require.Greater(t, age, 0.0)
	require.Less(t, age, 60.0)
	pendingAge := gaugeValue(t, reg, "bazaar_consumer_oldest_pending_age_seconds")
	require.GreaterOrEqual(t, pendingAge, 0.0)
	require.Less(t, pendingAge, 60.0)

	// Parts leave out what another role reports.
	only, err := NewCollector(CollectorConfig{Redis: b.rdb, DB: b.db, Names: b.names, Parts: CollectOutbox})
	require.NoError(t, err)
	require.Equal(t, 2, testutil.CollectAndCount(only), "backlog and age only")
}

// With Redis unreachable the outbox is still reported: that is when its
// age matters.
func TestCollectorWithoutRedisStillReportsOutbox(t *testing.T) {
	t.Parallel()
	b := setup(t)
	record(t, b.db, "order.created", "ord-1")
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { _ = dead.Close() })
	c, err := NewCollector(CollectorConfig{Redis: dead, DB: b.db, Names: b.names, Timeout: time.Second})
	require.NoError(t, err)
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(`
# HELP bazaar_outbox_backlog Outbox events not yet published.
# TYPE bazaar_outbox_backlog gauge
bazaar_outbox_backlog 1
`), "bazaar_outbox_backlog"))
	require.Equal(t, 2, testutil.CollectAndCount(c))
}

func gaugeValue(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			require.Len(t, mf.GetMetric(), 1, name)
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no %s", name)
	return 0
}
