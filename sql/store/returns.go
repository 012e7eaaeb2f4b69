package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
)

// ReturnStatus is the state of a return: open until the seller accepts or
// rejects it.
type ReturnStatus string

// The states of a return.
const (
	ReturnStatusOpen     ReturnStatus = "open"
	ReturnStatusAccepted ReturnStatus = "accepted"
	ReturnStatusRejected ReturnStatus = "rejected"
)

// Valid reports whether s is one of the return states.
func (s ReturnStatus) Valid() bool {
	switch s {
	case ReturnStatusOpen, ReturnStatusAccepted, ReturnStatusRejected:
		return true
	}
	return false
}

// Return is a buyer's return or claim on some units of one order item.
type Return struct {
	ID          uuid.UUID    `db:"id"`
	OrderID     uuid.UUID    `db:"order_id"`
	OrderItemID uuid.UUID    `db:"order_item_id"`
	SellerID    uuid.UUID    `db:"seller_id"`
	UserID      uuid.UUID    `db:"user_id"`
	Quantity    int          `db:"quantity"`
	Reason      string       `db:"reason"`
	Status      ReturnStatus `db:"status"`
	Resolution  string       `db:"resolution"`
	RefundMinor int64        `db:"refund_minor"`
	Currency    string       `db:"currency"`
	CreatedAt   time.Time    `db:"created_at"`
	ResolvedAt  *time.Time   `db:"resolved_at"`
}

const returnColumns = `id, order_id, order_item_id, seller_id, user_id, quantity, reason, status, resolution,
refund_minor, currency, created_at, resolved_at`

const lockOrderItemQuery = `SELECT ` + orderItemColumns + ` FROM order_items WHERE id = $1 AND order_id = $2 FOR UPDATE`

const returnedQuantityQuery = `
SELECT coalesce(sum(quantity), 0) FROM returns WHERE order_item_id = $1 AND status <> 'rejected'`

// ReturnableItem locks an item of an order until the transaction ends (so
// concurrent returns on it are counted one after the other) and returns it
// with how many of its units may still be returned: those bought minus
// those in open or accepted returns. ErrNotFound when the order has no
// such item.
func ReturnableItem(ctx context.Context, q sqlx.QueryerContext, orderID, itemID uuid.UUID) (OrderItem, int, error) {
	var it OrderItem
	if err := sqlx.GetContext(ctx, q, &it, lockOrderItemQuery, itemID, orderID); err != nil {
		return OrderItem{}, 0, fmt.Errorf("lock order item %s: %w", itemID, translate(err))
	}
	var returned int
	if err := sqlx.GetContext(ctx, q, &returned, returnedQuantityQuery, itemID); err != nil {
		return OrderItem{}, 0, fmt.Errorf("returned quantity of %s: %w", itemID, translate(err))
	}
	return it, it.Quantity - returned, nil
}

const insertReturnQuery = `
INSERT INTO returns (id, order_id, order_item_id, seller_id, user_id, quantity, reason, currency)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING ` + returnColumns

// CreateReturn inserts an open return with a fresh id. The caller checks
// the order's state and the quantity (ReturnableItem) in the same
// transaction.
func CreateReturn(ctx context.Context, q sqlx.QueryerContext, r Return) (Return, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return Return{}, fmt.Errorf("return id: %w", err)
	}
	var out Return
	err = sqlx.GetContext(ctx, q, &out, insertReturnQuery, id, r.OrderID, r.OrderItemID, r.SellerID, r.UserID,
		r.Quantity, r.Reason, r.Currency)
	if err != nil {
		return Return{}, fmt.Errorf("create return: %w", translate(err))
	}
	return out, nil
}

const getReturnQuery = `SELECT ` + returnColumns + ` FROM returns WHERE id = $1`

// GetReturn reads one return; ErrNotFound when there is none.
func GetReturn(ctx context.Context, q sqlx.QueryerContext, id uuid.UUID) (Return, error) {
	var r Return
	if err := sqlx.GetContext(ctx, q, &r, getReturnQuery, id); err != nil {
		return Return{}, fmt.Errorf("get return %s: %w", id, translate(err))
	}
	return r, nil
}

// ReturnFilter narrows a list of returns; zero fields do not filter.
type ReturnFilter struct {
	OrderID  *uuid.UUID
	SellerID *uuid.UUID
	UserID   *uuid.UUID
	Status   ReturnStatus
}

