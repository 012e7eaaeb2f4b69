package stream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/bazaarhq/bazaar/sql/store"
)

// The consistency auditor compares what PostgreSQL says was published
// (each event's stream and entry id) with what the streams hold. Within a
// stream's trim horizon, from its first entry on, every event marked
// published must still be there under the id the relay recorded; one that
// is not was lost by Redis (a host crash under appendfsync everysec or no,
// a failover to a replica that lacked the last writes, a deletion by hand).
// Entries below the first one were trimmed, as configured, and are not
// reported. With repair the auditor publishes each missing event again,
// with the same envelope, as a new entry of its stream and records the new
// entry id, so every consumer group sees it and the next audit finds
// nothing; handlers absorb a repeat as they absorb any redelivery.
//
// The auditor also reports stream entries that have no event row (written
// by something other than the relay) and dead letters older than a bound,
// which wait for a person. It reads PostgreSQL only through
// store.PublishedBetween and store.EventsByID.

// auditLease serialises audits: two relays repairing at once would each
// publish a missing event again.
const auditLease = "stream-audit"

// ErrAuditBusy means another process holds the audit lease.
var ErrAuditBusy = errors.New("another audit is running")

// auditSample caps how many findings of each kind a report lists; the
// counts are always complete.
const auditSample = 100

// AuditConfig configures an Auditor. Zero fields take the defaults noted.
type AuditConfig struct {
	DB     *sqlx.DB
	Redis  redis.UniversalClient
	Names  Names
	Logger *slog.Logger
	// Registry receives the audit metrics; nil leaves them unexported.
	Registry prometheus.Registerer
	// Interval is the time between the periodic audits Start runs
	// (default 5m).
	Interval time.Duration
	// Window is how far back a periodic audit looks, by event time
	// (default 24h).
	Window time.Duration
	// Repair makes periodic audits publish missing events again.
	Repair bool
	// DLQMaxAge reports dead letters older than this (default 24h).
	DLQMaxAge time.Duration
	// BatchSize is how many events or entries one step compares
	// (default 1000).
	BatchSize int
	// Holder names this process in the audit lease (default hostname-pid).
	Holder string
	// LeaseTTL bounds how long a crashed audit holds others off
	// (default 10m); a running audit renews it after every page of
	// BatchSize events and every stream.
	LeaseTTL time.Duration
}

// AuditOptions are the parameters of one audit.
type AuditOptions struct {
	// Since is the oldest event time (and entry time) looked at.
	Since time.Time
	// Repair publishes missing events again.
	Repair bool
}

// OrphanEntry is a stream entry whose event id has no event row.
type OrphanEntry struct {
	Stream, EntryID string
	// EventID is the entry's id field, empty when it has none.
	EventID string
}

// StaleDeadLetter is a dead letter older than AuditConfig.DLQMaxAge.
type StaleDeadLetter struct {
	Group, ID, EventID string
	Age                time.Duration
}

// AuditReport is what one audit found. The counts are complete; the lists
// hold the first findings of each kind.
type AuditReport struct {
	Since, Until time.Time
	// Streams and Checked count the streams looked at and the published
	// events compared with them.
	Streams, Checked int
	// Missing counts events marked published but absent from their stream
	// within its trim horizon; Repaired those published again.
	Missing, Repaired int
	MissingEvents     []store.PublishedEntry
	Orphans           int
	OrphanEntries     []OrphanEntry
	// DLQMaxAge is the age beyond which dead letters were counted.
	DLQMaxAge        time.Duration
	StaleDeadLetters int
	StaleEntries     []StaleDeadLetter
}

// Consistent reports whether nothing is left to look at: every missing
// event was repaired and there are no orphans or stale dead letters.
func (r AuditReport) Consistent() bool {
	return r.Missing == r.Repaired && r.Orphans == 0 && r.StaleDeadLetters == 0
}

