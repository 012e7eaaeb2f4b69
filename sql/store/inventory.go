package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
)

// Reservation states.
const (
	ReservationReserved = "reserved"
	ReservationReleased = "released"
	ReservationFailed   = "failed"
)

// Reservation is the stock held for one order.
type Reservation struct {
	OrderID    uuid.UUID  `db:"order_id"`
	Status     string     `db:"status"`
	Reason     string     `db:"reason"`
	ReservedAt time.Time  `db:"reserved_at"`
	ReleasedAt *time.Time `db:"released_at"`
}

const getReservationQuery = `
SELECT order_id, status, reason, reserved_at, released_at FROM inventory_reservations WHERE order_id = $1`

// GetReservation reads the reservation of an order; ErrNotFound when the
// order was never reserved.
func GetReservation(ctx context.Context, q sqlx.QueryerContext, orderID uuid.UUID) (Reservation, error) {
	var r Reservation
	if err := sqlx.GetContext(ctx, q, &r, getReservationQuery, orderID); err != nil {
		return Reservation{}, fmt.Errorf("get reservation %s: %w", orderID, translate(err))
	}
	return r, nil
}

const insertReservationQuery = `
INSERT INTO inventory_reservations (order_id, status, reason) VALUES ($1, $2, $3)
ON CONFLICT (order_id) DO NOTHING`

// Each decrement is one statement that only succeeds while enough stock is
// left: the row lock it takes serialises concurrent buyers, so stock can
// never go below zero and never be sold twice.
const takeStockQuery = `UPDATE products SET stock = stock - $2, updated_at = now() WHERE id = $1 AND stock >= $2`

