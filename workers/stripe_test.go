package workers

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestStripeChargeCreatesOneConfirmedPaymentIntentWithPayoutAndKey(t *testing.T) {
	t.Parallel()
	rec := newStripeRecorder(t)
	g := rec.gateway(t, 0)
	ctx := context.Background()
	req := ChargeRequest{
		IdempotencyKey: "order:o1:charge", Token: pmVisa, AmountMinor: 2500, Currency: "EUR",
		Description: "Bazaar order o1", Destination: "acct_seller1", ApplicationFeeMinor: 250,
		Metadata: map[string]string{"order_id": "o1", "seller_id": "s1", "event_id": "e1"},
	}

	// stripe-mock validates the request against Stripe's API and answers a
	// fixture whose status is not final: pending until the webhook.
	_, err := g.Charge(ctx, req)
	var pending *PendingError
	require.ErrorAs(t, err, &pending)
	require.NotEmpty(t, pending.ChargeID)

	calls := rec.Calls("/v1/payment_intents")
	require.Len(t, calls, 1)
	c := calls[0]
	require.Equal(t, http.MethodPost, c.Method)
	require.Equal(t, "order:o1:charge", c.IdempotencyKey)
	for k, want := range map[string]string{
		"amount": "2500", "currency": "eur", "payment_method": "pm_card_visa", "confirm": "true",
		"transfer_data[destination]": "acct_seller1", "application_fee_amount": "250",
		"metadata[order_id]": "o1", "metadata[seller_id]": "s1", "metadata[event_id]": "e1",
		"payment_method_types[0]": "card",
	} {
		require.Equal(t, want, c.Form.Get(k), k)
	}

	// Charged: the PaymentIntent is the charge.
	rec.setFault(withStatus("succeeded", nil))
	ch, err := g.Charge(ctx, req)
	require.NoError(t, err)
	require.Equal(t, int64(2500), ch.AmountMinor)
	require.Equal(t, "EUR", ch.Currency)
	require.Regexp(t, `^pi_`, ch.ID)

	// 3-D Secure: pending with what the storefront needs.
	rec.setFault(withStatus("requires_action", map[string]any{"type": "use_stripe_sdk"}))
	_, err = g.Charge(ctx, req)
	require.ErrorAs(t, err, &pending)
	require.Equal(t, "requires_action", pending.Status)
	require.Equal(t, "use_stripe_sdk", pending.NextAction)
	require.NotEmpty(t, pending.ClientSecret)

	// No connected account: no transfer, no fee.
	rec.setFault(nil)
	plain := req
	plain.IdempotencyKey, plain.Destination, plain.ApplicationFeeMinor = "order:o2:charge", "", 0
	_, err = g.Charge(ctx, plain)
	require.ErrorAs(t, err, &pending)
	last := rec.Calls("/v1/payment_intents")
	require.False(t, last[len(last)-1].Form.Has("transfer_data[destination]"))
	require.False(t, last[len(last)-1].Form.Has("application_fee_amount"))
}

func TestStripeRefundReversesTheTransferWithItsOwnKey(t *testing.T) {
	t.Parallel()
	rec := newStripeRecorder(t)
	g := rec.gateway(t, 0)

	r, err := g.Refund(context.Background(), RefundRequest{
		IdempotencyKey: "return:r1:refund", ChargeID: "pi_123", AmountMinor: 700, ReverseTransfer: true,
		Metadata: map[string]string{"return_id": "r1"},
	})
	require.NoError(t, err)
	require.Regexp(t, `^re_`, r.ID)
	calls := rec.Calls("/v1/refunds")
	require.Len(t, calls, 1)
	require.Equal(t, "return:r1:refund", calls[0].IdempotencyKey)
	for k, want := range map[string]string{
		"payment_intent": "pi_123", "amount": "700", "reverse_transfer": "true", "refund_application_fee": "true",
		"metadata[return_id]": "r1",
	} {
		require.Equal(t, want, calls[0].Form.Get(k), k)
	}

	// A platform charge refunds in full without touching transfers.
	_, err = g.Refund(context.Background(), RefundRequest{IdempotencyKey: "order:o1:refund", ChargeID: "pi_456"})
	require.NoError(t, err)
	calls = rec.Calls("/v1/refunds")
	require.Len(t, calls, 2)
	require.False(t, calls[1].Form.Has("amount"))
	require.False(t, calls[1].Form.Has("reverse_transfer"))
}

