package scheduler

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
)

func relExists(t *testing.T, db *sqlx.DB, name string) bool {
	t.Helper()
	var ok bool
	require.NoError(t, db.Get(&ok, `SELECT to_regclass($1) IS NOT NULL`, name))
	return ok
}

func attached(t *testing.T, db *sqlx.DB) []string {
	t.Helper()
	parts, err := store.EventPartitions(context.Background(), db)
	require.NoError(t, err)
	var names []string
	for _, p := range parts {
		names = append(names, p.Events)
	}
	return names
}

func recordAt(t *testing.T, db *sqlx.DB, subject string, at time.Time) {
	t.Helper()
	ev, err := store.NewEvent("order.created", subject, nil, 1, map[string]int{"n": 1})
	require.NoError(t, err)
	ev.Time = at
	require.NoError(t, store.InsertEvents(context.Background(), db, ev))
}

// The scheduler's event-partitions firing creates the partitions of the
// months ahead of it, and a later firing, a retention later, expires the
// months wholly before its cut: dropped by default, detached (kept as
// tables, rows intact) with Detach. Firing again changes nothing.
func TestEventPartitionsScheduleCreatesAheadAndExpires(t *testing.T) {
	t.Parallel()
	for _, detach := range []bool{false, true} {
		name := "drop"
		if detach {
			name = "detach"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db, _ := storetest.NewDB(t)
			now := time.Date(2032, 5, 10, 8, 0, 0, 0, time.UTC)
			s, err := New(Config{
				DB: db,
				Schedules: []Schedule{NewEventPartitionsSchedule(DefaultEventPartitionsSpec, EventPartitionsJob{
					DB: db, Logger: quiet(), Ahead: 2, Retention: 90 * 24 * time.Hour, Detach: detach,
				})},
				CatchUp:      2 * time.Hour,
				PollInterval: 10 * time.Millisecond,
				LeaseTTL:     400 * time.Millisecond,
				Now:          func() time.Time { return now },
				Logger:       quiet(),
			})
			require.NoError(t, err)
			require.NoError(t, s.Tick(ctx))
			for _, m := range []string{"y2032m05", "y2032m06", "y2032m07"} {
				require.True(t, relExists(t, db, "events_"+m), m)
				require.True(t, relExists(t, db, "event_positions_"+m), m)
			}
			require.False(t, relExists(t, db, "events_y2032m08"), "only Ahead months ahead")
			recordAt(t, db, "ord-may", time.Date(2032, 5, 20, 0, 0, 0, 0, time.UTC))
			recordAt(t, db, "ord-jul", time.Date(2032, 7, 2, 0, 0, 0, 0, time.UTC))

			// Three months on: the cut (90 days before 10 Sep) is 12 June,
			// so May goes and June stays.
			job := EventPartitionsJob{DB: db, Logger: quiet(), Ahead: 2, Retention: 90 * 24 * time.Hour, Detach: detach}
			due := time.Date(2032, 9, 10, 8, 0, 0, 0, time.UTC)
			require.NoError(t, job.Fire(ctx, Firing{Schedule: EventPartitionsSchedule, Due: due}))
			names := attached(t, db)
			require.NotContains(t, names, "events_y2032m05")
			require.Contains(t, names, "events_y2032m06")
			require.Contains(t, names, "events_y2032m11", "created ahead of the later firing")
			require.Equal(t, detach, relExists(t, db, "events_y2032m05"), "kept as a table only with detach")
			require.Equal(t, detach, relExists(t, db, "event_positions_y2032m05"))
			evs, err := store.EventsBySubject(ctx, db, "ord-may")
			require.NoError(t, err)
			require.Empty(t, evs, "expired events are out of the log")
			evs, err = store.EventsBySubject(ctx, db, "ord-jul")
			require.NoError(t, err)
			require.Len(t, evs, 1)
			if detach {
				var n int
				require.NoError(t, db.Get(&n, `SELECT count(*) FROM events_y2032m05`))
				require.Equal(t, 1, n)
			}
			require.ErrorIs(t, store.CheckEventLogCovers(ctx, db, time.Date(2032, 5, 25, 0, 0, 0, 0, time.UTC)), store.ErrEventLogExpired)

			before := attached(t, db)
			require.NoError(t, job.Fire(ctx, Firing{Schedule: EventPartitionsSchedule, Due: due}))
			require.Equal(t, before, attached(t, db), "a second firing changes nothing")
		})
	}
}

// Rows written for a month with no partition land in the default partition
// and show in bazaar_event_log_default_rows until a partition covers them.
func TestEventDefaultRowsGauge(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := storetest.NewDB(t)
	c, err := NewCollector(CollectorConfig{DB: db})
	require.NoError(t, err)
	gauge := func(v string) string {
		return `
# HELP bazaar_event_log_default_rows Rows in the default partitions of the event log: events whose month had no partition when written (0 while the event-partitions schedule keeps ahead).
# TYPE bazaar_event_log_default_rows gauge
bazaar_event_log_default_rows ` + v + "\n"
	}
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(gauge("0")), "bazaar_event_log_default_rows"))
	at := time.Date(2040, 1, 5, 0, 0, 0, 0, time.UTC)
	recordAt(t, db, "ord-far", at)
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(gauge("1")), "bazaar_event_log_default_rows"))
	job := EventPartitionsJob{DB: db, Logger: quiet(), Ahead: 0}
	require.NoError(t, job.Fire(ctx, Firing{Schedule: EventPartitionsSchedule, Due: at}))
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(gauge("0")), "bazaar_event_log_default_rows"))
}
