package workers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/bazaarhq/bazaar/sql/store"
)

// Config holds the dependencies and settings of the workers.
type Config struct {
	// DB is the PostgreSQL pool (required).
	DB *sqlx.DB
	// Redis is the connection asynq keeps its queues on (required). The
	// workers do not close it. asynq cannot prefix its keys, so give each
	// deployment its own Redis database.
	Redis  redis.UniversalClient
	Logger *slog.Logger
	// Registry receives the per-task-type metrics; nil keeps them unexported.
	Registry prometheus.Registerer
	// TracerProvider, when set, runs each task attempt in a span of the
	// trace its payload carries (observability.go); nil turns tracing off.
	TracerProvider trace.TracerProvider
	// Observer is told after a task commits events, so a relay in the same
	// process publishes them at once.
	Observer store.TxObserver

	// Mailer sends mail (required; NewSMTPMailer for a real server).
	Mailer Mailer
	// MarketplaceFeeBPS is the marketplace's commission on each charge, in
	// basis points of the order total, unless the seller has its own; the
	// rest is paid out to the seller's connected account.
	MarketplaceFeeBPS int
	// Gateway charges and refunds orders (default: a SandboxGateway keeping
	// its state in DB).
	Gateway PaymentGateway
	// Breakers tunes the circuit breakers around Mailer and Gateway, one
	// each for all the workers of this Workers.
	Breakers BreakerConfig

	// Concurrency is how many tasks run at once (default 10).
	Concurrency int
	// Queues maps queue names to weights (default critical 6, default 3,
	// deferred 3, low 1).
	Queues map[string]int
	// ShutdownTimeout is how long Stop lets running tasks finish before
	// handing them back to the queue (default 30s).
	ShutdownTimeout time.Duration
	// TaskCheckInterval is how often an idle worker looks for tasks
	// (default 100ms; asynq's own default is 1s).
	TaskCheckInterval time.Duration
	// DelayedTaskCheckInterval is how often due scheduled and retry tasks
	// are moved to their queues (default 1s; asynq's own default is 5s).
	DelayedTaskCheckInterval time.Duration
	// Fairness shares the queues out by seller (fairness.go); on unless
	// Fairness.Off.
	Fairness FairnessConfig
	// Retry is the backoff between attempts.
	Retry RetryPolicy
	// Policies override DefaultPolicies per task type.
	Policies map[string]TaskPolicy
	// Retention keeps a finished task in Redis this long, so its TaskID
	// still refuses a duplicate; zero (the default) deletes it at once,
	// asynq's fast path. A redelivered event is refused in PostgreSQL
	// instead: each group records the events it turned into tasks in
	// processed_events (reactor), in a transaction that commits after the
	// enqueue, and below that every handler is idempotent on its own keys.
	// Set, it need be no longer than the window in which a stream entry is
	// redelivered (BAZAAR_TASK_RETENTION).
	Retention time.Duration

	// MailClaimTTL is how long a claim on a mail (taken before handing it
	// to the SMTP server) keeps other attempts from sending it (default
	// 15m). A claim outlives its attempt only when the attempt died between
	// the hand-off and the record, or PostgreSQL stayed unreachable past
	// the attempt's deadline; after the TTL the mail is sent again.
	MailClaimTTL time.Duration

	// FollowUpDelay is when after an order is placed the follow-up checks
	// that the order moved on (default 5m).
	FollowUpDelay time.Duration
	// ReminderLead is how long before an order's scheduled time the
	// reminder mail goes out (default 24h).
	ReminderLead time.Duration
	// HighValueMinor is the spend (in minor units of one currency) that puts
	// a buyer in the high_value segment (default 100000, e.g. 1000.00 EUR).
	HighValueMinor int64
	// PointsPerUnit is how many points each 100 minor units of a delivered
	// order earn (default 1).
	PointsPerUnit int64
}

// DefaultRetention is how long finished event tasks are kept by default:
// not at all, since a redelivered event is refused in PostgreSQL (Config.Retention).
const DefaultRetention time.Duration = 0

