package workers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/bazaarhq/bazaar/sql/store"
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
	// Destination is the seller's connected account the charge pays out
	// to, minus ApplicationFeeMinor (the marketplace's commission); empty
	// keeps the whole charge on the platform.
	Destination         string
	ApplicationFeeMinor int64
	// Metadata is stored with the charge at the provider (order, seller
	// and event ids), so its dashboard and webhooks lead back to the order.
	Metadata map[string]string
}

// Charge is a successful charge.
type Charge struct {
	ID          string
	AmountMinor int64
	Currency    string
}

// RefundRequest asks to give a charge back, in full or in part.
type RefundRequest struct {
	IdempotencyKey string
	ChargeID       string
	// AmountMinor is how much to give back; zero refunds the whole charge.
	AmountMinor int64
	// ReverseTransfer takes the refund back from the seller's connected
	// account in proportion, with the marketplace's commission, for a
	// charge that paid out to one.
	ReverseTransfer bool
	// Metadata is stored with the refund at the provider.
	Metadata map[string]string
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

// PendingError is a charge the gateway accepted but has not settled: the
// buyer must finish it (3-D Secure: Status "requires_action") or the
// provider is still processing it. Its outcome arrives later, through the
// provider's webhook, for the charge ChargeID.
type PendingError struct {
	ChargeID string
	Status   string
	// ClientSecret and NextAction are what the storefront needs to let the
	// buyer finish the payment ("use_stripe_sdk", "redirect_to_url" with
	// RedirectURL).
	ClientSecret string
	NextAction   string
	RedirectURL  string
}

func (e *PendingError) Error() string { return "payment pending (" + e.Status + "): " + e.ChargeID }

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
//
// A sandbox with a DB (NewSandboxGatewayDB) keeps its charges and refunds
// in PostgreSQL, so every worker process of a deployment shares one
// answer per key, and forgets keys older than Retention; without one it
// keeps them in process memory for good, which suits a test only.
type SandboxGateway struct {
	// Latency is added to every call (default none).
	Latency time.Duration
	// MaxAmountMinor caps a charge (default 1,000,000.00 in minor units).
	MaxAmountMinor int64
	// Retention is how long a DB-backed sandbox keeps a key (default 7
	// days), longer than any retry of the task that charges.
	Retention time.Duration

	db    *sqlx.DB
	calls atomic.Uint64

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

// NewSandboxGatewayDB returns a sandbox keeping its state in db.
func NewSandboxGatewayDB(db *sqlx.DB) *SandboxGateway {
	g := NewSandboxGateway()
	g.db = db
	return g
}

// Name implements PaymentGateway.
func (g *SandboxGateway) Name() string { return "sandbox" }

// pruneEvery is how many charges a DB-backed sandbox makes between two
// prunes of expired keys.
const pruneEvery = 1024

// decide answers a new charge: its id, or why it is declined.
func (g *SandboxGateway) decide(req ChargeRequest) (chargeID, declineCode string) {
	maxAmount := g.MaxAmountMinor
	if maxAmount <= 0 {
		maxAmount = 100_000_000
	}
	switch {
	case req.Token == "tok_decline":
		return "", "card_declined"
	case req.Token == "tok_insufficient_funds":
		return "", "insufficient_funds"
	case req.Token == "tok_expired":
		return "", "expired_card"
	case req.AmountMinor > maxAmount:
		return "", "amount_too_large"
	case strings.TrimSpace(req.Token) == "":
		return "", "missing_payment_method"
	}
	return "ch_" + strings.ReplaceAll(uuid.NewString(), "-", ""), ""
}

func (g *SandboxGateway) chargeDB(ctx context.Context, req ChargeRequest) (Charge, error) {
	id, decline := g.decide(req)
	stored, first, err := store.ClaimSandboxCharge(ctx, g.db, store.SandboxCharge{
		IdempotencyKey: req.IdempotencyKey, Token: req.Token, AmountMinor: req.AmountMinor, Currency: req.Currency,
		ChargeID: id, DeclineCode: decline, Answered: req.Token != "tok_timeout_once",
	})
	if err != nil {
		return Charge{}, fmt.Errorf("sandbox: %w", err)
	}
	if g.calls.Add(1)%pruneEvery == 0 {
		if _, err := store.PruneSandbox(ctx, g.db, time.Now().Add(-cmp.Or(g.Retention, 7*24*time.Hour))); err != nil {
			return Charge{}, fmt.Errorf("sandbox: %w", err)
		}
	}
	if !first && (stored.AmountMinor != req.AmountMinor || stored.Token != req.Token || stored.Currency != req.Currency) {
		return Charge{}, ErrIdempotencyMismatch
	}
	if first && !stored.Answered {
		return Charge{}, ErrGatewayTimeout
	}
	if stored.DeclineCode != "" {
		return Charge{}, &DeclineError{Code: stored.DeclineCode}
	}
	return Charge{ID: stored.ChargeID, AmountMinor: stored.AmountMinor, Currency: stored.Currency}, nil
}

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
	if g.db != nil {
		return g.chargeDB(ctx, req)
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
	if id, decline := g.decide(req); decline != "" {
		rec.err = &DeclineError{Code: decline}
	} else {
		rec.charge = Charge{ID: id, AmountMinor: req.AmountMinor, Currency: req.Currency}
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
	if !strings.HasPrefix(req.ChargeID, "ch_") {
		return Refund{}, fmt.Errorf("sandbox: no charge %q", req.ChargeID)
	}
	if g.db != nil {
		key := req.IdempotencyKey
		if req.AmountMinor == 0 {
			// A charge is refunded in full once, whatever the key.
			key = "full:" + req.ChargeID
		}
		id, err := store.ClaimSandboxRefund(ctx, g.db, key, req.ChargeID, req.AmountMinor,
			"re_"+strings.ReplaceAll(uuid.NewString(), "-", ""))
		if err != nil {
			return Refund{}, fmt.Errorf("sandbox: %w", err)
		}
		return Refund{ID: id}, nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if r, ok := g.refunds[req.IdempotencyKey]; ok {
		return r, nil
	}
	// The sandbox forgets charges when the process restarts or prunes; any
	// id it could have issued is accepted, as a real gateway would know it.
	if rid, ok := g.refunded[req.ChargeID]; ok && req.AmountMinor == 0 {
		return Refund{ID: rid}, nil
	}
	r := Refund{ID: "re_" + strings.ReplaceAll(uuid.NewString(), "-", "")}
	g.refunds[req.IdempotencyKey] = r
	if req.AmountMinor == 0 {
		g.refunded[req.ChargeID] = r.ID
	}
	return r, nil
}

// Charges returns how many distinct charges succeeded (for tests and the
// development console).
func (g *SandboxGateway) Charges() int {
	if g.db != nil {
		n, err := store.CountSandboxCharges(context.Background(), g.db)
		if err != nil {
			return -1
		}
		return n
	}
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
