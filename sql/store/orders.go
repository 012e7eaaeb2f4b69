package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// OrderStatus is the state of an order.
type OrderStatus string

// The states of the order state machine:
//
//	pending -> confirmed | cancelled
//	confirmed -> shipped | cancelled
//	shipped -> delivered
const (
	OrderPending   OrderStatus = "pending"
	OrderConfirmed OrderStatus = "confirmed"
	OrderCancelled OrderStatus = "cancelled"
	OrderShipped   OrderStatus = "shipped"
	OrderDelivered OrderStatus = "delivered"
)

// orderTransitions maps each target state to the states it may be reached from.
var orderTransitions = map[OrderStatus][]OrderStatus{
	OrderConfirmed: {OrderPending},
	OrderCancelled: {OrderPending, OrderConfirmed},
	OrderShipped:   {OrderConfirmed},
	OrderDelivered: {OrderShipped},
}

// Valid reports whether s is one of the order states.
func (s OrderStatus) Valid() bool {
	switch s {
	case OrderPending, OrderConfirmed, OrderCancelled, OrderShipped, OrderDelivered:
		return true
	}
	return false
}

// CanTransition reports whether the state machine lets an order move from
// one state to another.
func CanTransition(from, to OrderStatus) bool {
	return slices.Contains(orderTransitions[to], from)
}

// Order is a buyer's purchase from one seller. Amounts are in minor units
// of Currency.
type Order struct {
	ID            uuid.UUID   `db:"id"`
	SellerID      uuid.UUID   `db:"seller_id"`
	UserID        uuid.UUID   `db:"user_id"`
	Status        OrderStatus `db:"status"`
	Currency      string      `db:"currency"`
	SubtotalMinor int64       `db:"subtotal_minor"`
	TotalMinor    int64       `db:"total_minor"`
	PaymentMethod string      `db:"payment_method"`
	ScheduledAt   *time.Time  `db:"scheduled_at"`
	CancelReason  string      `db:"cancel_reason"`
	CreatedAt     time.Time   `db:"created_at"`
	UpdatedAt     time.Time   `db:"updated_at"`
	ConfirmedAt   *time.Time  `db:"confirmed_at"`
	CancelledAt   *time.Time  `db:"cancelled_at"`
	ShippedAt     *time.Time  `db:"shipped_at"`
	DeliveredAt   *time.Time  `db:"delivered_at"`

	// Items are the order's lines, loaded with the order.
	Items []OrderItem `db:"-"`
}

// OrderItem is one line of an order, with the product's sku, name and
// price copied at the time of ordering.
type OrderItem struct {
	ID             uuid.UUID `db:"id"`
	OrderID        uuid.UUID `db:"order_id"`
	ProductID      uuid.UUID `db:"product_id"`
	SKU            string    `db:"sku"`
	Name           string    `db:"name"`
	Quantity       int       `db:"quantity"`
	UnitPriceMinor int64     `db:"unit_price_minor"`
	LineTotalMinor int64     `db:"line_total_minor"`
}

const orderColumns = `id, seller_id, user_id, status, currency, subtotal_minor, total_minor, payment_method,
scheduled_at, cancel_reason, created_at, updated_at, confirmed_at, cancelled_at, shipped_at, delivered_at`

const orderItemColumns = `id, order_id, product_id, sku, name, quantity, unit_price_minor, line_total_minor`

// insertOrderQuery writes an order and its items in one statement: the
// items come as parallel arrays, one element per line. The foreign keys
// are checked when the statement ends, so the items may name the order
// inserted beside them.
const insertOrderQuery = `
WITH o AS (
    INSERT INTO orders (id, seller_id, user_id, status, currency, subtotal_minor, total_minor, payment_method, scheduled_at)
    VALUES ($1, $2, $3, 'pending', $4, $5, $6, $7, $8)
    RETURNING ` + orderColumns + `
), items AS (
    INSERT INTO order_items (id, order_id, product_id, sku, name, quantity, unit_price_minor, line_total_minor)
    SELECT i.id, $1, i.product_id, i.sku, i.name, i.quantity, i.unit_price_minor, i.line_total_minor
    FROM unnest($9::uuid[], $10::uuid[], $11::text[], $12::text[], $13::int[], $14::bigint[], $15::bigint[])
        AS i (id, product_id, sku, name, quantity, unit_price_minor, line_total_minor)
)
SELECT ` + orderColumns + ` FROM o`

