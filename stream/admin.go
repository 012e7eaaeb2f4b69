package stream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"

	"github.com/bazaarhq/bazaar/sql/store"
)

// Errors of the stream operations people run (API and CLI).
var (
	// ErrUnknownGroup means no stream has a consumer group of that name.
	ErrUnknownGroup = errors.New("unknown consumer group")
	// ErrUnknownEntry means the dead-letter stream has no entry with that id.
	ErrUnknownEntry = errors.New("no such dead-letter entry")
	// ErrBadSelection means a redrive or purge named no entries, or several
	// kinds of selection at once.
	ErrBadSelection = errors.New("select entries by ids, by count or all, exactly one of them")
	// ErrReplayTooLarge means a replay would send more events than
	// MaxReplay: pick a later time.
	ErrReplayTooLarge = errors.New("replay too large")
)

// AdminConfig configures Admin.
type AdminConfig struct {
	Redis redis.UniversalClient
	// DB, when set, adds the outbox backlog to Inspect.
	DB    *sqlx.DB
	Names Names
}

// Admin inspects streams and groups and manages dead letters.
type Admin struct{ cfg AdminConfig }

// NewAdmin validates cfg.
func NewAdmin(cfg AdminConfig) (*Admin, error) {
	if cfg.Redis == nil {
		return nil, errors.New("stream admin: Redis is required")
	}
	return &Admin{cfg: cfg}, nil
}

// Overview is the state of the event backbone at one moment.
type Overview struct {
	Streams []StreamStatus
	// Outbox is nil when Admin has no database.
	Outbox *OutboxStatus
}

// StreamStatus describes one domain stream and the groups reading it.
type StreamStatus struct {
	Name            string
	Length          int64
	FirstID, LastID string // empty when the stream is empty
	// EntriesAdded counts every entry ever added to the stream, trimmed
	// or not: its growth over time is the relay's publishing rate.
	EntriesAdded int64
	Groups       []GroupStatus
}

// GroupStatus describes one consumer group on one stream.
type GroupStatus struct {
	Name string
	// Lag is how many entries have not yet been delivered to the group;
	// nil when Redis cannot tell (after deletions or trimming).
	Lag     *int64
	Pending int64
	// OldestPendingAge is how long ago the oldest unacknowledged entry was
	// published; zero when nothing is pending.
	OldestPendingAge time.Duration
	Consumers        []ConsumerStatus
	// DLQDepth and RetryDepth count the group's dead letters and the
	// redriven entries still waiting (the same for each of its streams).
	DLQDepth   int64
	RetryDepth int64
	// Paused tells whether the group is paused (PauseGroup).
	Paused bool
}

// ConsumerStatus describes one consumer of a group.
type ConsumerStatus struct {
	Name    string
	Pending int64
	Idle    time.Duration
}

// OutboxStatus describes the events waiting for the relay.
type OutboxStatus struct {
	Backlog int64
	// OldestAge is how long the oldest waiting event has waited; zero when
	// none waits.
	OldestAge time.Duration
}

func (a *Admin) domainStreams() []string {
	var out []string
	for _, d := range Domains {
		out = append(out, a.cfg.Names.Streams(d)...)
	}
	return out
}

