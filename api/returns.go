package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/bazaarhq/bazaar/sql/store"
)

type openReturnRequest struct {
	OrderItemID string `json:"order_item_id"`
	Quantity    int    `json:"quantity"`
	Reason      string `json:"reason"`
}

// openReturn: POST /v1/orders/{id}/returns (storefront, admin). Returns
// open on shipped or delivered orders, for at most the units bought minus
// those already in open or accepted returns.
func (s *Server) openReturn(c *gin.Context) {
	orderID, err := pathID(c, "id")
	if err != nil {
		s.fail(c, err)
		return
	}
	var req openReturnRequest
	if err := bind(c, &req, false); err != nil {
		s.fail(c, err)
		return
	}
	var k checker
	itemID := k.id("order_item_id", req.OrderItemID)
	if req.Quantity < 1 || req.Quantity > maxItemQuantity {
		k.add("quantity", fmt.Sprintf("must be from 1 to %d", maxItemQuantity))
	}
	k.text("reason", req.Reason, true, 1000)
	if err := k.err(); err != nil {
		s.fail(c, err)
		return
	}
	s.write(c, func(ctx context.Context, tx *sqlx.Tx) (change, error) {
		o, err := visibleOrder(ctx, c, tx, orderID)
		if err != nil {
			return change{}, err
		}
		if o.Status != store.OrderShipped && o.Status != store.OrderDelivered {
			return change{}, withDetail(store.ErrInvalidTransition,
				fmt.Sprintf("Returns open on shipped or delivered orders; this one is %s.", o.Status))
		}
		_, left, err := store.ReturnableItem(ctx, tx, orderID, *itemID)
		if errors.Is(err, store.ErrNotFound) {
			return change{}, invalid(FieldError{Field: "order_item_id", Message: "is not an item of this order"})
		}
		if err != nil {
			return change{}, err
		}
		if req.Quantity > left {
			return change{}, invalid(FieldError{Field: "quantity", Message: fmt.Sprintf("at most %d more can be returned", left)})
		}
		r, err := store.CreateReturn(ctx, tx, store.Return{
			OrderID: o.ID, OrderItemID: *itemID, SellerID: o.SellerID,
			UserID: o.UserID, Quantity: req.Quantity, Reason: req.Reason, Currency: o.Currency,
		})
		if err != nil {
			return change{}, err
		}
		ev, err := store.NewReturnEvent("return.opened", r)
		if err != nil {
			return change{}, err
		}
		return change{http.StatusCreated, returnOut(r), []store.Event{ev}}, nil
	})
}

// getReturn: GET /v1/returns/{id}.
func (s *Server) getReturn(c *gin.Context) {
	readOwned(s, c, store.GetReturn, func(r store.Return) uuid.UUID { return r.SellerID }, returnOut)
}

// listReturns: GET /v1/returns, newest first, filtered by order_id,
// seller_id, user_id and status.
func (s *Server) listReturns(c *gin.Context) {
	var f store.ReturnFilter
	var err error
	if f.OrderID, err = queryID(c, "order_id"); err != nil {
		s.fail(c, err)
		return
	}
	if f.UserID, err = queryID(c, "user_id"); err != nil {
		s.fail(c, err)
		return
	}
	if f.SellerID, err = scopedSeller(c); err != nil {
		s.fail(c, err)
		return
	}
	if v, ok := c.GetQuery("status"); ok {
		if f.Status = store.ReturnStatus(v); !f.Status.Valid() {
			s.fail(c, badParam("status", "must be one of open, accepted, rejected"))
			return
		}
	}
	p, err := page(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.read(c, func(ctx context.Context, q sqlx.QueryerContext) (any, error) {
		rows, next, err := store.ListReturns(ctx, q, f, p)
		return listOf(rows, next, returnOut), err
	})
}

type resolveReturnRequest struct {
	Decision    string `json:"decision"`
	RefundMinor *int64 `json:"refund_minor"`
	Note        string `json:"note"`
}

// resolveReturn: POST /v1/returns/{id}/resolution (seller, admin). Accept
// with a refund of at most the returned units' price, or reject.
func (s *Server) resolveReturn(c *gin.Context) {
	id, err := pathID(c, "id")
	if err != nil {
		s.fail(c, err)
		return
	}
	var req resolveReturnRequest
	if err := bind(c, &req, false); err != nil {
		s.fail(c, err)
		return
	}
	var k checker
	var to store.ReturnStatus
	switch req.Decision {
	case "accept":
		to = store.ReturnStatusAccepted
		checkPrice(&k, "refund_minor", req.RefundMinor, true)
	case "reject":
		to = store.ReturnStatusRejected
		if deref(req.RefundMinor) != 0 {
			k.add("refund_minor", "must be omitted or 0 when rejecting")
		}
	default:
		k.add("decision", "must be accept or reject")
	}
	k.text("note", req.Note, false, 1000)
	if err := k.err(); err != nil {
		s.fail(c, err)
		return
	}
	s.write(c, func(ctx context.Context, tx *sqlx.Tx) (change, error) {
		r, err := store.GetReturn(ctx, tx, id)
		if err != nil {
			return change{}, err
		}
		if !principalOf(c).Sees(r.SellerID) {
			return change{}, store.ErrNotFound
		}
		refund := deref(req.RefundMinor)
		if to == store.ReturnStatusAccepted {
			o, err := store.GetOrder(ctx, tx, r.OrderID)
			if err != nil {
				return change{}, err
			}
			for _, it := range o.Items {
				if it.ID == r.OrderItemID && refund > it.UnitPriceMinor*int64(r.Quantity) {
					return change{}, invalid(FieldError{
						Field:   "refund_minor",
						Message: fmt.Sprintf("must be at most %d, the price of the returned units", it.UnitPriceMinor*int64(r.Quantity)),
					})
				}
			}
		}
		resolved, err := store.ResolveReturn(ctx, tx, id, to, refund, req.Note)
		if errors.Is(err, store.ErrInvalidTransition) {
			return change{}, withDetail(err, fmt.Sprintf("The return is %s already.", r.Status))
		}
		if err != nil {
			return change{}, err
		}
		ev, err := store.NewReturnEvent("return.resolved", resolved)
		if err != nil {
			return change{}, err
		}
		return change{http.StatusOK, returnOut(resolved), []store.Event{ev}}, nil
	})
}