// ListReturns returns one page of returns matching f, newest first, and
// the cursor of the next page (nil on the last).
func ListReturns(ctx context.Context, q sqlx.QueryerContext, f ReturnFilter, p Page) ([]Return, *Cursor, error) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if f.OrderID != nil {
		where = append(where, "order_id = "+arg(*f.OrderID))
	}
	if f.SellerID != nil {
		where = append(where, "seller_id = "+arg(*f.SellerID))
	}
	if f.UserID != nil {
		where = append(where, "user_id = "+arg(*f.UserID))
	}
	if f.Status != "" {
		where = append(where, "status = "+arg(string(f.Status)))
	}
	if p.After != nil {
		where = append(where, fmt.Sprintf("(created_at, id) < (%s, %s)", arg(p.After.CreatedAt), arg(p.After.ID)))
	}
	query := `SELECT ` + returnColumns + ` FROM returns`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY created_at DESC, id DESC LIMIT " + arg(p.limit()+1)
	out := []Return{}
	if err := sqlx.SelectContext(ctx, q, &out, query, args...); err != nil {
		return nil, nil, fmt.Errorf("list returns: %w", translate(err))
	}
	rows, next := pageOf(out, p.limit(), func(r Return) Cursor { return Cursor{r.CreatedAt, r.ID} })
	return rows, next, nil
}

const resolveReturnQuery = `
UPDATE returns SET status = $2, refund_minor = $3, resolution = $4, resolved_at = now()
WHERE id = $1 AND status = 'open'
RETURNING ` + returnColumns

const returnStatusQuery = `SELECT status FROM returns WHERE id = $1`

// ResolveReturn accepts or rejects an open return, with the refund (zero
// when rejected) and a note. A return that is not open is
// ErrInvalidTransition; a missing one ErrNotFound.
func ResolveReturn(ctx context.Context, q sqlx.QueryerContext, id uuid.UUID, to ReturnStatus, refundMinor int64, note string) (Return, error) {
	if to != ReturnStatusAccepted && to != ReturnStatusRejected {
		return Return{}, fmt.Errorf("return %s cannot become %s: %w", id, to, ErrInvalidTransition)
	}
	var r Return
	err := sqlx.GetContext(ctx, q, &r, resolveReturnQuery, id, string(to), refundMinor, note)
	if err == nil {
		return r, nil
	}
	if err = translate(err); !errors.Is(err, ErrNotFound) {
		return Return{}, fmt.Errorf("resolve return %s: %w", id, err)
	}
	var cur ReturnStatus
	if err := sqlx.GetContext(ctx, q, &cur, returnStatusQuery, id); err != nil {
		return Return{}, fmt.Errorf("resolve return %s: %w", id, translate(err))
	}
	return Return{}, fmt.Errorf("return %s is %s, cannot become %s: %w", id, cur, to, ErrInvalidTransition)
}

// ReturnEventData is the data of return.* events: the return as it is
// after the change.
type ReturnEventData struct {
	ReturnID    uuid.UUID    `json:"return_id"`
	OrderID     uuid.UUID    `json:"order_id"`
	OrderItemID uuid.UUID    `json:"order_item_id"`
	SellerID    uuid.UUID    `json:"seller_id"`
	UserID      uuid.UUID    `json:"user_id"`
	Quantity    int          `json:"quantity"`
	Reason      string       `json:"reason"`
	Status      ReturnStatus `json:"status"`
	Resolution  string       `json:"resolution,omitempty"`
	RefundMinor int64        `json:"refund_minor"`
	Currency    string       `json:"currency"`
	CreatedAt   time.Time    `json:"created_at"`
	ResolvedAt  *time.Time   `json:"resolved_at,omitempty"`
}

// NewReturnEvent builds a return event (return.opened, return.resolved)
// whose subject is the return and whose data is r.
func NewReturnEvent(typ string, r Return) (Event, error) {
	return NewEvent(typ, r.ID.String(), &r.SellerID, 1, ReturnEventData{
		ReturnID: r.ID, OrderID: r.OrderID, OrderItemID: r.OrderItemID, SellerID: r.SellerID, UserID: r.UserID,
		Quantity: r.Quantity, Reason: r.Reason, Status: r.Status, Resolution: r.Resolution,
		RefundMinor: r.RefundMinor, Currency: r.Currency, CreatedAt: r.CreatedAt, ResolvedAt: r.ResolvedAt,
	})
}
