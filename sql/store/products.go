package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
)

// Product is an item a seller offers. Products form a two-level tree: a
// parent carries the shared fields (name, description, category,
// currency), which are copied into each child (variant); a child owns its
// sku, attributes, price and stock.
type Product struct {
	ID          uuid.UUID       `db:"id"`
	SellerID    uuid.UUID       `db:"seller_id"`
	ParentID    *uuid.UUID      `db:"parent_id"`
	SKU         string          `db:"sku"`
	Name        string          `db:"name"`
	Description string          `db:"description"`
	Category    string          `db:"category"`
	Attributes  json.RawMessage `db:"attributes"`
	PriceMinor  int64           `db:"price_minor"`
	Currency    string          `db:"currency"`
	Stock       int             `db:"stock"`
	CreatedAt   time.Time       `db:"created_at"`
	UpdatedAt   time.Time       `db:"updated_at"`
}

const productColumns = `id, seller_id, parent_id, sku, name, description, category, attributes, price_minor, currency, stock, created_at, updated_at`

const insertProductQuery = `
INSERT INTO products (id, seller_id, parent_id, sku, name, description, category, attributes, price_minor, currency, stock)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::jsonb, $9, $10, $11)
RETURNING ` + productColumns

// CreateProduct inserts p with a fresh id. When p.ParentID is set, the
// parent is locked against concurrent updates and its shared fields are
// copied into the child, so a variant never starts out of sync. A taken
// (seller, sku) is ErrConflict; a missing parent, or one of another seller
// or itself a variant, is ErrReferenced.
func CreateProduct(ctx context.Context, q sqlx.QueryerContext, p Product) (Product, error) {
	if p.ParentID != nil {
		parent, err := lockProduct(ctx, q, *p.ParentID, "FOR SHARE")
		if err != nil {
			return Product{}, fmt.Errorf("create product: parent %s: %w", *p.ParentID, ErrReferenced)
		}
		if parent.SellerID != p.SellerID || parent.ParentID != nil {
			return Product{}, fmt.Errorf("create product: parent %s: %w", *p.ParentID, ErrReferenced)
		}
		p.Name, p.Description, p.Category, p.Currency = parent.Name, parent.Description, parent.Category, parent.Currency
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Product{}, fmt.Errorf("product id: %w", err)
	}
	attrs := p.Attributes
	if len(attrs) == 0 {
		attrs = json.RawMessage(`{}`)
	}
	var out Product
	err = sqlx.GetContext(ctx, q, &out, insertProductQuery, id, p.SellerID, p.ParentID, p.SKU, p.Name,
		p.Description, p.Category, []byte(attrs), p.PriceMinor, p.Currency, p.Stock)
	if err != nil {
		return Product{}, fmt.Errorf("create product: %w", translate(err))
	}
	return out, nil
}

const getProductQuery = `SELECT ` + productColumns + ` FROM products WHERE id = $1`

// GetProduct reads one product; ErrNotFound when there is none.
func GetProduct(ctx context.Context, q sqlx.QueryerContext, id uuid.UUID) (Product, error) {
	var p Product
	if err := sqlx.GetContext(ctx, q, &p, getProductQuery, id); err != nil {
		return Product{}, fmt.Errorf("get product %s: %w", id, translate(err))
	}
	return p, nil
}

func lockProduct(ctx context.Context, q sqlx.QueryerContext, id uuid.UUID, lock string) (Product, error) {
	var p Product
	if err := sqlx.GetContext(ctx, q, &p, getProductQuery+" "+lock, id); err != nil {
		return Product{}, fmt.Errorf("lock product %s: %w", id, translate(err))
	}
	return p, nil
}

// LockProduct reads a product and locks it until the transaction ends, for
// a read-check-write by the caller; ErrNotFound when there is none.
func LockProduct(ctx context.Context, q sqlx.QueryerContext, id uuid.UUID) (Product, error) {
	return lockProduct(ctx, q, id, "FOR UPDATE")
}

const productsByIDsQuery = `SELECT ` + productColumns + ` FROM products WHERE id = ANY($1::uuid[])`

