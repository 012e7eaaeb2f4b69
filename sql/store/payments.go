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
	// PaymentPending is a charge the provider has not settled yet (3-D
	// Secure, processing); its webhook settles it.
	PaymentPending   = "pending"
	PaymentSucceeded = "succeeded"
	PaymentFailed    = "failed"
	PaymentRefunded  = "refunded"
)

// Payment is the outcome of charging an order, one per order.
type Payment struct {
	ID             uuid.UUID `db:"id"`
	OrderID        uuid.UUID `db:"order_id"`
	Status         string    `db:"status"`
	AmountMinor    int64     `db:"amount_minor"`
	Currency       string    `db:"currency"`
	Gateway        string    `db:"gateway"`
	ChargeID       string    `db:"charge_id"`
	DeclineCode    string    `db:"decline_code"`
	IdempotencyKey string    `db:"idempotency_key"`
	RefundID       string    `db:"refund_id"`
	// Destination is the seller's connected account the charge pays out
	// to; empty when the platform kept the whole charge.
	Destination         string     `db:"destination"`
	ApplicationFeeMinor int64      `db:"application_fee_minor"`
	CreatedAt           time.Time  `db:"created_at"`
	RefundedAt          *time.Time `db:"refunded_at"`
}

const insertPaymentQuery = `
INSERT INTO payments (id, order_id, status, amount_minor, currency, gateway, charge_id, decline_code, idempotency_key,
                      destination, application_fee_minor)
VALUES (:id, :order_id, :status, :amount_minor, :currency, :gateway, :charge_id, :decline_code, :idempotency_key,
        :destination, :application_fee_minor)
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

const paymentColumnsQuery = `
SELECT id, order_id, status, amount_minor, currency, gateway, charge_id, decline_code, idempotency_key,
       refund_id, destination, application_fee_minor, created_at, refunded_at
FROM payments`

const paymentByOrderQuery = paymentColumnsQuery + ` WHERE order_id = $1`

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

const paymentByChargeQuery = paymentColumnsQuery + ` WHERE charge_id = $1 AND charge_id <> '' FOR UPDATE`

// LockPaymentByCharge reads the payment with the provider's charge (or
// PaymentIntent) id and locks it until the transaction ends; ErrNotFound
// when no payment has it.
func LockPaymentByCharge(ctx context.Context, tx sqlx.QueryerContext, chargeID string) (Payment, error) {
	var p Payment
	if err := sqlx.GetContext(ctx, tx, &p, paymentByChargeQuery, chargeID); err != nil {
		return Payment{}, fmt.Errorf("lock payment of charge %s: %w", chargeID, translate(err))
	}
	return p, nil
}

// SettlePayment moves a pending payment to succeeded or failed (with the
// decline code). It returns ErrInvalidTransition when the payment is not
// pending: the outcome was settled before.
func SettlePayment(ctx context.Context, q sqlx.ExtContext, id uuid.UUID, status, declineCode string) error {
	if status != PaymentSucceeded && status != PaymentFailed {
		return fmt.Errorf("settle payment %s as %q: %w", id, status, ErrInvalidTransition)
	}
	res, err := q.ExecContext(ctx, `
UPDATE payments SET status = $2, decline_code = $3 WHERE id = $1 AND status = 'pending'`, id, status, declineCode)
	if err != nil {
		return fmt.Errorf("settle payment %s: %w", id, translate(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("settle payment %s: %w", id, ErrInvalidTransition)
	}
	return nil
}

// ReturnRefund is the refund of an accepted return.
type ReturnRefund struct {
	ReturnID    uuid.UUID `db:"return_id"`
	OrderID     uuid.UUID `db:"order_id"`
	AmountMinor int64     `db:"amount_minor"`
	RefundID    string    `db:"refund_id"`
	RefundedAt  time.Time `db:"refunded_at"`
}

// InsertReturnRefund records the refund of a return; ErrConflict when the
// return was refunded before.
func InsertReturnRefund(ctx context.Context, q sqlx.ExtContext, r ReturnRefund) error {
	res, err := q.ExecContext(ctx, `
INSERT INTO return_refunds (return_id, order_id, amount_minor, refund_id) VALUES ($1, $2, $3, $4)
ON CONFLICT (return_id) DO NOTHING`, r.ReturnID, r.OrderID, r.AmountMinor, r.RefundID)
	if err != nil {
		return fmt.Errorf("insert refund of return %s: %w", r.ReturnID, translate(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("insert refund of return %s: %w", r.ReturnID, ErrConflict)
	}
	return nil
}

// GetReturnRefund reads the refund of a return; ErrNotFound when it was
// not refunded.
func GetReturnRefund(ctx context.Context, q sqlx.QueryerContext, returnID uuid.UUID) (ReturnRefund, error) {
	var r ReturnRefund
	err := sqlx.GetContext(ctx, q, &r, `
SELECT return_id, order_id, amount_minor, refund_id, refunded_at FROM return_refunds WHERE return_id = $1`, returnID)
	if err != nil {
		return ReturnRefund{}, fmt.Errorf("refund of return %s: %w", returnID, translate(err))
	}
	return r, nil
}

// RecordProviderEvent records a payment provider's webhook event by its
// id, in tx, and reports whether this is the first time: when first is
// false its effects are already committed.
func RecordProviderEvent(ctx context.Context, tx sqlx.ExecerContext, id, typ string) (first bool, err error) {
	res, err := tx.ExecContext(ctx, `
INSERT INTO provider_events (id, type) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING`, id, typ)
	if err != nil {
		return false, fmt.Errorf("record provider event %s: %w", id, translate(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("record provider event %s: %w", id, err)
	}
	return n == 1, nil
}
