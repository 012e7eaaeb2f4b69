package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/bazaarhq/bazaar/ratelimit"
	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/stream"
)

// What the API does with a new order for a paused seller (Config.PausedSellerOrders).
const (
	// PausedOrdersAccept records the order; its events wait with the
	// seller's others until the seller is resumed.
	PausedOrdersAccept = "accept"
	// PausedOrdersRefuse answers 423 seller-paused.
	PausedOrdersRefuse = "refuse"
)

// errSellerPaused refuses an order for a paused seller.
var errSellerPaused = errors.New("seller paused")

type pauseSellerRequest struct {
	Reason string `json:"reason"`
}

// pauseSeller: POST /v1/admin/sellers/{id}/pause (operator). The seller's
// events are held back by every consumer group until it is resumed.
func (s *Server) pauseSeller(c *gin.Context) {
	id, err := pathID(c, "id")
	if err != nil {
		s.fail(c, err)
		return
	}
	var req pauseSellerRequest
	if err := bind(c, &req, false); err != nil {
		s.fail(c, err)
		return
	}
	if err := checkPauseReason(req.Reason); err != nil {
		s.fail(c, err)
		return
	}
	e := s.auditEntry(c, ActionSellerPause, req.Reason)
	s.write(c, func(ctx context.Context, tx *sqlx.Tx) (change, error) {
		sl, err := s.pauseSellerTx(ctx, tx, e, id, req.Reason)
		if err != nil {
			return change{}, err
		}
		return change{status: http.StatusOK, body: sellerOut(sl)}, nil
	})
}

// checkPauseReason checks the reason of a pause: required, at most 500
// bytes.
func checkPauseReason(reason string) error {
	var k checker
	k.text("reason", reason, true, 500)
	return k.err()
}

// checkResumeReason checks the optional reason of a resume.
func checkResumeReason(reason string) error {
	var k checker
	k.text("reason", reason, false, maxAuditReasonLen)
	return k.err()
}

// pauseSellerTx pauses a seller and records e (its action and reason) in
// the audit log, in tx: the one code of the API's and the console's pause.
func (s *Server) pauseSellerTx(ctx context.Context, tx *sqlx.Tx, e AuditEntry, id uuid.UUID, reason string) (store.Seller, error) {
	sl, err := store.PauseSeller(ctx, tx, id, reason)
	if err != nil {
		return store.Seller{}, err
	}
	e.Target = "seller:" + id.String()
	return sl, s.audit(ctx, tx, e)
}

// resumeSellerTx resumes a seller and records e in the audit log, in tx.
func (s *Server) resumeSellerTx(ctx context.Context, tx *sqlx.Tx, e AuditEntry, id uuid.UUID) (store.Seller, error) {
	sl, err := store.ResumeSeller(ctx, tx, id)
	if err != nil {
		return store.Seller{}, err
	}
	e.Target = "seller:" + id.String()
	return sl, s.audit(ctx, tx, e)
}

// consolePauseSeller pauses a seller the way POST
// /v1/admin/sellers/{id}/pause does, with its audit row in the same
// transaction.
func (s *Server) consolePauseSeller(ctx context.Context, id uuid.UUID, reason string) (store.Seller, error) {
	c, ok := consoleGin(ctx)
	if !ok {
		return store.Seller{}, errors.New("console seller pause outside a console request")
	}
	if err := checkPauseReason(reason); err != nil {
		return store.Seller{}, consoleInvalid(err)
	}
	e := s.auditEntry(c, ActionSellerPause, reason)
	var sl store.Seller
	err := store.WithTx(ctx, s.cfg.DB, func(tx *sqlx.Tx) error {
		var err error
		sl, err = s.pauseSellerTx(ctx, tx, e, id, reason)
		return err
	})
	return sl, err
}

