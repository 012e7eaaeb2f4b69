package console

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/stream"
)

// Snapshot is the state of the backbone at one moment: what the overview
// shows, the live feed sends and the alert conditions are evaluated on.
type Snapshot struct {
	At     time.Time    `json:"at"`
	Outbox OutboxFigure `json:"outbox"`
	// RelayPerSecond is how many entries the streams gained a second since
	// the previous snapshot; nil on the first.
	RelayPerSecond *float64         `json:"relay_per_second"`
	Streams        []StreamFigure   `json:"streams"`
	Groups         []GroupFigure    `json:"groups"`
	Queues         []QueueFigure    `json:"queues"`
	Schedules      []ScheduleFigure `json:"schedules"`
	SSEClients     int              `json:"sse_clients"`
	SSEDropped     uint64           `json:"sse_dropped"`
	Printers       PrinterFigure    `json:"printers"`
	// FailedAccounts is how many accounts the latest invoice run left failed.
	FailedAccounts int64          `json:"failed_accounts"`
	Business       Business       `json:"business"`
	Alerts         []Alert        `json:"alerts"`
	Redrives       []RedriveState `json:"redrives"`
	// Problems lists the parts that could not be read.
	Problems []string `json:"problems"`
}

// OutboxFigure is the relay's backlog.
type OutboxFigure struct {
	Backlog          int64   `json:"backlog"`
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
}

// StreamFigure is one domain stream.
type StreamFigure struct {
	Name         string `json:"name"`
	Length       int64  `json:"length"`
	EntriesAdded int64  `json:"entries_added"`
}

// GroupFigure is one consumer group on one stream.
type GroupFigure struct {
	Name                    string   `json:"name"`
	Stream                  string   `json:"stream"`
	Lag                     *int64   `json:"lag"`
	Pending                 int64    `json:"pending"`
	OldestPendingAgeSeconds float64  `json:"oldest_pending_age_seconds"`
	DeadLetters             int64    `json:"dead_letters"`
	Redriven                int64    `json:"redriven"`
	Consumers               []string `json:"consumers"`
	Paused                  bool     `json:"paused"`
}

// QueueFigure is one asynq queue by task state.
type QueueFigure struct {
	Name      string `json:"name"`
	Paused    bool   `json:"paused"`
	Pending   int    `json:"pending"`
	Active    int    `json:"active"`
	Scheduled int    `json:"scheduled"`
	Retry     int    `json:"retry"`
	Archived  int    `json:"archived"`
	Completed int    `json:"completed"`
}

// ScheduleFigure is one schedule: its last success and next firing.
type ScheduleFigure struct {
	Name        string     `json:"name"`
	Spec        string     `json:"spec"`
	LastSuccess *time.Time `json:"last_success"`
	NextRunAt   *time.Time `json:"next_run_at"`
	CheckedAt   time.Time  `json:"checked_at"`
}

// PrinterFigure counts the polling printers.
type PrinterFigure struct {
	Online  int `json:"online"`
	Offline int `json:"offline"`
}

// snapshotter computes snapshots, sharing one among the requests of a
// refresh interval, and remembers the samples the rate-based alerts need.
type snapshotter struct {
	c *Console

	mu      sync.Mutex
	last    *Snapshot
	samples []sample // oldest first, up to an hour
}

// sample is what a snapshot keeps for the alerts that look back.
type sample struct {
	at       time.Time
	added    int64
	archived map[string]int
	dropped  uint64
}

// get returns a snapshot at most half a refresh interval old.
func (s *snapshotter) get(ctx context.Context) *Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.c.cfg.Now()
	if s.last != nil && now.Sub(s.last.At) < s.c.cfg.Refresh/2 {
		return s.last
	}
	snap := s.c.compute(ctx, now)
	s.record(snap)
	snap.Alerts = evaluate(snap, s.samples)
	s.last = snap
	return snap
}

func (s *snapshotter) record(snap *Snapshot) {
	cur := sample{at: snap.At, archived: map[string]int{}, dropped: snap.SSEDropped}
	for _, st := range snap.Streams {
		cur.added += st.EntriesAdded
	}
	for _, q := range snap.Queues {
		cur.archived[q.Name] = q.Archived
	}
	if n := len(s.samples); n > 0 {
		prev := s.samples[n-1]
		if dt := cur.at.Sub(prev.at).Seconds(); dt > 0 && cur.added >= prev.added {
			r := float64(cur.added-prev.added) / dt
			snap.RelayPerSecond = &r
		}
	}
	s.samples = append(s.samples, cur)
	cut := 0
	for cut < len(s.samples)-1 && snap.At.Sub(s.samples[cut].at) > time.Hour {
		cut++
	}
	s.samples = slices.Delete(s.samples, 0, cut)
}

