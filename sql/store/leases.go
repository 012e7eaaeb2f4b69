package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// Lease is a named, expiring claim that one process holds at a time.
type Lease struct {
	Name       string    `db:"name"`
	Holder     string    `db:"holder"`
	AcquiredAt time.Time `db:"acquired_at"`
	ExpiresAt  time.Time `db:"expires_at"`
}

// The lease is taken when free, renewed by its holder, and taken over once
// it has expired, all in one statement so two contenders cannot both win.
// Expiry is judged by the database clock, which every contender shares.
const acquireLeaseQuery = `
INSERT INTO leases AS l (name, holder, expires_at)
VALUES ($1, $2, now() + make_interval(secs => $3))
ON CONFLICT (name) DO UPDATE
SET holder = EXCLUDED.holder,
    expires_at = EXCLUDED.expires_at,
    acquired_at = CASE WHEN l.holder = EXCLUDED.holder THEN l.acquired_at ELSE now() END
WHERE l.holder = EXCLUDED.holder OR l.expires_at < now()
RETURNING name, holder, acquired_at, expires_at`

// AcquireLease takes or renews the lease name for holder for ttl. It reports
// false, without error, while another holder's lease has not expired.
func AcquireLease(ctx context.Context, q sqlx.ExtContext, name, holder string, ttl time.Duration) (Lease, bool, error) {
	var l Lease
	err := sqlx.GetContext(ctx, q, &l, acquireLeaseQuery, name, holder, ttl.Seconds())
	if err != nil {
		if err = translate(err); errors.Is(err, ErrNotFound) {
			return Lease{}, false, nil
		}
		return Lease{}, false, fmt.Errorf("acquire lease %s: %w", name, err)
	}
	return l, true, nil
}

const releaseLeaseQuery = `DELETE FROM leases WHERE name = $1 AND holder = $2`

// ReleaseLease gives the lease up if holder still holds it, so another
// process can take it at once instead of waiting for it to expire.
func ReleaseLease(ctx context.Context, q sqlx.ExecerContext, name, holder string) error {
	if _, err := q.ExecContext(ctx, releaseLeaseQuery, name, holder); err != nil {
		return fmt.Errorf("release lease %s: %w", name, translate(err))
	}
	return nil
}

const getLeaseQuery = `SELECT name, holder, acquired_at, expires_at FROM leases WHERE name = $1`

// GetLease returns the lease name, expired or not, or ErrNotFound.
func GetLease(ctx context.Context, q sqlx.QueryerContext, name string) (Lease, error) {
	var l Lease
	if err := sqlx.GetContext(ctx, q, &l, getLeaseQuery, name); err != nil {
		return Lease{}, fmt.Errorf("get lease %s: %w", name, translate(err))
	}
	return l, nil
}

// Schedule is a periodic job as the scheduler holding the lease last saw it,
// with its latest firing.
type Schedule struct {
	Name       string     `db:"name"`
	Spec       string     `db:"spec"`
	Timezone   string     `db:"timezone"`
	NextRunAt  *time.Time `db:"next_run_at"`
	CheckedAt  time.Time  `db:"checked_at"`
	CheckedBy  string     `db:"checked_by"`
	LastPeriod *string    `db:"last_period"`
	LastDueAt  *time.Time `db:"last_due_at"`
	LastFired  *time.Time `db:"last_fired_at"`
	LastTaskID *string    `db:"last_task_id"`
}

const upsertScheduleQuery = `
INSERT INTO schedules (name, spec, timezone, next_run_at, checked_at, checked_by)
VALUES ($1, $2, $3, $4, now(), $5)
ON CONFLICT (name) DO UPDATE
SET spec = EXCLUDED.spec, timezone = EXCLUDED.timezone, next_run_at = EXCLUDED.next_run_at,
    checked_at = EXCLUDED.checked_at, checked_by = EXCLUDED.checked_by`

// UpsertSchedule records a schedule's definition and next run as seen by
// the scheduler named by checkedBy.
func UpsertSchedule(ctx context.Context, q sqlx.ExecerContext, name, spec, timezone string, next *time.Time, checkedBy string) error {
	if _, err := q.ExecContext(ctx, upsertScheduleQuery, name, spec, timezone, next, checkedBy); err != nil {
		return fmt.Errorf("upsert schedule %s: %w", name, translate(err))
	}
	return nil
}

