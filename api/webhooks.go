package api

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/stream"
	"github.com/bazaarhq/bazaar/workers/webhooks"
)

// WebhooksConfig configures the seller webhook routes (webhooks.go).
type WebhooksConfig struct {
	// AllowPrivate accepts http:// URLs and private and loopback hosts, for
	// development and tests only (BAZAAR_WEBHOOK_ALLOW_PRIVATE).
	AllowPrivate bool
	// RotationWindow is how long a rotated secret still signs (default 24h).
	RotationWindow time.Duration
	// Redeliverer sends a delivery again; without one redelivery answers 503.
	Redeliverer WebhookRedeliverer
}

// WebhookRedeliverer queues deliveries again (*webhooks.Service is one):
// one, every one since a time, or those of an endpoint that stopped being
// ordered.
type WebhookRedeliverer interface {
	Redeliver(ctx context.Context, endpointID, id uuid.UUID) (store.WebhookDelivery, error)
	RedeliverSince(ctx context.Context, endpointID uuid.UUID, since time.Time) (int, error)
	Resume(ctx context.Context, endpointID uuid.UUID) error
}

type webhookRequest struct {
	URL         *string  `json:"url"`
	Topics      []string `json:"topics"`
	Description *string  `json:"description"`
	Disabled    *bool    `json:"disabled"`
	Ordered     *bool    `json:"ordered"`
}

