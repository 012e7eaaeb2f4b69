package scheduler

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/bazaarhq/bazaar/sql/store"
)

// EventPartitionsSchedule is the name of the schedule that keeps the event
// log's monthly partitions ahead of time and expires the old ones.
const EventPartitionsSchedule = "event-partitions"

// DefaultEventPartitionsSpec runs the partition upkeep every hour: a
// month's partition then exists months before its first event, and an
// expired month goes within the hour.
const DefaultEventPartitionsSpec = "@hourly"

// Defaults of EventPartitionsJob.
const (
	DefaultEventRetention       = 400 * 24 * time.Hour
	DefaultEventPartitionsAhead = 3
)

// EventPartitionsJob creates the event log's partitions (events and
// event_positions) for the firing's month and Ahead months after it,
// detaches and drops (or, with Detach, only detaches) the months wholly
// older than Retention, and reports rows in the default partitions, which
// mean a month had no partition when it was written. Creating partitions
// here keeps DDL off the write path.
type EventPartitionsJob struct {
	DB     *sqlx.DB
	Logger *slog.Logger
	// Ahead is how many months after the current one get their partitions
	// (default 3).
	Ahead int
	// Retention is how long events are kept (default 400 days).
	Retention time.Duration
	// Detach keeps expired partitions as plain tables for an archive job
	// instead of dropping them (BAZAAR_EVENT_ARCHIVE=detach).
	Detach bool
	// LockTimeout bounds the wait for the brief exclusive lock a detach
	// takes on the parent tables (default 5s); a month that cannot get it
	// is expired at the next firing.
	LockTimeout time.Duration
}

// NewEventPartitionsSchedule returns the partition upkeep on spec. Missed
// firings are skipped: one run does everything due.
func NewEventPartitionsSchedule(spec string, job EventPartitionsJob) Schedule {
	return Schedule{Name: EventPartitionsSchedule, Spec: spec, Job: job, SkipMissed: true}
}

// Plan names the firing by its due time; the upkeep runs in the scheduler
// itself, so no task is enqueued under the TaskID.
func (j EventPartitionsJob) Plan(f Firing) (string, string) {
	due := f.Due.UTC().Format(time.RFC3339)
	return due, "maintenance:event-partitions:" + due
}

// Fire creates the partitions ahead of f.Due and expires the old ones.
// Running it twice changes nothing the second time.
func (j EventPartitionsJob) Fire(ctx context.Context, f Firing) error {
	if j.DB == nil {
		return errors.New("event partitions: DB is required")
	}
	log := cmp.Or(j.Logger, slog.New(slog.DiscardHandler))
	ahead := cmp.Or(j.Ahead, DefaultEventPartitionsAhead)
	retention := cmp.Or(j.Retention, DefaultEventRetention)
	created, err := store.EnsureEventPartitions(ctx, j.DB, f.Due, ahead)
	if err != nil {
		return fmt.Errorf("event partitions: %w", err)
	}
	if created > 0 {
		log.InfoContext(ctx, "event log partitions created", "created", created, "through", store.EventPartitionMonth(f.Due).AddDate(0, ahead, 0).Format("2006-01"))
	}
	cutoff := f.Due.Add(-retention)
	expired, err := store.ExpireEventPartitions(ctx, j.DB, cutoff, j.Detach, cmp.Or(j.LockTimeout, 5*time.Second))
	for _, p := range expired {
		verb := "dropped"
		if j.Detach {
			verb = "detached"
		}
		log.InfoContext(ctx, "expired event log partition "+verb, "partition", p.Events, "positions", p.Positions, "until", p.Until())
	}
	if err != nil {
		return fmt.Errorf("event partitions: %w", err)
	}
	n, err := store.EventDefaultRows(ctx, j.DB)
	if err != nil {
		return fmt.Errorf("event partitions: %w", err)
	}
	if n > 0 {
		// Not a failure of this run: the rows are safe and readable, but
		// the next partition created over their month moves them.
		log.ErrorContext(ctx, "event log rows in the default partitions: their month had no partition when written",
			"rows", n)
	}
	return nil
}