// compute reads every part; a part that fails is named in Problems and
// the rest is still shown.
func (c *Console) compute(ctx context.Context, now time.Time) *Snapshot {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	snap := &Snapshot{At: now, Streams: []StreamFigure{}, Groups: []GroupFigure{}, Queues: []QueueFigure{}, Schedules: []ScheduleFigure{}, Problems: []string{}}
	problem := func(part string, err error) {
		snap.Problems = append(snap.Problems, part+": "+err.Error())
		c.log.Warn("console: read", "part", part, "err", err)
	}
	if c.cfg.Streams != nil {
		ov, err := c.cfg.Streams.Inspect(ctx)
		if err != nil {
			problem("streams", err)
		}
		for _, st := range ov.Streams {
			snap.Streams = append(snap.Streams, StreamFigure{Name: st.Name, Length: st.Length, EntriesAdded: st.EntriesAdded})
			for _, g := range st.Groups {
				gf := GroupFigure{
					Name: g.Name, Stream: st.Name, Lag: g.Lag, Pending: g.Pending, OldestPendingAgeSeconds: g.OldestPendingAge.Seconds(),
					DeadLetters: g.DLQDepth, Redriven: g.RetryDepth, Paused: g.Paused, Consumers: []string{},
				}
				for _, cs := range g.Consumers {
					gf.Consumers = append(gf.Consumers, cs.Name)
				}
				snap.Groups = append(snap.Groups, gf)
			}
		}
		if ov.Outbox != nil {
			snap.Outbox = OutboxFigure{Backlog: ov.Outbox.Backlog, OldestAgeSeconds: ov.Outbox.OldestAge.Seconds()}
		}
	} else {
		b, err := store.OutboxBacklog(ctx, c.cfg.DB)
		if err != nil {
			problem("outbox", err)
		}
		snap.Outbox.Backlog = b.Count
		if b.Oldest != nil {
			snap.Outbox.OldestAgeSeconds = max(now.Sub(*b.Oldest).Seconds(), 0)
		}
	}
	if qs, err := c.queues(); err != nil {
		problem("queues", err)
	} else {
		snap.Queues = qs
	}
	if err := c.schedules(ctx, snap); err != nil {
		problem("schedules", err)
	}
	if c.cfg.Hub != nil {
		st := c.cfg.Hub.Stats()
		snap.SSEClients, snap.SSEDropped = st.Subscribers, st.Dropped
	}
	if pcs, err := store.CountPrinters(ctx, c.cfg.DB, now); err != nil {
		problem("printers", err)
	} else {
		for _, p := range pcs {
			snap.Printers.Online += p.Online
			snap.Printers.Offline += p.Total - p.Online
		}
	}
	if n, err := store.LatestRunFailedAccounts(ctx, c.cfg.DB); err != nil {
		problem("invoicing", err)
	} else {
		snap.FailedAccounts = n
	}
	if b, err := c.business(ctx, now); err != nil {
		problem("business figures", err)
	} else {
		snap.Business = b
	}
	snap.Redrives = c.jobs.states()
	return snap
}

func (c *Console) queues() ([]QueueFigure, error) {
	out := []QueueFigure{}
	if c.cfg.Tasks == nil {
		return out, nil
	}
	names, err := c.cfg.Tasks.Queues()
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	for _, n := range names {
		qi, err := c.cfg.Tasks.GetQueueInfo(n)
		if err != nil {
			return nil, err
		}
		out = append(out, QueueFigure{
			Name: n, Paused: qi.Paused, Pending: qi.Pending, Active: qi.Active, Scheduled: qi.Scheduled,
			Retry: qi.Retry, Archived: qi.Archived, Completed: qi.Completed,
		})
	}
	return out, nil
}

func (c *Console) schedules(ctx context.Context, snap *Snapshot) error {
	rows, err := store.ListSchedules(ctx, c.cfg.DB)
	if err != nil {
		return err
	}
	succ, err := store.LastScheduleSuccesses(ctx, c.cfg.DB)
	if err != nil {
		return err
	}
	last := map[string]time.Time{}
	for _, s := range succ {
		last[s.Schedule] = s.At
	}
	for _, r := range rows {
		sf := ScheduleFigure{Name: r.Name, Spec: r.Spec, NextRunAt: r.NextRunAt, CheckedAt: r.CheckedAt}
		if at, ok := last[r.Name]; ok {
			sf.LastSuccess = &at
		}
		snap.Schedules = append(snap.Schedules, sf)
	}
	// A schedule that succeeded but no scheduler records any more still
	// counts for the missed-run alert.
	for name, at := range last {
		if !slices.ContainsFunc(rows, func(r store.Schedule) bool { return r.Name == name }) {
			snap.Schedules = append(snap.Schedules, ScheduleFigure{Name: name, LastSuccess: &at})
		}
	}
	return nil
}

// errNoStreams answers the pages that need stream administration.
var errNoStreams = errors.New("stream administration is not configured on this server")

// streamAdmin returns the stream admin or nil with an error page sent.
func (c *Console) streamAdmin() (*stream.Admin, error) {
	if c.cfg.Streams == nil {
		return nil, errNoStreams
	}
	return c.cfg.Streams, nil
}
