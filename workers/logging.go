package workers

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/hibiken/asynq"
)

type loggerKey struct{}

// Logger returns the logger of the task running in ctx: it carries the
// task's type and id, its retry count and the event, request id and trace
// context the task came from. Outside a task it returns fallback.
func Logger(ctx context.Context, fallback *slog.Logger) *slog.Logger {
	switch l := ctx.Value(loggerKey{}).(type) {
	case *taskLog:
		return l.logger()
	case *slog.Logger:
		return l
	}
	return fallback
}

// taskLog is a task's logger, built on first use: most attempts succeed
// without logging a line, and building it (the payload's Meta decoded, a
// child logger holding the attributes) was most of the middleware's
// allocations per task.
type taskLog struct {
	base  *slog.Logger
	task  *asynq.Task
	id    string
	queue string
	retry int

	once sync.Once
	log  *slog.Logger
}

func newTaskLog(ctx context.Context, base *slog.Logger, t *asynq.Task) *taskLog {
	l := &taskLog{base: base, task: t}
	l.id, _ = asynq.GetTaskID(ctx)
	l.queue, _ = asynq.GetQueueName(ctx)
	l.retry, _ = asynq.GetRetryCount(ctx)
	return l
}

// logger returns the task's logger; safe for the goroutines of a handler.
func (l *taskLog) logger() *slog.Logger {
	l.once.Do(func() { l.log = l.base.With(l.attrs()...) })
	return l.log
}

// attrs are the attributes every log line of a task carries.
func (l *taskLog) attrs() []any {
	attrs := []any{slog.String("task_type", l.task.Type())}
	if l.id != "" {
		attrs = append(attrs, slog.String("task_id", l.id))
	}
	if l.queue != "" {
		attrs = append(attrs, slog.String("queue", l.queue))
	}
	if l.retry > 0 {
		attrs = append(attrs, slog.Int("retry", l.retry))
	}
	// Only the Meta fields are read; the rest of the payload stays opaque.
	var m Meta
	if json.Unmarshal(l.task.Payload(), &m) == nil {
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