// ReserveStock takes the stock of every item of a pending order and
// records the reservation. It locks the order first, so a cancellation
// cannot slip between the check and the reservation (it waits, then its
// event makes the release see this reservation). It returns ErrConflict
// when the order already has a reservation (whatever its state),
// ErrInvalidTransition when the order is no longer pending, and an error
// wrapping ErrInsufficientStock, naming the product, when one item is
// short; the caller must then roll the transaction back, since earlier
// items were already taken.
func ReserveStock(ctx context.Context, tx sqlx.ExtContext, orderID uuid.UUID, items []OrderItem) error {
	var status OrderStatus
	if err := sqlx.GetContext(ctx, tx, &status, `SELECT status FROM orders WHERE id = $1 FOR UPDATE`, orderID); err != nil {
		return fmt.Errorf("reserve stock for %s: %w", orderID, translate(err))
	}
	res, err := tx.ExecContext(ctx, insertReservationQuery, orderID, ReservationReserved, "")
	if err != nil {
		return fmt.Errorf("reserve stock for %s: %w", orderID, translate(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("reserve stock for %s: already reserved: %w", orderID, ErrConflict)
	}
	if status != OrderPending {
		return fmt.Errorf("reserve stock for %s: order is %s: %w", orderID, status, ErrInvalidTransition)
	}
	// Lock product rows in one order (by id) so two orders sharing products
	// cannot deadlock.
	sorted := slices.Clone(items)
	slices.SortFunc(sorted, func(a, b OrderItem) int { return strings.Compare(a.ProductID.String(), b.ProductID.String()) })
	for _, it := range sorted {
		res, err := tx.ExecContext(ctx, takeStockQuery, it.ProductID, it.Quantity)
		if err != nil {
			return fmt.Errorf("reserve %d of %s: %w", it.Quantity, it.ProductID, translate(err))
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("reserve %d of %s: %w", it.Quantity, it.ProductID, ErrInsufficientStock)
		}
	}
	return nil
}

// RecordReservationFailure records that an order could not be reserved, so
// a repeated reservation answers the same. ErrConflict when the order
// already has a reservation.
func RecordReservationFailure(ctx context.Context, q sqlx.ExtContext, orderID uuid.UUID, reason string) error {
	res, err := q.ExecContext(ctx, insertReservationQuery, orderID, ReservationFailed, reason)
	if err != nil {
		return fmt.Errorf("record reservation failure %s: %w", orderID, translate(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("record reservation failure %s: %w", orderID, ErrConflict)
	}
	return nil
}

const releaseReservationQuery = `
UPDATE inventory_reservations SET status = 'released', released_at = now()
WHERE order_id = $1 AND status = 'reserved'`

const returnStockQuery = `
UPDATE products p SET stock = p.stock + i.qty, updated_at = now()
FROM (SELECT product_id, sum(quantity) AS qty FROM order_items WHERE order_id = $1 GROUP BY product_id) i
WHERE p.id = i.product_id`

// ReleaseStock gives the stock of a reserved order back. It reports false
// (and changes nothing) when the order holds no reservation: never
// reserved, failed, or released before.
func ReleaseStock(ctx context.Context, tx sqlx.ExtContext, orderID uuid.UUID) (bool, error) {
	res, err := tx.ExecContext(ctx, releaseReservationQuery, orderID)
	if err != nil {
		return false, fmt.Errorf("release stock of %s: %w", orderID, translate(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return false, nil
	}
	if _, err := tx.ExecContext(ctx, returnStockQuery, orderID); err != nil {
		return false, fmt.Errorf("release stock of %s: %w", orderID, translate(err))
	}
	return true, nil
}

// ReturnSnapshot is what the workers read of a return: the item, how many
// came back and at what price.
type ReturnSnapshot struct {
	ID             uuid.UUID    `db:"id"`
	OrderID        uuid.UUID    `db:"order_id"`
	OrderItemID    uuid.UUID    `db:"order_item_id"`
	SellerID       uuid.UUID    `db:"seller_id"`
	UserID         uuid.UUID    `db:"user_id"`
	ProductID      uuid.UUID    `db:"product_id"`
	ProductName    string       `db:"product_name"`
	Quantity       int          `db:"quantity"`
	UnitPriceMinor int64        `db:"unit_price_minor"`
	Status         ReturnStatus `db:"status"`
	RefundMinor    int64        `db:"refund_minor"`
	Currency       string       `db:"currency"`
}

const returnSnapshotQuery = `
SELECT r.id, r.order_id, r.order_item_id, r.seller_id, r.user_id, i.product_id, i.name AS product_name,
       r.quantity, i.unit_price_minor, r.status, r.refund_minor, r.currency
FROM returns r JOIN order_items i ON i.id = r.order_item_id
WHERE r.id = $1`

// LoadReturnSnapshot reads a return with its item; ErrNotFound when there is none.
func LoadReturnSnapshot(ctx context.Context, q sqlx.QueryerContext, id uuid.UUID) (ReturnSnapshot, error) {
	var r ReturnSnapshot
	if err := sqlx.GetContext(ctx, q, &r, returnSnapshotQuery, id); err != nil {
		return ReturnSnapshot{}, fmt.Errorf("load return %s: %w", id, translate(err))
	}
	return r, nil
}

const insertRestockQuery = `
INSERT INTO inventory_restocks (return_id, product_id, quantity) VALUES ($1, $2, $3)
ON CONFLICT (return_id) DO NOTHING`

// RestockReturn puts the goods of an accepted return back into stock, once
// per return. It reports false when the return was restocked before.
func RestockReturn(ctx context.Context, tx sqlx.ExtContext, r ReturnSnapshot) (bool, error) {
	if r.Status != ReturnStatusAccepted {
		return false, fmt.Errorf("restock return %s: it is %s: %w", r.ID, r.Status, ErrInvalidTransition)
	}
	res, err := tx.ExecContext(ctx, insertRestockQuery, r.ID, r.ProductID, r.Quantity)
	if err != nil {
		return false, fmt.Errorf("restock return %s: %w", r.ID, translate(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return false, nil
	}
	if _, err := tx.ExecContext(ctx, `UPDATE products SET stock = stock + $2, updated_at = now() WHERE id = $1`, r.ProductID, r.Quantity); err != nil {
		return false, fmt.Errorf("restock return %s: %w", r.ID, translate(err))
	}
	return true, nil
}

// ProductStock reads the stock of one product.
func ProductStock(ctx context.Context, q sqlx.QueryerContext, productID uuid.UUID) (int, error) {
	var n int
	if err := sqlx.GetContext(ctx, q, &n, `SELECT stock FROM products WHERE id = $1`, productID); err != nil {
		return 0, fmt.Errorf("product stock %s: %w", productID, translate(err))
	}
	return n, nil
}
