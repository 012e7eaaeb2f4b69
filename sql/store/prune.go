package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// Bookkeeping names a table of per-event or per-task bookkeeping that is
// pruned by age: rows that only exist so a repeated delivery changes
// nothing twice, or that record a finished failure.
type Bookkeeping string

// The bookkeeping tables pruned by age.
const (
	// BookkeepingProcessedEvents is processed_events: (group, event)
	// pairs consumer groups handled (stream.Once), by processed_at.
	BookkeepingProcessedEvents Bookkeeping = "processed_events"
	// BookkeepingSentEmails is sent_emails: mails sent, by dedupe key, by sent_at.
	BookkeepingSentEmails Bookkeeping = "sent_emails"
	// BookkeepingMailClaims is mail_claims left by attempts that died
	// mid-send, by claimed_at.
	BookkeepingMailClaims Bookkeeping = "mail_claims"
	// BookkeepingTaskFailures is task_failures: tasks whose last attempt
	// failed, by failed_at.
	BookkeepingTaskFailures Bookkeeping = "task_failures"
	// BookkeepingProviderEvents is provider_events: payment provider
	// webhook events recorded once, by received_at.
	BookkeepingProviderEvents Bookkeeping = "provider_events"
)

// Each delete takes a batch of the oldest expired rows that nobody holds
// (SKIP LOCKED: a handler recording a row never waits on the pruner) and
// deletes them by ctid, so one statement touches at most limit rows and
// holds its locks briefly.
var pruneQueries = map[Bookkeeping]string{
	BookkeepingProcessedEvents: pruneQuery("processed_events", "processed_at"),
	BookkeepingSentEmails:      pruneQuery("sent_emails", "sent_at"),
	BookkeepingMailClaims:      pruneQuery("mail_claims", "claimed_at"),
	BookkeepingTaskFailures:    pruneQuery("task_failures", "failed_at"),
	BookkeepingProviderEvents:  pruneQuery("provider_events", "received_at"),
}

func pruneQuery(table, column string) string {
	return `
DELETE FROM ` + table + ` WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM ` + table + `
    WHERE ` + column + ` < now() - make_interval(secs => $1)
    ORDER BY ` + column + ` LIMIT $2
    FOR UPDATE SKIP LOCKED))`
}

// PruneBookkeeping deletes up to limit rows of table older than retention
// (by the database clock) and returns how many it deleted. Call it again
// while it returns limit.
func PruneBookkeeping(ctx context.Context, q sqlx.ExecerContext, table Bookkeeping, retention time.Duration, limit int) (int64, error) {
	query, ok := pruneQueries[table]
	if !ok {
		return 0, fmt.Errorf("prune %s: not a bookkeeping table", table)
	}
	if retention <= 0 || limit <= 0 {
		return 0, fmt.Errorf("prune %s: retention and limit must be positive", table)
	}
	res, err := q.ExecContext(ctx, query, retention.Seconds(), limit)
	if err != nil {
		return 0, fmt.Errorf("prune %s: %w", table, translate(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, errors.Join(fmt.Errorf("prune %s", table), err)
	}
	return n, nil
}