// DefaultQueues returns the default queue weights: the saga first, then
// mail and points and the tasks due at a set time, then batch work.
func DefaultQueues() map[string]int {
	return map[string]int{QueueCritical: 6, QueueDefault: 3, QueueDeferred: 3, QueueLow: 1}
}

// Workers runs the task handlers on an asynq server and enqueues the tasks
// the consumer groups make of events.
type Workers struct {
	cfg      Config
	db       *sqlx.DB
	log      *slog.Logger
	metrics  *metrics
	tracer   trace.Tracer
	mailer   Mailer
	gateway  PaymentGateway
	policies map[string]TaskPolicy

	client    *asynq.Client
	inspector *asynq.Inspector
	server    *asynq.Server
	mux       *asynq.ServeMux

	mu      sync.Mutex
	started bool
	stopped bool
}

// New validates cfg and builds the workers; Start runs them.
func New(cfg Config) (*Workers, error) {
	if cfg.DB == nil {
		return nil, errors.New("workers: DB is required")
	}
	if cfg.Redis == nil {
		return nil, errors.New("workers: Redis is required")
	}
	if cfg.Mailer == nil {
		return nil, errors.New("workers: Mailer is required")
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	if cfg.Gateway == nil {
		cfg.Gateway = NewSandboxGatewayDB(cfg.DB)
	}
	cfg.Concurrency = cmp.Or(cfg.Concurrency, 10)
	if len(cfg.Queues) == 0 {
		cfg.Queues = DefaultQueues()
	}
	cfg.ShutdownTimeout = cmp.Or(cfg.ShutdownTimeout, 30*time.Second)
	cfg.TaskCheckInterval = cmp.Or(cfg.TaskCheckInterval, 100*time.Millisecond)
	cfg.DelayedTaskCheckInterval = cmp.Or(cfg.DelayedTaskCheckInterval, time.Second)
	cfg.Retention = cmp.Or(cfg.Retention, DefaultRetention)
	if cfg.Retention < 0 {
		return nil, errors.New("workers: Retention must not be negative")
	}
	cfg.MailClaimTTL = cmp.Or(cfg.MailClaimTTL, 15*time.Minute)
	cfg.FollowUpDelay = cmp.Or(cfg.FollowUpDelay, 5*time.Minute)
	cfg.ReminderLead = cmp.Or(cfg.ReminderLead, 24*time.Hour)
	cfg.HighValueMinor = cmp.Or(cfg.HighValueMinor, 100_000)
	cfg.PointsPerUnit = cmp.Or(cfg.PointsPerUnit, 1)
	if cfg.MarketplaceFeeBPS < 0 || cfg.MarketplaceFeeBPS > 10_000 {
		return nil, errors.New("workers: MarketplaceFeeBPS must be from 0 to 10000")
	}
	if cfg.Concurrency < 0 || cfg.ShutdownTimeout < 0 || cfg.FollowUpDelay < 0 || cfg.ReminderLead < 0 {
		return nil, errors.New("workers: durations and Concurrency must not be negative")
	}
	if !cfg.Fairness.Off {
		cfg.Fairness.SellerCap = cmp.Or(cfg.Fairness.SellerCap, cfg.Concurrency)
		if len(cfg.Fairness.Queues) == 0 {
			// The queues the consumer groups' tasks go to, of those read.
			for _, q := range []string{QueueCritical, QueueDefault, QueueLow} {
				if _, ok := cfg.Queues[q]; ok {
					cfg.Fairness.Queues = append(cfg.Fairness.Queues, q)
				}
			}
		}
		queues, err := fairWeights(cfg.Queues, cfg.Fairness)
		if err != nil {
			return nil, err
		}
		cfg.Queues = queues
	}
	if cfg.Fairness.SellerCap < 0 || cfg.Fairness.FairWeight < 0 {
		return nil, errors.New("workers: Fairness.SellerCap and FairWeight must not be negative")
	}
	policies := maps.Clone(DefaultPolicies)
	for typ, p := range cfg.Policies {
		if p.Queue == "" {
			p.Queue = cmp.Or(policies[typ].Queue, fallbackPolicy.Queue)
		}
		if _, ok := cfg.Queues[p.Queue]; !ok {
			return nil, fmt.Errorf("workers: policy of %s names queue %q, which no worker reads", typ, p.Queue)
		}
		policies[typ] = p
	}
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, fmt.Errorf("workers: metrics: %w", err)
	}
	smtpBreaker, err := NewBreaker(BreakerSMTP, cfg.Breakers, mailAnswered, cfg.Registry)
	if err != nil {
		return nil, fmt.Errorf("workers: %w", err)
	}
	gatewayBreaker, err := NewBreaker(BreakerGateway, cfg.Breakers, gatewayAnswered, cfg.Registry)
	if err != nil {
		return nil, fmt.Errorf("workers: %w", err)
	}
	w := &Workers{
		cfg:       cfg,
		db:        cfg.DB,
		log:       cfg.Logger,
		metrics:   m,
		mailer:    breakerMailer{next: cfg.Mailer, b: smtpBreaker},
		gateway:   breakerGateway{next: cfg.Gateway, b: gatewayBreaker},
		policies:  policies,
		client:    asynq.NewClientFromRedisClient(cfg.Redis),
		inspector: asynq.NewInspectorFromRedisClient(cfg.Redis),
	}
	w.server = asynq.NewServerFromRedisClient(cfg.Redis, asynq.Config{
		Concurrency:              cfg.Concurrency,
		Queues:                   cfg.Queues,
		TaskCheckInterval:        cfg.TaskCheckInterval,
		DelayedTaskCheckInterval: cfg.DelayedTaskCheckInterval,
		RetryDelayFunc:           cfg.Retry.retryDelay,
		IsFailure:                isFailure,
		ErrorHandler:             asynq.ErrorHandlerFunc(w.recordFailure),
		ShutdownTimeout:          cfg.ShutdownTimeout,
		Logger:                   asynqLogger{cfg.Logger.With("component", "asynq")},
		LogLevel:                 asynq.WarnLevel,
		HealthCheckFunc: func(err error) {
			if err != nil {
				cfg.Logger.Warn("asynq cannot reach redis", "error", err)
			}
		},
	})
	w.mux = asynq.NewServeMux()
	w.mux.Use(w.instrument)
	if cfg.TracerProvider != nil {
		w.tracer = cfg.TracerProvider.Tracer(TracerName)
		w.mux.Use(w.traceTask)
	}
	w.routes(w.mux)
	return w, nil
}

