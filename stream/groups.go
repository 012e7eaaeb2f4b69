package stream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"
)

// Message is one event delivered to a consumer group's handler.
type Message struct {
	Envelope
	// Stream and EntryID locate the entry the event came from. For an event
	// replayed from the PostgreSQL log they are where it was published.
	Stream, EntryID string
	// Deliveries counts the attempts, this one included.
	Deliveries int64
}

// Handler handles one event. Returning nil acknowledges it; an error leaves
// it to be delivered again, up to the subscription's MaxDeliveries. Handlers
// must be idempotent: delivery is at least once (see Once).
type Handler func(ctx context.Context, msg Message) error

type startMode int

const (
	startNew startMode = iota
	startBeginning
	startAt
)

// StartPosition says where a consumer group starts reading when it is
// created. It has no effect on a group that already exists.
type StartPosition struct {
	mode startMode
	at   time.Time
}

var (
	// StartNew receives only events published after the group is created.
	StartNew = StartPosition{}
	// StartBeginning receives everything the streams still hold.
	StartBeginning = StartPosition{mode: startBeginning}
)

// StartAt replays every published event whose time is at or after t from
// the PostgreSQL event log, in the order it was recorded, then continues
// with the live streams without a gap or a duplicate at the seam.
func StartAt(t time.Time) StartPosition { return StartPosition{mode: startAt, at: t} }

// Subscription binds a consumer group to topic patterns and a handler.
type Subscription struct {
	// Group names the consumer group (one per service: "inventory").
	Group string
	// Patterns are AMQP topic patterns ("order.created", "user.#").
	Patterns []string
	Handler  Handler
	// Concurrency is how many handlers run at once in this process (default 1).
	Concurrency int
	// OrderedBySubject keeps each subject's events in order: one consumer
	// of the group reads a stream at a time (streams are shared out among
	// the group's consumers), and within it events of one subject run one
	// after another while different subjects run in parallel.
	OrderedBySubject bool
	// MaxDeliveries is how many times an event is tried before it moves to
	// the group's dead-letter stream (default 5).
	MaxDeliveries int
	// VisibilityTimeout is how long an entry may stay unacknowledged before
	// another consumer takes it over (default 30s). A failed event is tried
	// again after this long.
	VisibilityTimeout time.Duration
	// StartFrom applies when the group is created (default StartNew).
	StartFrom StartPosition
}

// GroupsConfig configures Groups. Zero fields take the defaults noted.
type GroupsConfig struct {
	Redis redis.UniversalClient
	// DB is the event log; it is needed only by subscriptions that start
	// from a time.
	DB     *sqlx.DB
	Names  Names
	Logger *slog.Logger
	// Consumer names this process within its groups (default hostname-pid).
	// A name that survives restarts (a pod name) lets a restarted process
	// finish its own pending entries first instead of waiting for the
	// visibility timeout.
	Consumer string
	// BatchSize is how many entries one read takes (default 100).
	BatchSize int
	// Block is how long one read waits for new entries (default 1s); it
	// bounds how long Stop waits for a reader.
	Block time.Duration
	// IdleConsumerTimeout removes consumers idle this long that hold no
	// pending entries (default 1h).
	IdleConsumerTimeout time.Duration
	// LeaseTTL is how long an ordered subscription's claim on a stream lasts
	// without renewal (default 10s): after a crash, another consumer takes
	// the stream over within this time.
	LeaseTTL time.Duration
	// Registry receives the handler metrics (duration and errors by group
	// and event type); nil leaves them unexported.
	Registry prometheus.Registerer
	// PauseSync is how often the seller pauses recorded in PostgreSQL are
	// applied to the groups (default 1s): a pause takes effect, and a
	// resume starts handing over the held events, within this time. It
	// needs DB; without it the groups honour holds another process set.
	PauseSync time.Duration
	// DisableFairness turns off the fair order by seller within a batch
	// (see fairOrder) and the deferral of a seller's share (SellerShare),
	// for comparison: BAZAAR_FAIRNESS=off.
	DisableFairness bool
	// SellerShare is how many entries of one seller a batch runs while
	// the batch also holds other tenants' work, or is full so that more
	// may wait behind it (default: the subscription's Concurrency). The
	// seller's further entries are deferred, in order, to its parked
	// stream for the group, which the group works through a share at a
	// time between its live reads: a flood of one seller then costs the
	// live read one script call per entry instead of a handler call, and
	// the others' entries no longer queue behind the whole flood. A seller
	// alone keeps every handler: with nothing else to read, the drain runs
	// batch after batch (BAZAAR_GROUP_SELLER_SHARE).
	SellerShare int
	// TracerProvider, when set, traces each handler call as a consumer span
	// in the event's trace, and hands the handler that span as the
	// message's traceparent. Nil turns tracing off.
	TracerProvider trace.TracerProvider
}

// Groups runs consumer-group subscriptions.
type Groups struct {
	cfg GroupsConfig
	log *slog.Logger
	tel *groupTelemetry

	mu      sync.Mutex
	runners []*runner
	stop    context.CancelFunc // ends the read loops
	abort   context.CancelFunc // ends handlers in flight
	done    chan struct{}
}

