package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/migrations"
	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
)

// markPublished records, as the relay does, that the event with id landed
// on stream at entry id pos.
func markPublished(ctx context.Context, db *sqlx.DB, id uuid.UUID, stream, pos string) error {
	return store.WithTx(ctx, db, func(tx *sqlx.Tx) error {
		var e struct {
			Seq  int64     `db:"seq"`
			Time time.Time `db:"time"`
		}
		if err := tx.GetContext(ctx, &e, `SELECT seq, time FROM events WHERE id = $1`, id); err != nil {
			return err
		}
		return store.MarkPublished(ctx, tx, []store.Publication{{Seq: e.Seq, Time: e.Time, Stream: stream, StreamID: pos}})
	})
}

// eventAt records an event of time at and returns it.
func eventAt(t *testing.T, db *sqlx.DB, subject string, at time.Time) store.Event {
	t.Helper()
	ev, err := store.NewEvent("order.created", subject, nil, 1, map[string]string{"subject": subject})
	require.NoError(t, err)
	ev.Time = at
	require.NoError(t, store.InsertEvents(context.Background(), db, ev))
	return ev
}

// partitionOf names the partition of events that holds the event id.
func partitionOf(t *testing.T, db *sqlx.DB, id uuid.UUID) string {
	t.Helper()
	var name string
	require.NoError(t, db.Get(&name, `SELECT tableoid::regclass::text FROM events WHERE id = $1`, id))
	return name
}

func tableExists(t *testing.T, db *sqlx.DB, name string) bool {
	t.Helper()
	var ok bool
	require.NoError(t, db.Get(&ok, `SELECT to_regclass($1) IS NOT NULL`, name))
	return ok
}

func outboxHas(t *testing.T, db *sqlx.DB, id uuid.UUID) bool {
	t.Helper()
	var ok bool
	require.NoError(t, db.Get(&ok, `SELECT EXISTS (SELECT 1 FROM outbox o JOIN events e ON e.seq = o.seq AND e.time = o.time WHERE e.id = $1)`, id))
	return ok
}

func TestInsertEventsQueuesEveryEventInTheOutbox(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := storetest.NewDB(t)
	var evs []store.Event
	for _, s := range []string{"a", "b", "a"} {
		ev, err := store.NewEvent("order.created", s, nil, 1, map[string]int{"n": 1})
		require.NoError(t, err)
		evs = append(evs, ev)
	}
	require.NoError(t, store.InsertEvents(ctx, db, evs...))
	var queued []struct {
		Seq     int64     `db:"seq"`
		Subject string    `db:"subject"`
		Time    time.Time `db:"time"`
		ID      uuid.UUID `db:"id"`
	}
	require.NoError(t, db.Select(&queued, `SELECT o.seq, o.subject, o.time, e.id FROM outbox o JOIN events e ON e.seq = o.seq AND e.time = o.time ORDER BY o.seq`))
	require.Len(t, queued, 3)
	for i, q := range queued {
		require.Equal(t, evs[i].ID, q.ID, "seq order is the order given")
		require.Equal(t, evs[i].Subject, q.Subject)
		require.True(t, evs[i].Time.Equal(q.Time), "the event keeps the time stored")
	}
	require.NoError(t, store.InsertEvents(ctx, db))
}