// consoleResumeSeller resumes a seller the way POST
// /v1/admin/sellers/{id}/resume does, with its audit row in the same
// transaction.
func (s *Server) consoleResumeSeller(ctx context.Context, id uuid.UUID, reason string) (store.Seller, error) {
	c, ok := consoleGin(ctx)
	if !ok {
		return store.Seller{}, errors.New("console seller resume outside a console request")
	}
	if err := checkResumeReason(reason); err != nil {
		return store.Seller{}, consoleInvalid(err)
	}
	e := s.auditEntry(c, ActionSellerResume, reason)
	var sl store.Seller
	err := store.WithTx(ctx, s.cfg.DB, func(tx *sqlx.Tx) error {
		var err error
		sl, err = s.resumeSellerTx(ctx, tx, e, id)
		return err
	})
	return sl, err
}

// resumeSeller: POST /v1/admin/sellers/{id}/resume (operator). The events
// held back while the seller was paused are handled, in order, before its
// new ones.
func (s *Server) resumeSeller(c *gin.Context) {
	id, err := pathID(c, "id")
	if err != nil {
		s.fail(c, err)
		return
	}
	var req struct {
		Reason string `json:"reason"`
	}
	if err := bind(c, &req, true); err != nil {
		s.fail(c, err)
		return
	}
	if err := checkResumeReason(req.Reason); err != nil {
		s.fail(c, err)
		return
	}
	e := s.auditEntry(c, ActionSellerResume, req.Reason)
	s.write(c, func(ctx context.Context, tx *sqlx.Tx) (change, error) {
		sl, err := s.resumeSellerTx(ctx, tx, e, id)
		if err != nil {
			return change{}, err
		}
		return change{status: http.StatusOK, body: sellerOut(sl)}, nil
	})
}

// refusePausedSeller is the order check of PausedOrdersRefuse.
func (s *Server) refusePausedSeller(seller uuid.UUID, paused bool) error {
	if s.cfg.PausedSellerOrders != PausedOrdersRefuse || !paused {
		return nil
	}
	return withDetail(errSellerPaused, fmt.Sprintf("Seller %s is paused and takes no orders until it is resumed.", seller))
}

// orderLimitRequest is a seller's own order limit in PATCH /v1/sellers/{id}.
type orderLimitRequest struct {
	Rate  int `json:"rate"`
	Burst int `json:"burst"`
}

// optionalOrderLimit is the order_limit field: absent, null (no limit of
// the seller's own) or a limit.
type optionalOrderLimit struct {
	set   bool
	value *orderLimitRequest
}

func (o *optionalOrderLimit) UnmarshalJSON(b []byte) error {
	o.set = true
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var l orderLimitRequest
	if err := dec.Decode(&l); err != nil {
		return fmt.Errorf("order_limit: %w", err)
	}
	o.value = &l
	return nil
}

// maxSellerOrderRate bounds a seller's own order rate.
const maxSellerOrderRate = 100_000

// checkOrderLimit validates the order_limit of a PATCH.
func checkOrderLimit(k *checker, o optionalOrderLimit) {
	if o.value == nil {
		return
	}
	if o.value.Rate < 1 || o.value.Rate > maxSellerOrderRate {
		k.add("order_limit.rate", fmt.Sprintf("must be from 1 to %d orders per second", maxSellerOrderRate))
	}
	if o.value.Burst < 0 || o.value.Burst > maxSellerOrderRate {
		k.add("order_limit.burst", fmt.Sprintf("must be from 0 (the rate) to %d orders", maxSellerOrderRate))
	}
}

// orderLimitDTO is a seller's own order limit as the API shows it.
type orderLimitDTO struct {
	Rate  int `json:"rate"`
	Burst int `json:"burst"`
}

func orderLimitOut(s store.Seller) *orderLimitDTO {
	if s.OrderRate == nil {
		return nil
	}
	l := &orderLimitDTO{Rate: *s.OrderRate, Burst: *s.OrderRate}
	if s.OrderBurst != nil {
		l.Burst = *s.OrderBurst
	}
	return l
}

