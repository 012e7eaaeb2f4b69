package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/bazaarhq/bazaar/sql/store"
)

// Limits of product fields.
const (
	maxStock      = 1_000_000_000
	maxPriceMinor = 1_000_000_000_000 // 10^12 minor units keeps every order total far from int64 overflow
	maxAttributes = 50
)

type createProductRequest struct {
	SellerID    *string           `json:"seller_id"`
	ParentID    *string           `json:"parent_id"`
	SKU         string            `json:"sku"`
	Name        *string           `json:"name"`
	Description *string           `json:"description"`
	Category    *string           `json:"category"`
	Attributes  map[string]string `json:"attributes"`
	PriceMinor  *int64            `json:"price_minor"`
	Currency    *string           `json:"currency"`
	Stock       *int              `json:"stock"`
}

// createProduct: POST /v1/products (seller, admin). A product with
// parent_id is a variant: it takes name, description, category and
// currency from its parent and may not set them.
func (s *Server) createProduct(c *gin.Context) {
	var req createProductRequest
	if err := bind(c, &req, false); err != nil {
		s.fail(c, err)
		return
	}
	p := principalOf(c)
	var k checker
	sellerID := p.SellerID
	switch {
	case p.Role == RoleAdmin && req.SellerID == nil:
		k.add("seller_id", "is required with the admin token")
	case p.Role == RoleAdmin:
		if id := k.id("seller_id", *req.SellerID); id != nil {
			sellerID = *id
		}
	case req.SellerID != nil:
		if id := k.id("seller_id", *req.SellerID); id != nil && *id != p.SellerID {
			k.add("seller_id", "must be omitted or the key's own seller")
		}
	}
	var parentID *uuid.UUID
	if req.ParentID != nil {
		parentID = k.id("parent_id", *req.ParentID)
	}
	k.text("sku", req.SKU, true, 100)
	checkPrice(&k, "price_minor", req.PriceMinor, true)
	if req.Stock != nil && (*req.Stock < 0 || *req.Stock > maxStock) {
		k.add("stock", fmt.Sprintf("must be from 0 to %d", maxStock))
	}
	checkAttributes(&k, req.Attributes)
	shared := map[string]*string{"name": req.Name, "description": req.Description, "category": req.Category, "currency": req.Currency}
	if req.ParentID != nil {
		for _, f := range []string{"name", "description", "category", "currency"} {
			if shared[f] != nil {
				k.add(f, "is taken from the parent product; leave it out")
			}
		}
	} else {
		k.text("name", deref(req.Name), true, 200)
		k.text("description", deref(req.Description), false, 5000)
		k.text("category", deref(req.Category), false, 100)
		k.currency("currency", deref(req.Currency))
	}
	if err := k.err(); err != nil {
		s.fail(c, err)
		return
	}
	attrs, err := json.Marshal(req.Attributes)
	if err != nil || req.Attributes == nil {
		attrs = []byte(`{}`)
	}
	s.write(c, func(ctx context.Context, tx *sqlx.Tx) (change, error) {
		prod, err := store.CreateProduct(ctx, tx, store.Product{
			SellerID: sellerID, ParentID: parentID, SKU: req.SKU, Name: deref(req.Name),
			Description: deref(req.Description), Category: deref(req.Category), Attributes: attrs,
			PriceMinor: *req.PriceMinor, Currency: deref(req.Currency), Stock: deref(req.Stock),
		})
		switch {
		case errors.Is(err, store.ErrReferenced) && req.ParentID != nil:
			return change{}, withDetail(err, "The parent product does not exist.",
				FieldError{Field: "parent_id", Message: "must be a product of the same seller without a parent"})
		case errors.Is(err, store.ErrReferenced):
			return change{}, withDetail(err, "The seller does not exist.", FieldError{Field: "seller_id", Message: "no such seller"})
		case isConflict(err):
			return change{}, withDetail(err, "The seller has a product with this sku.", FieldError{Field: "sku", Message: "is taken"})
		case err != nil:
			return change{}, err
		}
		ev, err := store.NewProductEvent("product.created", prod)
		if err != nil {
			return change{}, err
		}
		return change{http.StatusCreated, productOut(prod), []store.Event{ev}}, nil
	})
}

