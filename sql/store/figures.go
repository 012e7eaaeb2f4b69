package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// OrderEventTypes are the order events the business figures count, one
// per state an order reaches.
var OrderEventTypes = []string{"order.created", "order.confirmed", "order.shipped", "order.delivered", "order.cancelled"}

// OrderEventTotal counts the order events of one type and currency
// recorded in a window, with the sum of their orders' totals.
type OrderEventTotal struct {
	Type       string `db:"type"`
	Currency   string `db:"currency"`
	Events     int64  `db:"events"`
	TotalMinor int64  `db:"total_minor"`
}

const orderEventTotalsQuery = `
SELECT type, coalesce(data->>'currency', '') AS currency, count(*) AS events,
       coalesce(sum((data->>'total_minor')::bigint), 0)::bigint AS total_minor
FROM events
WHERE type = ANY($1) AND time >= $2
GROUP BY 1, 2
ORDER BY 1, 2`

// OrderEventTotals returns, per order event type and currency, how many
// events the outbox recorded since a time and their orders' totals.
func OrderEventTotals(ctx context.Context, q sqlx.QueryerContext, since time.Time) ([]OrderEventTotal, error) {
	out := []OrderEventTotal{}
	if err := sqlx.SelectContext(ctx, q, &out, orderEventTotalsQuery, pq.Array(OrderEventTypes), since); err != nil {
		return nil, fmt.Errorf("order event totals: %w", translate(err))
	}
	return out, nil
}

// ReasonCount is how many orders were cancelled for one reason.
type ReasonCount struct {
	Reason string `db:"reason"`
	Orders int64  `db:"orders"`
}

const cancellationReasonsQuery = `
SELECT coalesce(nullif(data->>'cancel_reason', ''), 'unspecified') AS reason, count(*) AS orders
FROM events
WHERE type = 'order.cancelled' AND time >= $1
GROUP BY 1
ORDER BY 2 DESC, 1
LIMIT $2`

// CancellationReasons returns the limit most frequent reasons of the
// order.cancelled events since a time, most frequent first.
func CancellationReasons(ctx context.Context, q sqlx.QueryerContext, since time.Time, limit int) ([]ReasonCount, error) {
	out := []ReasonCount{}
	if err := sqlx.SelectContext(ctx, q, &out, cancellationReasonsQuery, since, limit); err != nil {
		return nil, fmt.Errorf("cancellation reasons: %w", translate(err))
	}
	return out, nil
}

// SellerOrders is how many orders one seller received.
type SellerOrders struct {
	SellerID uuid.UUID `db:"seller_id"`
	Name     string    `db:"name"`
	Orders   int64     `db:"orders"`
}

const topSellersQuery = `
SELECT e.seller_id, s.name, count(*) AS orders
FROM events e JOIN sellers s ON s.id = e.seller_id
WHERE e.type = 'order.created' AND e.time >= $1
GROUP BY 1, 2
ORDER BY 3 DESC, 2
LIMIT $2`

// TopSellers returns the limit sellers with the most order.created events
// since a time, most orders first.
func TopSellers(ctx context.Context, q sqlx.QueryerContext, since time.Time, limit int) ([]SellerOrders, error) {
	out := []SellerOrders{}
	if err := sqlx.SelectContext(ctx, q, &out, topSellersQuery, since, limit); err != nil {
		return nil, fmt.Errorf("top sellers: %w", translate(err))
	}
	return out, nil
}

// OrderLine is an order as a person reads it: seller and buyer by name,
// items, amount and state.
type OrderLine struct {
	ID           uuid.UUID   `db:"id"`
	SellerID     uuid.UUID   `db:"seller_id"`
	SellerName   string      `db:"seller_name"`
	BuyerName    string      `db:"buyer_name"`
	BuyerEmail   string      `db:"buyer_email"`
	Items        int64       `db:"items"`
	Currency     string      `db:"currency"`
	TotalMinor   int64       `db:"total_minor"`
	Status       OrderStatus `db:"status"`
	CancelReason string      `db:"cancel_reason"`
	CreatedAt    time.Time   `db:"created_at"`
	UpdatedAt    time.Time   `db:"updated_at"`
	// Reservation is the stock reservation's status (reserved, released
	// or failed), empty before the inventory worker saw the order.
	Reservation string `db:"reservation"`
	// Payment is the payment's status (succeeded, failed or refunded),
	// empty before the payment worker charged it.
	Payment string `db:"payment"`
}

const recentOrderLinesQuery = `
SELECT o.id, o.seller_id, s.name AS seller_name, u.name AS buyer_name, u.email AS buyer_email,
       (SELECT coalesce(sum(i.quantity), 0) FROM order_items i WHERE i.order_id = o.id) AS items,
       o.currency, o.total_minor, o.status, o.cancel_reason, o.created_at, o.updated_at,
       coalesce(r.status, '') AS reservation, coalesce(p.status, '') AS payment
FROM orders o
JOIN sellers s ON s.id = o.seller_id
JOIN users u ON u.id = o.user_id
LEFT JOIN inventory_reservations r ON r.order_id = o.id
LEFT JOIN payments p ON p.order_id = o.id
WHERE ($1::uuid IS NULL OR o.seller_id = $1) AND ($2 = '' OR o.status = $2) AND ($3::uuid IS NULL OR o.id = $3)
ORDER BY o.created_at DESC, o.id DESC
LIMIT $4`

// RecentOrderLines returns the newest limit orders, optionally of one
// seller, in one state, or only the order with id.
func RecentOrderLines(ctx context.Context, q sqlx.QueryerContext, seller *uuid.UUID, status OrderStatus, id *uuid.UUID, limit int) ([]OrderLine, error) {
	out := []OrderLine{}
	if err := sqlx.SelectContext(ctx, q, &out, recentOrderLinesQuery, seller, string(status), id, limit); err != nil {
		return nil, fmt.Errorf("recent orders: %w", translate(err))
	}
	return out, nil
}