// ErrUnknownUser means an order names a user that does not exist.
var ErrUnknownUser = fmt.Errorf("no such user: %w", ErrReferenced)

// CreateOrder inserts a pending order and its items with fresh ids, in one
// statement; run it in a transaction. The caller prices the items and sets
// the totals. A missing user is ErrUnknownUser (which is ErrReferenced), a
// missing product ErrReferenced.
func CreateOrder(ctx context.Context, q sqlx.QueryerContext, o Order) (Order, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return Order{}, fmt.Errorf("order id: %w", err)
	}
	n := len(o.Items)
	items := make([]OrderItem, n)
	ids, products := make([]uuid.UUID, n), make([]uuid.UUID, n)
	skus, names := make(pq.StringArray, n), make(pq.StringArray, n)
	qty, unit, line := make(pq.Int64Array, n), make(pq.Int64Array, n), make(pq.Int64Array, n)
	for i, it := range o.Items {
		if ids[i], err = uuid.NewV7(); err != nil {
			return Order{}, fmt.Errorf("order item id: %w", err)
		}
		it.ID, it.OrderID = ids[i], id
		items[i] = it
		products[i] = it.ProductID
		skus[i], names[i] = it.SKU, it.Name
		qty[i], unit[i], line[i] = int64(it.Quantity), it.UnitPriceMinor, it.LineTotalMinor
	}
	var out Order
	err = sqlx.GetContext(ctx, q, &out, insertOrderQuery, id, o.SellerID, o.UserID, o.Currency,
		o.SubtotalMinor, o.TotalMinor, o.PaymentMethod, o.ScheduledAt,
		uuidArray(ids), uuidArray(products), skus, names, qty, unit, line)
	if err != nil {
		var pe *pq.Error
		if errors.As(err, &pe) && pe.Code == "23503" && pe.Constraint == "orders_user_id_fkey" {
			return Order{}, fmt.Errorf("create order: user %s: %w", o.UserID, ErrUnknownUser)
		}
		return Order{}, fmt.Errorf("create order: %w", translate(err))
	}
	out.Items = items
	return out, nil
}

// getOrderQuery reads an order and its lines in one statement, a row per
// line: the saga reads an order at most of its steps, and a second round
// trip for the lines was a statement per step. The lines' columns are
// renamed in the subquery so the order's keep their own names.
const getOrderQuery = `
SELECT ` + orderColumns + `, i.*
FROM orders o LEFT JOIN (
    SELECT id AS item_id, order_id AS item_order_id, product_id AS item_product_id, sku AS item_sku,
           name AS item_name, quantity AS item_quantity, unit_price_minor AS item_unit_price_minor,
           line_total_minor AS item_line_total_minor
    FROM order_items
) i ON i.item_order_id = o.id
WHERE o.id = $1
ORDER BY i.item_id`

const orderItemsQuery = `SELECT ` + orderItemColumns + ` FROM order_items WHERE order_id = ANY($1::uuid[]) ORDER BY order_id, id`

// orderLineRow is a row of getOrderQuery: the order, and one of its lines
// (none when the order has no lines).
type orderLineRow struct {
	Order
	ItemID             *uuid.UUID `db:"item_id"`
	ItemOrderID        *uuid.UUID `db:"item_order_id"`
	ItemProductID      *uuid.UUID `db:"item_product_id"`
	ItemSKU            *string    `db:"item_sku"`
	ItemName           *string    `db:"item_name"`
	ItemQuantity       *int       `db:"item_quantity"`
	ItemUnitPriceMinor *int64     `db:"item_unit_price_minor"`
	ItemLineTotalMinor *int64     `db:"item_line_total_minor"`
}