const listSchedulesQuery = `
SELECT s.name, s.spec, s.timezone, s.next_run_at, s.checked_at, s.checked_by,
       f.period AS last_period, f.due_at AS last_due_at, f.fired_at AS last_fired_at, f.task_id AS last_task_id
FROM schedules s
LEFT JOIN LATERAL (
    SELECT period, due_at, fired_at, task_id FROM schedule_firings
    WHERE schedule = s.name ORDER BY due_at DESC LIMIT 1
) f ON true
ORDER BY s.name`

// ListSchedules returns every known schedule with its latest firing.
func ListSchedules(ctx context.Context, q sqlx.QueryerContext) ([]Schedule, error) {
	out := []Schedule{}
	if err := sqlx.SelectContext(ctx, q, &out, listSchedulesQuery); err != nil {
		return nil, fmt.Errorf("list schedules: %w", translate(err))
	}
	return out, nil
}

// Firing is one (schedule, period) occurrence of a periodic job.
type Firing struct {
	Schedule   string     `db:"schedule"`
	Period     string     `db:"period"`
	DueAt      time.Time  `db:"due_at"`
	TaskID     string     `db:"task_id"`
	FiredBy    string     `db:"fired_by"`
	FiredAt    time.Time  `db:"fired_at"`
	EnqueuedAt *time.Time `db:"enqueued_at"`
}

const insertFiringQuery = `
INSERT INTO schedule_firings (schedule, period, due_at, task_id, fired_by)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (schedule, period) DO NOTHING
RETURNING schedule, period, due_at, task_id, fired_by, fired_at, enqueued_at`

// InsertFiring records a firing unless one exists for its (schedule,
// period); it reports whether this call recorded it. That answer is what
// makes a period fire once however many schedulers try.
func InsertFiring(ctx context.Context, q sqlx.ExtContext, f Firing) (Firing, bool, error) {
	var out Firing
	err := sqlx.GetContext(ctx, q, &out, insertFiringQuery, f.Schedule, f.Period, f.DueAt, f.TaskID, f.FiredBy)
	if err != nil {
		if err = translate(err); errors.Is(err, ErrNotFound) {
			return Firing{}, false, nil
		}
		return Firing{}, false, fmt.Errorf("insert firing %s/%s: %w", f.Schedule, f.Period, err)
	}
	return out, true, nil
}

const firingsSinceQuery = `
SELECT schedule, period, due_at, task_id, fired_by, fired_at, enqueued_at
FROM schedule_firings WHERE schedule = $1 AND due_at >= $2 ORDER BY due_at`

// FiringsSince returns a schedule's firings due at or after since, oldest first.
func FiringsSince(ctx context.Context, q sqlx.QueryerContext, schedule string, since time.Time) ([]Firing, error) {
	var out []Firing
	if err := sqlx.SelectContext(ctx, q, &out, firingsSinceQuery, schedule, since); err != nil {
		return nil, fmt.Errorf("firings of %s: %w", schedule, translate(err))
	}
	return out, nil
}

const unenqueuedFiringsQuery = `
SELECT schedule, period, due_at, task_id, fired_by, fired_at, enqueued_at
FROM schedule_firings WHERE schedule = $1 AND enqueued_at IS NULL ORDER BY due_at`

// UnenqueuedFirings returns a schedule's firings whose work was never handed
// over, oldest first.
func UnenqueuedFirings(ctx context.Context, q sqlx.QueryerContext, schedule string) ([]Firing, error) {
	var out []Firing
	if err := sqlx.SelectContext(ctx, q, &out, unenqueuedFiringsQuery, schedule); err != nil {
		return nil, fmt.Errorf("unenqueued firings of %s: %w", schedule, translate(err))
	}
	return out, nil
}

const markFiringEnqueuedQuery = `
UPDATE schedule_firings SET enqueued_at = now()
WHERE schedule = $1 AND period = $2 AND enqueued_at IS NULL`

// MarkFiringEnqueued records that a firing's work was handed over.
func MarkFiringEnqueued(ctx context.Context, q sqlx.ExecerContext, schedule, period string) error {
	if _, err := q.ExecContext(ctx, markFiringEnqueuedQuery, schedule, period); err != nil {
		return fmt.Errorf("mark firing %s/%s enqueued: %w", schedule, period, translate(err))
	}
	return nil
}
