package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/bazaarhq/bazaar/sql/store"
)

// Limits of orders.
const (
	maxOrderItems   = 100
	maxItemQuantity = 10_000
	maxScheduleLead = 366 * 24 * time.Hour
)

type orderItemRequest struct {
	ProductID string `json:"product_id"`
	Quantity  int    `json:"quantity"`
}

type createOrderRequest struct {
	UserID        string             `json:"user_id"`
	Items         []orderItemRequest `json:"items"`
	PaymentMethod string             `json:"payment_method"`
	ScheduledAt   *string            `json:"scheduled_at"`
}

// createOrder: POST /v1/orders (storefront, admin). The order is placed on
// behalf of a buyer, holds items of one seller in one currency, and is
// priced from the products at this moment.
func (s *Server) createOrder(c *gin.Context) {
	var req createOrderRequest
	if err := bind(c, &req, false); err != nil {
		s.fail(c, err)
		return
	}
	var k checker
	userID := k.id("user_id", req.UserID)
	k.token("payment_method", req.PaymentMethod, 200)
	var scheduledAt *time.Time
	if req.ScheduledAt != nil {
		t, err := time.Parse(time.RFC3339, *req.ScheduledAt)
		now := time.Now()
		switch {
		case err != nil:
			k.add("scheduled_at", "must be an RFC 3339 time such as 2030-01-02T15:04:05Z")
		case !t.After(now):
			k.add("scheduled_at", "must be in the future")
		case t.Sub(now) > maxScheduleLead:
			k.add("scheduled_at", "must be within a year")
		default:
			t = t.UTC()
			scheduledAt = &t
		}
	}
	switch {
	case len(req.Items) == 0:
		k.add("items", "must hold at least one item")
	case len(req.Items) > maxOrderItems:
		k.add("items", fmt.Sprintf("must hold at most %d items", maxOrderItems))
	}
	ids := make([]uuid.UUID, len(req.Items))
	seen := map[uuid.UUID]bool{}
	for i, it := range req.Items {
		f := fmt.Sprintf("items[%d]", i)
		if id := k.id(f+".product_id", it.ProductID); id != nil {
			if seen[*id] {
				k.add(f+".product_id", "appears twice; raise the quantity instead")
			}
			seen[*id], ids[i] = true, *id
		}
		if it.Quantity < 1 || it.Quantity > maxItemQuantity {
			k.add(f+".quantity", fmt.Sprintf("must be from 1 to %d", maxItemQuantity))
		}
	}
	if err := k.err(); err != nil {
		s.fail(c, err)
		return
	}
	s.placeOrder(c, *userID, req, ids, scheduledAt)
}