func TestStripeErrorsAreDeclinesRetriesOrRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		status  int
		body    string
		decline string
		is      error
		retried bool
	}{
		{"card declined", 402, `{"error":{"type":"card_error","code":"card_declined","decline_code":"insufficient_funds","message":"Your card has insufficient funds."}}`, "insufficient_funds", nil, false},
		{"no such payment method", 400, `{"error":{"type":"invalid_request_error","code":"resource_missing","param":"payment_method","message":"No such PaymentMethod"}}`, "resource_missing", nil, false},
		{"key reused", 400, `{"error":{"type":"idempotency_error","message":"Keys for idempotent requests can only be used with the same parameters"}}`, "", ErrIdempotencyMismatch, false},
		{"bad api key", 401, `{"error":{"type":"invalid_request_error","message":"Invalid API Key provided"}}`, "", ErrGatewayRefused, false},
		{"stripe down", 500, `{"error":{"type":"api_error","message":"An unknown error occurred"}}`, "", nil, true},
		{"rate limited", 429, `{"error":{"type":"invalid_request_error","code":"rate_limit","message":"Too many requests"}}`, "", nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := newStripeRecorder(t)
			rec.setFault(func(_ int, w http.ResponseWriter, _ *http.Request, _ func() *httptest.ResponseRecorder) bool {
				answer(w, tc.status, tc.body)
				return true
			})
			g := rec.gateway(t, 1)
			_, err := g.Charge(context.Background(), ChargeRequest{IdempotencyKey: "k1", Token: pmVisa, AmountMinor: 100, Currency: "EUR"})
			require.Error(t, err)
			var d *DeclineError
			if tc.decline != "" {
				require.ErrorAs(t, err, &d)
				require.Equal(t, tc.decline, d.Code)
			} else {
				require.False(t, errors.As(err, &d), "not a decline: %v", err)
			}
			if tc.is != nil {
				require.ErrorIs(t, err, tc.is)
			}
			if tc.retried {
				require.NotErrorIs(t, err, ErrGatewayRefused)
				require.NotErrorIs(t, err, ErrIdempotencyMismatch)
			}
			for _, c := range rec.Calls("/v1/payment_intents") {
				require.Equal(t, "k1", c.IdempotencyKey)
			}
		})
	}
}

func TestStripeLostAnswerIsAskedAgainUnderTheSameKey(t *testing.T) {
	t.Parallel()
	rec := newStripeRecorder(t)
	// The first request reaches Stripe, but its answer is lost with the
	// connection.
	rec.setFault(func(n int, w http.ResponseWriter, _ *http.Request, forward func() *httptest.ResponseRecorder) bool {
		if n != 1 {
			return false
		}
		forward()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_ = conn.Close()
		}
		return true
	})
	// The library asks again at once, under the same key.
	req := ChargeRequest{IdempotencyKey: "order:o8:charge", Token: pmVisa, AmountMinor: 900, Currency: "EUR"}
	_, err := rec.gateway(t, 1).Charge(context.Background(), req)
	var pending *PendingError
	require.ErrorAs(t, err, &pending)
	calls := rec.Calls("/v1/payment_intents")
	require.Len(t, calls, 2)
	require.Equal(t, "order:o8:charge", calls[0].IdempotencyKey)
	require.Equal(t, calls[0].IdempotencyKey, calls[1].IdempotencyKey)

	// Without the library's retry the error reaches the task, whose retry
	// asks again under the same key.
	rec = newStripeRecorder(t)
	rec.setFault(func(n int, w http.ResponseWriter, _ *http.Request, forward func() *httptest.ResponseRecorder) bool {
		if n != 1 {
			return false
		}
		forward()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_ = conn.Close()
		}
		return true
	})
	g := rec.gateway(t, -1)
	req = ChargeRequest{IdempotencyKey: "order:o9:charge", Token: pmVisa, AmountMinor: 900, Currency: "EUR"}
	_, err = g.Charge(context.Background(), req)
	require.Error(t, err)
	var d *DeclineError
	require.False(t, errors.As(err, &d))
	require.NotErrorIs(t, err, ErrGatewayRefused)

	_, err = g.Charge(context.Background(), req)
	require.ErrorAs(t, err, &pending)
	calls = rec.Calls("/v1/payment_intents")
	require.Len(t, calls, 2)
	require.Equal(t, "order:o9:charge", calls[0].IdempotencyKey)
	require.Equal(t, calls[0].IdempotencyKey, calls[1].IdempotencyKey)
}

// pmVisa is Stripe's public test payment method for a card that is charged.
const pmVisa = "pm_card_visa"
