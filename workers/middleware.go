package workers

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
)

// Task outcomes as counted by bazaar_task_processed_total.
const (
	outcomeSuccess  = "success"
	outcomeRetry    = "retry"
	outcomeArchived = "archived"
	outcomeRevoked  = "revoked"
	// outcomeDeferred is a retry that does not count against the task's
	// budget: its dependency's breaker is open (DeferredError).
	outcomeDeferred = "deferred"
)

// outcomes lists the outcomes in the order of typeMetrics.outcomes.
var outcomes = [...]string{outcomeSuccess, outcomeRetry, outcomeArchived, outcomeRevoked, outcomeDeferred}

// metrics counts and times tasks by type: asynq's own exporter reports per
// queue only.
type metrics struct {
	processed *prometheus.CounterVec
	duration  *prometheus.HistogramVec

	// byType holds each task type's series, looked up once per type:
	// WithLabelValues hashes the labels and allocates on every call.
	mu     sync.RWMutex
	byType map[string]*typeMetrics
}

// typeMetrics are the series of one task type.
type typeMetrics struct {
	outcomes [len(outcomes)]prometheus.Counter
	duration prometheus.Observer
}

// of returns the series of task type typ, made on first use.
func (m *metrics) of(typ string) *typeMetrics {
	m.mu.RLock()
	tm, ok := m.byType[typ]
	m.mu.RUnlock()
	if ok {
		return tm
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if tm, ok := m.byType[typ]; ok {
		return tm
	}
	tm = &typeMetrics{duration: m.duration.WithLabelValues(typ)}
	for i, oc := range outcomes {
		tm.outcomes[i] = m.processed.WithLabelValues(typ, oc)
	}
	if m.byType == nil {
		m.byType = make(map[string]*typeMetrics)
	}
	m.byType[typ] = tm
	return tm
}

// count returns the counter of outcome oc.
func (tm *typeMetrics) count(oc string) prometheus.Counter {
	for i, o := range outcomes {
		if o == oc {
			return tm.outcomes[i]
		}
	}
	return tm.outcomes[0]
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		processed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bazaar_task_processed_total",
			Help: "Task attempts by task type and outcome (success, retry, deferred, archived, revoked).",
		}, []string{"task_type", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bazaar_task_duration_seconds",
			Help:    "Time a task attempt took in its handler, by task type.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"task_type"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.processed, m.duration} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
			// A second Workers in one process shares the first's collectors.
			switch existing := are.ExistingCollector.(type) {
			case *prometheus.CounterVec:
				m.processed = existing
			case *prometheus.HistogramVec:
				m.duration = existing
			}
		}
	}
	return m, nil
}

// outcome classifies a handler's result the way asynq will act on it.
func outcome(ctx context.Context, err error) string {
	switch {
	case err == nil:
		return outcomeSuccess
	case errors.Is(err, asynq.RevokeTask):
		return outcomeRevoked
	case errors.Is(err, asynq.SkipRetry):
		return outcomeArchived
	}
	n, _ := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	if n >= maxRetry {
		// asynq archives a task at its last attempt whatever the error.
		return outcomeArchived
	}
	if _, ok := deferredOf(err); ok {
		return outcomeDeferred
	}
	return outcomeRetry
}

// instrument is the task middleware: it gives the task a logger carrying
// its ids and request context, logs a failed attempt once, and counts and
// times the attempt by type. An attempt that succeeds costs two
// allocations here (the lazy logger and its context): the logger's
// attributes are built only when something logs, and the series are
// looked up once per type.
func (w *Workers) instrument(next asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		tl := newTaskLog(ctx, w.log, t)
		ctx = context.WithValue(ctx, loggerKey{}, tl)
		start := time.Now()
		err := next.ProcessTask(ctx, t)
		elapsed := time.Since(start)
		oc := outcome(ctx, err)
		w.releaseFair(ctx, t, oc)
		tm := w.metrics.of(t.Type())
		tm.count(oc).Inc()
		tm.duration.Observe(elapsed.Seconds())
		switch oc {
		case outcomeSuccess:
			if w.log.Enabled(ctx, slog.LevelDebug) {
				tl.logger().LogAttrs(ctx, slog.LevelDebug, "task done", slog.Duration("took", elapsed))
			}
		case outcomeRetry:
			tl.logger().Warn("task failed, will retry", slog.Duration("took", elapsed), slog.Any("error", err))
		case outcomeDeferred:
			tl.logger().Info("task deferred; retries not spent", slog.Duration("took", elapsed), slog.Any("error", err))
		default:
			tl.logger().Error("task failed for good", slog.String("outcome", oc), slog.Duration("took", elapsed), slog.Any("error", err))
		}
		return err
	})
}
