package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// The event log (events) and the stream positions (event_positions) are
// partitioned by month of the event time, in UTC. Partition names end in
// _yYYYYmMM; migration 0011 defines event_log_ensure_partition, which
// creates both partitions of a month.

// partitionMonthLayout is the suffix of a partition's name as a time layout.
const partitionMonthLayout = "_y2006m01"

// EventPartitionMonth returns the first instant (UTC) of the month whose
// partitions hold events of time t.
func EventPartitionMonth(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// EnsureEventPartitions makes sure the month of now and the ahead months
// after it have their partitions of events and event_positions, and
// returns how many partitions it created. Rows of a new month found in a
// default partition are moved into the new partition.
func EnsureEventPartitions(ctx context.Context, db sqlx.QueryerContext, now time.Time, ahead int) (int, error) {
	first := EventPartitionMonth(now)
	created := 0
	for k := 0; k <= ahead; k++ {
		m := first.AddDate(0, k, 0)
		var n int
		if err := sqlx.GetContext(ctx, db, &n, `SELECT event_log_ensure_partition($1)`, m); err != nil {
			return created, fmt.Errorf("event partitions of %s: %w", m.Format("2006-01"), translate(err))
		}
		created += n
	}
	return created, nil
}

// EventPartition is one attached monthly partition of the event log, with
// its positions partition.
type EventPartition struct {
	// Month is the first instant of the partition's range (UTC).
	Month time.Time
	// Events and Positions name the partitions of events and event_positions.
	Events, Positions string
}

// Until is the exclusive upper bound of the partition's range.
func (p EventPartition) Until() time.Time { return p.Month.AddDate(0, 1, 0) }

const eventPartitionsQuery = `
SELECT c.relname
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'events'::regclass
ORDER BY c.relname`

// EventPartitions lists the attached monthly partitions of the event log,
// oldest first; the default partition is not among them.
func EventPartitions(ctx context.Context, q sqlx.QueryerContext) ([]EventPartition, error) {
	var names []string
	if err := sqlx.SelectContext(ctx, q, &names, eventPartitionsQuery); err != nil {
		return nil, fmt.Errorf("event partitions: %w", translate(err))
	}
	var out []EventPartition
	for _, name := range names {
		suffix, ok := strings.CutPrefix(name, "events")
		if !ok {
			continue
		}
		m, err := time.Parse(partitionMonthLayout, suffix)
		if err != nil {
			continue // events_default, or a table an operator attached
		}
		out = append(out, EventPartition{Month: m, Events: name, Positions: "event_positions" + suffix})
	}
	return out, nil
}

// ExpireEventPartitions detaches the event log's partitions whose whole
// range is before cutoff, with their positions partitions, and drops them
// unless keep is set (they then stay as plain tables of the same names for
// an archive job). Each month goes in one transaction that also deletes
// the month's outbox rows (they can no longer be published) and records
// the horizon. Detaching locks the parent tables for a moment; lockTimeout
// bounds the wait for writers, after which the month is left for the next
// run. It returns the months expired.
func ExpireEventPartitions(ctx context.Context, db *sqlx.DB, cutoff time.Time, keep bool, lockTimeout time.Duration) ([]EventPartition, error) {
	parts, err := EventPartitions(ctx, db)
	if err != nil {
		return nil, err
	}
	var done []EventPartition
	for _, p := range parts {
		if p.Until().After(cutoff) {
			break
		}
		err := WithTx(ctx, db, func(tx *sqlx.Tx) error {
			if _, err := tx.ExecContext(ctx, fmt.Sprintf(`SET LOCAL lock_timeout = %d`, max(lockTimeout.Milliseconds(), 1))); err != nil {
				return err
			}
			for _, stmt := range []string{
				`ALTER TABLE events DETACH PARTITION ` + quoteIdent(p.Events),
				`ALTER TABLE event_positions DETACH PARTITION ` + quoteIdent(p.Positions),
			} {
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return err
				}
			}
			if !keep {
				if _, err := tx.ExecContext(ctx, `DROP TABLE `+quoteIdent(p.Events)+`, `+quoteIdent(p.Positions)); err != nil {
					return err
				}
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE time >= $1 AND time < $2`, p.Month, p.Until()); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `
INSERT INTO event_log_horizon (expired_before) VALUES ($1)
ON CONFLICT (singleton) DO UPDATE SET expired_before = greatest(event_log_horizon.expired_before, EXCLUDED.expired_before)`, p.Until())
			return err
		})
		if err != nil {
			return done, fmt.Errorf("expire event partition %s: %w", p.Events, translate(err))
		}
		done = append(done, p)
	}
	return done, nil
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// EventLogHorizon returns the time before which the event log holds no
// event because its partitions expired; ok is false when none expired.
func EventLogHorizon(ctx context.Context, q sqlx.QueryerContext) (t time.Time, ok bool, err error) {
	err = sqlx.GetContext(ctx, q, &t, `SELECT expired_before FROM event_log_horizon`)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("event log horizon: %w", translate(err))
	}
	return t, true, nil
}

// CheckEventLogCovers returns ErrEventLogExpired when events from since on
// are no longer all in the event log.
func CheckEventLogCovers(ctx context.Context, q sqlx.QueryerContext, since time.Time) error {
	h, ok, err := EventLogHorizon(ctx, q)
	if err != nil {
		return err
	}
	if ok && since.Before(h) {
		return fmt.Errorf("events from %s: the event log starts at %s: %w",
			since.UTC().Format(time.RFC3339), h.UTC().Format(time.RFC3339), ErrEventLogExpired)
	}
	return nil
}

// EventDefaultRows counts the rows in the default partitions of events and
// event_positions: rows whose month had no partition when written. It is
// zero while the scheduler creates partitions ahead.
func EventDefaultRows(ctx context.Context, q sqlx.QueryerContext) (int64, error) {
	var n int64
	err := sqlx.GetContext(ctx, q, &n, `SELECT (SELECT count(*) FROM events_default) + (SELECT count(*) FROM event_positions_default)`)
	if err != nil {
		return 0, fmt.Errorf("rows in default event partitions: %w", translate(err))
	}
	return n, nil
}
