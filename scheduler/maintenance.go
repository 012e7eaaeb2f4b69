package scheduler

import (
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