// NewGroups validates cfg and returns Groups with no subscriptions.
func NewGroups(cfg GroupsConfig) (*Groups, error) {
	if cfg.Redis == nil {
		return nil, errors.New("groups: Redis is required")
	}
	if cfg.BatchSize < 0 || cfg.Block < 0 || cfg.IdleConsumerTimeout < 0 || cfg.LeaseTTL < 0 || cfg.PauseSync < 0 || cfg.SellerShare < 0 {
		return nil, errors.New("groups: BatchSize, Block, IdleConsumerTimeout, LeaseTTL, PauseSync and SellerShare must not be negative")
	}
	if cfg.Consumer == "" {
		host, _ := os.Hostname()
		cfg.Consumer = fmt.Sprintf("%s-%d", cmp.Or(host, "consumer"), os.Getpid())
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	cfg.BatchSize = cmp.Or(cfg.BatchSize, 100)
	cfg.Block = cmp.Or(cfg.Block, time.Second)
	cfg.IdleConsumerTimeout = cmp.Or(cfg.IdleConsumerTimeout, time.Hour)
	cfg.LeaseTTL = cmp.Or(cfg.LeaseTTL, 10*time.Second)
	cfg.PauseSync = cmp.Or(cfg.PauseSync, time.Second)
	tel, err := newGroupTelemetry(cfg.Registry, cfg.TracerProvider)
	if err != nil {
		return nil, fmt.Errorf("groups: metrics: %w", err)
	}
	return &Groups{cfg: cfg, log: cfg.Logger.With("component", "groups", "consumer", cfg.Consumer), tel: tel}, nil
}

// Add registers a subscription; call it before Start.
func (g *Groups) Add(sub Subscription) error {
	if sub.Group == "" {
		return errors.New("subscription: Group is required")
	}
	if sub.Handler == nil {
		return fmt.Errorf("subscription %s: Handler is required", sub.Group)
	}
	if len(sub.Patterns) == 0 {
		return fmt.Errorf("subscription %s: at least one topic pattern is required", sub.Group)
	}
	if sub.Concurrency < 0 || sub.MaxDeliveries < 0 || sub.VisibilityTimeout < 0 {
		return fmt.Errorf("subscription %s: Concurrency, MaxDeliveries and VisibilityTimeout must not be negative", sub.Group)
	}
	if sub.StartFrom.mode == startAt && g.cfg.DB == nil {
		return fmt.Errorf("subscription %s: starting from a time needs GroupsConfig.DB", sub.Group)
	}
	sub.Concurrency = cmp.Or(sub.Concurrency, 1)
	sub.MaxDeliveries = cmp.Or(sub.MaxDeliveries, 5)
	sub.VisibilityTimeout = cmp.Or(sub.VisibilityTimeout, 30*time.Second)
	// The group's deferral count shows from the start, at zero.
	g.tel.deferred(sub.Group, 0)
	r := &runner{g: g, sub: sub, retry: g.cfg.Names.Retry(sub.Group), dlq: g.cfg.Names.DLQ(sub.Group)}
	r.log = g.log.With("group", sub.Group)
	seen := make(map[string]bool)
	for _, s := range sub.Patterns {
		p, err := CompilePattern(s)
		if err != nil {
			return fmt.Errorf("subscription %s: %w", sub.Group, err)
		}
		r.patterns = append(r.patterns, p)
		for _, d := range p.Domains() {
			for _, st := range g.cfg.Names.Streams(d) {
				if !seen[st] {
					seen[st] = true
					r.streams = append(r.streams, st)
				}
			}
		}
	}
	r.all = append(append([]string(nil), r.streams...), r.retry)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stop != nil {
		return fmt.Errorf("subscription %s: add subscriptions before Start", sub.Group)
	}
	for _, o := range g.runners {
		if o.sub.Group == sub.Group {
			return fmt.Errorf("subscription %s: group already added", sub.Group)
		}
	}
	g.runners = append(g.runners, r)
	return nil
}

// Start creates every group on the streams its patterns can match and
// starts reading. It fails if Redis cannot be reached.
func (g *Groups) Start(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stop != nil {
		return errors.New("groups: already started")
	}
	groups := make([]string, 0, len(g.runners))
	for _, r := range g.runners {
		if err := r.setup(ctx); err != nil {
			return err
		}
		groups = append(groups, r.sub.Group)
	}
	if g.cfg.Registry != nil {
		if _, err := register(g.cfg.Registry, prometheus.Collector(newHoldsCollector(g.cfg.Redis, g.cfg.Names, groups))); err != nil {
			return fmt.Errorf("groups: metrics: %w", err)
		}
	}
	base := context.WithoutCancel(ctx)
	handlerCtx, abort := context.WithCancel(base)
	loopCtx, stop := context.WithCancel(handlerCtx)
	g.stop, g.abort, g.done = stop, abort, make(chan struct{})
	var wg sync.WaitGroup
	for _, r := range g.runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.run(loopCtx, handlerCtx)
		}()
	}
	if g.cfg.DB != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.runPauseSync(loopCtx)
		}()
	}
	go func() { wg.Wait(); close(g.done) }()
	g.log.Info("consumer groups started", "subscriptions", len(g.runners))
	return nil
}

// Stop stops reading and waits for handlers in flight to finish and be
// acknowledged. When ctx ends first, the handlers' context is cancelled and
// their entries stay pending for another consumer. It may be called twice
// or without Start.
func (g *Groups) Stop(ctx context.Context) error {
	g.mu.Lock()
	stop, abort, done := g.stop, g.abort, g.done
	g.stop, g.abort = nil, nil
	g.mu.Unlock()
	if stop == nil {
		return nil
	}
	stop()
	select {
	case <-done:
		abort()
		g.log.Info("consumer groups stopped")
		return nil
	case <-ctx.Done():
		abort()
		<-done
		return fmt.Errorf("stop consumer groups: %w", ctx.Err())
	}
}
