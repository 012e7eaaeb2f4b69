package workers

import (
	"context"
	"errors"
	"fmt"

	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"

	"github.com/bazaarhq/bazaar/sql/store"
)

// confirmOrder is the saga's happy end: a paid order becomes confirmed. The
// move is guarded by the state machine; if the order was cancelled while
// it was being paid for, the payment is refunded instead.
func (w *Workers) confirmOrder(ctx context.Context, t *asynq.Task) error {
	p, err := decode[OrderPayload](t)
	if err != nil {
		return err
	}
	log := Logger(ctx, w.log).With("order_id", p.OrderID)
	err = w.inTx(ctx, func(tx *sqlx.Tx) (int, error) {
		o, err := store.TransitionOrder(ctx, tx, p.OrderID, store.OrderConfirmed, "")
		if err != nil {
			return 0, err
		}
		ev, err := store.NewOrderEvent(eventOrderConfirmed, o)
		if err != nil {
			return 0, err
		}
		return 1, store.InsertEvents(ctx, tx, stamp(p.Meta, ev))
	})
	switch {
	case err == nil:
		log.Info("order confirmed")
		return nil
	case errors.Is(err, store.ErrNotFound):
		return permanent(err)
	case errors.Is(err, store.ErrInvalidTransition):
		o, gerr := store.GetOrder(ctx, w.db, p.OrderID)
		if gerr != nil {
			return gerr
		}
		if o.Status != store.OrderCancelled {
			log.Info("order moved on before; nothing to do", "status", o.Status)
			return nil
		}
		// Paid after it was cancelled: compensate.
		rt, terr := NewOrderTask(TypePaymentRefund, p.Meta, o.ID, "cancelled_before_confirmation")
		if terr != nil {
			return terr
		}
		log.Info("order was cancelled while paid for; refunding")
		return w.enqueue(ctx, rt, TaskID("orders", p.EventID, "refund"))
	default:
		return fmt.Errorf("confirm order: %w", err)
	}
}

// cancelOrder is the saga's compensation: an order whose stock could not
// be reserved or whose payment failed is cancelled. order.cancelled then
// makes inventory release what was reserved and notifications tell the
// buyer.
func (w *Workers) cancelOrder(ctx context.Context, t *asynq.Task) error {
	p, err := decode[OrderPayload](t)
	if err != nil {
		return err
	}
	log := Logger(ctx, w.log).With("order_id", p.OrderID)
	err = w.inTx(ctx, func(tx *sqlx.Tx) (int, error) {
		cur, err := store.GetOrder(ctx, tx, p.OrderID)
		if err != nil {
			return 0, err
		}
		// The saga cancels only orders it still owns; a confirmed order is
		// the seller's to cancel.
		if cur.Status != store.OrderPending {
			return 0, fmt.Errorf("order is %s: %w", cur.Status, store.ErrInvalidTransition)
		}
		o, err := store.TransitionOrder(ctx, tx, p.OrderID, store.OrderCancelled, p.Reason)
		if err != nil {
			return 0, err
		}
		ev, err := store.NewOrderEvent(eventOrderCancelled, o)
		if err != nil {
			return 0, err
		}
		return 1, store.InsertEvents(ctx, tx, stamp(p.Meta, ev))
	})
	switch {
	case err == nil:
		log.Info("order cancelled", "reason", p.Reason)
		return nil
	case errors.Is(err, store.ErrNotFound):
		return permanent(err)
	case errors.Is(err, store.ErrInvalidTransition):
		log.Info("order moved on before; not cancelled", "error", err)
		return nil
	default:
		return fmt.Errorf("cancel order: %w", err)
	}
}