// ProductsByIDs reads the products with the given ids, keyed by id; ids
// that do not exist are absent from the map.
func ProductsByIDs(ctx context.Context, q sqlx.QueryerContext, ids []uuid.UUID) (map[uuid.UUID]Product, error) {
	var rows []Product
	if err := sqlx.SelectContext(ctx, q, &rows, productsByIDsQuery, uuidArray(ids)); err != nil {
		return nil, fmt.Errorf("products by ids: %w", translate(err))
	}
	out := make(map[uuid.UUID]Product, len(rows))
	for _, p := range rows {
		out[p.ID] = p
	}
	return out, nil
}

const listProductsQuery = `
SELECT ` + productColumns + ` FROM products
WHERE seller_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3))
ORDER BY created_at, id LIMIT $4`

// ListProductsBySeller returns one page of a seller's products, oldest
// first, and the cursor of the next page (nil on the last).
func ListProductsBySeller(ctx context.Context, q sqlx.QueryerContext, sellerID uuid.UUID, p Page) ([]Product, *Cursor, error) {
	t, id := cursorArgs(p.After)
	out := []Product{}
	if err := sqlx.SelectContext(ctx, q, &out, listProductsQuery, sellerID, t, id, p.limit()+1); err != nil {
		return nil, nil, fmt.Errorf("list products of %s: %w", sellerID, translate(err))
	}
	rows, next := pageOf(out, p.limit(), func(x Product) Cursor { return Cursor{x.CreatedAt, x.ID} })
	return rows, next, nil
}

// ProductChanges lists the fields to change; nil fields stay. The shared
// fields (Name, Description, Category, Currency) may change only on a
// product without a parent.
type ProductChanges struct {
	SKU         *string
	Name        *string
	Description *string
	Category    *string
	Currency    *string
	Attributes  json.RawMessage
	PriceMinor  *int64
}

// Shared reports whether the changes touch a field shared with variants.
func (c ProductChanges) Shared() bool {
	return c.Name != nil || c.Description != nil || c.Category != nil || c.Currency != nil
}

const updateProductQuery = `
UPDATE products SET
    sku = coalesce($2, sku),
    name = coalesce($3, name),
    description = coalesce($4, description),
    category = coalesce($5, category),
    currency = coalesce($6, currency),
    attributes = coalesce($7::text::jsonb, attributes),
    price_minor = coalesce($8, price_minor),
    updated_at = now()
WHERE id = $1
RETURNING ` + productColumns

const syncChildrenQuery = `
UPDATE products SET name = $2, description = $3, category = $4, currency = $5, updated_at = now()
WHERE parent_id = $1
RETURNING ` + productColumns

// UpdateProduct applies ch to a product and, when it is a parent, copies
// its shared fields into every child in the same statement sequence, so
// run it in a transaction. It returns the product and the children it
// changed (ordered by id). Changing a shared field of a child is
// ErrInvalidTransition; a taken sku is ErrConflict.
func UpdateProduct(ctx context.Context, q sqlx.QueryerContext, id uuid.UUID, ch ProductChanges) (Product, []Product, error) {
	cur, err := LockProduct(ctx, q, id)
	if err != nil {
		return Product{}, nil, err
	}
	if cur.ParentID != nil && ch.Shared() {
		return Product{}, nil, fmt.Errorf("update product %s: shared fields belong to parent %s: %w", id, *cur.ParentID, ErrInvalidTransition)
	}
	var attrs []byte
	if len(ch.Attributes) > 0 {
		attrs = ch.Attributes
	}
	var p Product
	err = sqlx.GetContext(ctx, q, &p, updateProductQuery, id, ch.SKU, ch.Name, ch.Description, ch.Category, ch.Currency, attrs, ch.PriceMinor)
	if err != nil {
		return Product{}, nil, fmt.Errorf("update product %s: %w", id, translate(err))
	}
	if p.ParentID != nil {
		return p, nil, nil
	}
	children := []Product{}
	if err := sqlx.SelectContext(ctx, q, &children, syncChildrenQuery, id, p.Name, p.Description, p.Category, p.Currency); err != nil {
		return Product{}, nil, fmt.Errorf("sync children of %s: %w", id, translate(err))
	}
	sortByID(children)
	return p, children, nil
}

