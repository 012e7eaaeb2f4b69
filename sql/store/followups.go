package store

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
)

// RecordFollowup records the outcome of a deferred check of an order (kind
// "followup" or "reminder"), once per order and kind. It reports false when
// the check was recorded before, so a task run twice acts once.
func RecordFollowup(ctx context.Context, q sqlx.ExtContext, orderID uuid.UUID, kind, outcome string) (bool, error) {
	res, err := q.ExecContext(ctx, `
INSERT INTO order_followups (order_id, kind, outcome) VALUES ($1, $2, $3)
ON CONFLICT (order_id, kind) DO NOTHING`, orderID, kind, outcome)
	if err != nil {
		return false, fmt.Errorf("record %s of %s: %w", kind, orderID, translate(err))
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// FollowupOutcome reads the recorded outcome of a check; ErrNotFound when
// it has not run.
func FollowupOutcome(ctx context.Context, q sqlx.QueryerContext, orderID uuid.UUID, kind string) (string, error) {
	var s string
	if err := sqlx.GetContext(ctx, q, &s, `SELECT outcome FROM order_followups WHERE order_id = $1 AND kind = $2`, orderID, kind); err != nil {
		return "", fmt.Errorf("%s of %s: %w", kind, orderID, translate(err))
	}
	return s, nil
}
