package workers

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/bazaarhq/bazaar/stream"
)

// TracerName names the tracer of the workers' spans.
const TracerName = "github.com/bazaarhq/bazaar/workers"

// traceTask is the task middleware used when tracing is on: each attempt
// runs in a span that continues the trace context of its payload (the
// consumer span that enqueued it), and the handler sees a payload whose
// traceparent is this span, so the events it records and the tasks it
// enqueues continue the trace under it.
func (w *Workers) traceTask(next asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		var m Meta
		_ = json.Unmarshal(t.Payload(), &m) // a payload without Meta starts a trace
		ctx = stream.ContextWithTraceParent(ctx, m.TraceParent)
		attrs := []attribute.KeyValue{
			semconv.MessagingSystemKey.String("asynq"),
			semconv.MessagingOperationName("process"),
			attribute.String("bazaar.task.type", t.Type()),
		}
		if id, ok := asynq.GetTaskID(ctx); ok {
			attrs = append(attrs, semconv.MessagingMessageID(id))
		}
		if q, ok := asynq.GetQueueName(ctx); ok {
			attrs = append(attrs, semconv.MessagingDestinationName(q))
		}
		if n, ok := asynq.GetRetryCount(ctx); ok {
			attrs = append(attrs, attribute.Int("bazaar.task.retry", n))
		}
		if m.EventID != "" {
			attrs = append(attrs, attribute.String("bazaar.event.id", m.EventID))
		}
		ctx, span := w.tracer.Start(ctx, "task "+t.Type(), trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
		defer span.End()
		if tp := stream.TraceParentOf(ctx); tp != m.TraceParent {
			if p, err := withTraceParent(t.Payload(), tp); err == nil {
				t = asynq.NewTask(t.Type(), p)
			}
		}
		err := next.ProcessTask(ctx, t)
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, outcome(ctx, err))
		}
		return err
	})
}

// withTraceParent returns payload with its traceparent field set to tp,
// leaving every other field as it was.
func withTraceParent(payload []byte, tp string) ([]byte, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(payload, &fields); err != nil || fields == nil {
		return nil, cmp.Or(err, errNotObject)
	}
	v, err := json.Marshal(tp)
	if err != nil {
		return nil, err
	}
	fields["traceparent"] = v
	return json.Marshal(fields)
}

var errNotObject = errors.New("payload is not a JSON object")

// asynqStates are the task states reported per queue, as asynq names them.
var asynqStates = []string{"pending", "active", "scheduled", "retry", "archived", "completed"}

// QueueCollectorConfig configures a QueueCollector.
type QueueCollectorConfig struct {
	// Redis holds the asynq queues (required).
	Redis redis.UniversalClient
	// Timeout bounds the queries of one scrape (default 5s).
	Timeout time.Duration
	Logger  *slog.Logger
}

// QueueCollector is a Prometheus collector that reads the size of every
// asynq queue by task state when scraped (bazaar_asynq_tasks). asynq's
// own exporter names its series asynq_*; these follow Bazaar's names. The
// queues are shared by every worker, so any one process reporting them is
// enough.
type QueueCollector struct {
	cfg       QueueCollectorConfig
	log       *slog.Logger
	inspector *asynq.Inspector
	tasks     *prometheus.Desc
}

// NewQueueCollector builds a QueueCollector; register it with a
// prometheus.Registerer.
func NewQueueCollector(cfg QueueCollectorConfig) (*QueueCollector, error) {
	if cfg.Redis == nil {
		return nil, errors.New("queue metrics: Redis is required")
	}
	cfg.Timeout = cmp.Or(cfg.Timeout, 5*time.Second)
	cfg.Logger = cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	return &QueueCollector{
		cfg:       cfg,
		log:       cfg.Logger.With("component", "queue_metrics"),
		inspector: asynq.NewInspectorFromRedisClient(cfg.Redis),
		tasks: prometheus.NewDesc("bazaar_asynq_tasks",
			"Tasks per asynq queue and state (pending, active, scheduled, retry, archived, completed).",
			[]string{"queue", "state"}, nil),
	}, nil
}

// Describe sends the collector's one descriptor.
func (c *QueueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.tasks }

type queueCounts struct {
	queue  string
	counts [6]int
}

// Collect reads every queue's counts and sends them. The Inspector takes
// no context, so the reads run on a goroutine that ends when Redis answers
// or its client times out; past Timeout this scrape goes without them.
func (c *QueueCollector) Collect(ch chan<- prometheus.Metric) {
	type result struct {
		queues []queueCounts
		err    error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		names, err := c.inspector.Queues()
		if err != nil {
			r.err = err
			done <- r
			return
		}
		for _, q := range names {
			info, err := c.inspector.GetQueueInfo(q)
			if err != nil {
				r.err = err
				continue
			}
			r.queues = append(r.queues, queueCounts{queue: q, counts: [6]int{
				info.Pending, info.Active, info.Scheduled, info.Retry, info.Archived, info.Completed,
			}})
		}
		done <- r
	}()
	select {
	case r := <-done:
		if r.err != nil {
			c.log.Warn("metrics: read asynq queues", "err", r.err)
		}
		for _, q := range r.queues {
			for i, state := range asynqStates {
				ch <- prometheus.MustNewConstMetric(c.tasks, prometheus.GaugeValue, float64(q.counts[i]), q.queue, state)
			}
		}
	case <-time.After(c.cfg.Timeout):
		c.log.Warn("metrics: read asynq queues timed out", "timeout", c.cfg.Timeout.String())
	}
}
