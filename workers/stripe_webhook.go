package workers

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/stripe/stripe-go/v85"
	"github.com/stripe/stripe-go/v85/webhook"

	"github.com/bazaarhq/bazaar/sql/store"
)

// ErrBadSignature means a webhook delivery's signature did not verify with
// the endpoint's secret (or is too old): it changes nothing.
var ErrBadSignature = errors.New("webhook signature does not verify")

// StripeWebhooksConfig configures StripeWebhooks.
type StripeWebhooksConfig struct {
	// DB is where the events are recorded (required).
	DB *sqlx.DB
	// Secret is the endpoint's signing secret, "whsec_..." (required).
	Secret string
	Logger *slog.Logger
	// Observer is told after a delivery committed events.
	Observer store.TxObserver
}

// StripeWebhooks turns Stripe's webhook deliveries into Bazaar events, so
// an outcome Stripe settles later (after 3-D Secure, a refund or dispute
// made at Stripe) moves the order's saga as a synchronous answer does.
// Each Stripe event is applied once, by its id, in the transaction that
// records its Bazaar events.
type StripeWebhooks struct {
	cfg StripeWebhooksConfig
	log *slog.Logger
}

// NewStripeWebhooks validates cfg and builds the handler.
func NewStripeWebhooks(cfg StripeWebhooksConfig) (*StripeWebhooks, error) {
	if cfg.DB == nil {
		return nil, errors.New("stripe webhooks: DB is required")
	}
	if cfg.Secret == "" {
		return nil, errors.New("stripe webhooks: Secret is required")
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	return &StripeWebhooks{cfg: cfg, log: cfg.Logger}, nil
}

// Handle verifies one delivery's Stripe-Signature header and applies it.
// It returns an error wrapping ErrBadSignature for a delivery that does not
// verify; any other error means Stripe should deliver it again.
func (h *StripeWebhooks) Handle(ctx context.Context, payload []byte, signature string) error {
	ev, err := webhook.ConstructEvent(payload, signature, h.cfg.Secret)
	if err != nil {
		return fmt.Errorf("stripe webhook: %w: %w", ErrBadSignature, err)
	}
	log := h.log.With("stripe_event_id", ev.ID, "stripe_event_type", string(ev.Type))
	var events []store.Event
	applied := false
	err = store.WithTx(ctx, h.cfg.DB, func(tx *sqlx.Tx) error {
		events = nil
		first, err := store.RecordProviderEvent(ctx, tx, ev.ID, string(ev.Type))
		if err != nil || !first {
			return err
		}
		applied = true
		events, err = h.apply(ctx, tx, ev, log)
		if err != nil {
			return err
		}
		return store.InsertEvents(ctx, tx, events...)
	})
	if err != nil {
		return fmt.Errorf("stripe webhook %s: %w", ev.ID, err)
	}
	if len(events) > 0 && h.cfg.Observer != nil {
		h.cfg.Observer.EventsCommitted()
	}
	log.Info("stripe event received", "first", applied, "events", len(events))
	return nil
}

// apply returns the Bazaar events a Stripe event makes, after changing the
// payment it is about.
func (h *StripeWebhooks) apply(ctx context.Context, tx *sqlx.Tx, ev stripe.Event, log *slog.Logger) ([]store.Event, error) {
	m := Meta{Version: PayloadVersion, EventID: ev.ID, EventType: string(ev.Type)}
	if ev.Data == nil {
		return nil, nil
	}
	switch ev.Type {
	case stripe.EventTypePaymentIntentSucceeded, stripe.EventTypePaymentIntentPaymentFailed:
		var pi stripe.PaymentIntent
		if err := json.Unmarshal(ev.Data.Raw, &pi); err != nil {
			return nil, fmt.Errorf("read payment intent: %w", err)
		}
		status, code := store.PaymentSucceeded, ""
		if ev.Type == stripe.EventTypePaymentIntentPaymentFailed {
			status, code = store.PaymentFailed, cmp.Or(declineCode(pi.LastPaymentError), "payment_failed")
		}
		return h.settle(ctx, tx, m, &pi, status, code, log)
	case stripe.EventTypeChargeRefunded:
		var ch stripe.Charge
		if err := json.Unmarshal(ev.Data.Raw, &ch); err != nil {
			return nil, fmt.Errorf("read charge: %w", err)
		}
		return h.refunded(ctx, tx, m, &ch, log)
	case stripe.EventTypeChargeDisputeCreated:
		var d stripe.Dispute
		if err := json.Unmarshal(ev.Data.Raw, &d); err != nil {
			return nil, fmt.Errorf("read dispute: %w", err)
		}
		if d.PaymentIntent == nil {
			log.Warn("dispute of a charge without a payment intent; recorded only", "dispute_id", d.ID)
			return nil, nil
		}
		pay, err := store.LockPaymentByCharge(ctx, tx, d.PaymentIntent.ID)
		if errors.Is(err, store.ErrNotFound) {
			log.Warn("dispute of a charge Bazaar did not make; recorded only", "payment_intent", d.PaymentIntent.ID)
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		o, err := store.GetOrder(ctx, tx, pay.OrderID)
		if err != nil {
			return nil, err
		}
		e, err := newEvent(m, EventPaymentDisputed, o.ID.String(), &o.SellerID, DisputeData{
			OrderID: o.ID, PaymentID: pay.ID, ChargeID: pay.ChargeID, DisputeID: d.ID, Reason: string(d.Reason),
			AmountMinor: d.Amount, Currency: pay.Currency,
		})
		return []store.Event{e}, err
	}
	return nil, nil
}

// settle records the outcome of a PaymentIntent: a pending payment moves
// to it; an order whose charge task never recorded one (it died after
// Stripe took the money) gets the payment now, and the task, retried,
// finds it. A payment settled before keeps its outcome.
func (h *StripeWebhooks) settle(ctx context.Context, tx *sqlx.Tx, m Meta, pi *stripe.PaymentIntent, status, code string, log *slog.Logger) ([]store.Event, error) {
	pay, err := store.LockPaymentByCharge(ctx, tx, pi.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		orderID, perr := uuid.Parse(pi.Metadata["order_id"])
		if perr != nil {
			log.Warn("payment intent of no Bazaar order; recorded only", "payment_intent", pi.ID)
			return nil, nil
		}
		o, err := store.GetOrder(ctx, tx, orderID)
		if errors.Is(err, store.ErrNotFound) {
			log.Warn("payment intent of an order that does not exist; recorded only", "payment_intent", pi.ID, "order_id", orderID)
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		pay = store.Payment{
			OrderID: o.ID, Status: status, AmountMinor: pi.Amount, Currency: o.Currency, Gateway: "stripe",
			ChargeID: pi.ID, DeclineCode: code, IdempotencyKey: "order:" + o.ID.String() + ":charge",
		}
		if pi.TransferData != nil && pi.TransferData.Destination != nil {
			pay.Destination, pay.ApplicationFeeMinor = pi.TransferData.Destination.ID, pi.ApplicationFeeAmount
		}
		if err := store.InsertPayment(ctx, tx, pay); errors.Is(err, store.ErrConflict) {
			log.Info("order has a payment under another charge; recorded only", "payment_intent", pi.ID, "order_id", o.ID)
			return nil, nil
		} else if err != nil {
			return nil, err
		}
		if pay, err = store.PaymentByOrder(ctx, tx, o.ID); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, err
	case pay.Status != store.PaymentPending:
		log.Info("payment settled before; recorded only", "payment_id", pay.ID, "status", pay.Status)
		return nil, nil
	default:
		if err := store.SettlePayment(ctx, tx, pay.ID, status, code); err != nil {
			return nil, err
		}
		pay.Status, pay.DeclineCode = status, code
	}
	o, err := store.GetOrder(ctx, tx, pay.OrderID)
	if err != nil {
		return nil, err
	}
	typ := EventPaymentSucceeded
	if status == store.PaymentFailed {
		typ = EventPaymentFailed
	}
	e, err := newEvent(m, typ, o.ID.String(), &o.SellerID, OrderStepData{
		OrderID: o.ID, UserID: o.UserID, AmountMinor: pay.AmountMinor, Currency: pay.Currency,
		Reason: code, PaymentID: pay.ID, ChargeID: pay.ChargeID,
		Destination: pay.Destination, ApplicationFeeMinor: pay.ApplicationFeeMinor,
		PlatformOnly: status == store.PaymentSucceeded && pay.Destination == "",
	})
	return []store.Event{e}, err
}

// refunded records a charge refunded in full at Stripe (from its dashboard,
// say) as the saga's own refund is recorded. Refunds Bazaar made itself
// are recorded already and change nothing; partial ones are the returns'.
func (h *StripeWebhooks) refunded(ctx context.Context, tx *sqlx.Tx, m Meta, ch *stripe.Charge, log *slog.Logger) ([]store.Event, error) {
	if ch.PaymentIntent == nil || !ch.Refunded {
		return nil, nil
	}
	pay, err := store.LockPaymentByCharge(ctx, tx, ch.PaymentIntent.ID)
	if errors.Is(err, store.ErrNotFound) {
		log.Warn("refund of a charge Bazaar did not make; recorded only", "payment_intent", ch.PaymentIntent.ID)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if pay.Status != store.PaymentSucceeded {
		return nil, nil
	}
	refundID := ch.ID
	if ch.Refunds != nil && len(ch.Refunds.Data) > 0 {
		refundID = ch.Refunds.Data[0].ID
	}
	if err := store.MarkPaymentRefunded(ctx, tx, pay.OrderID, refundID); err != nil {
		return nil, err
	}
	o, err := store.GetOrder(ctx, tx, pay.OrderID)
	if err != nil {
		return nil, err
	}
	e, err := newEvent(m, EventPaymentRefunded, o.ID.String(), &o.SellerID, OrderStepData{
		OrderID: o.ID, UserID: o.UserID, AmountMinor: ch.AmountRefunded, Currency: pay.Currency,
		PaymentID: pay.ID, ChargeID: pay.ChargeID, RefundID: refundID, Reason: "refunded_at_provider",
	})
	return []store.Event{e}, err
}
