package stream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/bazaarhq/bazaar/internal/backoff"
	"github.com/bazaarhq/bazaar/sql/store"
)

// RelayConfig configures a Relay. Zero fields take the defaults noted.
type RelayConfig struct {
	DB     *sqlx.DB
	Redis  redis.UniversalClient
	Names  Names
	Logger *slog.Logger
	// BatchSize is how many events one transaction claims (default 5000).
	BatchSize int
	// Lanes is how many batches the relay keeps in flight at once (default
	// 1), each in its own transaction and on its own connection. The
	// outbox is split between them by subject hash (store.Lane), so one
	// lane's PostgreSQL work overlaps another's XADDs while every subject
	// stays in one lane, in order. With one lane (and one relay) a stream
	// also holds its entries in commit order across subjects, which a
	// reader such as a seller's receipt printer sees as placement order;
	// more lanes keep only each subject's order, as several relays do.
	Lanes int
	// PollInterval is how often the relay looks for events when nothing
	// wakes it (default 100ms). Commits in this process wake it at once
	// through EventsCommitted; the poll finds those of other processes.
	PollInterval time.Duration
	// ListenDSN, when set, is a direct PostgreSQL connection (not through
	// a transaction pooler) on which the relay LISTENs for the NOTIFYs a
	// Notifier sends after commits in other processes, and wakes at once.
	// The poll stays on as the fallback for a lost NOTIFY.
	ListenDSN string
	// ListenChannel is the channel listened on (default NotifyChannel).
	ListenChannel string
	// MaxLen keeps about this many entries per stream (0: no length limit).
	MaxLen int64
	// MaxAge drops entries older than this (0: no age limit).
	MaxAge time.Duration
	// TrimInterval is how often streams are trimmed (default 30s). Trimming
	// never drops an entry a consumer group has not yet acknowledged.
	TrimInterval time.Duration
	// MaxBackoff caps the wait between attempts while Redis or PostgreSQL
	// fails (default 5s).
	MaxBackoff time.Duration
	// Registry receives the relay's metrics (published events, publish
	// latency); nil leaves them unexported.
	Registry prometheus.Registerer
	// MinReplicas is how many replicas of each primary that got entries
	// of a batch must acknowledge them (WAIT) before the batch is marked
	// published; when fewer do within ReplicaTimeout (default 1s) the
	// batch stays unpublished and is retried. 0 skips the wait.
	MinReplicas    int
	ReplicaTimeout time.Duration
	// TracerProvider, when set, traces each publication as a producer span
	// in the trace of the request that recorded the event; the stream entry
	// then carries that span as its traceparent. Nil turns tracing off.
	TracerProvider trace.TracerProvider
}

// Relay publishes committed outbox events to Redis Streams, deletes them
// from the outbox and records the stream and entry id they got. Several relays may run
// against one database: rows are claimed with FOR UPDATE SKIP LOCKED, and an
// event is published only when no older event of its subject is still
// waiting, so each subject's events reach Redis in the order they were
// recorded. Within one relay, Lanes batches are in flight at once, each on
// the outbox rows of its own subject-hash slice. A relay crash between XADD
// and commit republishes the batch: delivery is at least once.
type Relay struct {
	cfg  RelayConfig
	log  *slog.Logger
	wake []chan struct{} // one per lane
	tel  relayTelemetry

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}

	// afterAdd, set by tests, runs after the XADDs and before the rows are
	// marked; an error abandons the transaction as a crash would.
	afterAdd func() error
}

var _ store.TxObserver = (*Relay)(nil)

// NewRelay validates cfg and returns a stopped relay.
func NewRelay(cfg RelayConfig) (*Relay, error) {
	if cfg.DB == nil {
		return nil, errors.New("relay: DB is required")
	}
	if cfg.Redis == nil {
		return nil, errors.New("relay: Redis is required")
	}
	if cfg.BatchSize < 0 || cfg.Lanes < 0 || cfg.MaxLen < 0 || cfg.MaxAge < 0 || cfg.PollInterval < 0 || cfg.MinReplicas < 0 || cfg.ReplicaTimeout < 0 {
		return nil, errors.New("relay: BatchSize, Lanes, MaxLen, MaxAge, PollInterval, MinReplicas and ReplicaTimeout must not be negative")
	}
	cfg.Lanes = cmp.Or(cfg.Lanes, 1)
	cfg.ReplicaTimeout = cmp.Or(cfg.ReplicaTimeout, time.Second)
	cfg.Logger = cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	cfg.BatchSize = cmp.Or(cfg.BatchSize, 5000)
	cfg.PollInterval = cmp.Or(cfg.PollInterval, 100*time.Millisecond)
	cfg.TrimInterval = cmp.Or(cfg.TrimInterval, 30*time.Second)
	cfg.MaxBackoff = cmp.Or(cfg.MaxBackoff, 5*time.Second)
	tel, err := newRelayTelemetry(cfg.Registry, cfg.TracerProvider)
	if err != nil {
		return nil, fmt.Errorf("relay: metrics: %w", err)
	}
	wake := make([]chan struct{}, cfg.Lanes)
	for i := range wake {
		wake[i] = make(chan struct{}, 1)
	}
	return &Relay{cfg: cfg, log: cfg.Logger.With("component", "relay"), wake: wake, tel: tel}, nil
}

