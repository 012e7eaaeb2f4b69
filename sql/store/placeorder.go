package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// OrderProduct is what pricing an order needs of one product, with the
// pause and order limit of its seller.
type OrderProduct struct {
	ID           uuid.UUID `json:"id"`
	SellerID     uuid.UUID `json:"seller_id"`
	SKU          string    `json:"sku"`
	Name         string    `json:"name"`
	PriceMinor   int64     `json:"price_minor"`
	Currency     string    `json:"currency"`
	SellerPaused bool      `json:"seller_paused"`
	// OrderRate and OrderBurst are the seller's own order limit
	// (SellerOrderLimit); zero when it has none.
	OrderRate  int `json:"order_rate"`
	OrderBurst int `json:"order_burst"`
}

// OrderLimit is the seller's own order limit; the zero value is none.
func (p OrderProduct) OrderLimit() SellerOrderLimit {
	return SellerOrderLimit{Rate: p.OrderRate, Burst: p.OrderBurst}
}

// OrderInputs is everything a new order is checked against, read in one
// round trip by ReadOrderInputs.
type OrderInputs struct {
	// Products holds the products found, keyed by id.
	Products map[uuid.UUID]OrderProduct
	// Found reports whether the request's idempotency key has a live
	// record, Record.
	Found  bool
	Record IdempotencyRecord
}

const readOrderInputsQuery = `
SELECT coalesce((
           SELECT json_agg(json_build_object(
               'id', p.id, 'seller_id', p.seller_id, 'sku', p.sku, 'name', p.name,
               'price_minor', p.price_minor, 'currency', p.currency,
               'seller_paused', s.paused_at IS NOT NULL,
               'order_rate', coalesce(s.order_rate, 0), 'order_burst', coalesce(s.order_burst, 0)))
           FROM products p JOIN sellers s ON s.id = p.seller_id
           WHERE p.id = ANY($1::uuid[])), '[]')::text AS products,
       r.principal IS NOT NULL AS found,
       coalesce(r.principal, '') AS principal, coalesce(r.key, '') AS key,
       coalesce(r.method, '') AS method, coalesce(r.path, '') AS path,
       coalesce(r.request_hash, ''::bytea) AS request_hash, coalesce(r.status, 0) AS status,
       coalesce(r.content_type, '') AS content_type, coalesce(r.response, ''::bytea) AS response,
       coalesce(r.created_at, now()) AS created_at, coalesce(r.expires_at, now()) AS expires_at
FROM (SELECT 1) one
LEFT JOIN LATERAL (
    SELECT ` + idempotencyColumns + ` FROM idempotency_keys
    WHERE $3 <> '' AND principal = $2 AND key = $3 AND expires_at > now()
) r ON true`

// ReadOrderInputs reads, in one statement, the products of a new order
// with their sellers' pause and order limits, and the live idempotency
// record of principal's key (none when key is empty). The user is not
// read: the order's foreign key checks it (ErrUnknownUser).
func ReadOrderInputs(ctx context.Context, q sqlx.QueryerContext, products []uuid.UUID, principal, key string) (OrderInputs, error) {
	var row struct {
		Products string `db:"products"`
		Found    bool   `db:"found"`
		IdempotencyRecord
	}
	if err := sqlx.GetContext(ctx, q, &row, readOrderInputsQuery, uuidArray(products), principal, key); err != nil {
		return OrderInputs{}, fmt.Errorf("read order inputs: %w", translate(err))
	}
	var list []OrderProduct
	if err := json.Unmarshal([]byte(row.Products), &list); err != nil {
		return OrderInputs{}, fmt.Errorf("read order inputs: products: %w", err)
	}
	out := OrderInputs{Products: make(map[uuid.UUID]OrderProduct, len(list)), Found: row.Found, Record: row.IdempotencyRecord}
	for _, p := range list {
		out.Products[p.ID] = p
	}
	return out, nil
}

// NewOrder is an order ready to be placed by PlaceOrder: every id and
// time chosen, so the response and its event are known before the write.
type NewOrder struct {
	Order Order
	Event Event
	// Record, when set, is the idempotency record stored with the order.
	Record *IdempotencyRecord
}