const setStockQuery = `
UPDATE products SET stock = $2, updated_at = now() WHERE id = $1
RETURNING ` + productColumns

// SetStock sets a product's stock and returns the product with the stock
// it had before. A negative stock is ErrInsufficientStock.
func SetStock(ctx context.Context, q sqlx.QueryerContext, id uuid.UUID, stock int) (Product, int, error) {
	cur, err := LockProduct(ctx, q, id)
	if err != nil {
		return Product{}, 0, err
	}
	var p Product
	if err := sqlx.GetContext(ctx, q, &p, setStockQuery, id, stock); err != nil {
		return Product{}, 0, fmt.Errorf("set stock of %s: %w", id, translate(err))
	}
	return p, cur.Stock, nil
}

const adjustStockQuery = `
UPDATE products SET stock = stock + $2, updated_at = now() WHERE id = $1
RETURNING ` + productColumns

// AdjustStock adds delta (which may be negative) to a product's stock in
// one statement, so concurrent adjustments never lose one, and returns the
// product with the stock it had before. A result below zero is
// ErrInsufficientStock and changes nothing.
func AdjustStock(ctx context.Context, q sqlx.QueryerContext, id uuid.UUID, delta int) (Product, int, error) {
	var p Product
	if err := sqlx.GetContext(ctx, q, &p, adjustStockQuery, id, delta); err != nil {
		return Product{}, 0, fmt.Errorf("adjust stock of %s by %d: %w", id, delta, translate(err))
	}
	return p, p.Stock - delta, nil
}

// ProductEventData is the data of product.* events: the product as it is
// after the change.
type ProductEventData struct {
	ProductID   uuid.UUID       `json:"product_id"`
	SellerID    uuid.UUID       `json:"seller_id"`
	ParentID    *uuid.UUID      `json:"parent_id,omitempty"`
	SKU         string          `json:"sku"`
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Category    string          `json:"category"`
	Attributes  json.RawMessage `json:"attributes"`
	PriceMinor  int64           `json:"price_minor"`
	Currency    string          `json:"currency"`
	Stock       int             `json:"stock"`
	UpdatedAt   time.Time       `json:"updated_at"`
}

// NewProductEvent builds a product event (product.created,
// product.updated) whose subject is the product and whose data is p.
func NewProductEvent(typ string, p Product) (Event, error) {
	return NewEvent(typ, p.ID.String(), &p.SellerID, 1, ProductEventData{
		ProductID: p.ID, SellerID: p.SellerID, ParentID: p.ParentID, SKU: p.SKU, Name: p.Name,
		Description: p.Description, Category: p.Category, Attributes: p.Attributes,
		PriceMinor: p.PriceMinor, Currency: p.Currency, Stock: p.Stock, UpdatedAt: p.UpdatedAt,
	})
}

// InventoryAdjustedData is the data of inventory.adjusted events.
type InventoryAdjustedData struct {
	ProductID     uuid.UUID `json:"product_id"`
	SellerID      uuid.UUID `json:"seller_id"`
	SKU           string    `json:"sku"`
	PreviousStock int       `json:"previous_stock"`
	Stock         int       `json:"stock"`
	Delta         int       `json:"delta"`
	Reason        string    `json:"reason,omitempty"`
}

// NewInventoryAdjustedEvent builds the inventory.adjusted event of a stock
// change from previous to p.Stock; its subject is the product.
func NewInventoryAdjustedEvent(p Product, previous int, reason string) (Event, error) {
	return NewEvent("inventory.adjusted", p.ID.String(), &p.SellerID, 1, InventoryAdjustedData{
		ProductID: p.ID, SellerID: p.SellerID, SKU: p.SKU, PreviousStock: previous,
		Stock: p.Stock, Delta: p.Stock - previous, Reason: reason,
	})
}
