package workers

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"

	"github.com/bazaarhq/bazaar/sql/store"
)

// refundReturn gives back the refund of an accepted return through the
// gateway, once per return. The order's payment row is locked for the
// call, so it runs after (or before) a cancellation's full refund, never
// beside it; a charge paid out to a seller takes the seller's share back
// in proportion.
func (w *Workers) refundReturn(ctx context.Context, t *asynq.Task) error {
	p, r, err := w.returnOf(ctx, t)
	if err != nil {
		return err
	}
	log := Logger(ctx, w.log).With("return_id", r.ID, "order_id", r.OrderID)
	if r.Status != store.ReturnStatusAccepted || r.RefundMinor <= 0 {
		log.Info("return gives no money back; nothing to refund", "status", r.Status, "refund_minor", r.RefundMinor)
		return nil
	}
	refunded := false
	err = w.inTx(ctx, func(tx *sqlx.Tx) (int, error) {
		pay, ok, err := lockSucceededPayment(ctx, tx, r.OrderID)
		if err != nil || !ok {
			return 0, err
		}
		if _, err := store.GetReturnRefund(ctx, tx, r.ID); err == nil {
			return 0, nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return 0, err
		}
		rf, err := w.gateway.Refund(ctx, RefundRequest{
			IdempotencyKey: "return:" + r.ID.String() + ":refund", ChargeID: pay.ChargeID, AmountMinor: r.RefundMinor,
			ReverseTransfer: pay.Destination != "",
			Metadata:        map[string]string{"order_id": r.OrderID.String(), "return_id": r.ID.String()},
		})
		if err != nil {
			return 0, fmt.Errorf("refund %s: %w", pay.ChargeID, err)
		}
		if err := store.InsertReturnRefund(ctx, tx, store.ReturnRefund{
			ReturnID: r.ID, OrderID: r.OrderID, AmountMinor: r.RefundMinor, RefundID: rf.ID,
		}); err != nil {
			return 0, err
		}
		refunded = true
		ev, err := newEvent(p.Meta, EventPaymentRefunded, r.OrderID.String(), &r.SellerID, OrderStepData{
			OrderID: r.OrderID, UserID: r.UserID, AmountMinor: r.RefundMinor, Currency: r.Currency,
			PaymentID: pay.ID, ChargeID: pay.ChargeID, RefundID: rf.ID, ReturnID: r.ID, Reason: "return",
		})
		if err != nil {
			return 0, err
		}
		return 1, store.InsertEvents(ctx, tx, ev)
	})
	if err != nil {
		return fmt.Errorf("refund return: %w", err)
	}
	log.Info("return refund checked", "refunded", refunded, "amount_minor", r.RefundMinor)
	return nil
}

// lockSucceededPayment locks the payment of an order for a refund. ok is
// false when there is nothing to refund: the order was never charged, or
// its charge was refunded whole already.
func lockSucceededPayment(ctx context.Context, tx *sqlx.Tx, orderID uuid.UUID) (pay store.Payment, ok bool, err error) {
	pay, err = store.LockPaymentByOrder(ctx, tx, orderID)
	if errors.Is(err, store.ErrNotFound) {
		return store.Payment{}, false, nil
	}
	if err != nil {
		return store.Payment{}, false, err
	}
	return pay, pay.Status == store.PaymentSucceeded, nil
}
