package stream

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/bazaarhq/bazaar/sql/store"
)

// register adds c to reg and returns it, or the collector already there
// under the same name: a second relay or Groups in one process (tests,
// embedding) shares the first one's series. A nil reg leaves c unexported.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if reg == nil {
		return c, nil
	}
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}

// latencyBuckets span a relay woken at once (milliseconds) to one waiting
// for Redis to come back (minutes).
var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}

// handlerBuckets span a handler that only enqueues a task to one that waits
// on a slow database.
var handlerBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// relayTelemetry is what a Relay reports: published events and their
// delay, and a producer span per event when tracing is on.
type relayTelemetry struct {
	tracer    trace.Tracer
	published prometheus.Counter
	latency   prometheus.Histogram
}

func newRelayTelemetry(reg prometheus.Registerer, tp trace.TracerProvider) (relayTelemetry, error) {
	t := relayTelemetry{tracer: tracerOf(tp)}
	var err error
	t.published, err = register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "bazaar_relay_published_total",
		Help: "Events the relay published to streams.",
	}))
	if err != nil {
		return t, err
	}
	t.latency, err = register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "bazaar_relay_publish_latency_seconds",
		Help:    "Delay from recording an event in the outbox to its publication on a stream.",
		Buckets: latencyBuckets,
	}))
	return t, err
}

// observe counts the events of a committed batch that were published and
// their delay since they were recorded. pubs is a subsequence of events.
func (t relayTelemetry) observe(events []store.Event, pubs []store.Publication, now time.Time) {
	j := 0
	for _, e := range events {
		if j == len(pubs) {
			break
		}
		if e.Seq != pubs[j].Seq {
			continue
		}
		j++
		t.latency.Observe(max(now.Sub(e.CreatedAt), 0).Seconds())
	}
	t.published.Add(float64(j))
}

// publishSpans returns room for the producer spans of n events, or nil
// when tracing is off.
func (t relayTelemetry) publishSpans(n int) []trace.Span {
	if t.tracer == nil {
		return nil
	}
	return make([]trace.Span, n)
}

// groupTelemetry is what Groups report per handled event: its duration
// and failures by group and event type, and a consumer span when tracing
// is on.
type groupTelemetry struct {
	tracer   trace.Tracer
	duration *prometheus.HistogramVec
	errors   *prometheus.CounterVec
	deferral *prometheus.CounterVec
}

// deferred counts entries a group moved to their sellers' parked streams
// for being over the seller's share of a batch.
func (t *groupTelemetry) deferred(group string, n int) {
	t.deferral.WithLabelValues(group).Add(float64(n))
}

func newGroupTelemetry(reg prometheus.Registerer, tp trace.TracerProvider) (*groupTelemetry, error) {
	t := &groupTelemetry{tracer: tracerOf(tp)}
	var err error
	t.duration, err = register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "bazaar_consumer_handler_duration_seconds",
		Help:    "Time a consumer group's handler took per event, by group and event type.",
		Buckets: handlerBuckets,
	}, []string{"group", "event_type"}))
	if err != nil {
		return nil, err
	}
	t.errors, err = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bazaar_consumer_handler_errors_total",
		Help: "Handler failures by group and event type; every failed delivery counts.",
	}, []string{"group", "event_type"}))
	if err != nil {
		return nil, err
	}
	t.deferral, err = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bazaar_consumer_deferred_total",
		Help: "Events a consumer group deferred to their seller's parked stream, the seller being over its share of a batch that held others' work or was full.",
	}, []string{"group"}))
	if err != nil {
		return nil, err
	}
	return t, nil
}

// handling is one handler call being observed.
type handling struct {
	t     *groupTelemetry
	span  trace.Span
	group string
	typ   string
	start time.Time
}

// start begins observing a handler call; see startHandle for what it does
// to ctx and msg.
func (t *groupTelemetry) start(ctx context.Context, group string, msg *Message) (context.Context, handling) {
	ctx, span := startHandle(ctx, t.tracer, group, msg)
	return ctx, handling{t: t, span: span, group: group, typ: msg.Type, start: time.Now()}
}

// end records the call's duration and outcome. A failure caused by
// stopping (ctx ended) is no handler error.
func (h handling) end(ctx context.Context, err error) {
	h.t.duration.WithLabelValues(h.group, h.typ).Observe(time.Since(h.start).Seconds())
	if err != nil && ctx.Err() == nil {
		h.t.errors.WithLabelValues(h.group, h.typ).Inc()
	}
	endSpan(h.span, err)
}

// CollectParts picks what a Collector reports.
type CollectParts uint8

// The parts of the backbone a Collector can report.
const (
	// CollectOutbox reports the outbox backlog and the age of its oldest
	// event (needs CollectorConfig.DB).
	CollectOutbox CollectParts = 1 << iota
	// CollectStreams reports each stream's length (needs Redis).
	CollectStreams
	// CollectGroups reports each consumer group's lag, pending entries,
	// oldest pending age and dead letters (needs Redis).
	CollectGroups
	// CollectAll reports everything.
	CollectAll = CollectOutbox | CollectStreams | CollectGroups
)

