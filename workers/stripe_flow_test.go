package workers

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v85"

	"github.com/bazaarhq/bazaar/sql/store"
)

const testWebhookSecret = "whsec_bazaar_test" //nolint:gosec // a test endpoint secret, signing only this test's deliveries

// stripeBundle is a test's workers charging through Stripe (stripe-mock
// behind a recorder) and taking Stripe's webhooks.
type stripeBundle struct {
	*testBundle
	rec   *stripeRecorder
	hooks *StripeWebhooks
}

func setupStripe(t *testing.T, retries int64) *stripeBundle {
	t.Helper()
	rec := newStripeRecorder(t)
	gw := rec.gateway(t, retries)
	b := setup(t, setupOpts{mutate: func(c *Config) {
		c.Gateway = gw
		c.MarketplaceFeeBPS = 1000
	}})
	hooks, err := NewStripeWebhooks(StripeWebhooksConfig{DB: b.db, Secret: testWebhookSecret, Observer: b.waker, Logger: testLogger(t)})
	require.NoError(t, err)
	return &stripeBundle{testBundle: b, rec: rec, hooks: hooks}
}

// connectedSeller is a seller paid out to a connected account.
func (b *stripeBundle) connectedSeller(t *testing.T, fee *int) store.Seller {
	s := b.seller(t)
	acct := "acct_" + uuid.NewString()[:8]
	s, err := store.UpdateSellerPayout(context.Background(), b.db, s.ID, store.SellerPayout{StripeAccount: &acct, FeeBPS: fee})
	require.NoError(t, err)
	return s
}

// deliver sends a Stripe event to the webhook handler, signed as Stripe
// signs it.
func (b *stripeBundle) deliver(t *testing.T, id, typ string, object map[string]any) error {
	payload, err := json.Marshal(map[string]any{
		"id": id, "object": "event", "api_version": stripe.APIVersion, "created": time.Now().Unix(),
		"type": typ, "livemode": false, "pending_webhooks": 1, "data": map[string]any{"object": object},
	})
	require.NoError(t, err)
	return b.hooks.Handle(context.Background(), payload, signStripe(testWebhookSecret, payload, time.Now()))
}

func (b *stripeBundle) payment(t *testing.T, orderID uuid.UUID) store.Payment {
	p, err := store.PaymentByOrder(context.Background(), b.db, orderID)
	require.NoError(t, err)
	return p
}

func TestStripeOrderIsChargedPaidOutToTheSellerAndRefundedOnCancellation(t *testing.T) {
	t.Parallel()
	b := setupStripe(t, 0)
	b.rec.setFault(withStatus("succeeded", nil))
	s := b.connectedSeller(t, nil)
	p := b.product(t, s.ID, 5, 1250)
	u := b.register(t, "stripe@example.test", false)

	o := b.order(t, u, p, 2, "pm_card_visa", nil)
	eventually(t, 10*time.Second, func() bool { return b.status(t, o.ID) == store.OrderConfirmed }, "order confirmed")

	calls := b.rec.Calls("/v1/payment_intents")
	require.Len(t, calls, 1)
	require.Equal(t, "order:"+o.ID.String()+":charge", calls[0].IdempotencyKey)
	require.Equal(t, "2500", calls[0].Form.Get("amount"))
	require.Equal(t, s.StripeAccount, calls[0].Form.Get("transfer_data[destination]"))
	require.Equal(t, "250", calls[0].Form.Get("application_fee_amount"), "the marketplace's 10%")
	require.Equal(t, o.ID.String(), calls[0].Form.Get("metadata[order_id]"))
	require.Equal(t, s.ID.String(), calls[0].Form.Get("metadata[seller_id]"))
	require.NotEmpty(t, calls[0].Form.Get("metadata[event_id]"))
	pay := b.payment(t, o.ID)
	require.Equal(t, store.PaymentSucceeded, pay.Status)
	require.Equal(t, "stripe", pay.Gateway)
	require.Equal(t, s.StripeAccount, pay.Destination)
	require.Equal(t, int64(250), pay.ApplicationFeeMinor)

	b.transition(t, o.ID, store.OrderCancelled, "buyer changed their mind")
	eventually(t, 10*time.Second, func() bool { return b.payment(t, o.ID).Status == store.PaymentRefunded }, "refunded")
	refunds := b.rec.Calls("/v1/refunds")
	require.Len(t, refunds, 1)
	require.Equal(t, "order:"+o.ID.String()+":refund", refunds[0].IdempotencyKey)
	require.Equal(t, pay.ChargeID, refunds[0].Form.Get("payment_intent"))
	require.Equal(t, "true", refunds[0].Form.Get("reverse_transfer"))
	require.Equal(t, "true", refunds[0].Form.Get("refund_application_fee"))
	eventually(t, 10*time.Second, func() bool { return b.stock(t, p.ID) == 5 }, "stock released")

	// Stripe reports the refund Bazaar made: nothing changes twice.
	require.NoError(t, b.deliver(t, "evt_refund_"+o.ID.String()[:8], "charge.refunded", map[string]any{
		"id": "ch_1", "object": "charge", "payment_intent": pay.ChargeID, "refunded": true, "amount_refunded": 2500,
	}))
	b.settle(t, 5*time.Second)
	require.Equal(t, 1, b.eventCount(t, EventPaymentRefunded, o.ID.String()))
}