func TestPublishedBetween(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := storetest.NewDB(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	old := eventAt(t, db, "o-old", now.Add(-2*time.Hour))
	a := eventAt(t, db, "o-a", now.Add(-30*time.Minute))
	other := eventAt(t, db, "o-other", now.Add(-20*time.Minute))
	b := eventAt(t, db, "o-b", now.Add(-10*time.Minute))
	c := eventAt(t, db, "o-c", now.Add(-5*time.Minute))
	late := eventAt(t, db, "o-late", now.Add(time.Minute))
	unpublished := eventAt(t, db, "o-unpublished", now.Add(-6*time.Minute))
	require.NoError(t, markPublished(ctx, db, old.ID, "s:order", "1-0"))
	require.NoError(t, markPublished(ctx, db, a.ID, "s:order", "2-0"))
	require.NoError(t, markPublished(ctx, db, other.ID, "s:user", "3-0"))
	// Published out of seq order: the result still follows seq.
	require.NoError(t, markPublished(ctx, db, c.ID, "s:order", "4-0"))
	require.NoError(t, markPublished(ctx, db, b.ID, "s:order", "5-7"))
	require.NoError(t, markPublished(ctx, db, late.ID, "s:order", "6-0"))
	_ = unpublished

	from, to := now.Add(-time.Hour), now
	got, err := store.PublishedBetween(ctx, db, "s:order", from, to, 0, 10)
	require.NoError(t, err)
	require.Len(t, got, 3, "only s:order's published events in [from, to)")
	require.Equal(t, a.ID.String(), got[0].ID)
	require.Equal(t, "2-0", got[0].StreamID)
	require.Equal(t, "s:order", got[0].Stream)
	require.True(t, a.Time.Equal(got[0].Time))
	require.Equal(t, b.ID.String(), got[1].ID)
	require.Equal(t, "5-7", got[1].StreamID)
	require.Equal(t, c.ID.String(), got[2].ID)
	require.Less(t, got[0].Seq, got[1].Seq)
	require.Less(t, got[1].Seq, got[2].Seq)

	page, err := store.PublishedBetween(ctx, db, "s:order", from, to, got[0].Seq, 1)
	require.NoError(t, err)
	require.Len(t, page, 1)
	require.Equal(t, b.ID.String(), page[0].ID, "paged after the given seq")

	got, err = store.PublishedBetween(ctx, db, "s:order", a.Time, b.Time, 0, 10)
	require.NoError(t, err)
	require.Len(t, got, 1, "from is inclusive, to exclusive")
	require.Equal(t, a.ID.String(), got[0].ID)
}

func TestEventPartitionsAreCreatedAheadAndTakeOverDefaultRows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := storetest.NewDB(t)
	now := time.Date(2031, 1, 15, 12, 0, 0, 0, time.UTC)
	require.False(t, tableExists(t, db, "events_y2031m01"))

	created, err := store.EnsureEventPartitions(ctx, db, now, 2)
	require.NoError(t, err)
	require.Equal(t, 6, created, "three months, events and positions each")
	for _, name := range []string{"events_y2031m01", "events_y2031m02", "events_y2031m03", "event_positions_y2031m03"} {
		require.True(t, tableExists(t, db, name), name)
	}
	require.False(t, tableExists(t, db, "events_y2031m04"))
	created, err = store.EnsureEventPartitions(ctx, db, now, 2)
	require.NoError(t, err)
	require.Zero(t, created, "a second run creates nothing")

	ev := eventAt(t, db, "ord-1", time.Date(2031, 2, 28, 23, 59, 59, 0, time.UTC))
	require.Equal(t, "events_y2031m02", partitionOf(t, db, ev.ID))
	// A partition's range is its UTC month: half past midnight on
	// 1 February in UTC+1 is still January in UTC.
	edge := eventAt(t, db, "ord-2", time.Date(2031, 2, 1, 0, 30, 0, 0, time.FixedZone("CET", 3600)))
	require.Equal(t, "events_y2031m01", partitionOf(t, db, edge.ID))

	// An event of a month with no partition lands in the default one and
	// is counted; creating the month moves it, positions included.
	stray := eventAt(t, db, "ord-3", time.Date(2035, 5, 2, 0, 0, 0, 0, time.UTC))
	require.NoError(t, markPublished(ctx, db, stray.ID, "s:order", "9-0"))
	require.Equal(t, "events_default", partitionOf(t, db, stray.ID))
	n, err := store.EventDefaultRows(ctx, db)
	require.NoError(t, err)
	require.EqualValues(t, 2, n, "the event and its position")
	created, err = store.EnsureEventPartitions(ctx, db, stray.Time, 0)
	require.NoError(t, err)
	require.Equal(t, 2, created)
	require.Equal(t, "events_y2035m05", partitionOf(t, db, stray.ID))
	n, err = store.EventDefaultRows(ctx, db)
	require.NoError(t, err)
	require.Zero(t, n)
	rows, err := store.EventsBySubject(ctx, db, "ord-3")
	require.NoError(t, err)
	require.Len(t, rows, 1)
	require.Equal(t, "9-0", *rows[0].StreamID, "the position moved with the event")
}

