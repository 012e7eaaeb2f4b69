package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// OrderSnapshot is what the workers read of an order: enough to reserve its
// stock, charge it and write to its buyer.
type OrderSnapshot struct {
	ID            uuid.UUID  `db:"id"`
	SellerID      uuid.UUID  `db:"seller_id"`
	UserID        uuid.UUID  `db:"user_id"`
	Status        string     `db:"status"`
	Currency      string     `db:"currency"`
	TotalMinor    int64      `db:"total_minor"`
	PaymentMethod string     `db:"payment_method"`
	ScheduledAt   *time.Time `db:"scheduled_at"`
	CancelReason  string     `db:"cancel_reason"`
	CreatedAt     time.Time  `db:"created_at"`
	Items         []OrderSnapshotItem
}

// OrderSnapshotItem is one line of an OrderSnapshot.
type OrderSnapshotItem struct {
	ID             uuid.UUID `db:"id"`
	ProductID      uuid.UUID `db:"product_id"`
	SKU            string    `db:"sku"`
	Name           string    `db:"name"`
	Quantity       int       `db:"quantity"`
	UnitPriceMinor int64     `db:"unit_price_minor"`
	LineTotalMinor int64     `db:"line_total_minor"`
}

const orderSnapshotQuery = `
SELECT id, seller_id, user_id, status, currency, total_minor, payment_method, scheduled_at, cancel_reason, created_at
FROM orders WHERE id = $1`

const orderSnapshotItemsQuery = `
SELECT id, product_id, sku, name, quantity, unit_price_minor, line_total_minor
FROM order_items WHERE order_id = $1 ORDER BY product_id, id`

// LoadOrderSnapshot reads an order and its items (ordered by product, the
// order in which stock rows are locked). ErrNotFound when there is none.
func LoadOrderSnapshot(ctx context.Context, q sqlx.QueryerContext, id uuid.UUID) (OrderSnapshot, error) {
	var o OrderSnapshot
	if err := sqlx.GetContext(ctx, q, &o, orderSnapshotQuery, id); err != nil {
		return OrderSnapshot{}, fmt.Errorf("load order %s: %w", id, translate(err))
	}
	if err := sqlx.SelectContext(ctx, q, &o.Items, orderSnapshotItemsQuery, id); err != nil {
		return OrderSnapshot{}, fmt.Errorf("load order %s items: %w", id, translate(err))
	}
	return o, nil
}

// The order states the workers move orders between. The API's state
// machine owns the full set; these are the ones the saga touches.
const (
	sagaPending   = "pending"
	sagaConfirmed = "confirmed"
	sagaCancelled = "cancelled"
)

const moveOrderQuery = `
UPDATE orders SET status = $2, updated_at = now(),
       confirmed_at = CASE WHEN $2 = 'confirmed' THEN now() ELSE confirmed_at END,
       cancelled_at = CASE WHEN $2 = 'cancelled' THEN now() ELSE cancelled_at END,
       cancel_reason = CASE WHEN $2 = 'cancelled' THEN $4 ELSE cancel_reason END
WHERE id = $1 AND status = ANY($3)`

// moveOrder changes an order's status only when it is in one of from, so a
// late or repeated event can never move an order backwards. It returns
// ErrInvalidTransition (naming the current status) when the order is
// elsewhere, ErrNotFound when there is no order.
func moveOrder(ctx context.Context, q sqlx.ExtContext, id uuid.UUID, from []string, to, reason string) error {
	res, err := q.ExecContext(ctx, moveOrderQuery, id, to, pq.Array(from), reason)
	if err != nil {
		return fmt.Errorf("move order %s to %s: %w", id, to, translate(err))
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return nil
	}
	var cur string
	if err := sqlx.GetContext(ctx, q, &cur, `SELECT status FROM orders WHERE id = $1`, id); err != nil {
		return fmt.Errorf("move order %s to %s: %w", id, to, translate(err))
	}
	return fmt.Errorf("order %s is %s, cannot become %s: %w", id, cur, to, ErrInvalidTransition)
}

// ConfirmPaidOrder moves a pending order to confirmed after its payment
// succeeded.
func ConfirmPaidOrder(ctx context.Context, q sqlx.ExtContext, id uuid.UUID) error {
	return moveOrder(ctx, q, id, []string{sagaPending}, sagaConfirmed, "")
}

// CancelPendingOrder moves a pending order to cancelled with a reason (the
// saga's compensation path: stock unavailable, payment failed).
func CancelPendingOrder(ctx context.Context, q sqlx.ExtContext, id uuid.UUID, reason string) error {
	return moveOrder(ctx, q, id, []string{sagaPending}, sagaCancelled, reason)
}

// IsCancelled reports whether the order is cancelled.
func (o OrderSnapshot) IsCancelled() bool { return o.Status == sagaCancelled }

// IsPending reports whether the order still waits for stock and payment to
// settle it.
func (o OrderSnapshot) IsPending() bool { return o.Status == sagaPending }