// EventsCommitted wakes the relay; it never blocks, so the API can call it
// after every commit.
func (r *Relay) EventsCommitted() {
	for _, w := range r.wake {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

// Start launches the publish loop and the trimmer. They run until Stop.
func (r *Relay) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cancel != nil {
		return errors.New("relay: already started")
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel = cancel
	r.done = make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1 + r.cfg.Lanes)
	for i := range r.cfg.Lanes {
		go func() { defer wg.Done(); r.publishLoop(runCtx, i) }()
	}
	go func() { defer wg.Done(); r.trimLoop(runCtx) }()
	if r.cfg.ListenDSN != "" {
		wg.Add(1)
		go func() { defer wg.Done(); r.listen(runCtx) }()
	}
	go func() { wg.Wait(); close(r.done) }()
	r.log.Info("relay started", "batch_size", r.cfg.BatchSize, "lanes", r.cfg.Lanes, "poll_interval", r.cfg.PollInterval.String(), "listen", r.cfg.ListenDSN != "")
	return nil
}

// Stop ends the loops, letting a batch in flight finish, and waits for them
// or for ctx. It may be called twice or without Start.
func (r *Relay) Stop(ctx context.Context) error {
	r.mu.Lock()
	cancel, done := r.cancel, r.done
	r.cancel = nil
	r.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		r.log.Info("relay stopped")
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop relay: %w", ctx.Err())
	}
}

// publishLoop publishes one lane's batches until ctx ends.
func (r *Relay) publishLoop(ctx context.Context, lane int) {
	ticker := time.NewTicker(r.cfg.PollInterval)
	defer ticker.Stop()
	failures := 0
	full := false
	for {
		// After a full batch more is known to wait: the probe is skipped.
		n, err := r.publishLane(ctx, lane, !full)
		full = err == nil && n == r.cfg.BatchSize
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			failures++
			// Log on the 1st, 2nd, 4th, 8th... failure in a row: an outage
			// is visible at once without flooding the log.
			if failures&(failures-1) == 0 {
				r.log.Error("publish events; will retry", "err", err, "attempt", failures, "lane", lane)
			}
			if !waitFor(ctx, retryDelay(failures, r.cfg.MaxBackoff)) {
				return
			}
			continue
		case failures > 0:
			r.log.Info("publishing resumed", "failed_attempts", failures)
			failures = 0
		}
		if full {
			continue // more is waiting
		}
		select {
		case <-ctx.Done():
			return
		case <-r.wake[lane]:
		case <-ticker.C:
		}
	}
}

// retryDelay is the wait after the failures-th failure in a row: its
// ceiling doubles from 100ms up to maxDelay and the wait is drawn from zero
// to the ceiling (full jitter), so relays and consumers that lost Redis
// together do not come back in step.
func retryDelay(failures int, maxDelay time.Duration) time.Duration {
	return backoff.Policy{Base: 100 * time.Millisecond, Max: maxDelay}.Delay(failures - 1)
}