func TestStripeSellerWithoutAccountIsChargedToThePlatformAndFlagged(t *testing.T) {
	t.Parallel()
	b := setupStripe(t, 0)
	b.rec.setFault(withStatus("succeeded", nil))
	s := b.seller(t)
	p := b.product(t, s.ID, 5, 1000)
	u := b.register(t, "platform@example.test", false)

	o := b.order(t, u, p, 1, "pm_card_visa", nil)
	eventually(t, 10*time.Second, func() bool { return b.status(t, o.ID) == store.OrderConfirmed }, "order confirmed")
	calls := b.rec.Calls("/v1/payment_intents")
	require.Len(t, calls, 1)
	require.False(t, calls[0].Form.Has("transfer_data[destination]"))
	require.False(t, calls[0].Form.Has("application_fee_amount"))
	require.Equal(t, "platform", calls[0].Form.Get("metadata[payout]"))
	evs, err := store.EventsBySubject(context.Background(), b.db, o.ID.String())
	require.NoError(t, err)
	var flagged bool
	for _, e := range evs {
		if e.Type == EventPaymentSucceeded {
			var d OrderStepData
			require.NoError(t, json.Unmarshal(e.Data, &d))
			flagged = d.PlatformOnly
		}
	}
	require.True(t, flagged, "payment.succeeded flags the charge kept by the platform")
}