// Inspect reports every domain stream with its groups, and the outbox.
func (a *Admin) Inspect(ctx context.Context) (Overview, error) {
	rdb := a.cfg.Redis
	now := time.Now()
	var ov Overview
	for _, s := range a.domainStreams() {
		st := StreamStatus{Name: s}
		info, err := rdb.XInfoStream(ctx, s).Result()
		switch {
		case isMissingKey(err):
			ov.Streams = append(ov.Streams, st)
			continue
		case err != nil:
			return Overview{}, fmt.Errorf("inspect %s: %w", s, err)
		}
		st.Length, st.FirstID, st.LastID = info.Length, info.FirstEntry.ID, info.LastEntry.ID
		st.EntriesAdded = info.EntriesAdded
		groups, err := rdb.XInfoGroups(ctx, s).Result()
		if err != nil {
			return Overview{}, fmt.Errorf("inspect groups of %s: %w", s, err)
		}
		for _, g := range groups {
			gs := GroupStatus{Name: g.Name, Pending: g.Pending}
			if g.Lag >= 0 {
				lag := g.Lag
				gs.Lag = &lag
			}
			if g.Pending > 0 {
				p, err := rdb.XPending(ctx, s, g.Name).Result()
				if err != nil {
					return Overview{}, fmt.Errorf("inspect pending of %s on %s: %w", g.Name, s, err)
				}
				if t, ok := EntryTime(p.Lower); ok {
					gs.OldestPendingAge = max(now.Sub(t), 0)
				}
			}
			consumers, err := rdb.XInfoConsumers(ctx, s, g.Name).Result()
			if err != nil {
				return Overview{}, fmt.Errorf("inspect consumers of %s on %s: %w", g.Name, s, err)
			}
			for _, c := range consumers {
				gs.Consumers = append(gs.Consumers, ConsumerStatus{Name: c.Name, Pending: c.Pending, Idle: c.Idle})
			}
			if gs.DLQDepth, err = rdb.XLen(ctx, a.cfg.Names.DLQ(g.Name)).Result(); err != nil {
				return Overview{}, fmt.Errorf("dead letters of %s: %w", g.Name, err)
			}
			if gs.RetryDepth, err = rdb.XLen(ctx, a.cfg.Names.Retry(g.Name)).Result(); err != nil {
				return Overview{}, fmt.Errorf("redriven entries of %s: %w", g.Name, err)
			}
			paused, err := rdb.Exists(ctx, a.cfg.Names.Paused(g.Name)).Result()
			if err != nil {
				return Overview{}, fmt.Errorf("pause flag of %s: %w", g.Name, err)
			}
			gs.Paused = paused > 0
			st.Groups = append(st.Groups, gs)
		}
		ov.Streams = append(ov.Streams, st)
	}
	if a.cfg.DB != nil {
		b, err := store.OutboxBacklog(ctx, a.cfg.DB)
		if err != nil {
			return Overview{}, err
		}
		ov.Outbox = &OutboxStatus{Backlog: b.Count}
		if b.Oldest != nil {
			ov.Outbox.OldestAge = max(now.Sub(*b.Oldest), 0)
		}
	}
	return ov, nil
}

// Groups lists the consumer groups found on the domain streams, sorted.
func (a *Admin) Groups(ctx context.Context) ([]string, error) {
	seen := map[string]bool{}
	for _, s := range a.domainStreams() {
		groups, err := a.cfg.Redis.XInfoGroups(ctx, s).Result()
		if isMissingKey(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("inspect groups of %s: %w", s, err)
		}
		for _, g := range groups {
			seen[g.Name] = true
		}
	}
	out := make([]string, 0, len(seen))
	for g := range seen {
		out = append(out, g)
	}
	slices.Sort(out)
	return out, nil
}

// knownGroup returns ErrUnknownGroup unless group exists on some stream
// (a domain stream, or its own retry stream).
func (a *Admin) knownGroup(ctx context.Context, group string) error {
	if group == "" {
		return fmt.Errorf("%w: empty name", ErrUnknownGroup)
	}
	for _, s := range append(a.domainStreams(), a.cfg.Names.Retry(group)) {
		groups, err := a.cfg.Redis.XInfoGroups(ctx, s).Result()
		if isMissingKey(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("inspect groups of %s: %w", s, err)
		}
		for _, g := range groups {
			if g.Name == group {
				return nil
			}
		}
	}
	return fmt.Errorf("%w %q", ErrUnknownGroup, group)
}

// DeadLetter is one entry of a group's dead-letter stream.
type DeadLetter struct {
	// ID is the entry's id in the dead-letter stream; redrive and purge
	// take it.
	ID string
	// Stream and EntryID are where the event was when it was given up.
	Stream, EntryID string
	Error           string
	Deliveries      int64
	FailedAt        time.Time
	// Envelope is the event; DecodeError is set instead when the entry
	// carried no readable envelope (which may be why it died).
	Envelope    Envelope
	DecodeError string
}

