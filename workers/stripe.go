package workers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v85"
)

// ErrGatewayRefused means the gateway refused the request itself (a bad
// key, an invalid parameter): asking again cannot help.
var ErrGatewayRefused = errors.New("payment gateway refused the request")

// StripeConfig configures a StripeGateway.
type StripeConfig struct {
	// SecretKey is the account's secret API key, "sk_test_..." in test
	// mode (required).
	SecretKey string
	// APIBase is where the API answers (default https://api.stripe.com);
	// tests point it at stripe-mock.
	APIBase string
	// HTTPClient makes the requests (default: one with a 30s timeout).
	HTTPClient *http.Client
	// MaxNetworkRetries is how often the library itself retries a request
	// that failed on the network or with a 5xx, under the same idempotency
	// key, before the task's own retry takes over (default 1; negative for
	// none).
	MaxNetworkRetries int64
	Logger            *slog.Logger
}

// StripeGateway charges orders as Stripe PaymentIntents, confirmed at
// once with the storefront's payment method, and refunds them. The
// PaymentIntent id is the charge id Bazaar records.
type StripeGateway struct {
	client *stripe.Client
}

// NewStripeGateway validates cfg and builds the gateway.
func NewStripeGateway(cfg StripeConfig) (*StripeGateway, error) {
	if cfg.SecretKey == "" {
		return nil, errors.New("stripe: SecretKey is required")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	retries := max(cmp.Or(cfg.MaxNetworkRetries, 1), 0)
	logger := cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	bc := &stripe.BackendConfig{
		HTTPClient:        cfg.HTTPClient,
		MaxNetworkRetries: stripe.Int64(retries),
		LeveledLogger:     stripeLogger{logger.With("component", "stripe")},
	}
	if cfg.APIBase != "" {
		bc.URL = stripe.String(strings.TrimSuffix(cfg.APIBase, "/"))
	}
	return &StripeGateway{client: stripe.NewClient(cfg.SecretKey, stripe.WithBackends(stripe.NewBackendsWithConfig(bc)))}, nil
}

// Name implements PaymentGateway.
func (g *StripeGateway) Name() string { return "stripe" }

// Charge implements PaymentGateway: one PaymentIntent per idempotency key,
// paid out to req.Destination minus req.ApplicationFeeMinor when set.
func (g *StripeGateway) Charge(ctx context.Context, req ChargeRequest) (Charge, error) {
	if req.IdempotencyKey == "" {
		return Charge{}, errors.New("stripe: idempotency key is required")
	}
	p := &stripe.PaymentIntentCreateParams{
		Amount:        stripe.Int64(req.AmountMinor),
		Currency:      stripe.String(strings.ToLower(req.Currency)),
		PaymentMethod: stripe.String(req.Token),
		Confirm:       stripe.Bool(true),
		// Cards only: a confirmation without a return URL may not redirect
		// elsewhere, and 3-D Secure is finished by the storefront's SDK.
		PaymentMethodTypes: []*string{stripe.String("card")},
		Metadata:           req.Metadata,
	}
	if req.Description != "" {
		p.Description = stripe.String(req.Description)
	}
	if req.Destination != "" {
		p.TransferData = &stripe.PaymentIntentCreateTransferDataParams{Destination: stripe.String(req.Destination)}
		p.ApplicationFeeAmount = stripe.Int64(req.ApplicationFeeMinor)
	}
	p.SetIdempotencyKey(req.IdempotencyKey)
	pi, err := g.client.V1PaymentIntents.Create(ctx, p)
	if err != nil {
		return Charge{}, stripeError("create payment intent", err)
	}
	return chargeOf(pi)
}

// chargeOf reads a confirmed PaymentIntent: succeeded is a charge, a
// refusal is a decline, anything else is pending until its webhook.
func chargeOf(pi *stripe.PaymentIntent) (Charge, error) {
	switch pi.Status {
	case stripe.PaymentIntentStatusSucceeded:
		return Charge{ID: pi.ID, AmountMinor: pi.Amount, Currency: strings.ToUpper(string(pi.Currency))}, nil
	case stripe.PaymentIntentStatusCanceled:
		return Charge{}, &DeclineError{Code: "canceled"}
	case stripe.PaymentIntentStatusRequiresPaymentMethod:
		if code := declineCode(pi.LastPaymentError); code != "" {
			return Charge{}, &DeclineError{Code: code}
		}
	}
	pe := &PendingError{ChargeID: pi.ID, Status: string(pi.Status), ClientSecret: pi.ClientSecret}
	if pi.NextAction != nil {
		pe.NextAction = string(pi.NextAction.Type)
		if pi.NextAction.RedirectToURL != nil {
			pe.RedirectURL = pi.NextAction.RedirectToURL.URL
		}
	}
	return Charge{}, pe
}

// declineCode is why Stripe refused a payment: the issuer's decline code,
// else Stripe's error code.
func declineCode(e *stripe.Error) string {
	if e == nil {
		return ""
	}
	return cmp.Or(string(e.DeclineCode), string(e.Code))
}

// Refund implements PaymentGateway: a refund of the PaymentIntent, which
// with ReverseTransfer takes the seller's share back in proportion and
// gives back the marketplace's commission on it.
func (g *StripeGateway) Refund(ctx context.Context, req RefundRequest) (Refund, error) {
	if req.IdempotencyKey == "" {
		return Refund{}, errors.New("stripe: idempotency key is required")
	}
	p := &stripe.RefundCreateParams{PaymentIntent: stripe.String(req.ChargeID), Metadata: req.Metadata}
	if req.AmountMinor > 0 {
		p.Amount = stripe.Int64(req.AmountMinor)
	}
	if req.ReverseTransfer {
		p.ReverseTransfer = stripe.Bool(true)
		p.RefundApplicationFee = stripe.Bool(true)
	}
	p.SetIdempotencyKey(req.IdempotencyKey)
	r, err := g.client.V1Refunds.Create(ctx, p)
	if err != nil {
		return Refund{}, stripeError("create refund", err)
	}
	return Refund{ID: r.ID}, nil
}

// stripeError sorts what the library reports: a card refused is a
// decline; a key reused for another request is a mismatch; a refusal of
// the request itself is final; the network, 429 and 5xx are worth asking
// again under the same key.
func stripeError(op string, err error) error {
	var se *stripe.Error
	if !errors.As(err, &se) {
		return fmt.Errorf("stripe %s: %w", op, err)
	}
	switch {
	case se.Type == stripe.ErrorTypeCard:
		return &DeclineError{Code: cmp.Or(declineCode(se), "card_declined")}
	case se.Type == stripe.ErrorTypeIdempotency:
		return fmt.Errorf("stripe %s: %s: %w", op, se.Msg, ErrIdempotencyMismatch)
	case se.Type == stripe.ErrorTypeInvalidRequest && se.Param == "payment_method":
		// The storefront sent a payment method that does not exist or
		// cannot be used: the buyer's payment failed, not the request.
		return &DeclineError{Code: cmp.Or(string(se.Code), "invalid_payment_method")}
	case se.HTTPStatusCode == http.StatusTooManyRequests || se.HTTPStatusCode >= 500 || se.HTTPStatusCode == 0:
		return fmt.Errorf("stripe %s (status %d): %s: %w", op, se.HTTPStatusCode, se.Msg, err)
	}
	return fmt.Errorf("stripe %s (status %d, %s): %s: %w", op, se.HTTPStatusCode, se.Type, se.Msg, ErrGatewayRefused)
}

// stripeLogger hands the library's log lines to slog, as debug: the
// outcome of every call is logged once by the task that made it.
type stripeLogger struct{ log *slog.Logger }

func (l stripeLogger) Debugf(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l stripeLogger) Infof(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l stripeLogger) Warnf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l stripeLogger) Errorf(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