func checkPrice(k *checker, field string, v *int64, required bool) {
	switch {
	case v == nil && required:
		k.add(field, "is required")
	case v != nil && (*v < 0 || *v > maxPriceMinor):
		k.add(field, fmt.Sprintf("must be from 0 to %d minor units", int64(maxPriceMinor)))
	}
}

func checkAttributes(k *checker, attrs map[string]string) {
	if len(attrs) > maxAttributes {
		k.add("attributes", fmt.Sprintf("must have at most %d entries", maxAttributes))
		return
	}
	for name, v := range attrs {
		k.text("attributes."+name, name, true, 64)
		k.text("attributes."+name, v, false, 200)
	}
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// getProduct: GET /v1/products/{id}.
func (s *Server) getProduct(c *gin.Context) {
	readOwned(s, c, store.GetProduct, func(p store.Product) uuid.UUID { return p.SellerID }, productOut)
}

// listProducts: GET /v1/sellers/{id}/products, oldest first.
func (s *Server) listProducts(c *gin.Context) {
	sellerID, err := s.visibleSeller(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	p, err := page(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.read(c, func(ctx context.Context, q sqlx.QueryerContext) (any, error) {
		if _, err := store.GetSeller(ctx, q, sellerID); err != nil {
			return nil, err
		}
		rows, next, err := store.ListProductsBySeller(ctx, q, sellerID, p)
		return listOf(rows, next, productOut), err
	})
}

type updateProductRequest struct {
	SKU         *string           `json:"sku" nullable:"true"`
	Name        *string           `json:"name" nullable:"true"`
	Description *string           `json:"description" nullable:"true"`
	Category    *string           `json:"category" nullable:"true"`
	Currency    *string           `json:"currency" nullable:"true"`
	Attributes  map[string]string `json:"attributes"`
	PriceMinor  *int64            `json:"price_minor" nullable:"true"`
}

// updateProduct: PATCH /v1/products/{id} (seller, admin). Changing a
// parent copies its shared fields into every variant in the same
// transaction, with a product.updated event for the parent and each variant.
func (s *Server) updateProduct(c *gin.Context) {
	id, err := pathID(c, "id")
	if err != nil {
		s.fail(c, err)
		return
	}
	var req updateProductRequest
	if err := bind(c, &req, false); err != nil {
		s.fail(c, err)
		return
	}
	var k checker
	if req.SKU != nil {
		k.text("sku", *req.SKU, true, 100)
	}
	if req.Name != nil {
		k.text("name", *req.Name, true, 200)
	}
	if req.Description != nil {
		k.text("description", *req.Description, false, 5000)
	}
	if req.Category != nil {
		k.text("category", *req.Category, false, 100)
	}
	if req.Currency != nil {
		k.currency("currency", *req.Currency)
	}
	checkPrice(&k, "price_minor", req.PriceMinor, false)
	checkAttributes(&k, req.Attributes)
	ch := store.ProductChanges{
		SKU: req.SKU, Name: req.Name, Description: req.Description, Category: req.Category,
		Currency: req.Currency, PriceMinor: req.PriceMinor,
	}
	if req.Attributes != nil {
		ch.Attributes, _ = json.Marshal(req.Attributes)
	}
	if !ch.Shared() && ch.SKU == nil && ch.PriceMinor == nil && req.Attributes == nil {
		k.add("(body)", "name at least one field to change")
	}
	if err := k.err(); err != nil {
		s.fail(c, err)
		return
	}
	s.write(c, func(ctx context.Context, tx *sqlx.Tx) (change, error) {
		cur, err := s.lockOwnProduct(ctx, c, tx, id)
		if err != nil {
			return change{}, err
		}
		if cur.ParentID != nil && ch.Shared() {
			var k checker
			for f, v := range map[string]*string{"name": ch.Name, "description": ch.Description, "category": ch.Category, "currency": ch.Currency} {
				if v != nil {
					k.add(f, "belongs to the parent product; change it there")
				}
			}
			return change{}, k.err()
		}
		prod, children, err := store.UpdateProduct(ctx, tx, id, ch)
		if isConflict(err) {
			return change{}, withDetail(err, "The seller has a product with this sku.", FieldError{Field: "sku", Message: "is taken"})
		}
		if err != nil {
			return change{}, err
		}
		events := make([]store.Event, 0, 1+len(children))
		for _, p := range append([]store.Product{prod}, children...) {
			ev, err := store.NewProductEvent("product.updated", p)
			if err != nil {
				return change{}, err
			}
			events = append(events, ev)
		}
		return change{http.StatusOK, productOut(prod), events}, nil
	})
}

// lockOwnProduct locks a product the caller may change; another seller's
// product is ErrNotFound.
func (s *Server) lockOwnProduct(ctx context.Context, c *gin.Context, tx *sqlx.Tx, id uuid.UUID) (store.Product, error) {
	prod, err := store.LockProduct(ctx, tx, id)
	if err != nil {
		return store.Product{}, err
	}
	if !principalOf(c).Sees(prod.SellerID) {
		return store.Product{}, store.ErrNotFound
	}
	return prod, nil
}

type setStockRequest struct {
	Stock  *int   `json:"stock"`
	Reason string `json:"reason"`
}

// setStock: PUT /v1/products/{id}/stock (seller, admin).
func (s *Server) setStock(c *gin.Context) {
	id, err := pathID(c, "id")
	if err != nil {
		s.fail(c, err)
		return
	}
	var req setStockRequest
	if err := bind(c, &req, false); err != nil {
		s.fail(c, err)
		return
	}
	var k checker
	switch {
	case req.Stock == nil:
		k.add("stock", "is required")
	case *req.Stock < 0 || *req.Stock > maxStock:
		k.add("stock", fmt.Sprintf("must be from 0 to %d", maxStock))
	}
	k.text("reason", req.Reason, false, 200)
	if err := k.err(); err != nil {
		s.fail(c, err)
		return
	}
	s.stockChange(c, id, req.Reason, func(ctx context.Context, tx *sqlx.Tx) (store.Product, int, error) {
		return store.SetStock(ctx, tx, id, *req.Stock)
	})
}

type adjustStockRequest struct {
	Delta  *int   `json:"delta"`
	Reason string `json:"reason"`
}

// adjustStock: POST /v1/products/{id}/stock-adjustments (seller, admin).
// Taking more than there is is a 409 insufficient-stock.
func (s *Server) adjustStock(c *gin.Context) {
	id, err := pathID(c, "id")
	if err != nil {
		s.fail(c, err)
		return
	}
	var req adjustStockRequest
	if err := bind(c, &req, false); err != nil {
		s.fail(c, err)
		return
	}
	var k checker
	switch {
	case req.Delta == nil:
		k.add("delta", "is required")
	case *req.Delta == 0 || *req.Delta < -maxStock || *req.Delta > maxStock:
		k.add("delta", fmt.Sprintf("must be a non-zero number from -%d to %d", maxStock, maxStock))
	}
	k.text("reason", req.Reason, false, 200)
	if err := k.err(); err != nil {
		s.fail(c, err)
		return
	}
	s.stockChange(c, id, req.Reason, func(ctx context.Context, tx *sqlx.Tx) (store.Product, int, error) {
		p, prev, err := store.AdjustStock(ctx, tx, id, *req.Delta)
		if errors.Is(err, store.ErrInsufficientStock) {
			return p, prev, withDetail(err, "The adjustment would make stock negative.")
		}
		return p, prev, err
	})
}

func (s *Server) stockChange(c *gin.Context, id uuid.UUID, reason string, fn func(context.Context, *sqlx.Tx) (store.Product, int, error)) {
	s.write(c, func(ctx context.Context, tx *sqlx.Tx) (change, error) {
		if _, err := s.lockOwnProduct(ctx, c, tx, id); err != nil {
			return change{}, err
		}
		prod, prev, err := fn(ctx, tx)
		if err != nil {
			return change{}, err
		}
		ev, err := store.NewInventoryAdjustedEvent(prod, prev, reason)
		if err != nil {
			return change{}, err
		}
		return change{http.StatusOK, productOut(prod), []store.Event{ev}}, nil
	})
}