func deadLetterOf(m redis.XMessage) DeadLetter {
	str := func(k string) string { s, _ := m.Values[k].(string); return s }
	d := DeadLetter{ID: m.ID, Stream: str(FieldDLQStream), EntryID: str(FieldDLQEntryID), Error: str(FieldDLQError)}
	d.Deliveries, _ = strconv.ParseInt(str(FieldDLQDeliveries), 10, 64)
	d.FailedAt, _ = time.Parse(time.RFC3339Nano, str(FieldDLQFailedAt))
	env, err := DecodeEnvelope(m.Values)
	if err != nil {
		d.DecodeError = err.Error()
	} else {
		d.Envelope = env
	}
	return d
}

// DeadLetters returns up to limit of group's dead letters, oldest first,
// and how many there are in all.
func (a *Admin) DeadLetters(ctx context.Context, group string, limit int) ([]DeadLetter, int64, error) {
	if err := a.knownGroup(ctx, group); err != nil {
		return nil, 0, err
	}
	key := a.cfg.Names.DLQ(group)
	total, err := a.cfg.Redis.XLen(ctx, key).Result()
	if err != nil {
		return nil, 0, fmt.Errorf("dead letters of %s: %w", group, err)
	}
	msgs, err := a.cfg.Redis.XRangeN(ctx, key, "-", "+", int64(max(limit, 1))).Result()
	if err != nil {
		return nil, 0, fmt.Errorf("dead letters of %s: %w", group, err)
	}
	out := make([]DeadLetter, len(msgs))
	for i, m := range msgs {
		out[i] = deadLetterOf(m)
	}
	return out, total, nil
}

// DeadLetterByID returns one dead letter of group.
func (a *Admin) DeadLetterByID(ctx context.Context, group, id string) (DeadLetter, error) {
	if err := a.knownGroup(ctx, group); err != nil {
		return DeadLetter{}, err
	}
	msgs, err := a.fetch(ctx, group, []string{id})
	if err != nil {
		return DeadLetter{}, err
	}
	return deadLetterOf(msgs[0]), nil
}

// Selection picks dead letters: exactly one of IDs, Count (the oldest n)
// or All.
type Selection struct {
	IDs   []string
	Count int
	All   bool
}

func (s Selection) valid(countAllowed bool) bool {
	kinds := 0
	if len(s.IDs) > 0 {
		kinds++
	}
	if s.Count > 0 {
		kinds++
		if !countAllowed {
			return false
		}
	}
	if s.All {
		kinds++
	}
	return kinds == 1 && s.Count >= 0
}

// fetch reads the entries with ids, failing with ErrUnknownEntry (and
// changing nothing) when one is missing.
func (a *Admin) fetch(ctx context.Context, group string, ids []string) ([]redis.XMessage, error) {
	key := a.cfg.Names.DLQ(group)
	for _, id := range ids {
		if _, err := parseXID(id); err != nil {
			return nil, fmt.Errorf("%w: %q is not an entry id such as 1700000000000-0", ErrUnknownEntry, id)
		}
	}
	pipe := a.cfg.Redis.Pipeline()
	cmds := make([]*redis.XMessageSliceCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.XRange(ctx, key, id, id)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("read dead letters of %s: %w", group, err)
	}
	out := make([]redis.XMessage, len(ids))
	for i, id := range ids {
		c := cmds[i]
		if len(c.Val()) != 1 {
			return nil, fmt.Errorf("%w %s in group %s", ErrUnknownEntry, id, group)
		}
		out[i] = c.Val()[0]
	}
	return out, nil
}

// selected returns the entries a selection names, up to the current end of
// the stream (entries dead-lettered meanwhile are left alone).
func (a *Admin) selected(ctx context.Context, group string, sel Selection) ([]redis.XMessage, error) {
	if len(sel.IDs) > 0 {
		return a.fetch(ctx, group, sel.IDs)
	}
	key := a.cfg.Names.DLQ(group)
	if sel.Count > 0 {
		return a.cfg.Redis.XRangeN(ctx, key, "-", "+", int64(sel.Count)).Result()
	}
	return a.cfg.Redis.XRange(ctx, key, "-", "+").Result()
}

