package scheduler

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/bazaarhq/bazaar/sql/store"
)

// IdempotencySweepSchedule is the name of the schedule that deletes expired
// Idempotency-Key records.
const IdempotencySweepSchedule = "idempotency-sweep"

// DefaultIdempotencySweepSpec sweeps every hour: keys live 24 hours, so an
// hour's delay costs little space, and each sweep deletes a small slice.
const DefaultIdempotencySweepSpec = "@hourly"

// sweepChunk bounds one delete so a large backlog never holds locks long.
const sweepChunk = 1000

// IdempotencySweepJob deletes expired idempotency records. The API already
// ignores and replaces an expired key; the sweep only returns the space.
type IdempotencySweepJob struct {
	DB     *sqlx.DB
	Logger *slog.Logger
}

// NewIdempotencySweepSchedule returns the sweep schedule on spec. It skips
// missed firings: one sweep deletes everything expired, so catching up a
// stop (or the window of a fresh database) would only repeat it.
func NewIdempotencySweepSchedule(spec string, db *sqlx.DB, log *slog.Logger) Schedule {
	return Schedule{Name: IdempotencySweepSchedule, Spec: spec, Job: IdempotencySweepJob{DB: db, Logger: log}, SkipMissed: true}
}

// Plan names the firing by its due time; the sweep runs in the scheduler
// itself, so no task is enqueued under the TaskID.
func (j IdempotencySweepJob) Plan(f Firing) (string, string) {
	due := f.Due.UTC().Format(time.RFC3339)
	return due, "maintenance:idempotency-sweep:" + due
}

// Fire deletes expired records in chunks until none is left. Running it
// twice deletes nothing the second time.
func (j IdempotencySweepJob) Fire(ctx context.Context, _ Firing) error {
	var total int64
	for {
		n, err := store.DeleteExpiredIdempotencyRecords(ctx, j.DB, sweepChunk)
		if err != nil {
			return fmt.Errorf("idempotency sweep: %w", err)
		}
		total += n
		if n < sweepChunk {
			break
		}
	}
	if j.Logger != nil && total > 0 {
		j.Logger.InfoContext(ctx, "expired idempotency records deleted", "deleted", total)
	}
	return nil
}

// BookkeepingPruneSchedule is the name of the schedule that deletes old
// per-event bookkeeping.
const BookkeepingPruneSchedule = "bookkeeping-prune"

// DefaultBookkeepingPruneSpec prunes every hour, so each run deletes about
// an hour's worth of rows.
const DefaultBookkeepingPruneSpec = "@hourly"

// BookkeepingRetention is how long each kind of bookkeeping is kept. Each
// must outlast every way the thing it deduplicates can come again, or a
// repeat finds no row and applies twice (docs/operations.md lists the
// windows).
type BookkeepingRetention struct {
	// ProcessedEvents keeps processed_events rows (default 30 days).
	ProcessedEvents time.Duration
	// SentEmails keeps sent_emails rows and stale mail_claims (default 120
	// days).
	SentEmails time.Duration
	// TaskFailures keeps task_failures rows (default 90 days).
	TaskFailures time.Duration
	// ProviderEvents keeps provider_events rows (default 45 days).
	ProviderEvents time.Duration
}

// DefaultBookkeepingRetention is the retention the scheduler uses when
// none is configured.
var DefaultBookkeepingRetention = BookkeepingRetention{
	ProcessedEvents: 30 * 24 * time.Hour,
	SentEmails:      120 * 24 * time.Hour,
	TaskFailures:    90 * 24 * time.Hour,
	ProviderEvents:  45 * 24 * time.Hour,
}

// tables pairs each table with its retention, zero fields taking the
// default.
func (r BookkeepingRetention) tables() []struct {
	table     store.Bookkeeping
	retention time.Duration
} {
	d := DefaultBookkeepingRetention
	sent := cmp.Or(r.SentEmails, d.SentEmails)
	return []struct {
		table     store.Bookkeeping
		retention time.Duration
	}{
		{store.BookkeepingProcessedEvents, cmp.Or(r.ProcessedEvents, d.ProcessedEvents)},
		{store.BookkeepingSentEmails, sent},
		{store.BookkeepingMailClaims, sent},
		{store.BookkeepingTaskFailures, cmp.Or(r.TaskFailures, d.TaskFailures)},
		{store.BookkeepingProviderEvents, cmp.Or(r.ProviderEvents, d.ProviderEvents)},
	}
}

// BookkeepingPruneJob deletes bookkeeping rows older than their retention,
// in batches of pruneChunk rows, each its own short statement.
type BookkeepingPruneJob struct {
	DB        *sqlx.DB
	Logger    *slog.Logger
	Retention BookkeepingRetention
}

// pruneChunk bounds one delete, like sweepChunk.
const pruneChunk = 1000

// NewBookkeepingPruneSchedule returns the prune schedule on spec. Like the
// idempotency sweep it skips missed firings: one run deletes everything
// expired.
func NewBookkeepingPruneSchedule(spec string, db *sqlx.DB, retention BookkeepingRetention, log *slog.Logger) Schedule {
	return Schedule{Name: BookkeepingPruneSchedule, Spec: spec, Job: BookkeepingPruneJob{DB: db, Logger: log, Retention: retention}, SkipMissed: true}
}

// Plan names the firing by its due time; the prune runs in the scheduler
// itself, so no task is enqueued under the TaskID.
func (j BookkeepingPruneJob) Plan(f Firing) (string, string) {
	due := f.Due.UTC().Format(time.RFC3339)
	return due, "maintenance:bookkeeping-prune:" + due
}

// Fire prunes every bookkeeping table until nothing expired is left.
// Running it twice deletes nothing the second time.
func (j BookkeepingPruneJob) Fire(ctx context.Context, _ Firing) error {
	for _, t := range j.Retention.tables() {
		var total int64
		for {
			n, err := store.PruneBookkeeping(ctx, j.DB, t.table, t.retention, pruneChunk)
			if err != nil {
				return fmt.Errorf("bookkeeping prune: %w", err)
			}
			total += n
			if n < pruneChunk {
				break
			}
		}
		if j.Logger != nil && total > 0 {
			j.Logger.InfoContext(ctx, "old bookkeeping deleted", "table", string(t.table), "deleted", total, "retention", t.retention.String())
		}
	}
	return nil
}
