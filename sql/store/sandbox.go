package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// SandboxCharge is one charge the sandbox payment gateway answered, by its
// idempotency key. ChargeID is empty for a declined charge.
type SandboxCharge struct {
	IdempotencyKey string    `db:"idempotency_key"`
	Token          string    `db:"token"`
	AmountMinor    int64     `db:"amount_minor"`
	Currency       string    `db:"currency"`
	ChargeID       string    `db:"charge_id"`
	DeclineCode    string    `db:"decline_code"`
	Answered       bool      `db:"answered"`
	CreatedAt      time.Time `db:"created_at"`
}

// ClaimSandboxCharge stores c unless its key is taken, and returns the
// charge stored under the key with first telling which happened. Two
// processes claiming one key at once get the same row: the loser waits for
// the winner's insert and reads it. A stored charge not yet answered (a
// lost first answer) is marked answered by the second claim, which sees
// it unanswered.
func ClaimSandboxCharge(ctx context.Context, q sqlx.ExtContext, c SandboxCharge) (stored SandboxCharge, first bool, err error) {
	res, err := q.ExecContext(ctx, `
INSERT INTO sandbox_charges (idempotency_key, token, amount_minor, currency, charge_id, decline_code, answered)
VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (idempotency_key) DO NOTHING`,
		c.IdempotencyKey, c.Token, c.AmountMinor, c.Currency, c.ChargeID, c.DeclineCode, c.Answered)
	if err != nil {
		return SandboxCharge{}, false, fmt.Errorf("claim sandbox charge: %w", translate(err))
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return c, true, nil
	}
	// The answered flag is flipped in the same statement that reads it, so
	// only one caller sees the lost answer.
	err = sqlx.GetContext(ctx, q, &stored, `
WITH prev AS (SELECT * FROM sandbox_charges WHERE idempotency_key = $1 FOR UPDATE),
upd AS (UPDATE sandbox_charges s SET answered = true FROM prev
        WHERE s.idempotency_key = prev.idempotency_key AND NOT prev.answered)
SELECT idempotency_key, token, amount_minor, currency, charge_id, decline_code, answered, created_at FROM prev`, c.IdempotencyKey)
	if err != nil {
		return SandboxCharge{}, false, fmt.Errorf("read sandbox charge: %w", translate(err))
	}
	return stored, false, nil
}

// ClaimSandboxRefund stores a refund of chargeID under key unless the key
// or the charge was refunded before, and returns the refund id stored.
func ClaimSandboxRefund(ctx context.Context, q sqlx.ExtContext, key, chargeID string, amountMinor int64, refundID string) (string, error) {
	var id string
	err := sqlx.GetContext(ctx, q, &id, `
INSERT INTO sandbox_refunds (idempotency_key, charge_id, amount_minor, refund_id) VALUES ($1, $2, $3, $4)
ON CONFLICT (idempotency_key) DO UPDATE SET idempotency_key = EXCLUDED.idempotency_key
RETURNING refund_id`, key, chargeID, amountMinor, refundID)
	if err != nil {
		return "", fmt.Errorf("claim sandbox refund: %w", translate(err))
	}
	return id, nil
}

// SandboxRefunded sums what was refunded of chargeID.
func SandboxRefunded(ctx context.Context, q sqlx.QueryerContext, chargeID string) (int64, error) {
	var n int64
	err := sqlx.GetContext(ctx, q, &n, `SELECT coalesce(sum(amount_minor), 0) FROM sandbox_refunds WHERE charge_id = $1`, chargeID)
	if err != nil {
		return 0, fmt.Errorf("sandbox refunds of %s: %w", chargeID, translate(err))
	}
	return n, nil
}

// CountSandboxCharges counts the sandbox's successful charges.
func CountSandboxCharges(ctx context.Context, q sqlx.QueryerContext) (int, error) {
	var n int
	if err := sqlx.GetContext(ctx, q, &n, `SELECT count(*) FROM sandbox_charges WHERE charge_id <> ''`); err != nil {
		return 0, fmt.Errorf("count sandbox charges: %w", translate(err))
	}
	return n, nil
}

// PruneSandbox deletes sandbox charges and refunds older than before and
// returns how many rows went.
func PruneSandbox(ctx context.Context, q sqlx.ExtContext, before time.Time) (int64, error) {
	var total int64
	for _, query := range []string{
		`DELETE FROM sandbox_charges WHERE created_at < $1`,
		`DELETE FROM sandbox_refunds WHERE created_at < $1`,
	} {
		res, err := q.ExecContext(ctx, query, before)
		if err != nil {
			return total, fmt.Errorf("prune sandbox: %w", translate(err))
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, errors.Join(errors.New("prune sandbox"), err)
		}
		total += n
	}
	return total, nil
}
