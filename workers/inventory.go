package workers

import (
	"context"
	"errors"
	"fmt"

	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"

	"github.com/bazaarhq/bazaar/sql/store"
)

// permanent wraps an error no retry can fix (the record is gone).
func permanent(err error) error { return errors.Join(err, asynq.SkipRetry) }

// missingIsPermanent makes a record that no longer exists a permanent
// failure: no retry can bring it back.
func missingIsPermanent(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return permanent(err)
	}
	return err
}

// orderOf decodes an order task and reads its order.
func (w *Workers) orderOf(ctx context.Context, t *asynq.Task) (OrderPayload, store.Order, error) {
	p, err := decode[OrderPayload](t)
	if err != nil {
		return p, store.Order{}, err
	}
	o, err := store.GetOrder(ctx, w.db, p.OrderID)
	return p, o, missingIsPermanent(err)
}

// returnOf decodes a return task and reads its return.
func (w *Workers) returnOf(ctx context.Context, t *asynq.Task) (ReturnPayload, store.ReturnSnapshot, error) {
	p, err := decode[ReturnPayload](t)
	if err != nil {
		return p, store.ReturnSnapshot{}, err
	}
	r, err := store.LoadReturnSnapshot(ctx, w.db, p.ReturnID)
	return p, r, missingIsPermanent(err)
}

// reserveStock takes the stock of a new order: inventory.reserved, or
// inventory.reservation_failed when an item is short. The check and the
// decrement are one UPDATE per product guarded by stock >= quantity, so
// concurrent buyers can never oversell.
func (w *Workers) reserveStock(ctx context.Context, t *asynq.Task) error {
	p, o, err := w.orderOf(ctx, t)
	if err != nil {
		return err
	}
	log := Logger(ctx, w.log).With("order_id", o.ID)
	err = w.inTx(ctx, func(tx *sqlx.Tx) (int, error) {
		if err := store.ReserveStock(ctx, tx, o.ID, o.Items); err != nil {
			return 0, err
		}
		ev, err := newEvent(p.Meta, EventInventoryReserved, o.ID.String(), &o.SellerID,
			OrderStepData{OrderID: o.ID, UserID: o.UserID, AmountMinor: o.TotalMinor, Currency: o.Currency})
		if err != nil {
			return 0, err
		}
		return 1, store.InsertEvents(ctx, tx, ev)
	})
	switch {
	case err == nil:
		log.Info("stock reserved", "items", len(o.Items))
		return nil
	case errors.Is(err, store.ErrConflict):
		log.Info("order reserved before; nothing to do")
		return nil
	case errors.Is(err, store.ErrInvalidTransition):
		// Cancelled before its stock was taken: nothing to reserve, and no
		// event, since the saga has already ended.
		err := w.inTx(ctx, func(tx *sqlx.Tx) (int, error) {
			return 0, store.RecordReservationFailure(ctx, tx, o.ID, "order_not_pending")
		})
		if err != nil && !errors.Is(err, store.ErrConflict) {
			return err
		}
		log.Info("order no longer pending; stock not reserved")
		return nil
	case errors.Is(err, store.ErrInsufficientStock):
		reason := err.Error()
		err := w.inTx(ctx, func(tx *sqlx.Tx) (int, error) {
			if err := store.RecordReservationFailure(ctx, tx, o.ID, "out_of_stock"); err != nil {
				return 0, err
			}
			ev, err := newEvent(p.Meta, EventInventoryReservationFailed, o.ID.String(), &o.SellerID,
				OrderStepData{OrderID: o.ID, UserID: o.UserID, Reason: "out_of_stock"})
			if err != nil {
				return 0, err
			}
			return 1, store.InsertEvents(ctx, tx, ev)
		})
		if err != nil && !errors.Is(err, store.ErrConflict) {
			return err
		}
		log.Info("stock short; order cannot be reserved", "reason", reason)
		return nil
	default:
		return fmt.Errorf("reserve stock: %w", err)
	}
}

// releaseStock gives a cancelled order's stock back, once.
func (w *Workers) releaseStock(ctx context.Context, t *asynq.Task) error {
	p, o, err := w.orderOf(ctx, t)
	if err != nil {
		return err
	}
	released := false
	err = w.inTx(ctx, func(tx *sqlx.Tx) (int, error) {
		ok, err := store.ReleaseStock(ctx, tx, o.ID)
		if err != nil || !ok {
			return 0, err
		}
		released = true
		ev, err := newEvent(p.Meta, EventInventoryReleased, o.ID.String(), &o.SellerID,
			OrderStepData{OrderID: o.ID, UserID: o.UserID, Reason: o.CancelReason})
		if err != nil {
			return 0, err
		}
		return 1, store.InsertEvents(ctx, tx, ev)
	})
	if err != nil {
		return fmt.Errorf("release stock: %w", err)
	}
	Logger(ctx, w.log).Info("stock released", "order_id", o.ID, "released", released)
	return nil
}

// restockReturn puts the goods of an accepted return back into stock, once.
func (w *Workers) restockReturn(ctx context.Context, t *asynq.Task) error {
	p, r, err := w.returnOf(ctx, t)
	if err != nil {
		return err
	}
	if r.Status != store.ReturnStatusAccepted {
		Logger(ctx, w.log).Info("return not accepted; nothing to restock", "return_id", r.ID, "status", r.Status)
		return nil
	}
	err = w.inTx(ctx, func(tx *sqlx.Tx) (int, error) {
		ok, err := store.RestockReturn(ctx, tx, r)
		if err != nil || !ok {
			return 0, err
		}
		ev, err := newEvent(p.Meta, EventInventoryRestocked, r.OrderID.String(), &r.SellerID,
			RestockData{ReturnID: r.ID, OrderID: r.OrderID, ProductID: r.ProductID, Quantity: r.Quantity})
		if err != nil {
			return 0, err
		}
		return 1, store.InsertEvents(ctx, tx, ev)
	})
	if err != nil {
		return fmt.Errorf("restock return: %w", err)
	}
	Logger(ctx, w.log).Info("return restocked", "return_id", r.ID, "product_id", r.ProductID, "quantity", r.Quantity)
	return nil
}
