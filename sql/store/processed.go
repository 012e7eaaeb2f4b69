package store

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
)

const markProcessedQuery = `
INSERT INTO processed_events (group_name, event_id) VALUES ($1, $2)
ON CONFLICT DO NOTHING`

// MarkProcessed records that group handled eventID, in tx, and reports
// whether this is the first time. In the transaction that applies the
// event's effects, first == false means the effects are already committed
// and the caller should change nothing; a concurrent duplicate waits for
// the first transaction and then sees first == false (or true, if that one
// rolled back). Effects outside PostgreSQL (the reactor's enqueue) are
// recorded after the fact, on their own, with Processed looked up before.
func MarkProcessed(ctx context.Context, tx sqlx.ExecerContext, group string, eventID uuid.UUID) (first bool, err error) {
	res, err := tx.ExecContext(ctx, markProcessedQuery, group, eventID)
	if err != nil {
		return false, fmt.Errorf("mark event %s processed by %s: %w", eventID, group, translate(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("mark event %s processed by %s: %w", eventID, group, err)
	}
	return n == 1, nil
}

const processedQuery = `
SELECT EXISTS (SELECT 1 FROM processed_events WHERE group_name = $1 AND event_id = $2)`

// Processed reports whether group recorded eventID as handled. It takes no
// lock: a caller that acts on false must tolerate a concurrent duplicate
// doing the same.
func Processed(ctx context.Context, q sqlx.QueryerContext, group string, eventID uuid.UUID) (bool, error) {
	var done bool
	if err := sqlx.GetContext(ctx, q, &done, processedQuery, group, eventID); err != nil {
		return false, fmt.Errorf("look up event %s processed by %s: %w", eventID, group, translate(err))
	}
	return done, nil
}