// Mux returns the task router, for task families defined elsewhere
// (invoicing) to register their handlers on before Start. They run behind
// the same middleware: logging, metrics.
func (w *Workers) Mux() *asynq.ServeMux { return w.mux }

// Handler returns the task handler with its middleware, for running the
// workers' tasks on another asynq server (benchmarks, embedding).
func (w *Workers) Handler() asynq.Handler { return w.mux }

// Start starts processing tasks. It returns at once.
func (w *Workers) Start(_ context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return errors.New("workers: stopped; build new workers to start again")
	}
	if w.started {
		return nil
	}
	if err := w.server.Start(w.mux); err != nil {
		return fmt.Errorf("start workers: %w", err)
	}
	w.started = true
	w.log.Info("workers started", "concurrency", w.cfg.Concurrency, "queues", w.cfg.Queues)
	return nil
}

// Stop stops taking new tasks, lets running ones finish for up to
// ShutdownTimeout, then hands the rest back to their queues. If ctx ends
// first Stop returns ctx's error while the shutdown completes in the
// background. A second Stop, or Stop without Start, does nothing.
func (w *Workers) Stop(ctx context.Context) error {
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return nil
	}
	w.stopped = true
	started := w.started
	w.mu.Unlock()

	done := make(chan struct{})
	go func() {
		defer close(done)
		if started {
			w.server.Shutdown()
		}
		_ = w.client.Close()
		_ = w.inspector.Close()
	}()
	select {
	case <-done:
		if started {
			w.log.Info("workers stopped")
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop workers: %w", ctx.Err())
	}
}

