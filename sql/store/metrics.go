package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// ScheduleSuccess is when a schedule last handed its work over.
type ScheduleSuccess struct {
	Schedule string    `db:"schedule"`
	At       time.Time `db:"at"`
}

const lastScheduleSuccessesQuery = `
SELECT schedule, max(enqueued_at) AS at
FROM schedule_firings
WHERE enqueued_at IS NOT NULL
GROUP BY schedule
ORDER BY schedule`

// LastScheduleSuccesses returns, per schedule that ever fired, when its
// latest firing's work was handed over.
func LastScheduleSuccesses(ctx context.Context, q sqlx.QueryerContext) ([]ScheduleSuccess, error) {
	var out []ScheduleSuccess
	if err := sqlx.SelectContext(ctx, q, &out, lastScheduleSuccessesQuery); err != nil {
		return nil, fmt.Errorf("last schedule successes: %w", translate(err))
	}
	return out, nil
}

// RunCompletions counts the completions of invoice runs: Clean ones
// billed every account, Partial ones left some failed.
type RunCompletions struct {
	Clean   int64 `db:"clean"`
	Partial int64 `db:"partial"`
}

// The event log is append-only, so counting completion events gives a
// count that only grows, even when a run is reopened by a retry and
// completes again.
const runCompletionsQuery = `
SELECT count(*) FILTER (WHERE coalesce((data->>'failed')::int, 0) = 0) AS clean,
       count(*) FILTER (WHERE coalesce((data->>'failed')::int, 0) > 0) AS partial
FROM events
WHERE type = $1`

// InvoiceRunCompletions counts the events of eventType (the run completed
// event, whose data holds the run's "failed" accounts) by whether the run
// completed with failed accounts.
func InvoiceRunCompletions(ctx context.Context, q sqlx.QueryerContext, eventType string) (RunCompletions, error) {
	var c RunCompletions
	if err := sqlx.GetContext(ctx, q, &c, runCompletionsQuery, eventType); err != nil {
		return RunCompletions{}, fmt.Errorf("invoice run completions: %w", translate(err))
	}
	return c, nil
}

const latestRunFailedAccountsQuery = `
SELECT count(*)
FROM invoice_run_accounts
WHERE status = 'failed'
  AND run_id = (SELECT id FROM invoice_runs WHERE completions > 0 ORDER BY period_start DESC LIMIT 1)`

// LatestRunFailedAccounts counts the accounts left failed by the latest
// invoice run that has completed (0 when none has). Retrying them turns
// them pending, and done once billed.
func LatestRunFailedAccounts(ctx context.Context, q sqlx.QueryerContext) (int64, error) {
	var n int64
	if err := sqlx.GetContext(ctx, q, &n, latestRunFailedAccountsQuery); err != nil {
		return 0, fmt.Errorf("failed accounts of the latest invoice run: %w", translate(err))
	}
	return n, nil
}