// placeOrder prices and writes a checked order request in two round trips
// to PostgreSQL: one prepared statement reads the products, their
// seller's pause and order limit and the idempotency record
// (store.ReadOrderInputs); another writes the order, its items, its event
// with the outbox row and the idempotency record as one implicit
// transaction (store.PlaceOrder). Every id and time of the order is chosen
// here, so the response is known, and stored with the order, before the
// write. The user is checked by the order's foreign key.
func (s *Server) placeOrder(c *gin.Context, userID uuid.UUID, req createOrderRequest, ids []uuid.UUID, scheduledAt *time.Time) {
	ctx := c.Request.Context()
	idem := idempotentRequest(c)
	var principal, key string
	if idem != nil {
		principal, key = idem.principal, idem.key
	}
	in, err := store.ReadOrderInputs(ctx, s.stmts.DB(), ids, principal, key)
	if err != nil {
		s.fail(c, err)
		return
	}
	if in.Found {
		s.replay(c, idem, in.Record)
		return
	}
	o := store.Order{UserID: userID, PaymentMethod: req.PaymentMethod, ScheduledAt: scheduledAt}
	var first store.OrderProduct
	var k checker
	for i, it := range req.Items {
		p, ok := in.Products[ids[i]]
		switch {
		case !ok:
			k.add(fmt.Sprintf("items[%d].product_id", i), "no such product")
			continue
		case i == 0:
			first, o.SellerID, o.Currency = p, p.SellerID, p.Currency
		case p.SellerID != o.SellerID:
			k.add(fmt.Sprintf("items[%d].product_id", i), "is sold by another seller; an order holds one seller's items")
		case p.Currency != o.Currency:
			k.add(fmt.Sprintf("items[%d].product_id", i), "is priced in another currency than the first item")
		}
		line := p.PriceMinor * int64(it.Quantity)
		o.SubtotalMinor += line
		o.Items = append(o.Items, store.OrderItem{
			ProductID: p.ID, SKU: p.SKU, Name: p.Name,
			Quantity: it.Quantity, UnitPriceMinor: p.PriceMinor, LineTotalMinor: line,
		})
	}
	if err := k.err(); err != nil {
		s.fail(c, err)
		return
	}
	if err := s.refusePausedSeller(o.SellerID, first.SellerPaused); err != nil {
		s.fail(c, err)
		return
	}
	if err := s.allowSellerOrder(c, o.SellerID, first.OrderLimit()); err != nil {
		s.fail(c, err)
		return
	}
	o.TotalMinor = o.SubtotalMinor
	if o, err = store.PrepareOrder(o); err != nil {
		s.fail(c, err)
		return
	}
	ev, err := store.NewOrderEvent("order.created", o)
	if err != nil {
		s.fail(c, err)
		return
	}
	ev.RequestID, ev.TraceParent = requestID(c), s.eventTraceParent(ctx, c)
	body, err := json.Marshal(orderOut(o))
	if err != nil {
		s.fail(c, fmt.Errorf("encode response: %w", err))
		return
	}
	n := store.NewOrder{Order: o, Event: ev}
	if idem != nil {
		n.Record = &store.IdempotencyRecord{
			Principal: idem.principal, Key: idem.key, Method: idem.method, Path: idem.path,
			RequestHash: idem.hash, Status: http.StatusCreated, ContentType: contentTypeJSON, Response: body,
		}
	}
	placed, err := s.placeOrderTx(ctx, n)
	if errors.Is(err, store.ErrUnknownUser) {
		err = invalid(FieldError{Field: "user_id", Message: "no such user"})
	}
	if err != nil {
		s.fail(c, err)
		return
	}
	if !placed {
		// A request with the same key committed first, perhaps while
		// this one waited for it: answer as it did.
		rec, err := store.GetIdempotencyRecord(ctx, s.stmts.DB(), idem.principal, idem.key)
		if err != nil {
			s.fail(c, err)
			return
		}
		s.replay(c, idem, rec)
		return
	}
	if s.cfg.Observer != nil {
		s.cfg.Observer.EventsCommitted()
	}
	c.Data(http.StatusCreated, contentTypeJSON, body)
}

// placeOrderTx runs store.PlaceOrder alone, as its own implicit
// transaction, or, when a test set beforeCommit, in an explicit one that
// runs the hook before committing.
func (s *Server) placeOrderTx(ctx context.Context, n store.NewOrder) (bool, error) {
	if s.beforeCommit == nil {
		return store.PlaceOrder(ctx, s.stmts.DB(), n)
	}
	var placed bool
	err := store.WithTx(ctx, s.cfg.DB, func(tx *sqlx.Tx) error {
		var err error
		if placed, err = store.PlaceOrder(ctx, tx, n); err != nil {
			return err
		}
		return s.beforeCommit(ctx, tx)
	})
	return placed, err
}

// getOrder: GET /v1/orders/{id}.
func (s *Server) getOrder(c *gin.Context) {
	readOwned(s, c, store.GetOrder, func(o store.Order) uuid.UUID { return o.SellerID }, orderOut)
}