// policySellerOrders names the per-seller order limit in the RateLimit
// headers and the metric of 429s.
const policySellerOrders = "seller-orders"

// allowSellerOrder takes one order from the seller's own quota l, if it
// has one; over it, it sets Retry-After and the RateLimit headers and
// returns a 429 problem naming the seller's limit. Without Redis, or when
// Redis does not answer, the order goes through (fail open, as every
// limit).
func (s *Server) allowSellerOrder(c *gin.Context, seller uuid.UUID, l store.SellerOrderLimit) error {
	if s.limiter == nil || l.Rate == 0 {
		return nil
	}
	lim := ratelimit.Limit{Rate: l.Rate, Period: time.Second, Burst: l.Burst}
	var res ratelimit.Result
	// limitCall bounds the call by the request's context and CallTimeout,
	// as every limit check does.
	if !s.limitCall(c, func(ctx context.Context) (err error) { //nolint:contextcheck // see above
		res, err = s.limiter.Allow(ctx, "seller-orders:"+seller.String(), lim)
		return err
	}) {
		return nil
	}
	rateLimitHeaders(c, policySellerOrders, lim, res)
	if res.Allowed {
		return nil
	}
	s.tel.rateLimited.WithLabelValues(policySellerOrders).Inc()
	c.Header("Retry-After", strconv.Itoa(ratelimit.Seconds(res.RetryAfter)))
	return withDetail(errRateLimited, fmt.Sprintf(
		"Seller %s takes at most %d orders per second (bursts of %d); retry after the time in Retry-After.",
		seller, l.Rate, lim.Quota()))
}

type replaySellerRequest struct {
	Group  string `json:"group"`
	Since  string `json:"since"`
	Reason string `json:"reason"`
}

// replaySeller: POST /v1/admin/sellers/{id}/replay (operator). The seller's
// published events from since on go to one consumer group again, in the
// order they were recorded; no other group and no other seller sees them.
func (s *Server) replaySeller(c *gin.Context) {
	a, ok := s.streamsAdmin(c)
	if !ok {
		return
	}
	id, err := pathID(c, "id")
	if err != nil {
		s.fail(c, err)
		return
	}
	var req replaySellerRequest
	if err := bind(c, &req, false); err != nil {
		s.fail(c, err)
		return
	}
	var k checker
	k.text("group", req.Group, true, 200)
	since, perr := time.Parse(time.RFC3339Nano, req.Since)
	if perr != nil {
		k.add("since", "must be an RFC 3339 time such as 2030-01-02T15:04:05Z")
	} else if since.After(time.Now()) {
		k.add("since", "must not be in the future")
	}
	if err := k.err(); err != nil {
		s.fail(c, err)
		return
	}
	if !s.requireReason(c, req.Reason) {
		return
	}
	ctx := c.Request.Context()
	if _, err := store.GetSeller(ctx, s.cfg.DB, id); err != nil {
		s.fail(c, err)
		return
	}
	n, err := a.ReplaySeller(ctx, req.Group, id, since)
	// The replay's effect is in Redis: its row records the outcome after
	// the fact; an unknown group changed nothing and leaves none.
	if !errors.Is(err, stream.ErrUnknownGroup) {
		e := s.auditEntry(c, ActionSellerReplay, req.Reason)
		e.Target = "seller:" + id.String()
		e.Params = auditParams(map[string]any{"group": req.Group, "since": since.UTC()})
		e.Count = auditCount(n)
		if err != nil {
			e.Result = "error: " + err.Error()
		}
		if aerr := s.audit(ctx, s.cfg.DB, e); aerr != nil {
			s.fail(c, errors.Join(err, aerr))
			return
		}
	}
	if err != nil {
		s.fail(c, streamError(err, req.Group))
		return
	}
	c.JSON(http.StatusAccepted, gin.H{"group": req.Group, "seller_id": id, "since": since.UTC(), "replayed": n})
}