func TestExpiredEventPartitionsAreDroppedOrDetached(t *testing.T) {
	t.Parallel()
	for _, keep := range []bool{false, true} {
		name := "drop"
		if keep {
			name = "detach"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db, _ := storetest.NewDB(t)
			_, err := store.EnsureEventPartitions(ctx, db, time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC), 2)
			require.NoError(t, err)
			jan := eventAt(t, db, "ord-jan", time.Date(2031, 1, 20, 0, 0, 0, 0, time.UTC))
			require.NoError(t, markPublished(ctx, db, jan.ID, "s:order", "1-0"))
			janWaiting := eventAt(t, db, "ord-jan-waiting", time.Date(2031, 1, 21, 0, 0, 0, 0, time.UTC))
			feb := eventAt(t, db, "ord-feb", time.Date(2031, 2, 10, 0, 0, 0, 0, time.UTC))
			require.NoError(t, markPublished(ctx, db, feb.ID, "s:order", "2-0"))
			mar := eventAt(t, db, "ord-mar", time.Date(2031, 3, 10, 0, 0, 0, 0, time.UTC))

			_, ok, err := store.EventLogHorizon(ctx, db)
			require.NoError(t, err)
			require.False(t, ok, "nothing expired yet")

			// Cut in the middle of March: January and February are wholly
			// before it (with every older month), March is not.
			expired, err := store.ExpireEventPartitions(ctx, db, time.Date(2031, 3, 15, 0, 0, 0, 0, time.UTC), keep, time.Second)
			require.NoError(t, err)
			var names []string
			for _, p := range expired {
				names = append(names, p.Events)
			}
			require.Contains(t, names, "events_y2031m01")
			require.Contains(t, names, "events_y2031m02")
			require.NotContains(t, names, "events_y2031m03")

			parts, err := store.EventPartitions(ctx, db)
			require.NoError(t, err)
			require.Equal(t, "events_y2031m03", parts[0].Events, "the oldest attached partition is March's")
			for _, subject := range []string{"ord-jan", "ord-feb", "ord-jan-waiting"} {
				rows, err := store.EventsBySubject(ctx, db, subject)
				require.NoError(t, err)
				require.Empty(t, rows, subject)
			}
			rows, err := store.EventsBySubject(ctx, db, "ord-mar")
			require.NoError(t, err)
			require.Len(t, rows, 1)
			require.False(t, outboxHas(t, db, janWaiting.ID))
			var queued int
			require.NoError(t, db.Get(&queued, `SELECT count(*) FROM outbox`))
			require.Equal(t, 1, queued, "only March's event still waits")
			_ = mar

			reaches, err := store.EventLogReaches(ctx, db, "s:order", 1, 0)
			require.NoError(t, err)
			require.False(t, reaches, "a resume from January's position can no longer be served")

			h, ok, err := store.EventLogHorizon(ctx, db)
			require.NoError(t, err)
			require.True(t, ok)
			require.True(t, h.Equal(time.Date(2031, 3, 1, 0, 0, 0, 0, time.UTC)), h)
			require.ErrorIs(t, store.CheckEventLogCovers(ctx, db, time.Date(2031, 2, 1, 0, 0, 0, 0, time.UTC)), store.ErrEventLogExpired)
			require.NoError(t, store.CheckEventLogCovers(ctx, db, h))

			require.Equal(t, keep, tableExists(t, db, "events_y2031m01"))
			require.Equal(t, keep, tableExists(t, db, "event_positions_y2031m02"))
			if keep {
				var n int
				require.NoError(t, db.Get(&n, `SELECT count(*) FROM events_y2031m01`))
				require.Equal(t, 2, n, "a detached partition keeps its rows for the archive")
				require.NoError(t, db.Get(&n, `SELECT count(*) FROM event_positions_y2031m02`))
				require.Equal(t, 1, n)
			}

			// Expiring again changes nothing.
			again, err := store.ExpireEventPartitions(ctx, db, time.Date(2031, 3, 15, 0, 0, 0, 0, time.UTC), keep, time.Second)
			require.NoError(t, err)
			require.Empty(t, again)
		})
	}
}

