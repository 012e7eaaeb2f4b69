package workers

import (
	"context"
	"errors"
	"log/slog"
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

// metrics counts and times tasks by type: asynq's own exporter reports per
// queue only.
type metrics struct {
	processed *prometheus.CounterVec
	duration  *prometheus.HistogramVec
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
// times the attempt by type.
func (w *Workers) instrument(next asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		log := w.log.With(taskAttrs(ctx, t)...)
		ctx = withLogger(ctx, log)
		start := time.Now()
		err := next.ProcessTask(ctx, t)
		elapsed := time.Since(start)
		oc := outcome(ctx, err)
		w.releaseFair(ctx, t, oc)
		w.metrics.processed.WithLabelValues(t.Type(), oc).Inc()
		w.metrics.duration.WithLabelValues(t.Type()).Observe(elapsed.Seconds())
		switch oc {
		case outcomeSuccess:
			log.Debug("task done", slog.Duration("took", elapsed))
		case outcomeRetry:
			log.Warn("task failed, will retry", slog.Duration("took", elapsed), slog.Any("error", err))
		case outcomeDeferred:
			log.Info("task deferred; retries not spent", slog.Duration("took", elapsed), slog.Any("error", err))
		default:
			log.Error("task failed for good", slog.String("outcome", oc), slog.Duration("took", elapsed), slog.Any("error", err))
		}
		return err
	})
}