// Redrive moves selected dead letters to the group's retry stream, which
// only that group reads, and returns how many it moved.
func (a *Admin) Redrive(ctx context.Context, group string, sel Selection) (int, error) {
	if !sel.valid(true) {
		return 0, ErrBadSelection
	}
	if err := a.knownGroup(ctx, group); err != nil {
		return 0, err
	}
	msgs, err := a.selected(ctx, group, sel)
	if err != nil {
		return 0, err
	}
	dlq, retry := a.cfg.Names.DLQ(group), a.cfg.Names.Retry(group)
	moved := 0
	for chunk := range slices.Chunk(msgs, 500) {
		pipe := a.cfg.Redis.Pipeline()
		ids := make([]string, len(chunk))
		for i, m := range chunk {
			ids[i] = m.ID
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: retry, Values: m.Values})
		}
		// Added before deleted: a failure in between leaves a copy in the
		// dead letters, never a lost event.
		if _, err := pipe.Exec(ctx); err != nil {
			return moved, fmt.Errorf("redrive dead letters of %s: %w", group, err)
		}
		if err := a.cfg.Redis.XDel(ctx, dlq, ids...).Err(); err != nil {
			return moved, fmt.Errorf("remove redriven dead letters of %s: %w", group, err)
		}
		moved += len(chunk)
	}
	return moved, nil
}

// Purge deletes selected dead letters (by ids or all) and returns how many.
func (a *Admin) Purge(ctx context.Context, group string, sel Selection) (int, error) {
	if !sel.valid(false) {
		return 0, ErrBadSelection
	}
	if err := a.knownGroup(ctx, group); err != nil {
		return 0, err
	}
	key := a.cfg.Names.DLQ(group)
	if sel.All {
		last, err := a.cfg.Redis.XRevRangeN(ctx, key, "+", "-", 1).Result()
		if err != nil || len(last) == 0 {
			return 0, err
		}
		top, err := parseXID(last[0].ID)
		if err != nil {
			return 0, err
		}
		n, err := a.cfg.Redis.XTrimMinID(ctx, key, top.next().String()).Result()
		if err != nil {
			return 0, fmt.Errorf("purge dead letters of %s: %w", group, err)
		}
		return int(n), nil
	}
	if _, err := a.fetch(ctx, group, sel.IDs); err != nil {
		return 0, err
	}
	n, err := a.cfg.Redis.XDel(ctx, key, sel.IDs...).Result()
	if err != nil {
		return 0, fmt.Errorf("purge dead letters of %s: %w", group, err)
	}
	return int(n), nil
}

// PauseGroup holds every consumer of group off reading: within a quarter
// second and one read, they take no new entries and claim none; entries
// they hold stay pending. note (who and why) is kept with the flag.
// Pausing a paused group changes nothing.
func (a *Admin) PauseGroup(ctx context.Context, group, note string) error {
	if err := a.knownGroup(ctx, group); err != nil {
		return err
	}
	if err := a.cfg.Redis.Set(ctx, a.cfg.Names.Paused(group), note, 0).Err(); err != nil {
		return fmt.Errorf("pause %s: %w", group, err)
	}
	return nil
}

// ResumeGroup lets a paused group read again; resuming a running group
// changes nothing.
func (a *Admin) ResumeGroup(ctx context.Context, group string) error {
	if err := a.knownGroup(ctx, group); err != nil {
		return err
	}
	if err := a.cfg.Redis.Del(ctx, a.cfg.Names.Paused(group)).Err(); err != nil {
		return fmt.Errorf("resume %s: %w", group, err)
	}
	return nil
}

// RedriveProgress is told, after each batch of RedriveAtRate, how many
// dead letters have moved and how many the redrive set out to move.
type RedriveProgress func(moved, total int)

