package workers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// ChargeRequest asks a payment gateway to take money. The gateway treats
// two requests with one IdempotencyKey as one: the second returns the
// outcome of the first.
type ChargeRequest struct {
	IdempotencyKey string
	// Token is the payment method the storefront collected ("tok_visa").
	Token       string
	AmountMinor int64
	Currency    string
	Description string
}

// Charge is a successful charge.
type Charge struct {
	ID          string
	AmountMinor int64
	Currency    string
}

// RefundRequest asks to give a charge back in full.
type RefundRequest struct {
	IdempotencyKey string
	ChargeID       string
}

// Refund is a successful refund.
type Refund struct {
	ID string
}

// PaymentGateway charges and refunds. Charge returns a *DeclineError when
// the card is refused (a final answer) and ErrGatewayTimeout or another
// error when the outcome is unknown (ask again with the same key).
type PaymentGateway interface {
	Name() string
	Charge(ctx context.Context, req ChargeRequest) (Charge, error)
	Refund(ctx context.Context, req RefundRequest) (Refund, error)
}

// DeclineError is a charge the gateway refused; Code says why
// ("card_declined", "insufficient_funds", "expired_card", "amount_too_large").
type DeclineError struct {
	Code string
}

func (e *DeclineError) Error() string { return "payment declined: " + e.Code }

// ErrGatewayTimeout means the gateway did not answer in time; the charge
// may or may not have happened.
var ErrGatewayTimeout = errors.New("payment gateway timeout")

// ErrIdempotencyMismatch means a key was reused for a different request.
var ErrIdempotencyMismatch = errors.New("idempotency key reused with a different request")

// SandboxGateway is a payment gateway in memory that behaves like a real
// one for development and tests, chosen by the card token:
//
//	tok_decline              declined (card_declined)
//	tok_insufficient_funds   declined (insufficient_funds)
//	tok_expired              declined (expired_card)
//	tok_timeout              times out every time, charging nothing
//	tok_timeout_once         charges, but the first answer for a key is lost
//	                         (a timeout); asking again returns the charge
//	anything else            charged
//
// Amounts above MaxAmountMinor are declined (amount_too_large). Requests
// are idempotent by key, and a key reused for another amount or token is
// refused.
type SandboxGateway struct {
	// Latency is added to every call (default none).
	Latency time.Duration
	// MaxAmountMinor caps a charge (default 1,000,000.00 in minor units).
	MaxAmountMinor int64

	mu      sync.Mutex
	charges map[string]sandboxCharge
	refunds map[string]Refund
	// refunded maps a charge to its refund, so a charge is refunded once.
	refunded map[string]string
}

type sandboxCharge struct {
	req      ChargeRequest
	charge   Charge
	err      error
	answered bool
}

// NewSandboxGateway returns an empty sandbox.
func NewSandboxGateway() *SandboxGateway {
	return &SandboxGateway{
		charges:  map[string]sandboxCharge{},
		refunds:  map[string]Refund{},
		refunded: map[string]string{},
	}
}

// Name implements PaymentGateway.
func (g *SandboxGateway) Name() string { return "sandbox" }

func (g *SandboxGateway) wait(ctx context.Context) error {
	if g.Latency <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(g.Latency)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrGatewayTimeout, ctx.Err())
	case <-t.C:
		return nil
	}
}

// Charge implements PaymentGateway.
func (g *SandboxGateway) Charge(ctx context.Context, req ChargeRequest) (Charge, error) {
	if req.IdempotencyKey == "" {
		return Charge{}, errors.New("sandbox: idempotency key is required")
	}
	if req.AmountMinor <= 0 {
		return Charge{}, &DeclineError{Code: "invalid_amount"}
	}
	if err := g.wait(ctx); err != nil {
		return Charge{}, err
	}
	if req.Token == "tok_timeout" {
		return Charge{}, ErrGatewayTimeout
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if prev, ok := g.charges[req.IdempotencyKey]; ok {
		if prev.req.AmountMinor != req.AmountMinor || prev.req.Token != req.Token || prev.req.Currency != req.Currency {
			return Charge{}, ErrIdempotencyMismatch
		}
		if !prev.answered {
			prev.answered = true
			g.charges[req.IdempotencyKey] = prev
		}
		return prev.charge, prev.err
	}
	rec := sandboxCharge{req: req, answered: true}
	maxAmount := g.MaxAmountMinor
	if maxAmount <= 0 {
		maxAmount = 100_000_000
	}
	switch {
	case req.Token == "tok_decline":
		rec.err = &DeclineError{Code: "card_declined"}
	case req.Token == "tok_insufficient_funds":
		rec.err = &DeclineError{Code: "insufficient_funds"}
	case req.Token == "tok_expired":
		rec.err = &DeclineError{Code: "expired_card"}
	case req.AmountMinor > maxAmount:
		rec.err = &DeclineError{Code: "amount_too_large"}
	case strings.TrimSpace(req.Token) == "":
		rec.err = &DeclineError{Code: "missing_payment_method"}
	default:
		rec.charge = Charge{ID: "ch_" + strings.ReplaceAll(uuid.NewString(), "-", ""), AmountMinor: req.AmountMinor, Currency: req.Currency}
	}
	if req.Token == "tok_timeout_once" {
		rec.answered = false
		g.charges[req.IdempotencyKey] = rec
		return Charge{}, ErrGatewayTimeout
	}
	g.charges[req.IdempotencyKey] = rec
	return rec.charge, rec.err
}

// Refund implements PaymentGateway.
func (g *SandboxGateway) Refund(ctx context.Context, req RefundRequest) (Refund, error) {
	if req.IdempotencyKey == "" {
		return Refund{}, errors.New("sandbox: idempotency key is required")
	}
	if err := g.wait(ctx); err != nil {
		return Refund{}, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if r, ok := g.refunds[req.IdempotencyKey]; ok {
		return r, nil
	}
	// The sandbox forgets charges when the process restarts; any id it
	// could have issued is accepted, as a real gateway would know it.
	if !strings.HasPrefix(req.ChargeID, "ch_") {
		return Refund{}, fmt.Errorf("sandbox: no charge %q", req.ChargeID)
	}
	if rid, ok := g.refunded[req.ChargeID]; ok {
		return Refund{ID: rid}, nil
	}
	r := Refund{ID: "re_" + strings.ReplaceAll(uuid.NewString(), "-", "")}
	g.refunds[req.IdempotencyKey] = r
	g.refunded[req.ChargeID] = r.ID
	return r, nil
}

// Charges returns how many distinct charges succeeded (for tests and the
// development console).
func (g *SandboxGateway) Charges() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, c := range g.charges {
		if c.err == nil {
			n++
		}
	}
	return n
}