// GetOrder reads an order with its items; ErrNotFound when there is none.
func GetOrder(ctx context.Context, q sqlx.QueryerContext, id uuid.UUID) (Order, error) {
	var rows []orderLineRow
	if err := sqlx.SelectContext(ctx, q, &rows, getOrderQuery, id); err != nil {
		return Order{}, fmt.Errorf("get order %s: %w", id, translate(err))
	}
	if len(rows) == 0 {
		return Order{}, fmt.Errorf("get order %s: %w", id, ErrNotFound)
	}
	o := rows[0].Order
	o.Items = make([]OrderItem, 0, len(rows))
	for _, r := range rows {
		if r.ItemID == nil {
			continue
		}
		o.Items = append(o.Items, OrderItem{
			ID: *r.ItemID, OrderID: o.ID, ProductID: *r.ItemProductID, SKU: *r.ItemSKU, Name: *r.ItemName,
			Quantity: *r.ItemQuantity, UnitPriceMinor: *r.ItemUnitPriceMinor, LineTotalMinor: *r.ItemLineTotalMinor,
		})
	}
	return o, nil
}

func loadItems(ctx context.Context, q sqlx.QueryerContext, orders []Order) error {
	if len(orders) == 0 {
		return nil
	}
	ids := make([]uuid.UUID, len(orders))
	at := make(map[uuid.UUID]int, len(orders))
	for i, o := range orders {
		ids[i] = o.ID
		at[o.ID] = i
		orders[i].Items = []OrderItem{}
	}
	var items []OrderItem
	if err := sqlx.SelectContext(ctx, q, &items, orderItemsQuery, uuidArray(ids)); err != nil {
		return fmt.Errorf("load order items: %w", translate(err))
	}
	for _, it := range items {
		i := at[it.OrderID]
		orders[i].Items = append(orders[i].Items, it)
	}
	return nil
}

// OrderFilter narrows a list of orders; zero fields do not filter.
type OrderFilter struct {
	UserID   *uuid.UUID
	SellerID *uuid.UUID
	Status   OrderStatus
}

// ListOrders returns one page of orders matching f, newest first, with
// their items, and the cursor of the next page (nil on the last).
func ListOrders(ctx context.Context, q sqlx.QueryerContext, f OrderFilter, p Page) ([]Order, *Cursor, error) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if f.UserID != nil {
		where = append(where, "user_id = "+arg(*f.UserID))
	}
	if f.SellerID != nil {
		where = append(where, "seller_id = "+arg(*f.SellerID))
	}
	if f.Status != "" {
		where = append(where, "status = "+arg(string(f.Status)))
	}
	if p.After != nil {
		where = append(where, fmt.Sprintf("(created_at, id) < (%s, %s)", arg(p.After.CreatedAt), arg(p.After.ID)))
	}
	query := `SELECT ` + orderColumns + ` FROM orders`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY created_at DESC, id DESC LIMIT " + arg(p.limit()+1)
	out := []Order{}
	if err := sqlx.SelectContext(ctx, q, &out, query, args...); err != nil {
		return nil, nil, fmt.Errorf("list orders: %w", translate(err))
	}
	rows, next := pageOf(out, p.limit(), func(o Order) Cursor { return Cursor{o.CreatedAt, o.ID} })
	if err := loadItems(ctx, q, rows); err != nil {
		return nil, nil, err
	}
	return rows, next, nil
}

const transitionOrderQuery = `
UPDATE orders SET status = $2, updated_at = now(),
    confirmed_at = CASE WHEN $2 = 'confirmed' THEN now() ELSE confirmed_at END,
    cancelled_at = CASE WHEN $2 = 'cancelled' THEN now() ELSE cancelled_at END,
    shipped_at = CASE WHEN $2 = 'shipped' THEN now() ELSE shipped_at END,
    delivered_at = CASE WHEN $2 = 'delivered' THEN now() ELSE delivered_at END,
    cancel_reason = CASE WHEN $2 = 'cancelled' THEN $3 ELSE cancel_reason END
WHERE id = $1 AND status = ANY($4::text[])
RETURNING ` + orderColumns

const orderStatusQuery = `SELECT status FROM orders WHERE id = $1`

