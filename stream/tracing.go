package stream

import (
	"context"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// TracerName names the tracer of the stream package's spans.
const TracerName = "github.com/bazaarhq/bazaar/stream"

// traceContext parses and formats W3C traceparent headers.
var traceContext = propagation.TraceContext{}

// traceCarrier holds one traceparent for the propagator without a map.
type traceCarrier string

func (c traceCarrier) Get(key string) string {
	if key == "traceparent" {
		return string(c)
	}
	return ""
}

func (traceCarrier) Set(string, string) {}

func (traceCarrier) Keys() []string { return []string{"traceparent"} }

// ContextWithTraceParent returns ctx carrying the remote span context of a
// W3C traceparent, so spans started from it join that trace and log lines
// logged with it carry its trace id. An empty or invalid traceparent leaves
// ctx as it is.
func ContextWithTraceParent(ctx context.Context, traceParent string) context.Context {
	if traceParent == "" {
		return ctx
	}
	return traceContext.Extract(ctx, traceCarrier(traceParent))
}

// TraceParentOf formats the span context in ctx as a W3C traceparent
// (version 00), or returns "" when ctx carries none.
func TraceParentOf(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	return "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-" + sc.TraceFlags().String()
}

// tracerOf returns the package's tracer, or nil when tracing is off: the
// callers then skip spans entirely and pass trace context through as it came.
func tracerOf(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		return nil
	}
	return tp.Tracer(TracerName)
}

// startPublish starts the relay's producer span of one event, a child of
// the span that recorded the event, and returns the traceparent the stream
// entry carries instead, so consumers become children of the publish.
func startPublish(ctx context.Context, tr trace.Tracer, env Envelope, stream string) (string, trace.Span) {
	ctx = ContextWithTraceParent(ctx, env.TraceParent)
	ctx, span := tr.Start(ctx, "publish "+env.Type,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			semconv.MessagingSystemKey.String("redis"),
			semconv.MessagingOperationName("publish"),
			semconv.MessagingDestinationName(stream),
			semconv.MessagingMessageID(env.ID),
			attribute.String("bazaar.event.type", env.Type),
		))
	return TraceParentOf(ctx), span
}

// endPublish ends the publish spans of a batch, marking those whose XADD
// failed. A nil span (tracing off, or a batch abandoned before its span
// started) or a nil command is skipped or ended without a status.
func endPublish(spans []trace.Span, cmds []*redis.StringCmd) {
	for i, span := range spans {
		if span == nil {
			continue
		}
		if i < len(cmds) && cmds[i] != nil {
			if err := cmds[i].Err(); err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, "xadd failed")
			} else {
				span.SetAttributes(attribute.String("bazaar.stream.entry_id", cmds[i].Val()))
			}
		}
		span.End()
	}
}

// startHandle starts the consumer span of one delivery, a child of the
// span that published the entry, and rewrites msg's traceparent to it, so
// whatever the handler records or enqueues (tasks, events) continues the
// trace under this span. Without a tracer it only puts the entry's trace
// context into ctx, for the log lines.
func startHandle(ctx context.Context, tr trace.Tracer, group string, msg *Message) (context.Context, trace.Span) {
	ctx = ContextWithTraceParent(ctx, msg.TraceParent)
	if tr == nil {
		return ctx, nil
	}
	ctx, span := tr.Start(ctx, "process "+msg.Type,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			semconv.MessagingSystemKey.String("redis"),
			semconv.MessagingOperationName("process"),
			semconv.MessagingDestinationName(msg.Stream),
			semconv.MessagingConsumerGroupName(group),
			semconv.MessagingMessageID(msg.ID),
			attribute.String("bazaar.event.type", msg.Type),
			attribute.String("bazaar.stream.entry_id", msg.EntryID),
			attribute.Int64("bazaar.deliveries", msg.Deliveries),
		))
	if tp := TraceParentOf(ctx); tp != "" {
		msg.TraceParent = tp
	}
	return ctx, span
}

// endSpan records err on span (if any) and ends it.
func endSpan(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
