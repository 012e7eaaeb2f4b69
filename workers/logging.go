package workers

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/hibiken/asynq"
)

type loggerKey struct{}

// Logger returns the logger of the task running in ctx: it carries the
// task's type and id, its retry count and the event, request id and trace
// context the task came from. Outside a task it returns fallback.
func Logger(ctx context.Context, fallback *slog.Logger) *slog.Logger {
	if l, ok := ctx.Value(loggerKey{}).(*slog.Logger); ok {
		return l
	}
	return fallback
}

func withLogger(ctx context.Context, l *slog.Logger) context.Context {
	return context.WithValue(ctx, loggerKey{}, l)
}

// taskAttrs are the attributes every log line of a task carries.
func taskAttrs(ctx context.Context, t *asynq.Task) []any {
	attrs := []any{slog.String("task_type", t.Type())}
	if id, ok := asynq.GetTaskID(ctx); ok {
		attrs = append(attrs, slog.String("task_id", id))
	}
	if q, ok := asynq.GetQueueName(ctx); ok {
		attrs = append(attrs, slog.String("queue", q))
	}
	if n, ok := asynq.GetRetryCount(ctx); ok && n > 0 {
		attrs = append(attrs, slog.Int("retry", n))
	}
	// Only the Meta fields are read; the rest of the payload stays opaque.
	var m Meta
	if json.Unmarshal(t.Payload(), &m) == nil {
		if m.EventID != "" {
			attrs = append(attrs, slog.String("event_id", m.EventID), slog.String("event_type", m.EventType))
		}
		if m.RequestID != "" {
			attrs = append(attrs, slog.String("request_id", m.RequestID))
		}
		if m.TraceParent != "" {
			attrs = append(attrs, slog.String("traceparent", m.TraceParent))
			if tid := traceID(m.TraceParent); tid != "" {
				attrs = append(attrs, slog.String("trace_id", tid))
			}
		}
	}
	return attrs
}

// traceID extracts the trace id of a W3C traceparent
// ("00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>").
func traceID(tp string) string {
	parts := strings.Split(tp, "-")
	if len(parts) != 4 || len(parts[1]) != 32 {
		return ""
	}
	return parts[1]
}

// asynqLogger adapts slog to asynq's logger so asynq's own messages land in
// the same JSON log.
type asynqLogger struct{ log *slog.Logger }

func (l asynqLogger) Debug(args ...any) { l.log.Debug(fmt.Sprint(args...)) }
func (l asynqLogger) Info(args ...any)  { l.log.Info(fmt.Sprint(args...)) }
func (l asynqLogger) Warn(args ...any)  { l.log.Warn(fmt.Sprint(args...)) }
func (l asynqLogger) Error(args ...any) { l.log.Error(fmt.Sprint(args...)) }

// Fatal is called by asynq only when it cannot go on; the interface
// requires the process to end.
func (l asynqLogger) Fatal(args ...any) {
	l.log.Error(fmt.Sprint(args...))
	os.Exit(1)
}