// CollectorConfig configures a Collector. Zero fields take the defaults noted.
type CollectorConfig struct {
	// Redis holds the streams and groups; without it they are left out.
	Redis redis.UniversalClient
	// DB holds the outbox; without it the outbox is left out.
	DB    *sqlx.DB
	Names Names
	// Parts picks what to report (default CollectAll).
	Parts CollectParts
	// Timeout bounds the queries of one scrape (default 5s).
	Timeout time.Duration
	Logger  *slog.Logger
}

// Collector is a Prometheus collector that reads the state of the event
// backbone when scraped: the outbox from PostgreSQL, streams and consumer
// groups from Redis (through Admin.Inspect). The state is shared by every
// process, so any one process reporting it is enough; queries of one
// scrape are bounded by Timeout. When a store cannot be read its series are
// left out of that scrape (and the failure logged), so the outbox is still
// reported while Redis is down, which is when its growing age matters.
type Collector struct {
	cfg   CollectorConfig
	log   *slog.Logger
	admin *Admin

	backlog, oldestUnpublished               *prometheus.Desc
	length                                   *prometheus.Desc
	lag, pending, oldestPending, deadLetters *prometheus.Desc
}

// NewCollector builds a Collector; register it with a prometheus.Registerer.
func NewCollector(cfg CollectorConfig) (*Collector, error) {
	cfg.Parts = cmp.Or(cfg.Parts, CollectAll)
	cfg.Timeout = cmp.Or(cfg.Timeout, 5*time.Second)
	cfg.Logger = cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	if cfg.Redis == nil {
		cfg.Parts &^= CollectStreams | CollectGroups
	}
	if cfg.DB == nil {
		cfg.Parts &^= CollectOutbox
	}
	c := &Collector{
		cfg: cfg,
		log: cfg.Logger.With("component", "stream_metrics"),
		backlog: prometheus.NewDesc("bazaar_outbox_backlog",
			"Outbox events not yet published.", nil, nil),
		oldestUnpublished: prometheus.NewDesc("bazaar_outbox_oldest_unpublished_age_seconds",
			"Age of the oldest unpublished outbox event (0 when none waits).", nil, nil),
		length: prometheus.NewDesc("bazaar_stream_length",
			"Entries in each stream (partition).", []string{"stream"}, nil),
		lag: prometheus.NewDesc("bazaar_consumer_lag",
			"Entries of the stream not yet delivered to the group.", []string{"group", "stream"}, nil),
		pending: prometheus.NewDesc("bazaar_consumer_pending",
			"Entries delivered to the group and not yet acknowledged.", []string{"group"}, nil),
		oldestPending: prometheus.NewDesc("bazaar_consumer_oldest_pending_age_seconds",
			"How long the group's oldest unacknowledged entry has waited since it was published.", []string{"group"}, nil),
		deadLetters: prometheus.NewDesc("bazaar_dlq_depth",
			"Dead letters waiting in the group's dead-letter stream.", []string{"group"}, nil),
	}
	if cfg.Redis != nil {
		a, err := NewAdmin(AdminConfig{Redis: cfg.Redis, Names: cfg.Names})
		if err != nil {
			return nil, err
		}
		c.admin = a
	}
	return c, nil
}

// Describe sends the descriptors of every series the Collector may report.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.backlog, c.oldestUnpublished, c.length, c.lag, c.pending, c.oldestPending, c.deadLetters,
	} {
		ch <- d
	}
}

// Collect reads the state and sends its series.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	if c.cfg.Parts&CollectOutbox != 0 {
		b, err := store.OutboxBacklog(ctx, c.cfg.DB)
		if err != nil {
			c.log.Warn("metrics: read the outbox", "err", err)
		} else {
			age := 0.0
			if b.Oldest != nil {
				age = max(time.Since(*b.Oldest), 0).Seconds()
			}
			ch <- prometheus.MustNewConstMetric(c.backlog, prometheus.GaugeValue, float64(b.Count))
			ch <- prometheus.MustNewConstMetric(c.oldestUnpublished, prometheus.GaugeValue, age)
		}
	}
	if c.cfg.Parts&(CollectStreams|CollectGroups) == 0 {
		return
	}
	ov, err := c.admin.Inspect(ctx)
	if err != nil {
		c.log.Warn("metrics: inspect streams", "err", err)
		return
	}
	type groupState struct {
		pending int64
		oldest  time.Duration
		dlq     int64
	}
	groups := map[string]*groupState{}
	for _, s := range ov.Streams {
		if c.cfg.Parts&CollectStreams != 0 {
			ch <- prometheus.MustNewConstMetric(c.length, prometheus.GaugeValue, float64(s.Length), s.Name)
		}
		if c.cfg.Parts&CollectGroups == 0 {
			continue
		}
		for _, g := range s.Groups {
			if g.Lag != nil {
				ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(*g.Lag), g.Name, s.Name)
			}
			st := groups[g.Name]
			if st == nil {
				st = &groupState{}
				groups[g.Name] = st
			}
			st.pending += g.Pending
			st.oldest = max(st.oldest, g.OldestPendingAge)
			st.dlq = g.DLQDepth // the same on each of the group's streams
		}
	}
	for name, st := range groups {
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(st.pending), name)
		ch <- prometheus.MustNewConstMetric(c.oldestPending, prometheus.GaugeValue, st.oldest.Seconds(), name)
		ch <- prometheus.MustNewConstMetric(c.deadLetters, prometheus.GaugeValue, float64(st.dlq), name)
	}
}
