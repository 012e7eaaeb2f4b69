package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
)

// Payment states.
const (
	PaymentSucceeded = "succeeded"
	PaymentFailed    = "failed"
	PaymentRefunded  = "refunded"
)

// Payment is the outcome of charging an order, one per order.
type Payment struct {
	ID             uuid.UUID  `db:"id"`
	OrderID        uuid.UUID  `db:"order_id"`
	Status         string     `db:"status"`
	AmountMinor    int64      `db:"amount_minor"`
	Currency       string     `db:"currency"`
	Gateway        string     `db:"gateway"`
	ChargeID       string     `db:"charge_id"`
	DeclineCode    string     `db:"decline_code"`
	IdempotencyKey string     `db:"idempotency_key"`
	RefundID       string     `db:"refund_id"`
	CreatedAt      time.Time  `db:"created_at"`
	RefundedAt     *time.Time `db:"refunded_at"`
}

const insertPaymentQuery = `
INSERT INTO payments (id, order_id, status, amount_minor, currency, gateway, charge_id, decline_code, idempotency_key)
VALUES (:id, :order_id, :status, :amount_minor, :currency, :gateway, :charge_id, :decline_code, :idempotency_key)
ON CONFLICT (order_id) DO NOTHING`

// InsertPayment records the outcome of a charge. ErrConflict when the order
// already has a payment: the charge was recorded by an earlier run.
func InsertPayment(ctx context.Context, q sqlx.ExtContext, p Payment) error {
	if p.ID == uuid.Nil {
		id, err := uuid.NewV7()
		if err != nil {
			return fmt.Errorf("payment id: %w", err)
		}
		p.ID = id
	}
	res, err := sqlx.NamedExecContext(ctx, q, insertPaymentQuery, p)
	if err != nil {
		return fmt.Errorf("insert payment for %s: %w", p.OrderID, translate(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("insert payment for %s: %w", p.OrderID, ErrConflict)
	}
	return nil
}

const paymentByOrderQuery = `
SELECT id, order_id, status, amount_minor, currency, gateway, charge_id, decline_code, idempotency_key,
       refund_id, created_at, refunded_at
FROM payments WHERE order_id = $1`

// PaymentByOrder reads the payment of an order; ErrNotFound when it was
// never charged.
func PaymentByOrder(ctx context.Context, q sqlx.QueryerContext, orderID uuid.UUID) (Payment, error) {
	var p Payment
	if err := sqlx.GetContext(ctx, q, &p, paymentByOrderQuery, orderID); err != nil {
		return Payment{}, fmt.Errorf("payment of %s: %w", orderID, translate(err))
	}
	return p, nil
}

const lockPaymentQuery = paymentByOrderQuery + ` FOR UPDATE`

// LockPaymentByOrder reads the payment of an order and locks it until the
// transaction ends, so two refunds of one payment run one after the other.
func LockPaymentByOrder(ctx context.Context, tx sqlx.QueryerContext, orderID uuid.UUID) (Payment, error) {
	var p Payment
	if err := sqlx.GetContext(ctx, tx, &p, lockPaymentQuery, orderID); err != nil {
		return Payment{}, fmt.Errorf("lock payment of %s: %w", orderID, translate(err))
	}
	return p, nil
}

// MarkPaymentRefunded records a refund of a succeeded payment. It returns
// ErrInvalidTransition when the payment is not in the succeeded state.
func MarkPaymentRefunded(ctx context.Context, q sqlx.ExtContext, orderID uuid.UUID, refundID string) error {
	res, err := q.ExecContext(ctx, `
UPDATE payments SET status = 'refunded', refund_id = $2, refunded_at = now()
WHERE order_id = $1 AND status = 'succeeded'`, orderID, refundID)
	if err != nil {
		return fmt.Errorf("mark payment of %s refunded: %w", orderID, translate(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("mark payment of %s refunded: %w", orderID, ErrInvalidTransition)
	}
	return nil
}