// policy returns the queueing policy of a task type.
func (w *Workers) policy(typ string) TaskPolicy {
	if p, ok := w.policies[typ]; ok {
		return p
	}
	return fallbackPolicy
}

// enqueue adds a task under a deterministic id. A task with that id
// already in Redis (an event delivered twice, a step run twice) counts as
// done.
func (w *Workers) enqueue(ctx context.Context, t *asynq.Task, taskID string, extra ...asynq.Option) error {
	p := w.policy(t.Type())
	opts := []asynq.Option{
		asynq.Queue(p.Queue),
		asynq.MaxRetry(p.MaxRetry),
		asynq.Timeout(p.Timeout),
		asynq.TaskID(taskID),
	}
	if w.cfg.Retention > 0 {
		opts = append(opts, asynq.Retention(w.cfg.Retention))
	}
	opts = append(opts, extra...)
	_, err := w.client.EnqueueContext(ctx, t, opts...)
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		Logger(ctx, w.log).Debug("task exists already", "task_type", t.Type(), "task_id", taskID)
		return nil
	}
	if err != nil {
		return fmt.Errorf("enqueue %s %s: %w", t.Type(), taskID, err)
	}
	return nil
}

// enqueueNew is enqueue that also reports whether the task was added
// (false: one with its id was there already).
func (w *Workers) enqueueNew(ctx context.Context, t *asynq.Task, taskID string) (bool, error) {
	p := w.policy(t.Type())
	_, err := w.client.EnqueueContext(ctx, t, asynq.Queue(p.Queue), asynq.MaxRetry(p.MaxRetry),
		asynq.Timeout(p.Timeout), asynq.Retention(w.cfg.Retention), asynq.TaskID(taskID))
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		Logger(ctx, w.log).Debug("task exists already", "task_type", t.Type(), "task_id", taskID)
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("enqueue %s %s: %w", t.Type(), taskID, err)
	}
	return true, nil
}

// Enqueue adds a task with the queue, retry budget and time limit of its
// type and a deterministic id; a task with the same id already present
// counts as success. Other parts (the scheduler) use it to start work.
func (w *Workers) Enqueue(ctx context.Context, t *asynq.Task, taskID string, extra ...asynq.Option) error {
	return w.enqueue(ctx, t, taskID, extra...)
}

// inTx runs fn in a transaction and tells the observer when it committed
// events, so the relay publishes them at once.
func (w *Workers) inTx(ctx context.Context, fn func(tx *sqlx.Tx) (events int, err error)) error {
	var n int
	err := store.WithTx(ctx, w.db, func(tx *sqlx.Tx) error {
		var err error
		n, err = fn(tx)
		return err
	})
	if err == nil && n > 0 && w.cfg.Observer != nil {
		w.cfg.Observer.EventsCommitted()
	}
	return err
}

// recordFailure is asynq's error handler: when an attempt was the last one
// (retries exhausted or a permanent error) it records the failure in
// PostgreSQL, where it outlives the archive asynq trims.
func (w *Workers) recordFailure(ctx context.Context, t *asynq.Task, err error) {
	oc := outcome(ctx, err)
	if oc != outcomeArchived {
		return
	}
	id, _ := asynq.GetTaskID(ctx)
	queue, _ := asynq.GetQueueName(ctx)
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	// The task's context may be the reason it failed (timeout); the record
	// must still be written.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	ferr := store.RecordTaskFailure(rctx, w.db, store.TaskFailure{
		TaskID: id, TaskType: t.Type(), Queue: queue, Payload: t.Payload(),
		Error: err.Error(), Retried: retried, MaxRetry: maxRetry,
	})
	if ferr != nil {
		w.log.Error("record task failure", "task_id", id, "task_type", t.Type(), "error", ferr)
	}
}