// Auditor runs consistency audits, on demand (Run) or periodically
// (Start).
type Auditor struct {
	cfg AuditConfig
	log *slog.Logger
	tel auditTelemetry

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// NewAuditor validates cfg and returns a stopped auditor.
func NewAuditor(cfg AuditConfig) (*Auditor, error) {
	if cfg.DB == nil || cfg.Redis == nil {
		return nil, errors.New("auditor: DB and Redis are required")
	}
	if cfg.Interval < 0 || cfg.Window < 0 || cfg.DLQMaxAge < 0 || cfg.BatchSize < 0 || cfg.LeaseTTL < 0 {
		return nil, errors.New("auditor: Interval, Window, DLQMaxAge, BatchSize and LeaseTTL must not be negative")
	}
	if cfg.Holder == "" {
		host, _ := os.Hostname()
		cfg.Holder = fmt.Sprintf("%s-%d", cmp.Or(host, "auditor"), os.Getpid())
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	cfg.Interval = cmp.Or(cfg.Interval, 5*time.Minute)
	cfg.Window = cmp.Or(cfg.Window, 24*time.Hour)
	cfg.DLQMaxAge = cmp.Or(cfg.DLQMaxAge, 24*time.Hour)
	cfg.BatchSize = cmp.Or(cfg.BatchSize, 1000)
	cfg.LeaseTTL = cmp.Or(cfg.LeaseTTL, 10*time.Minute)
	tel, err := newAuditTelemetry(cfg.Registry)
	if err != nil {
		return nil, fmt.Errorf("auditor: metrics: %w", err)
	}
	return &Auditor{cfg: cfg, log: cfg.Logger.With("component", "auditor"), tel: tel}, nil
}

// Start launches the periodic audit: one at once, then one every
// Interval, each over the last Window. It runs until Stop.
func (a *Auditor) Start(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cancel != nil {
		return errors.New("auditor: already started")
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.cancel, a.done = cancel, make(chan struct{})
	go func() {
		defer close(a.done)
		a.loop(runCtx)
	}()
	a.log.Info("auditor started", "interval", a.cfg.Interval.String(), "window", a.cfg.Window.String(), "repair", a.cfg.Repair)
	return nil
}

// Stop ends the periodic audit, cancelling one in flight, and waits for it
// or for ctx. It may be called twice or without Start.
func (a *Auditor) Stop(ctx context.Context) error {
	a.mu.Lock()
	cancel, done := a.cancel, a.done
	a.cancel = nil
	a.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop auditor: %w", ctx.Err())
	}
}

func (a *Auditor) loop(ctx context.Context) {
	t := time.NewTicker(a.cfg.Interval)
	defer t.Stop()
	for {
		rep, err := a.Run(ctx, AuditOptions{Since: time.Now().Add(-a.cfg.Window), Repair: a.cfg.Repair})
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, ErrAuditBusy):
			a.log.Debug("audit skipped: another process is auditing")
		case err != nil:
			a.log.Error("audit", "err", err)
		case rep.Missing > 0 || rep.Orphans > 0 || rep.StaleDeadLetters > 0:
			a.log.Warn("audit found inconsistencies", "missing", rep.Missing, "repaired", rep.Repaired,
				"orphans", rep.Orphans, "stale_dead_letters", rep.StaleDeadLetters, "checked", rep.Checked)
		default:
			a.log.Debug("audit found the streams consistent", "checked", rep.Checked)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Run audits every domain stream from opts.Since to now under the audit
// lease; it fails with ErrAuditBusy while another process audits. The
// metrics are updated when it completes.
func (a *Auditor) Run(ctx context.Context, opts AuditOptions) (AuditReport, error) {
	if err := a.lease(ctx); err != nil {
		return AuditReport{}, err
	}
	defer func() {
		_ = store.ReleaseLease(context.WithoutCancel(ctx), a.cfg.DB, auditLease, a.cfg.Holder)
	}()
	rep := AuditReport{Since: opts.Since, Until: time.Now(), DLQMaxAge: a.cfg.DLQMaxAge}
	for _, d := range Domains {
		for _, s := range a.cfg.Names.Streams(d) {
			rep.Streams++
			if err := a.auditStream(ctx, s, opts, &rep); err != nil {
				return rep, fmt.Errorf("audit %s: %w", s, err)
			}
			if err := a.lease(ctx); err != nil {
				return rep, err
			}
		}
	}
	if err := a.auditDeadLetters(ctx, &rep); err != nil {
		return rep, err
	}
	a.tel.observe(rep)
	return rep, nil
}

// lease takes or renews the audit lease.
func (a *Auditor) lease(ctx context.Context) error {
	_, ok, err := store.AcquireLease(ctx, a.cfg.DB, auditLease, a.cfg.Holder, a.cfg.LeaseTTL)
	if err != nil {
		return err
	}
	if !ok {
		return ErrAuditBusy
	}
	return nil
}

// auditStream compares one stream with the event log: published events
// missing from it, then entries with no event row.
func (a *Auditor) auditStream(ctx context.Context, stream string, opts AuditOptions, rep *AuditReport) error {
	var after int64
	for {
		page, err := store.PublishedBetween(ctx, a.cfg.DB, stream, opts.Since, rep.Until, after, a.cfg.BatchSize)
		if err != nil {
			return err
		}
		if len(page) == 0 {
			break
		}
		after = page[len(page)-1].Seq
		rep.Checked += len(page)
		missing, err := a.missing(ctx, stream, page)
		if err != nil {
			return err
		}
		rep.Missing += len(missing)
		for _, m := range missing {
			if len(rep.MissingEvents) < auditSample {
				rep.MissingEvents = append(rep.MissingEvents, m)
			}
		}
		if opts.Repair && len(missing) > 0 {
			n, err := a.republish(ctx, missing)
			rep.Repaired += n
			if err != nil {
				return err
			}
		}
		// Renewed after every page, so a long audit keeps the lease.
		if err := a.lease(ctx); err != nil {
			return err
		}
	}
	return a.orphans(ctx, stream, opts.Since, rep)
}

// missing returns the events of page whose entry is not in stream although
// the stream still reaches back to it.
func (a *Auditor) missing(ctx context.Context, stream string, page []store.PublishedEntry) ([]store.PublishedEntry, error) {
	pipe := a.cfg.Redis.Pipeline()
	cmds := make([]*redis.XMessageSliceCmd, len(page))
	for i, p := range page {
		cmds[i] = pipe.XRangeN(ctx, stream, p.StreamID, p.StreamID, 1)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read entries: %w", err)
	}
	// The horizon is read after the entries: trimming only moves it
	// forward, so an entry trimmed meanwhile is below it and not reported.
	horizon, err := trimHorizon(ctx, a.cfg.Redis, stream)
	if err != nil {
		return nil, err
	}
	var out []store.PublishedEntry
	for i, p := range page {
		id, err := parseXID(p.StreamID)
		if err != nil {
			return nil, fmt.Errorf("event %s: %w", p.ID, err)
		}
		if id.less(horizon) {
			continue // trimmed
		}
		msgs := cmds[i].Val()
		if len(msgs) == 1 {
			if got, _ := msgs[0].Values[FieldID].(string); got == p.ID {
				continue
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// trimHorizon is the lowest entry id stream still holds: its first entry,
// or past its last generated id when it is empty (all trimmed). A stream
// that does not exist lost everything, so its horizon is zero.
func trimHorizon(ctx context.Context, rdb redis.UniversalClient, stream string) (xid, error) {
	info, err := rdb.XInfoStream(ctx, stream).Result()
	if err != nil {
		if isMissingKey(err) {
			return xid{}, nil
		}
		return xid{}, fmt.Errorf("inspect: %w", err)
	}
	if info.Length > 0 && info.FirstEntry.ID != "" {
		return parseXID(info.FirstEntry.ID)
	}
	last, err := parseXID(info.LastGeneratedID)
	if err != nil {
		return xid{}, err
	}
	return last.next(), nil
}

// republish adds the events of missing to their streams again and records
// the new entry ids, as the relay does, holding the publish lock shared so
// a replay cut never sees one half done. It returns how many it published.
func (a *Auditor) republish(ctx context.Context, missing []store.PublishedEntry) (int, error) {
	ids := make([]uuid.UUID, 0, len(missing))
	streams := make(map[string]string, len(missing))
	for _, m := range missing {
		id, err := uuid.Parse(m.ID)
		if err != nil {
			return 0, fmt.Errorf("event id %q: %w", m.ID, err)
		}
		ids = append(ids, id)
		streams[m.ID] = m.Stream
	}
	events, err := store.EventsByID(ctx, a.cfg.DB, ids)
	if err != nil {
		return 0, err
	}
	var pubs []store.Publication
	err = store.WithTx(ctx, a.cfg.DB, func(tx *sqlx.Tx) error {
		if err := store.LockPublishShared(ctx, tx); err != nil {
			return err
		}
		pipe := a.cfg.Redis.Pipeline()
		cmds := make([]*redis.StringCmd, len(events))
		for i, e := range events {
			values, err := EnvelopeOf(e).Values()
			if err != nil {
				return err
			}
			cmds[i] = pipe.XAdd(ctx, &redis.XAddArgs{Stream: streams[e.ID.String()], ID: "*", Values: values})
		}
		_, execErr := pipe.Exec(ctx)
		pubs = pubs[:0]
		for i, e := range events {
			if id, err := cmds[i].Result(); err == nil {
				pubs = append(pubs, store.Publication{Seq: e.Seq, Time: e.Time, Stream: streams[e.ID.String()], StreamID: id})
			}
		}
		if err := store.MarkPublished(ctx, tx, pubs); err != nil {
			return err
		}
		if execErr != nil {
			// The added ones are recorded; the rest stay missing for the
			// next audit.
			a.log.Warn("some missing events were not published again", "err", execErr, "added", len(pubs), "missing", len(events))
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("republish: %w", err)
	}
	a.tel.repaired.Add(float64(len(pubs)))
	for _, p := range pubs {
		a.log.Info("missing event published again", "seq", p.Seq, "stream", p.Stream, "stream_id", p.StreamID)
	}
	return len(pubs), nil
}

// orphans pages through the entries of stream added since since and
// counts those whose event id has no event row.
func (a *Auditor) orphans(ctx context.Context, stream string, since time.Time, rep *AuditReport) error {
	start := xid{ms: uint64(max(since.UnixMilli(), 0))}.String()
	end := strconv.FormatInt(rep.Until.UnixMilli(), 10)
	for {
		msgs, err := a.cfg.Redis.XRangeN(ctx, stream, start, end, int64(a.cfg.BatchSize)).Result()
		if err != nil {
			return fmt.Errorf("read entries: %w", err)
		}
		if len(msgs) == 0 {
			return nil
		}
		ids := make([]uuid.UUID, 0, len(msgs))
		for _, m := range msgs {
			if s, _ := m.Values[FieldID].(string); s != "" {
				if id, err := uuid.Parse(s); err == nil {
					ids = append(ids, id)
				}
			}
		}
		events, err := store.EventsByID(ctx, a.cfg.DB, ids)
		if err != nil {
			return err
		}
		known := make(map[string]bool, len(events))
		for _, e := range events {
			known[e.ID.String()] = true
		}
		for _, m := range msgs {
			s, _ := m.Values[FieldID].(string)
			if known[s] {
				continue
			}
			rep.Orphans++
			if len(rep.OrphanEntries) < auditSample {
				rep.OrphanEntries = append(rep.OrphanEntries, OrphanEntry{Stream: stream, EntryID: m.ID, EventID: s})
			}
		}
		last, err := parseXID(msgs[len(msgs)-1].ID)
		if err != nil {
			return err
		}
		start = last.next().String()
	}
}

// auditDeadLetters counts, for every group on the domain streams, the dead
// letters older than DLQMaxAge.
func (a *Auditor) auditDeadLetters(ctx context.Context, rep *AuditReport) error {
	admin := &Admin{cfg: AdminConfig{Redis: a.cfg.Redis, Names: a.cfg.Names}}
	groups, err := admin.Groups(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	cutoff := strconv.FormatInt(now.Add(-a.cfg.DLQMaxAge).UnixMilli(), 10)
	for _, g := range groups {
		key := a.cfg.Names.DLQ(g)
		start := "-"
		for {
			msgs, err := a.cfg.Redis.XRangeN(ctx, key, start, "("+cutoff, int64(a.cfg.BatchSize)).Result()
			if err != nil {
				return fmt.Errorf("dead letters of %s: %w", g, err)
			}
			if len(msgs) == 0 {
				break
			}
			for _, m := range msgs {
				rep.StaleDeadLetters++
				if len(rep.StaleEntries) < auditSample {
					s := StaleDeadLetter{Group: g, ID: m.ID}
					s.EventID, _ = m.Values[FieldID].(string)
					if t, ok := EntryTime(m.ID); ok {
						s.Age = now.Sub(t)
					}
					rep.StaleEntries = append(rep.StaleEntries, s)
				}
			}
			start = "(" + msgs[len(msgs)-1].ID
		}
	}
	return nil
}

// auditTelemetry is what the auditor reports after each completed audit.
type auditTelemetry struct {
	missing, orphans, stale, lastRun prometheus.Gauge
	repaired                         prometheus.Counter
}

func newAuditTelemetry(reg prometheus.Registerer) (auditTelemetry, error) {
	var t auditTelemetry
	gauges := []struct {
		g          *prometheus.Gauge
		name, help string
	}{
		{&t.missing, "bazaar_audit_missing_events", "Events marked published but missing from their stream within its trim horizon, found by the last audit (before any repair)."},
		{&t.orphans, "bazaar_audit_orphan_entries", "Stream entries with no event row, found by the last audit."},
		{&t.stale, "bazaar_audit_stale_dead_letters", "Dead letters older than the audit's bound, found by the last audit."},
		{&t.lastRun, "bazaar_audit_last_run_timestamp_seconds", "When the last audit completed, as a Unix time."},
	}
	for _, g := range gauges {
		var err error
		if *g.g, err = register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: g.name, Help: g.help})); err != nil {
			return t, err
		}
	}
	var err error
	t.repaired, err = register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "bazaar_audit_repaired_events_total",
		Help: "Missing events the auditor published again.",
	}))
	return t, err
}

func (t auditTelemetry) observe(rep AuditReport) {
	t.missing.Set(float64(rep.Missing))
	t.orphans.Set(float64(rep.Orphans))
	t.stale.Set(float64(rep.StaleDeadLetters))
	t.lastRun.Set(float64(time.Now().Unix()))
}