// PrepareOrder gives a pending order and its items fresh ids and the
// current time (to the microsecond PostgreSQL keeps) as created_at.
func PrepareOrder(o Order) (Order, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return Order{}, fmt.Errorf("order id: %w", err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	o.ID, o.Status, o.CreatedAt, o.UpdatedAt = id, OrderPending, now, now
	items := make([]OrderItem, len(o.Items))
	for i, it := range o.Items {
		if it.ID, err = uuid.NewV7(); err != nil {
			return Order{}, fmt.Errorf("order item id: %w", err)
		}
		it.OrderID = id
		items[i] = it
	}
	o.Items = items
	return o, nil
}

// placeOrderWrites inserts the order, its items, its event and the
// event's outbox row; each insert reads the one before, so none runs when
// the first inserts nothing. src is the row source of the order insert.
func placeOrderWrites(src string) string {
	return `
o AS (
    INSERT INTO orders (id, seller_id, user_id, status, currency, subtotal_minor, total_minor, payment_method, scheduled_at, created_at, updated_at)
    SELECT $10, $11, $12, 'pending', $13, $14, $15, $16, $17, $18, $18` + src + `
    RETURNING id
), items AS (
    INSERT INTO order_items (id, order_id, product_id, sku, name, quantity, unit_price_minor, line_total_minor)
    SELECT i.id, o.id, i.product_id, i.sku, i.name, i.quantity, i.unit_price_minor, i.line_total_minor
    FROM o, unnest($19::uuid[], $20::uuid[], $21::text[], $22::text[], $23::int[], $24::bigint[], $25::bigint[])
        AS i (id, product_id, sku, name, quantity, unit_price_minor, line_total_minor)
), e AS (
    INSERT INTO events (id, type, source, specversion, subject, seller_id, dataschema, time, data, request_id, traceparent)
    SELECT $26, $27, $28, $29, $30, $31, $32, $33, $34::text::jsonb, $35, $36 FROM o
    RETURNING seq, time, subject
), ob AS (
    INSERT INTO outbox (seq, time, subject) SELECT seq, time, subject FROM e
)
SELECT count(*) FROM o`
}

// placeOrderQuery stores the idempotency record first: ON CONFLICT waits
// for a concurrent request with the same key and, once that one has
// committed, inserts nothing, so the order, items and event (which read
// k) are not written either. An expired record is replaced.
var placeOrderQuery = `
WITH k AS (
    INSERT INTO idempotency_keys (principal, key, method, path, request_hash, status, content_type, response, expires_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + $9 * interval '1 second')
    ON CONFLICT (principal, key) DO UPDATE SET
        method = excluded.method, path = excluded.path, request_hash = excluded.request_hash,
        status = excluded.status, content_type = excluded.content_type, response = excluded.response,
        created_at = now(), expires_at = excluded.expires_at
    WHERE idempotency_keys.expires_at <= now()
    RETURNING 1
),` + placeOrderWrites(" FROM k")

// placeOrderNoKeyQuery is placeOrderQuery for a request without an
// Idempotency-Key: the same parameters, the first nine unused but typed.
var placeOrderNoKeyQuery = `
WITH k AS (SELECT $1::text, $2::text, $3::text, $4::text, $5::bytea, $6::int, $7::text, $8::bytea, $9::bigint),` +
	placeOrderWrites("")

// PlaceOrder writes a prepared order, its items, its event with the
// event's outbox row and, when n.Record is set, the idempotency record,
// in one statement: one round trip that commits as one implicit
// transaction unless q is a transaction. placed is false when the
// record's key was taken by a request that committed first (possibly
// while this one waited for it): then nothing is written, and the caller
// answers with that request's record. A missing user is ErrUnknownUser, a
// missing product ErrReferenced.
func PlaceOrder(ctx context.Context, q sqlx.QueryerContext, n NewOrder) (placed bool, err error) {
	o, e := n.Order, n.Event
	m := len(o.Items)
	ids, products := make([]uuid.UUID, m), make([]uuid.UUID, m)
	skus, names := make(pq.StringArray, m), make(pq.StringArray, m)
	qty, unit, line := make(pq.Int64Array, m), make(pq.Int64Array, m), make(pq.Int64Array, m)
	for i, it := range o.Items {
		ids[i], products[i] = it.ID, it.ProductID
		skus[i], names[i] = it.SKU, it.Name
		qty[i], unit[i], line[i] = int64(it.Quantity), it.UnitPriceMinor, it.LineTotalMinor
	}
	query := placeOrderNoKeyQuery
	r := IdempotencyRecord{RequestHash: []byte{}, Response: []byte{}}
	if n.Record != nil {
		query, r = placeOrderQuery, *n.Record
	}
	if e.Source == "" {
		e.Source = EventSource
	}
	if e.SpecVersion == "" {
		e.SpecVersion = "1.0"
	}
	var seller *string
	if e.SellerID != nil {
		s := e.SellerID.String()
		seller = &s
	}
	var count int
	err = q.QueryRowxContext(ctx, query,
		r.Principal, r.Key, r.Method, r.Path, r.RequestHash, r.Status, r.ContentType, r.Response, int64(IdempotencyTTL/time.Second),
		o.ID, o.SellerID, o.UserID, o.Currency, o.SubtotalMinor, o.TotalMinor, o.PaymentMethod, o.ScheduledAt, o.CreatedAt,
		uuidArray(ids), uuidArray(products), skus, names, qty, unit, line,
		e.ID, e.Type, e.Source, e.SpecVersion, e.Subject, seller, e.DataSchema, e.Time.Truncate(time.Microsecond),
		string(e.Data), e.RequestID, e.TraceParent,
	).Scan(&count)
	if err != nil {
		var pe *pq.Error
		if errors.As(err, &pe) && pe.Code == "23503" && pe.Constraint == "orders_user_id_fkey" {
			return false, fmt.Errorf("place order: user %s: %w", o.UserID, ErrUnknownUser)
		}
		return false, fmt.Errorf("place order: %w", translate(err))
	}
	return count == 1, nil
}