func TestStripeThreeDSecureLeavesTheOrderPendingUntilTheWebhookConfirmsIt(t *testing.T) {
	t.Parallel()
	b := setupStripe(t, 0)
	b.rec.setFault(withStatus("requires_action", map[string]any{"type": "use_stripe_sdk"}))
	fee := 500
	s := b.connectedSeller(t, &fee)
	p := b.product(t, s.ID, 5, 2000)
	u := b.register(t, "3ds@example.test", false)
	ctx := context.Background()

	o := b.order(t, u, p, 1, "pm_card_threeDSecure2Required", nil)
	eventually(t, 10*time.Second, func() bool { return b.eventCount(t, EventOrderPaymentActionRequired, o.ID.String()) == 1 }, "action required")
	b.settle(t, 5*time.Second)
	require.Equal(t, store.OrderPending, b.status(t, o.ID))
	pay := b.payment(t, o.ID)
	require.Equal(t, store.PaymentPending, pay.Status)
	require.Equal(t, int64(100), pay.ApplicationFeeMinor, "the seller's own 5%")
	evs, err := store.EventsBySubject(ctx, b.db, o.ID.String())
	require.NoError(t, err)
	for _, e := range evs {
		if e.Type == EventOrderPaymentActionRequired {
			var d PaymentActionData
			require.NoError(t, json.Unmarshal(e.Data, &d))
			require.Equal(t, pay.ChargeID, d.ChargeID)
			require.Equal(t, "use_stripe_sdk", d.NextAction)
			require.NotEmpty(t, d.ClientSecret)
			require.Nil(t, e.SellerID, "the client secret stays off the seller's stream")
		}
	}

	// A forged or stale delivery changes nothing.
	payload := []byte(`{"id":"evt_forged","object":"event","type":"payment_intent.succeeded","data":{"object":{"id":"` + pay.ChargeID + `"}}}`)
	err = b.hooks.Handle(ctx, payload, signStripe("whsec_other", payload, time.Now()))
	require.ErrorIs(t, err, ErrBadSignature)
	err = b.hooks.Handle(ctx, payload, signStripe(testWebhookSecret, payload, time.Now().Add(-time.Hour)))
	require.ErrorIs(t, err, ErrBadSignature)
	require.Equal(t, store.PaymentPending, b.payment(t, o.ID).Status)

	// The buyer finished 3-D Secure: Stripe says so, twice.
	succeeded := map[string]any{
		"id": pay.ChargeID, "object": "payment_intent", "status": "succeeded", "amount": 2000, "currency": "eur",
		"metadata": map[string]string{"order_id": o.ID.String()},
	}
	require.NoError(t, b.deliver(t, "evt_ok_"+o.ID.String()[:8], "payment_intent.succeeded", succeeded))
	require.NoError(t, b.deliver(t, "evt_ok_"+o.ID.String()[:8], "payment_intent.succeeded", succeeded))
	eventually(t, 10*time.Second, func() bool { return b.status(t, o.ID) == store.OrderConfirmed }, "order confirmed")
	b.settle(t, 5*time.Second)
	require.Equal(t, 1, b.eventCount(t, EventPaymentSucceeded, o.ID.String()))
	require.Equal(t, store.PaymentSucceeded, b.payment(t, o.ID).Status)
	require.Len(t, b.rec.Calls("/v1/payment_intents"), 1)
}

func TestStripeDeclineReportedByWebhookCancelsTheOrderAndReleasesStock(t *testing.T) {
	t.Parallel()
	// stripe-mock answers a PaymentIntent still processing; the decline
	// comes with the webhook.
	b := setupStripe(t, 0)
	s := b.connectedSeller(t, nil)
	p := b.product(t, s.ID, 5, 900)
	u := b.register(t, "declined@example.test", false)

	o := b.order(t, u, p, 3, "pm_card_chargeDeclinedInsufficientFunds", nil)
	eventually(t, 10*time.Second, func() bool {
		pay, err := store.PaymentByOrder(context.Background(), b.db, o.ID)
		return err == nil && pay.Status == store.PaymentPending
	}, "payment pending")
	require.Equal(t, 2, b.stock(t, p.ID))
	pay := b.payment(t, o.ID)

	require.NoError(t, b.deliver(t, "evt_fail_"+o.ID.String()[:8], "payment_intent.payment_failed", map[string]any{
		"id": pay.ChargeID, "object": "payment_intent", "status": "requires_payment_method",
		"last_payment_error": map[string]any{"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds"},
		"metadata":           map[string]string{"order_id": o.ID.String()},
	}))
	eventually(t, 10*time.Second, func() bool { return b.status(t, o.ID) == store.OrderCancelled }, "order cancelled")
	eventually(t, 10*time.Second, func() bool { return b.stock(t, p.ID) == 5 }, "stock released")
	b.settle(t, 5*time.Second)
	got, err := store.GetOrder(context.Background(), b.db, o.ID)
	require.NoError(t, err)
	require.Equal(t, "payment_failed:insufficient_funds", got.CancelReason)
	require.Equal(t, store.PaymentFailed, b.payment(t, o.ID).Status)
	require.Empty(t, b.rec.Calls("/v1/refunds"), "nothing charged, nothing refunded")
}