// waitFor sleeps for d or until ctx ends, reporting whether ctx is still live.
func waitFor(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// PublishBatch publishes one batch in every lane, concurrently: each lane
// claims its outbox rows, adds their events to their streams in one
// pipeline, then deletes the rows and records the events' positions, all
// in one transaction.
// It returns how many events the lanes claimed together (published or held
// back); Start runs each lane in a loop of its own, and tests and
// benchmarks call it directly.
func (r *Relay) PublishBatch(ctx context.Context) (claimed int, err error) {
	if r.cfg.Lanes == 1 {
		return r.publishLane(ctx, 0, true)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		errs  []error
		total int
	)
	for lane := range r.cfg.Lanes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := r.publishLane(ctx, lane, true)
			mu.Lock()
			defer mu.Unlock()
			total += n
			if err != nil {
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	return total, errors.Join(errs...)
}

// publishLane publishes one batch of a lane's outbox rows. With probe it
// first checks, outside any transaction, that anything waits at all, so an
// idle relay's poll stays one cheap round trip per lane.
func (r *Relay) publishLane(ctx context.Context, lane int, probe bool) (claimed int, err error) {
	if probe {
		waiting, err := store.HasUnpublished(ctx, r.cfg.DB)
		if err != nil || !waiting {
			return 0, err
		}
	}
	l := store.Lane{Index: lane, Of: r.cfg.Lanes}
	var (
		batch []store.Event
		pubs  []store.Publication
	)
	err = store.WithTx(ctx, r.cfg.DB, func(tx *sqlx.Tx) error {
		if err := store.BeginPublish(ctx, tx); err != nil {
			return err
		}
		events, err := store.ClaimLane(ctx, tx, r.cfg.BatchSize, l)
		if err != nil || len(events) == 0 {
			return err
		}
		claimed = len(events)
		events, err = r.inOrder(ctx, tx, l, events)
		if err != nil {
			return err
		}
		batch = events
		pubs, err = r.add(ctx, events)
		if err != nil {
			return err
		}
		// Anything that must hold before the batch counts as published
		// (replicas acknowledging the XADDs) goes here, between the
		// pipeline and the marks: an error leaves the batch in the outbox.
		if err := r.awaitReplicas(ctx, pubs); err != nil {
			return err
		}
		if r.afterAdd != nil {
			if err := r.afterAdd(); err != nil {
				return err
			}
		}
		// One statement takes the batch out of the outbox and records its
		// stream positions; the event log's rows are not written.
		return store.MarkPublished(ctx, tx, pubs)
	})
	if err != nil {
		return claimed, fmt.Errorf("relay batch: %w", err)
	}
	r.tel.observe(batch, pubs, time.Now())
	return claimed, nil
}

// inOrder drops claimed events that have an older event of the same subject
// still waiting outside this batch (claimed by another relay, or skipped).
// The check runs after the claim, in a fresh snapshot: an older event that
// another relay already added to Redis is either committed as published by
// now, or still looks waiting and holds this one back. Either way a
// subject's events reach the stream in seq order.
func (r *Relay) inOrder(ctx context.Context, tx *sqlx.Tx, lane store.Lane, events []store.Event) ([]store.Event, error) {
	seqs := make([]int64, len(events))
	index := make(map[string]int)
	claims := make([]store.Claim, 0, len(events))
	for i, e := range events {
		seqs[i] = e.Seq
		if j, ok := index[e.Subject]; ok {
			claims[j].MaxSeq = max(claims[j].MaxSeq, e.Seq)
			continue
		}
		index[e.Subject] = len(claims)
		claims = append(claims, store.Claim{Subject: e.Subject, MaxSeq: e.Seq})
	}
	first, err := store.FirstWaitingInLane(ctx, tx, lane, claims, seqs)
	if err != nil {
		return nil, err
	}
	if len(first) == 0 {
		return events, nil
	}
	kept := events[:0]
	for _, e := range events {
		if f, ok := first[e.Subject]; ok && f < e.Seq {
			continue
		}
		kept = append(kept, e)
	}
	return kept, nil
}

// add pipelines one XADD per event and returns where each landed. When some
// XADDs fail, the events after a failure of the same subject are removed
// again and left waiting, so a retry cannot put them before the failed one.
func (r *Relay) add(ctx context.Context, events []store.Event) ([]store.Publication, error) {
	pipe := r.cfg.Redis.Pipeline()
	cmds := make([]*redis.StringCmd, len(events))
	streams := make([]string, len(events))
	spans := r.tel.publishSpans(len(events))
	defer endPublish(spans, cmds) // the elements of cmds are filled in below
	var scratch []byte
	for i, e := range events {
		env := EnvelopeOf(e)
		streams[i] = r.cfg.Names.ForEvent(e.Type, e.Subject)
		if spans != nil {
			env.TraceParent, spans[i] = startPublish(ctx, r.tel.tracer, env, streams[i])
		}
		values, b, err := env.fields(scratch)
		if err != nil {
			return nil, err
		}
		scratch = b
		cmds[i] = pipe.XAdd(ctx, &redis.XAddArgs{Stream: streams[i], ID: "*", Values: values})
	}
	_, execErr := pipe.Exec(ctx)
	pubs := make([]store.Publication, 0, len(events))
	failed := make(map[string]bool)
	var undo []*redis.StringCmd
	var undoStreams []string
	var firstErr error
	for i, e := range events {
		id, err := cmds[i].Result()
		switch {
		case err != nil:
			failed[e.Subject] = true
			firstErr = cmp.Or(firstErr, err)
		case failed[e.Subject]:
			undo = append(undo, cmds[i])
			undoStreams = append(undoStreams, streams[i])
		default:
			pubs = append(pubs, store.Publication{Seq: e.Seq, Time: e.Time, Stream: streams[i], StreamID: id})
		}
	}
	for i, c := range undo {
		// Best effort: if this fails too, the event is published twice,
		// which at-least-once consumers absorb.
		_ = r.cfg.Redis.XDel(ctx, undoStreams[i], c.Val()).Err()
	}
	if len(pubs) == 0 && execErr != nil {
		return nil, fmt.Errorf("xadd: %w", execErr)
	}
	if firstErr != nil {
		r.log.Warn("some events were not added; they stay waiting", "err", firstErr, "added", len(pubs), "batch", len(events))
	}
	return pubs, nil
}