// RedriveAtRate moves the dead letters group has when it starts to the
// retry stream, oldest first, at about perSecond a second, in batches of
// a tenth of that; cancelling ctx stops it between batches. It returns how
// many it moved. Entries dead-lettered meanwhile are left for later.
func (a *Admin) RedriveAtRate(ctx context.Context, group string, perSecond int, progress RedriveProgress) (int, error) {
	if perSecond < 1 {
		return 0, fmt.Errorf("%w: a rate of at least 1 a second", ErrBadSelection)
	}
	if err := a.knownGroup(ctx, group); err != nil {
		return 0, err
	}
	n, err := a.cfg.Redis.XLen(ctx, a.cfg.Names.DLQ(group)).Result()
	if err != nil {
		return 0, fmt.Errorf("dead letters of %s: %w", group, err)
	}
	total, moved := int(n), 0
	if progress != nil {
		progress(0, total)
	}
	batch := max(perSecond/10, 1)
	interval := time.Duration(batch) * time.Second / time.Duration(perSecond)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for moved < total {
		m, err := a.Redrive(ctx, group, Selection{Count: min(batch, total-moved)})
		moved += m
		if progress != nil {
			progress(moved, total)
		}
		if err != nil {
			return moved, err
		}
		if m == 0 {
			break // purged or redriven by someone else meanwhile
		}
		if moved >= total {
			break
		}
		select {
		case <-ctx.Done():
			return moved, ctx.Err()
		case <-tick.C:
		}
	}
	return moved, nil
}

// MaxReplay is the most events one Replay sends.
const MaxReplay = 100000

// groupPatterns returns the topic patterns group's consumers recorded.
func (a *Admin) groupPatterns(ctx context.Context, group string) ([]string, error) {
	if err := a.knownGroup(ctx, group); err != nil {
		return nil, err
	}
	v, err := a.cfg.Redis.Get(ctx, a.cfg.Names.Patterns(group)).Result()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%w %q: its consumers have not recorded their patterns (restart them)", ErrUnknownGroup, group)
	}
	if err != nil {
		return nil, fmt.Errorf("patterns of %s: %w", group, err)
	}
	return strings.Fields(v), nil
}

// replayTypes returns the event types published since a time that group
// subscribes to, and how many events they count.
func (a *Admin) replayTypes(ctx context.Context, group string, since time.Time) ([]string, int64, error) {
	if a.cfg.DB == nil {
		return nil, 0, errors.New("stream admin: replay needs the database")
	}
	patterns, err := a.groupPatterns(ctx, group)
	if err != nil {
		return nil, 0, err
	}
	counts, err := store.PublishedTypeCounts(ctx, a.cfg.DB, since)
	if err != nil {
		return nil, 0, err
	}
	var types []string
	var n int64
	for _, c := range counts {
		if slices.ContainsFunc(patterns, func(p string) bool { return MatchTopic(p, c.Type) }) {
			types = append(types, c.Type)
			n += c.Events
		}
	}
	return types, n, nil
}

// ReplayCount is the dry run of Replay: how many published events since a
// time group would be sent again.
func (a *Admin) ReplayCount(ctx context.Context, group string, since time.Time) (int64, error) {
	_, n, err := a.replayTypes(ctx, group, since)
	return n, err
}

// Replay sends group again, through its retry stream (which only it
// reads), every published event since a time that its patterns match, in
// the order they were recorded, and returns how many. Other groups see
// nothing. Handlers get them as new deliveries of the same events (same
// ids), so those that deduplicate by event id skip them. More than
// MaxReplay events is ErrReplayTooLarge, and nothing is sent.
func (a *Admin) Replay(ctx context.Context, group string, since time.Time) (int, error) {
	types, n, err := a.replayTypes(ctx, group, since)
	if err != nil {
		return 0, err
	}
	if n > MaxReplay {
		return 0, fmt.Errorf("%w: %d events since %s, at most %d", ErrReplayTooLarge, n, since.Format(time.RFC3339), MaxReplay)
	}
	retry := a.cfg.Names.Retry(group)
	sent := 0
	var after int64
	for len(types) > 0 {
		events, err := store.PublishedOfTypesSince(ctx, a.cfg.DB, since, types, after, 500)
		if err != nil {
			return sent, err
		}
		if len(events) == 0 {
			break
		}
		pipe := a.cfg.Redis.Pipeline()
		for _, e := range events {
			values, err := EnvelopeOf(e).Values()
			if err != nil {
				return sent, err
			}
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: retry, Values: values})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return sent, fmt.Errorf("replay to %s: %w", group, err)
		}
		sent += len(events)
		after = events[len(events)-1].Seq
	}
	return sent, nil
}
