package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
)

// PointsAccount is a buyer's loyalty points balance.
type PointsAccount struct {
	UserID    uuid.UUID `db:"user_id"`
	Balance   int64     `db:"balance"`
	CreatedAt time.Time `db:"created_at"`
	UpdatedAt time.Time `db:"updated_at"`
}

// PointsEntry is one movement of a points balance.
type PointsEntry struct {
	ID        int64     `db:"id"`
	UserID    uuid.UUID `db:"user_id"`
	Delta     int64     `db:"delta"`
	Reason    string    `db:"reason"`
	SourceKey string    `db:"source_key"`
	CreatedAt time.Time `db:"created_at"`
}

// OpenPointsAccount opens a zero balance for a user. It reports false when
// the account exists already.
func OpenPointsAccount(ctx context.Context, q sqlx.ExtContext, userID uuid.UUID) (bool, error) {
	res, err := q.ExecContext(ctx, `INSERT INTO points_accounts (user_id) VALUES ($1) ON CONFLICT (user_id) DO NOTHING`, userID)
	if err != nil {
		return false, fmt.Errorf("open points account %s: %w", userID, translate(err))
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// GetPointsAccount reads a user's balance; ErrNotFound when none is open.
func GetPointsAccount(ctx context.Context, q sqlx.QueryerContext, userID uuid.UUID) (PointsAccount, error) {
	var a PointsAccount
	if err := sqlx.GetContext(ctx, q, &a, `SELECT user_id, balance, created_at, updated_at FROM points_accounts WHERE user_id = $1`, userID); err != nil {
		return PointsAccount{}, fmt.Errorf("points account %s: %w", userID, translate(err))
	}
	return a, nil
}

// AddPoints moves a balance by delta (negative to take points back), once
// per sourceKey: it reports false and changes nothing when the key was used
// before. A negative delta never takes the balance below zero; the entry
// records what was actually taken. The account must exist (ErrNotFound).
func AddPoints(ctx context.Context, tx sqlx.ExtContext, userID uuid.UUID, delta int64, reason, sourceKey string) (PointsEntry, bool, error) {
	var balance int64
	if err := sqlx.GetContext(ctx, tx, &balance, `SELECT balance FROM points_accounts WHERE user_id = $1 FOR UPDATE`, userID); err != nil {
		return PointsEntry{}, false, fmt.Errorf("add points to %s: %w", userID, translate(err))
	}
	if delta < 0 && balance+delta < 0 {
		delta = -balance
	}
	var e PointsEntry
	err := sqlx.GetContext(ctx, tx, &e, `
INSERT INTO points_ledger (user_id, delta, reason, source_key) VALUES ($1, $2, $3, $4)
ON CONFLICT (source_key) DO NOTHING
RETURNING id, user_id, delta, reason, source_key, created_at`, userID, delta, reason, sourceKey)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) { // the key was used before
			return PointsEntry{}, false, nil
		}
		return PointsEntry{}, false, fmt.Errorf("add points to %s: %w", userID, translate(err))
	}
	if _, err := tx.ExecContext(ctx, `UPDATE points_accounts SET balance = balance + $2, updated_at = now() WHERE user_id = $1`, userID, delta); err != nil {
		return PointsEntry{}, false, fmt.Errorf("add points to %s: %w", userID, translate(err))
	}
	return e, true, nil
}

// PointsLedger lists a user's point movements, oldest first.
func PointsLedger(ctx context.Context, q sqlx.QueryerContext, userID uuid.UUID) ([]PointsEntry, error) {
	var out []PointsEntry
	if err := sqlx.SelectContext(ctx, q, &out, `
SELECT id, user_id, delta, reason, source_key, created_at FROM points_ledger WHERE user_id = $1 ORDER BY id`, userID); err != nil {
		return nil, fmt.Errorf("points ledger %s: %w", userID, translate(err))
	}
	return out, nil
}

// PointsForSource returns the points a source key moved (0 when it did not).
func PointsForSource(ctx context.Context, q sqlx.QueryerContext, sourceKey string) (int64, error) {
	var n int64
	if err := sqlx.GetContext(ctx, q, &n, `SELECT coalesce(sum(delta), 0) FROM points_ledger WHERE source_key = $1`, sourceKey); err != nil {
		return 0, fmt.Errorf("points for %s: %w", sourceKey, translate(err))
	}
	return n, nil
}