// visibleOrder reads an order the caller sees; another seller's order is
// ErrNotFound.
func visibleOrder(ctx context.Context, c *gin.Context, q sqlx.QueryerContext, id uuid.UUID) (store.Order, error) {
	o, err := store.GetOrder(ctx, q, id)
	if err != nil {
		return store.Order{}, err
	}
	if !principalOf(c).Sees(o.SellerID) {
		return store.Order{}, store.ErrNotFound
	}
	return o, nil
}

// listOrders: GET /v1/orders, newest first, filtered by user_id, seller_id
// and status. Seller and printer keys list their own seller's orders only.
func (s *Server) listOrders(c *gin.Context) {
	var f store.OrderFilter
	var err error
	if f.UserID, err = queryID(c, "user_id"); err != nil {
		s.fail(c, err)
		return
	}
	if f.SellerID, err = scopedSeller(c); err != nil {
		s.fail(c, err)
		return
	}
	if v, ok := c.GetQuery("status"); ok {
		if f.Status = store.OrderStatus(v); !f.Status.Valid() {
			s.fail(c, badParam("status", "must be one of pending, confirmed, cancelled, shipped, delivered"))
			return
		}
	}
	p, err := page(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.read(c, func(ctx context.Context, q sqlx.QueryerContext) (any, error) {
		rows, next, err := store.ListOrders(ctx, q, f, p)
		return listOf(rows, next, orderOut), err
	})
}

// scopedSeller reads the seller_id filter of a list: seller and printer
// keys are pinned to their seller (another seller's id is ErrNotFound).
func scopedSeller(c *gin.Context) (*uuid.UUID, error) {
	id, err := queryID(c, "seller_id")
	if err != nil {
		return nil, err
	}
	p := principalOf(c)
	if p.Role != RoleSeller && p.Role != RolePrinter {
		return id, nil
	}
	if id != nil && *id != p.SellerID {
		return nil, store.ErrNotFound
	}
	own := p.SellerID
	return &own, nil
}

type cancelOrderRequest struct {
	Reason string `json:"reason"`
}

// cancelOrder: POST /v1/orders/{id}/cancellation (storefront, seller, admin).
func (s *Server) cancelOrder(c *gin.Context) {
	var req cancelOrderRequest
	if err := bind(c, &req, true); err != nil {
		s.fail(c, err)
		return
	}
	var k checker
	k.text("reason", req.Reason, false, 500)
	if err := k.err(); err != nil {
		s.fail(c, err)
		return
	}
	s.transition(c, store.OrderCancelled, req.Reason)
}

// shipOrder: POST /v1/orders/{id}/shipment (seller, admin).
func (s *Server) shipOrder(c *gin.Context) { s.transitionNoBody(c, store.OrderShipped) }

// deliverOrder: POST /v1/orders/{id}/delivery (seller, admin).
func (s *Server) deliverOrder(c *gin.Context) { s.transitionNoBody(c, store.OrderDelivered) }

func (s *Server) transitionNoBody(c *gin.Context, to store.OrderStatus) {
	var req struct{}
	if err := bind(c, &req, true); err != nil {
		s.fail(c, err)
		return
	}
	s.transition(c, to, "")
}

// transition moves an order through the state machine and records
// order.<state>; an illegal move is a 409 invalid-transition.
func (s *Server) transition(c *gin.Context, to store.OrderStatus, reason string) {
	id, err := pathID(c, "id")
	if err != nil {
		s.fail(c, err)
		return
	}
	s.write(c, func(ctx context.Context, tx *sqlx.Tx) (change, error) {
		cur, err := visibleOrder(ctx, c, tx, id)
		if err != nil {
			return change{}, err
		}
		o, err := store.TransitionOrder(ctx, tx, id, to, reason)
		if errors.Is(err, store.ErrInvalidTransition) {
			return change{}, withDetail(err, fmt.Sprintf("The order is %s and cannot become %s.", cur.Status, to))
		}
		if err != nil {
			return change{}, err
		}
		ev, err := store.NewOrderEvent("", o)
		if err != nil {
			return change{}, err
		}
		return change{http.StatusOK, orderOut(o), []store.Event{ev}}, nil
	})
}