// TransitionOrder moves an order to the state to, following the state
// machine, and returns it with its items. The update is guarded by the
// states to may be reached from, so concurrent or repeated moves can never
// take an order backwards. reason is kept when to is cancelled. An illegal
// move is ErrInvalidTransition (naming the current state); a missing order
// is ErrNotFound.
func TransitionOrder(ctx context.Context, q sqlx.QueryerContext, id uuid.UUID, to OrderStatus, reason string) (Order, error) {
	from, ok := orderTransitions[to]
	if !ok {
		return Order{}, fmt.Errorf("order %s cannot become %s: %w", id, to, ErrInvalidTransition)
	}
	allowed := make([]string, len(from))
	for i, s := range from {
		allowed[i] = string(s)
	}
	var o Order
	err := sqlx.GetContext(ctx, q, &o, transitionOrderQuery, id, string(to), reason, "{"+strings.Join(allowed, ",")+"}")
	if err != nil {
		err = translate(err)
		if !errors.Is(err, ErrNotFound) {
			return Order{}, fmt.Errorf("move order %s to %s: %w", id, to, err)
		}
		var cur OrderStatus
		if err := sqlx.GetContext(ctx, q, &cur, orderStatusQuery, id); err != nil {
			return Order{}, fmt.Errorf("move order %s to %s: %w", id, to, translate(err))
		}
		return Order{}, fmt.Errorf("order %s is %s, cannot become %s: %w", id, cur, to, ErrInvalidTransition)
	}
	orders := []Order{o}
	if err := loadItems(ctx, q, orders); err != nil {
		return Order{}, err
	}
	return orders[0], nil
}

// OrderEventData is the data of order.* events: the order as it is after
// the change, with its items.
type OrderEventData struct {
	OrderID       uuid.UUID            `json:"order_id"`
	SellerID      uuid.UUID            `json:"seller_id"`
	UserID        uuid.UUID            `json:"user_id"`
	Status        OrderStatus          `json:"status"`
	Currency      string               `json:"currency"`
	SubtotalMinor int64                `json:"subtotal_minor"`
	TotalMinor    int64                `json:"total_minor"`
	PaymentMethod string               `json:"payment_method"`
	ScheduledAt   *time.Time           `json:"scheduled_at,omitempty"`
	CancelReason  string               `json:"cancel_reason,omitempty"`
	CreatedAt     time.Time            `json:"created_at"`
	Items         []OrderItemEventData `json:"items"`
}

// OrderItemEventData is one line of OrderEventData.
type OrderItemEventData struct {
	ItemID         uuid.UUID `json:"item_id"`
	ProductID      uuid.UUID `json:"product_id"`
	SKU            string    `json:"sku"`
	Name           string    `json:"name"`
	Quantity       int       `json:"quantity"`
	UnitPriceMinor int64     `json:"unit_price_minor"`
	LineTotalMinor int64     `json:"line_total_minor"`
}

// NewOrderEvent builds an order event whose subject is the order and whose
// data is o with its items. The type is "order."+o.Status unless typ is
// given (order.created for a new pending order).
func NewOrderEvent(typ string, o Order) (Event, error) {
	if typ == "" {
		typ = "order." + string(o.Status)
	}
	d := OrderEventData{
		OrderID: o.ID, SellerID: o.SellerID, UserID: o.UserID, Status: o.Status, Currency: o.Currency,
		SubtotalMinor: o.SubtotalMinor, TotalMinor: o.TotalMinor, PaymentMethod: o.PaymentMethod,
		ScheduledAt: o.ScheduledAt, CancelReason: o.CancelReason, CreatedAt: o.CreatedAt,
		Items: make([]OrderItemEventData, len(o.Items)),
	}
	for i, it := range o.Items {
		d.Items[i] = OrderItemEventData{
			ItemID: it.ID, ProductID: it.ProductID, SKU: it.SKU, Name: it.Name, Quantity: it.Quantity,
			UnitPriceMinor: it.UnitPriceMinor, LineTotalMinor: it.LineTotalMinor,
		}
	}
	return NewEvent(typ, o.ID.String(), &o.SellerID, 1, d)
}
