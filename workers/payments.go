package workers

import (
	"context"
	"errors"
	"fmt"

	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"

	"github.com/bazaarhq/bazaar/sql/store"
)

// chargeOrder charges a reserved order through the gateway and records
// payment.succeeded or payment.failed. The gateway's idempotency key is
// derived from the order, so a retry after a timeout (outcome unknown)
// learns the first answer instead of charging twice; the payments row is
// unique per order, so the outcome is recorded once.
func (w *Workers) chargeOrder(ctx context.Context, t *asynq.Task) error {
	p, err := decode[OrderPayload](t)
	if err != nil {
		return err
	}
	log := Logger(ctx, w.log).With("order_id", p.OrderID)
	if _, err := store.PaymentByOrder(ctx, w.db, p.OrderID); err == nil {
		log.Info("order charged before; nothing to do")
		return nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	o, err := store.GetOrder(ctx, w.db, p.OrderID)
	if err != nil {
		return missingIsPermanent(err)
	}
	if o.Status != store.OrderPending {
		log.Info("order no longer pending; not charged", "status", o.Status)
		return nil
	}
	seller, err := store.GetSeller(ctx, w.db, o.SellerID)
	if err != nil {
		return fmt.Errorf("charge order %s: %w", o.ID, err)
	}
	key := "order:" + o.ID.String() + ":charge"
	pay := store.Payment{
		OrderID: o.ID, AmountMinor: o.TotalMinor, Currency: o.Currency,
		Gateway: w.gateway.Name(), IdempotencyKey: key,
	}
	req := ChargeRequest{
		IdempotencyKey: key, Token: o.PaymentMethod, AmountMinor: o.TotalMinor, Currency: o.Currency,
		Description: "Bazaar order " + o.ID.String(),
		Metadata: map[string]string{
			"order_id": o.ID.String(), "seller_id": o.SellerID.String(), "user_id": o.UserID.String(),
			"event_id": p.EventID,
		},
	}
	if seller.StripeAccount != "" {
		bps := w.cfg.MarketplaceFeeBPS
		if seller.FeeBPS != nil {
			bps = *seller.FeeBPS
		}
		req.Destination, req.ApplicationFeeMinor = seller.StripeAccount, o.TotalMinor*int64(bps)/10_000
		pay.Destination, pay.ApplicationFeeMinor = req.Destination, req.ApplicationFeeMinor
	} else {
		req.Metadata["payout"] = "platform"
		log.Warn("seller has no connected account; the charge stays with the platform", "seller_id", o.SellerID)
	}
	charge, err := w.gateway.Charge(ctx, req)
	var (
		decline *DeclineError
		pending *PendingError
	)
	switch {
	case err == nil:
		pay.Status, pay.ChargeID = store.PaymentSucceeded, charge.ID
	case errors.As(err, &decline):
		pay.Status, pay.DeclineCode = store.PaymentFailed, decline.Code
	case errors.As(err, &pending):
		pay.Status, pay.ChargeID = store.PaymentPending, pending.ChargeID
	case errors.Is(err, ErrIdempotencyMismatch), errors.Is(err, ErrGatewayRefused):
		return permanent(fmt.Errorf("charge order %s: %w", o.ID, err))
	default:
		return fmt.Errorf("charge order %s: %w", o.ID, err)
	}
	err = w.inTx(ctx, func(tx *sqlx.Tx) (int, error) {
		if err := store.InsertPayment(ctx, tx, pay); err != nil {
			return 0, err
		}
		stored, err := store.PaymentByOrder(ctx, tx, o.ID)
		if err != nil {
			return 0, err
		}
		if pay.Status == store.PaymentPending {
			if pending.Status != "requires_action" {
				// Processing: the provider's webhook settles it.
				return 0, nil
			}
			// Not on the seller's stream: the client secret is the buyer's.
			ev, err := newEvent(p.Meta, EventOrderPaymentActionRequired, o.ID.String(), nil, PaymentActionData{
				OrderID: o.ID, UserID: o.UserID, PaymentID: stored.ID, ChargeID: pending.ChargeID, Status: pending.Status,
				ClientSecret: pending.ClientSecret, NextAction: pending.NextAction, RedirectURL: pending.RedirectURL,
			})
			if err != nil {
				return 0, err
			}
			return 1, store.InsertEvents(ctx, tx, ev)
		}
		typ := EventPaymentSucceeded
		if pay.Status == store.PaymentFailed {
			typ = EventPaymentFailed
		}
		ev, err := newEvent(p.Meta, typ, o.ID.String(), &o.SellerID, OrderStepData{
			OrderID: o.ID, UserID: o.UserID, AmountMinor: o.TotalMinor, Currency: o.Currency,
			Reason: pay.DeclineCode, PaymentID: stored.ID, ChargeID: pay.ChargeID,
			Destination: pay.Destination, ApplicationFeeMinor: pay.ApplicationFeeMinor,
			PlatformOnly: pay.Status == store.PaymentSucceeded && pay.Destination == "",
		})
		if err != nil {
			return 0, err
		}
		return 1, store.InsertEvents(ctx, tx, ev)
	})
	if errors.Is(err, store.ErrConflict) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("record payment: %w", err)
	}
	log.Info("order charged", "status", pay.Status, "decline_code", pay.DeclineCode, "amount_minor", o.TotalMinor)
	return nil
}

// refundOrder gives back the charge of a cancelled order, if there is one.
// The payment row is locked for the gateway call, so two refunds of one
// order run one after the other and the second finds it refunded.
func (w *Workers) refundOrder(ctx context.Context, t *asynq.Task) error {
	p, err := decode[OrderPayload](t)
	if err != nil {
		return err
	}
	log := Logger(ctx, w.log).With("order_id", p.OrderID)
	refunded := false
	err = w.inTx(ctx, func(tx *sqlx.Tx) (int, error) {
		pay, ok, err := lockSucceededPayment(ctx, tx, p.OrderID)
		if err != nil || !ok {
			return 0, err
		}
		o, err := store.GetOrder(ctx, tx, p.OrderID)
		if err != nil {
			return 0, err
		}
		if o.Status != store.OrderCancelled {
			// Refund only what the saga cancelled; a live order keeps its money.
			return 0, nil
		}
		r, err := w.gateway.Refund(ctx, RefundRequest{
			IdempotencyKey: "order:" + p.OrderID.String() + ":refund", ChargeID: pay.ChargeID,
			ReverseTransfer: pay.Destination != "",
			Metadata:        map[string]string{"order_id": o.ID.String(), "reason": o.CancelReason},
		})
		if err != nil {
			return 0, fmt.Errorf("refund %s: %w", pay.ChargeID, err)
		}
		if err := store.MarkPaymentRefunded(ctx, tx, p.OrderID, r.ID); err != nil {
			return 0, err
		}
		refunded = true
		ev, err := newEvent(p.Meta, EventPaymentRefunded, p.OrderID.String(), &o.SellerID, OrderStepData{
			OrderID: o.ID, UserID: o.UserID, AmountMinor: pay.AmountMinor, Currency: pay.Currency,
			PaymentID: pay.ID, ChargeID: pay.ChargeID, RefundID: r.ID, Reason: o.CancelReason,
		})
		if err != nil {
			return 0, err
		}
		return 1, store.InsertEvents(ctx, tx, ev)
	})
	if err != nil {
		return fmt.Errorf("refund order: %w", err)
	}
	log.Info("refund checked", "refunded", refunded)
	return nil
}
