package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"

	"github.com/gin-gonic/gin"
	"github.com/jmoiron/sqlx"

	"github.com/bazaarhq/bazaar/sql/store"
)

// WebhookHandler verifies and applies one payment provider webhook
// delivery (workers.StripeWebhooks). An error wrapping
// workers.ErrBadSignature is the sender's fault; any other asks the
// provider to deliver again.
type WebhookHandler interface {
	Handle(ctx context.Context, payload []byte, signature string) error
}

// stripeWebhook: POST /v1/webhooks/stripe, signed by Stripe.
func (s *Server) stripeWebhook(c *gin.Context) {
	if s.cfg.StripeWebhooks == nil {
		s.fail(c, withDetail(errRouteNotFound, "Stripe webhooks are not configured (BAZAAR_STRIPE_WEBHOOK_SECRET)."))
		return
	}
	payload, err := io.ReadAll(c.Request.Body)
	if err != nil {
		s.fail(c, fmt.Errorf("read webhook: %w", err))
		return
	}
	if err := s.cfg.StripeWebhooks.Handle(c.Request.Context(), payload, c.GetHeader("Stripe-Signature")); err != nil {
		s.fail(c, withDetail(err, "The delivery was not applied."))
		return
	}
	c.JSON(http.StatusOK, gin.H{"received": true})
}

// optionalInt is a JSON field that may be absent, null or a number.
type optionalInt struct {
	set   bool
	value *int
}

func (o *optionalInt) UnmarshalJSON(b []byte) error {
	o.set = true
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	var n int
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("fee_bps: %w", err)
	}
	o.value = &n
	return nil
}

type updateSellerRequest struct {
	StripeAccount *string     `json:"stripe_account"`
	FeeBPS        optionalInt `json:"fee_bps" nullable:"true"`
	// OrderLimit is the seller's own order rate limit (sellerops.go).
	OrderLimit optionalOrderLimit `json:"order_limit" nullable:"true"`
}

var stripeAccountID = regexp.MustCompile(`^acct_[A-Za-z0-9]{1,64}$`)

// updateSeller: PATCH /v1/sellers/{id} (admin): the seller's connected
// account and its own commission.
func (s *Server) updateSeller(c *gin.Context) {
	id, err := pathID(c, "id")
	if err != nil {
		s.fail(c, err)
		return
	}
	var req updateSellerRequest
	if err := bind(c, &req, false); err != nil {
		s.fail(c, err)
		return
	}
	var k checker
	if req.StripeAccount != nil && *req.StripeAccount != "" && !stripeAccountID.MatchString(*req.StripeAccount) {
		k.add("stripe_account", `must be a connected account id such as "acct_1Nv0FGQ9RKHgCVdK", or "" for none`)
	}
	if v := req.FeeBPS.value; v != nil && (*v < 0 || *v > 10_000) {
		k.add("fee_bps", "must be from 0 to 10000 basis points, or null for the marketplace's")
	}
	checkOrderLimit(&k, req.OrderLimit)
	if req.StripeAccount == nil && !req.FeeBPS.set && !req.OrderLimit.set {
		k.add("(body)", "name at least one field to change")
	}
	if err := k.err(); err != nil {
		s.fail(c, err)
		return
	}
	s.write(c, func(ctx context.Context, tx *sqlx.Tx) (change, error) {
		sl, err := store.UpdateSellerPayout(ctx, tx, id, store.SellerPayout{
			StripeAccount: req.StripeAccount, FeeBPS: req.FeeBPS.value, ClearFee: req.FeeBPS.set && req.FeeBPS.value == nil,
		})
		if err != nil {
			return change{}, err
		}
		if req.OrderLimit.set {
			var l store.SellerOrderLimit
			if v := req.OrderLimit.value; v != nil {
				l = store.SellerOrderLimit{Rate: v.Rate, Burst: v.Burst}
			}
			if sl, err = store.SetSellerOrderLimit(ctx, tx, id, l); err != nil {
				return change{}, err
			}
		}
		ev, err := store.NewSellerEvent("seller.updated", sl)
		if err != nil {
			return change{}, err
		}
		if err := s.auditSeller(ctx, tx, c, ActionSellerUpdate, sl.ID, map[string]any{
			"stripe_account": req.StripeAccount, "fee_bps": req.FeeBPS.value, "fee_bps_set": req.FeeBPS.set,
		}); err != nil {
			return change{}, err
		}
		return change{http.StatusOK, sellerOut(sl), []store.Event{ev}}, nil
	})
}