// TestMigrationToPartitionedEventLog migrates a database holding events at
// version 0010 (published, unpublished, in several months) and checks that
// every event, position and waiting event is where the new schema wants it,
// then migrates back down and finds the old table as it was.
func TestMigrationToPartitionedEventLog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := storetest.NewDBAt(t, 10)
	type legacy struct {
		ID          uuid.UUID  `db:"id"`
		Subject     string     `db:"subject"`
		Time        time.Time  `db:"time"`
		PublishedAt *time.Time `db:"published_at"`
		Stream      *string    `db:"stream"`
		StreamID    *string    `db:"stream_id"`
	}
	str := func(s string) *string { return &s }
	pub := time.Date(2025, 3, 2, 0, 0, 0, 0, time.UTC)
	now := time.Now().UTC().Truncate(time.Microsecond)
	rows := []legacy{
		{ID: uuid.New(), Subject: "ord-1", Time: time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC), PublishedAt: &pub, Stream: str("bazaar:events:order"), StreamID: str("1740823200000-0")},
		{ID: uuid.New(), Subject: "ord-1", Time: time.Date(2025, 3, 1, 11, 0, 0, 0, time.UTC), PublishedAt: &pub, Stream: str("bazaar:events:order"), StreamID: str("1740826800000-12")},
		{ID: uuid.New(), Subject: "usr-1", Time: time.Date(2025, 7, 9, 0, 0, 0, 0, time.UTC), PublishedAt: &pub, Stream: str("bazaar:events:user"), StreamID: str("1752019200000-0")},
		{ID: uuid.New(), Subject: "ord-2", Time: now, PublishedAt: &pub, Stream: str("bazaar:events:order"), StreamID: str("1752019200001-0")},
		{ID: uuid.New(), Subject: "ord-2", Time: now},
		{ID: uuid.New(), Subject: "ord-3", Time: now},
	}
	for _, r := range rows {
		_, err := db.NamedExecContext(ctx, `
INSERT INTO events (id, type, source, subject, time, data, published_at, stream, stream_id)
VALUES (:id, 'order.created', '/bazaar', :subject, :time, jsonb_build_object('n', 1), :published_at, :stream, :stream_id)`, r)
		require.NoError(t, err)
	}
	var maxSeq int64
	require.NoError(t, db.Get(&maxSeq, `SELECT max(seq) FROM events`))

	require.NoError(t, migrations.To(ctx, db.DB, 11))

	for _, r := range rows {
		evs, err := store.EventsBySubject(ctx, db, r.Subject)
		require.NoError(t, err)
		var found *store.Event
		for i := range evs {
			if evs[i].ID == r.ID {
				found = &evs[i]
			}
		}
		require.NotNil(t, found, r.ID)
		require.True(t, r.Time.Equal(found.Time))
		require.Equal(t, r.Stream, found.Stream)
		require.Equal(t, r.StreamID, found.StreamID)
		require.Equal(t, r.PublishedAt == nil, found.PublishedAt == nil)
		require.Equal(t, r.PublishedAt == nil, outboxHas(t, db, r.ID), "exactly the unpublished events wait in the outbox")
	}
	require.Equal(t, "events_y2025m03", partitionOf(t, db, rows[0].ID))
	require.Equal(t, "events_y2025m07", partitionOf(t, db, rows[2].ID))
	n, err := store.EventDefaultRows(ctx, db)
	require.NoError(t, err)
	require.Zero(t, n, "every moved row has its month's partition")
	parts, err := store.EventPartitions(ctx, db)
	require.NoError(t, err)
	last := parts[len(parts)-1].Month
	require.False(t, last.Before(store.EventPartitionMonth(now).AddDate(0, 3, 0)), "partitions three months ahead")

	// Resume by position and replay read the moved log.
	logged, err := store.EventLogRange(ctx, db, store.EventLogQuery{Stream: "bazaar:events:order", AfterMs: 1740823200000, UntilMs: 1752019200001})
	require.NoError(t, err)
	require.Len(t, logged, 2)
	require.Equal(t, rows[1].ID, logged[0].ID)
	lastID, err := store.LastStreamID(ctx, db, "bazaar:events:order")
	require.NoError(t, err)
	require.Equal(t, "1752019200001-0", lastID)
	backlog, err := store.OutboxBacklog(ctx, db)
	require.NoError(t, err)
	require.EqualValues(t, 2, backlog.Count)

	// New events continue the sequence.
	ev := eventAt(t, db, "ord-4", now)
	evs, err := store.EventsBySubject(ctx, db, "ord-4")
	require.NoError(t, err)
	require.Greater(t, evs[0].Seq, maxSeq)
	_ = ev

	require.NoError(t, migrations.To(ctx, db.DB, 10))
	var back []legacy
	require.NoError(t, db.Select(&back, `SELECT id, subject, time, published_at, stream, stream_id FROM events WHERE subject <> 'ord-4' ORDER BY seq`))
	require.Len(t, back, len(rows))
	for i, r := range rows {
		require.Equal(t, r.ID, back[i].ID)
		require.Equal(t, r.Stream, back[i].Stream)
		require.Equal(t, r.StreamID, back[i].StreamID)
		require.Equal(t, r.PublishedAt == nil, back[i].PublishedAt == nil)
	}
	var waiting int
	require.NoError(t, db.Get(&waiting, `SELECT count(*) FROM events WHERE published_at IS NULL`))
	require.Equal(t, 3, waiting, "the two unpublished events and the new one")
}