func TestStripeChargeRetriedAfterItsRequestDiedMakesOnePaymentIntent(t *testing.T) {
	t.Parallel()
	// No retry in the library: the task's own retry asks again, as after a
	// worker killed mid-request.
	b := setupStripe(t, -1)
	ok := withStatus("succeeded", nil)
	b.rec.setFault(func(n int, w http.ResponseWriter, r *http.Request, forward func() *httptest.ResponseRecorder) bool {
		if n == 1 {
			forward() // Stripe took it; the answer is lost.
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				_ = conn.Close()
			}
			return true
		}
		return ok(n, w, r, forward)
	})
	s := b.connectedSeller(t, nil)
	p := b.product(t, s.ID, 5, 1500)
	u := b.register(t, "retry@example.test", false)

	o := b.order(t, u, p, 1, "pm_card_visa", nil)
	eventually(t, 15*time.Second, func() bool { return b.status(t, o.ID) == store.OrderConfirmed }, "order confirmed")
	calls := b.rec.Calls("/v1/payment_intents")
	require.Len(t, calls, 2, "asked twice")
	require.Equal(t, calls[0].IdempotencyKey, calls[1].IdempotencyKey, "under one key: one PaymentIntent")
	require.Equal(t, calls[0].Form, calls[1].Form)
	require.Equal(t, 1, b.eventCount(t, EventPaymentSucceeded, o.ID.String()))
}

func TestStripeAcceptedReturnIsRefundedOnceReversingTheTransfer(t *testing.T) {
	t.Parallel()
	b := setupStripe(t, 0)
	b.rec.setFault(withStatus("succeeded", nil))
	s := b.connectedSeller(t, nil)
	p := b.product(t, s.ID, 5, 1000)
	u := b.register(t, "return@example.test", false)
	ctx := context.Background()

	o := b.order(t, u, p, 3, "pm_card_visa", nil)
	eventually(t, 10*time.Second, func() bool { return b.status(t, o.ID) == store.OrderConfirmed }, "order confirmed")
	b.transition(t, o.ID, store.OrderShipped, "")
	b.transition(t, o.ID, store.OrderDelivered, "")
	got, err := store.GetOrder(ctx, b.db, o.ID)
	require.NoError(t, err)

	var r store.Return
	require.NoError(t, store.WithTx(ctx, b.db, func(tx *sqlx.Tx) error {
		var err error
		r, err = store.CreateReturn(ctx, tx, store.Return{
			OrderID: o.ID, OrderItemID: got.Items[0].ID, SellerID: s.ID, UserID: u.ID, Quantity: 1, Reason: "chipped", Currency: "EUR",
		})
		if err != nil {
			return err
		}
		r, err = store.ResolveReturn(ctx, tx, r.ID, store.ReturnStatusAccepted, 1000, "")
		if err != nil {
			return err
		}
		ev, err := store.NewReturnEvent("return.resolved", r)
		if err != nil {
			return err
		}
		return store.InsertEvents(ctx, tx, ev)
	}))

	eventually(t, 10*time.Second, func() bool {
		_, err := store.GetReturnRefund(ctx, b.db, r.ID)
		return err == nil
	}, "return refunded")
	b.settle(t, 5*time.Second)
	refunds := b.rec.Calls("/v1/refunds")
	require.Len(t, refunds, 1)
	require.Equal(t, "return:"+r.ID.String()+":refund", refunds[0].IdempotencyKey)
	require.Equal(t, "1000", refunds[0].Form.Get("amount"))
	require.Equal(t, "true", refunds[0].Form.Get("reverse_transfer"))
	require.Equal(t, "true", refunds[0].Form.Get("refund_application_fee"))
	require.Equal(t, b.payment(t, o.ID).ChargeID, refunds[0].Form.Get("payment_intent"))
	require.Equal(t, store.PaymentSucceeded, b.payment(t, o.ID).Status, "the rest stays charged")
	require.Equal(t, 1, b.eventCount(t, EventPaymentRefunded, o.ID.String()))

	// The event again: no second refund.
	task, err := NewReturnTask(TypePaymentRefundReturn, Meta{Version: PayloadVersion}, r.ID)
	require.NoError(t, err)
	require.NoError(t, b.w.Enqueue(ctx, task, "test:refund-again"))
	b.settle(t, 5*time.Second)
	require.Len(t, b.rec.Calls("/v1/refunds"), 1)
}
