package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
)

// PrinterAck records that a receipt printer (an API key with role printer)
// printed an order.
type PrinterAck struct {
	OrderID      uuid.UUID `db:"order_id"`
	PrinterKeyID uuid.UUID `db:"printer_key_id"`
	SellerID     uuid.UUID `db:"seller_id"`
	AckedAt      time.Time `db:"acked_at"`
}

// The insert and the read of an earlier acknowledgement see one snapshot,
// so exactly one of the two arms returns a row when the order exists.
const ackOrderQuery = `
WITH o AS (
    SELECT id, seller_id FROM orders WHERE id = $1 AND seller_id = $3
), ins AS (
    INSERT INTO printer_acks (order_id, printer_key_id, seller_id)
    SELECT id, $2, seller_id FROM o
    ON CONFLICT (order_id, printer_key_id) DO NOTHING
    RETURNING order_id, printer_key_id, seller_id, acked_at
)
SELECT order_id, printer_key_id, seller_id, acked_at, true AS created FROM ins
UNION ALL
SELECT a.order_id, a.printer_key_id, a.seller_id, a.acked_at, false
FROM printer_acks a JOIN o ON o.id = a.order_id
WHERE a.printer_key_id = $2 AND NOT EXISTS (SELECT 1 FROM ins)`

// AckOrder records that printer printed an order of seller. Acknowledging
// the same order again returns the first acknowledgement with created
// false. An order that does not exist or belongs to another seller is
// ErrNotFound.
func AckOrder(ctx context.Context, q sqlx.QueryerContext, printerKeyID, sellerID, orderID uuid.UUID) (PrinterAck, bool, error) {
	var row struct {
		PrinterAck
		Created bool `db:"created"`
	}
	if err := sqlx.GetContext(ctx, q, &row, ackOrderQuery, orderID, printerKeyID, sellerID); err != nil {
		return PrinterAck{}, false, fmt.Errorf("acknowledge order %s: %w", orderID, translate(err))
	}
	return row.PrinterAck, row.Created, nil
}

// UnprintedOrders returns one page of a seller's orders that no printer has
// acknowledged, oldest first (the order a printer prints them in), with
// their items, and the cursor of the next page (nil on the last).
func UnprintedOrders(ctx context.Context, q sqlx.QueryerContext, sellerID uuid.UUID, p Page) ([]Order, *Cursor, error) {
	query := `SELECT ` + orderColumns + ` FROM orders o
WHERE seller_id = $1
  AND NOT EXISTS (SELECT 1 FROM printer_acks a WHERE a.order_id = o.id)
  AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3))
ORDER BY created_at, id LIMIT $4`
	var afterAt *time.Time
	var afterID *uuid.UUID
	if p.After != nil {
		afterAt, afterID = &p.After.CreatedAt, &p.After.ID
	}
	out := []Order{}
	if err := sqlx.SelectContext(ctx, q, &out, query, sellerID, afterAt, afterID, p.limit()+1); err != nil {
		return nil, nil, fmt.Errorf("unprinted orders: %w", translate(err))
	}
	rows, next := pageOf(out, p.limit(), func(o Order) Cursor { return Cursor{o.CreatedAt, o.ID} })
	if err := loadItems(ctx, q, rows); err != nil {
		return nil, nil, err
	}
	return rows, next, nil
}