type webhookDTO struct {
	ID             uuid.UUID  `json:"id"`
	SellerID       uuid.UUID  `json:"seller_id"`
	URL            string     `json:"url"`
	Topics         []string   `json:"topics"`
	Description    string     `json:"description"`
	Disabled       bool       `json:"disabled"`
	DisabledReason string     `json:"disabled_reason"`
	DisabledAt     *time.Time `json:"disabled_at"`
	Ordered        bool       `json:"ordered"`
	FailingSince   *time.Time `json:"failing_since"`
	// Secret is set only in the answers that make one (creation and
	// rotation).
	Secret    string    `json:"secret,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// withoutSecret keeps the endpoint but not its secret in the idempotency
// record.
func (w webhookDTO) withoutSecret() any {
	w.Secret = ""
	return w
}

func webhookOut(e store.WebhookEndpoint) webhookDTO {
	return webhookDTO{
		ID: e.ID, SellerID: e.SellerID, URL: e.URL, Topics: append([]string{}, e.Topics...),
		Description: e.Description, Disabled: e.Disabled, DisabledReason: e.DisabledReason,
		DisabledAt: e.DisabledAt, Ordered: e.Ordered, FailingSince: e.FailingSince,
		CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt,
	}
}

type webhookDeliveryDTO struct {
	ID              uuid.UUID  `json:"id"`
	EventID         uuid.UUID  `json:"event_id"`
	EventType       string     `json:"event_type"`
	Status          string     `json:"status"`
	Attempts        int        `json:"attempts"`
	ResponseStatus  int        `json:"response_status"`
	LatencyMS       int        `json:"latency_ms"`
	ResponseExcerpt string     `json:"response_excerpt"`
	LastError       string     `json:"last_error"`
	NextAttemptAt   *time.Time `json:"next_attempt_at"`
	CreatedAt       time.Time  `json:"created_at"`
	UpdatedAt       time.Time  `json:"updated_at"`
}

func webhookDeliveryOut(d store.WebhookDelivery) webhookDeliveryDTO {
	return webhookDeliveryDTO{
		ID: d.ID, EventID: d.EventID, EventType: d.EventType, Status: d.Status, Attempts: d.Attempts,
		ResponseStatus: d.ResponseStatus, LatencyMS: d.LatencyMS, ResponseExcerpt: d.ResponseExcerpt,
		LastError: d.LastError, NextAttemptAt: d.NextAttemptAt, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt,
	}
}

// checkWebhook validates the fields of a creation (create true: url and
// topics required) or an update.
func (s *Server) checkWebhook(ctx context.Context, req webhookRequest, create bool) error {
	var k checker
	if req.URL != nil || create {
		u := ""
		if req.URL != nil {
			u = *req.URL
		}
		k.text("url", u, true, 2000)
		if u != "" {
			if err := webhooks.CheckURL(ctx, u, s.cfg.Webhooks.AllowPrivate); err != nil {
				k.add("url", err.Error())
			}
		}
	}
	if req.Topics != nil || create {
		if len(req.Topics) == 0 || len(req.Topics) > 20 {
			k.add("topics", "must list 1 to 20 topic patterns")
		}
		for _, t := range req.Topics {
			for w := range strings.SplitSeq(t, ".") {
				if !topicWord.MatchString(w) {
					k.add("topics", topicGrammar+" ("+strconv.Quote(t)+" has the word "+strconv.Quote(w)+")")
				}
			}
		}
		if err := stream.ValidatePatterns(req.Topics); err != nil {
			k.add("topics", err.Error())
		}
	}
	if req.Description != nil {
		k.text("description", *req.Description, false, 500)
	}
	if create && req.Disabled != nil {
		k.add("disabled", "is set by PATCH")
	}
	return k.err()
}

// createWebhook: POST /v1/sellers/{id}/webhooks (admin, the seller). The
// answer carries the endpoint's signing secret, shown only this once.
func (s *Server) createWebhook(c *gin.Context) {
	sellerID, err := s.visibleSeller(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	var req webhookRequest
	if err := bind(c, &req, false); err != nil {
		s.fail(c, err)
		return
	}
	if err := s.checkWebhook(c.Request.Context(), req, true); err != nil {
		s.fail(c, err)
		return
	}
	s.write(c, func(ctx context.Context, tx *sqlx.Tx) (change, error) {
		if _, err := store.GetSeller(ctx, tx, sellerID); err != nil {
			return change{}, err
		}
		secret, err := webhooks.NewSecret()
		if err != nil {
			return change{}, err
		}
		desc := ""
		if req.Description != nil {
			desc = *req.Description
		}
		ep, err := store.CreateWebhookEndpoint(ctx, tx, store.WebhookEndpoint{
			ID: uuid.New(), SellerID: sellerID, URL: *req.URL, Topics: req.Topics, Description: desc, Secret: secret,
			Ordered: req.Ordered != nil && *req.Ordered,
		})
		if err != nil {
			return change{}, err
		}
		out := webhookOut(ep)
		out.Secret = secret
		return change{status: http.StatusCreated, body: out}, nil
	})
}

// listWebhooks: GET /v1/sellers/{id}/webhooks, oldest first.
func (s *Server) listWebhooks(c *gin.Context) {
	id, err := s.visibleSeller(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	pg, err := page(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.read(c, func(ctx context.Context, q sqlx.QueryerContext) (any, error) {
		if _, err := store.GetSeller(ctx, q, id); err != nil {
			return nil, err
		}
		rows, next, err := store.ListWebhookEndpoints(ctx, q, id, pg)
		return listOf(rows, next, webhookOut), err
	})
}

// webhookPath returns the seller and endpoint ids of the path, 404 for
// another seller's.
func (s *Server) webhookPath(c *gin.Context) (uuid.UUID, uuid.UUID, error) {
	sellerID, err := s.visibleSeller(c)
	if err != nil {
		return uuid.Nil, uuid.Nil, err
	}
	wid, err := pathID(c, "wid")
	return sellerID, wid, err
}

// getWebhook: GET /v1/sellers/{id}/webhooks/{wid}.
func (s *Server) getWebhook(c *gin.Context) {
	sellerID, wid, err := s.webhookPath(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.read(c, func(ctx context.Context, q sqlx.QueryerContext) (any, error) {
		ep, err := store.GetWebhookEndpoint(ctx, q, sellerID, wid)
		return webhookOut(ep), err
	})
}

// updateWebhook: PATCH /v1/sellers/{id}/webhooks/{wid}: url, topics,
// description, ordered, disabled (re-enabling clears the reason and the
// failure streak). An endpoint that stops being ordered has its waiting
// deliveries queued at once.
func (s *Server) updateWebhook(c *gin.Context) {
	sellerID, wid, err := s.webhookPath(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	var req webhookRequest
	if err := bind(c, &req, false); err != nil {
		s.fail(c, err)
		return
	}
	if err := s.checkWebhook(c.Request.Context(), req, false); err != nil {
		s.fail(c, err)
		return
	}
	s.write(c, func(ctx context.Context, tx *sqlx.Tx) (change, error) {
		ep, err := store.UpdateWebhookEndpoint(ctx, tx, sellerID, wid, store.WebhookEndpointPatch{
			URL: req.URL, Topics: req.Topics, Description: req.Description, Disabled: req.Disabled,
			Ordered: req.Ordered, Reason: "disabled through the API",
		})
		if err != nil {
			return change{}, err
		}
		if req.Ordered != nil && !*req.Ordered && s.cfg.Webhooks.Redeliverer != nil {
			if err := s.cfg.Webhooks.Redeliverer.Resume(ctx, ep.ID); err != nil {
				return change{}, err
			}
		}
		return change{status: http.StatusOK, body: webhookOut(ep)}, nil
	})
}

// deleteWebhook: DELETE /v1/sellers/{id}/webhooks/{wid}, with its
// delivery log.
func (s *Server) deleteWebhook(c *gin.Context) {
	sellerID, wid, err := s.webhookPath(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.write(c, func(ctx context.Context, tx *sqlx.Tx) (change, error) {
		return change{status: http.StatusNoContent}, store.DeleteWebhookEndpoint(ctx, tx, sellerID, wid)
	})
}

// rotateWebhookSecret: POST /v1/sellers/{id}/webhooks/{wid}/rotate-secret.
// The answer carries the new secret (shown once); the old one keeps
// signing, beside it, for WebhooksConfig.RotationWindow.
func (s *Server) rotateWebhookSecret(c *gin.Context) {
	sellerID, wid, err := s.webhookPath(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	window := s.cfg.Webhooks.RotationWindow
	if window <= 0 {
		window = 24 * time.Hour
	}
	s.write(c, func(ctx context.Context, tx *sqlx.Tx) (change, error) {
		secret, err := webhooks.NewSecret()
		if err != nil {
			return change{}, err
		}
		ep, err := store.RotateWebhookSecret(ctx, tx, sellerID, wid, secret, time.Now().Add(window))
		if err != nil {
			return change{}, err
		}
		out := webhookOut(ep)
		out.Secret = secret
		return change{status: http.StatusOK, body: out}, nil
	})
}

// listWebhookDeliveries: GET /v1/sellers/{id}/webhooks/{wid}/deliveries,
// newest first.
func (s *Server) listWebhookDeliveries(c *gin.Context) {
	sellerID, wid, err := s.webhookPath(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	pg, err := page(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.read(c, func(ctx context.Context, q sqlx.QueryerContext) (any, error) {
		if _, err := store.GetWebhookEndpoint(ctx, q, sellerID, wid); err != nil {
			return nil, err
		}
		rows, next, err := store.ListWebhookDeliveries(ctx, q, wid, pg)
		return listOf(rows, next, webhookDeliveryOut), err
	})
}

// redeliverWebhook: POST /v1/sellers/{id}/webhooks/{wid}/deliveries/{did}/redeliver:
// the delivery goes back to pending and is queued again (202).
func (s *Server) redeliverWebhook(c *gin.Context) {
	sellerID, wid, err := s.webhookPath(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	did, err := pathID(c, "did")
	if err != nil {
		s.fail(c, err)
		return
	}
	if s.cfg.Webhooks.Redeliverer == nil {
		s.fail(c, withDetail(errUnavailable, "Redelivery needs the task queue, which this server has not got."))
		return
	}
	s.write(c, func(ctx context.Context, tx *sqlx.Tx) (change, error) {
		if _, err := store.GetWebhookEndpoint(ctx, tx, sellerID, wid); err != nil {
			return change{}, err
		}
		if _, err := store.GetWebhookDelivery(ctx, tx, wid, did); err != nil {
			return change{}, err
		}
		d, err := s.cfg.Webhooks.Redeliverer.Redeliver(ctx, wid, did)
		if err != nil {
			return change{}, err
		}
		if err := s.auditRedelivery(ctx, tx, c, sellerID, wid, map[string]any{"delivery_id": did}, 1); err != nil {
			return change{}, err
		}
		return change{status: http.StatusAccepted, body: webhookDeliveryOut(d)}, nil
	})
}

// redeliverSinceRequest is the body of a redelivery of everything since a
// time.
type redeliverSinceRequest struct {
	Since *string `json:"since"`
}

type redeliverSinceDTO struct {
	Since time.Time `json:"since"`
	Count int       `json:"count"`
}

// redeliverWebhooksSince: POST /v1/sellers/{id}/webhooks/{wid}/redeliver
// {"since": RFC 3339}: every delivery of the endpoint recorded since then
// goes back to pending and is queued again (202 with the count); an
// ordered endpoint gets them in their original order.
func (s *Server) redeliverWebhooksSince(c *gin.Context) {
	sellerID, wid, err := s.webhookPath(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	var req redeliverSinceRequest
	if err := bind(c, &req, false); err != nil {
		s.fail(c, err)
		return
	}
	if req.Since == nil {
		s.fail(c, badParam("since", "is required: an RFC 3339 time such as 2026-12-01T00:00:00Z"))
		return
	}
	since, err := time.Parse(time.RFC3339, *req.Since)
	if err != nil {
		s.fail(c, badParam("since", "must be an RFC 3339 time such as 2026-12-01T00:00:00Z"))
		return
	}
	if since.After(time.Now()) {
		s.fail(c, badParam("since", "is in the future"))
		return
	}
	if s.cfg.Webhooks.Redeliverer == nil {
		s.fail(c, withDetail(errUnavailable, "Redelivery needs the task queue, which this server has not got."))
		return
	}
	s.write(c, func(ctx context.Context, tx *sqlx.Tx) (change, error) {
		if _, err := store.GetWebhookEndpoint(ctx, tx, sellerID, wid); err != nil {
			return change{}, err
		}
		n, err := s.cfg.Webhooks.Redeliverer.RedeliverSince(ctx, wid, since)
		if err != nil {
			return change{}, err
		}
		if err := s.auditRedelivery(ctx, tx, c, sellerID, wid, map[string]any{"since": since.UTC()}, n); err != nil {
			return change{}, err
		}
		return change{status: http.StatusAccepted, body: redeliverSinceDTO{Since: since.UTC(), Count: n}}, nil
	})
}
