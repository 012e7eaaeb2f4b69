package api

import (
	"context"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/bazaarhq/bazaar/sql/store"
)

type printerAckRequest struct {
	OrderID string `json:"order_id"`
}

type printerAckDTO struct {
	OrderID   uuid.UUID `json:"order_id"`
	PrinterID uuid.UUID `json:"printer_id"`
	SellerID  uuid.UUID `json:"seller_id"`
	AckedAt   time.Time `json:"acked_at"`
}

// ackOrder: POST /v1/printers/{id}/acks (the printer itself, {id} being its
// token's key id). A printer acknowledges each order it printed; repeating
// an acknowledgement answers 200 with the first one. Another printer's id,
// or another seller's order, is 404.
func (s *Server) ackOrder(c *gin.Context) {
	printerID, err := pathID(c, "id")
	if err != nil {
		s.fail(c, err)
		return
	}
	p := principalOf(c)
	if p.KeyID != printerID {
		s.fail(c, store.ErrNotFound)
		return
	}
	var req printerAckRequest
	if err := bind(c, &req, false); err != nil {
		s.fail(c, err)
		return
	}
	var k checker
	orderID := k.id("order_id", req.OrderID)
	if err := k.err(); err != nil {
		s.fail(c, err)
		return
	}
	s.write(c, func(ctx context.Context, tx *sqlx.Tx) (change, error) {
		ack, created, err := store.AckOrder(ctx, tx, printerID, p.SellerID, *orderID)
		if err != nil {
			return change{}, err
		}
		status := http.StatusOK
		if created {
			status = http.StatusCreated
		}
		return change{status: status, body: printerAckDTO{OrderID: ack.OrderID, PrinterID: ack.PrinterKeyID, SellerID: ack.SellerID, AckedAt: ack.AckedAt}}, nil
	})
}

// listUnprintedOrders: GET /v1/sellers/{id}/unprinted-orders (admin, the
// seller, its printers): the seller's orders no printer acknowledged,
// oldest first, so a printer that lost its place can print what it missed.
func (s *Server) listUnprintedOrders(c *gin.Context) {
	id, err := s.visibleSeller(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	pg, err := page(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.read(c, func(ctx context.Context, q sqlx.QueryerContext) (any, error) {
		if _, err := store.GetSeller(ctx, q, id); err != nil {
			return nil, err
		}
		rows, next, err := store.UnprintedOrders(ctx, q, id, pg)
		return listOf(rows, next, orderOut), err
	})
}
