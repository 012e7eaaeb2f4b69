package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/bazaarhq/bazaar/sql/store"
)

// change is what a write handler's transaction produces: the response and
// the events to record with it.
type change struct {
	status int
	body   any
	events []store.Event
}

// replayError ends a transaction that found its idempotency key answered
// by a request that committed meanwhile.
type replayError struct{ rec store.IdempotencyRecord }

func (e *replayError) Error() string { return "idempotency key answered meanwhile" }

// errIdempotencyCommitted ends a transaction whose idempotency record
// could not be saved because the key's first request committed its own.
var errIdempotencyCommitted = errors.New("idempotency key committed meanwhile")

const contentTypeJSON = "application/json"

// secretBearer is a response body holding a secret that is shown once (an
// API key, a printer token). Idempotency records keep withoutSecret
// instead, so no secret rests in the database for the record's lifetime
// and a replay answers the same record without it.
type secretBearer interface {
	withoutSecret() any
}

// storedResponse is the body an idempotency record keeps for a response
// whose encoding is sent: sent itself, or the body without its secret.
func storedResponse(body any, sent []byte) ([]byte, error) {
	sb, ok := body.(secretBearer)
	if !ok {
		return append([]byte{}, sent...), nil
	}
	b, err := json.Marshal(sb.withoutSecret())
	if err != nil {
		return nil, fmt.Errorf("encode stored response: %w", err)
	}
	return b, nil
}

// write runs fn in one transaction with everything the write needs to be
// safe: it records fn's events in the outbox (stamped with the request id
// and traceparent) and the idempotency record of the request in the same
// transaction, commits, tells the observer, and answers. Any error rolls
// everything back and becomes a problem. Write handlers do all their
// reads and checks inside fn.
func (s *Server) write(c *gin.Context, fn func(ctx context.Context, tx *sqlx.Tx) (change, error)) {
	ctx := c.Request.Context()
	idem := idempotentRequest(c)
	var (
		res  change
		body []byte
	)
	err := store.WithTx(ctx, s.cfg.DB, func(tx *sqlx.Tx) error {
		q := s.stmts.Tx(tx)
		if idem != nil {
			locked, found, rec, err := store.LockAndGetIdempotencyRecord(ctx, q, idem.principal, idem.key)
			if err != nil {
				return err
			}
			if !locked {
				return withDetail(errIdempotencyInFlight, "A request with this Idempotency-Key is still being processed; retry later.")
			}
			// The first request may have committed since the middleware looked.
			if found {
				return &replayError{rec}
			}
		}
		var err error
		if res, err = fn(ctx, tx); err != nil {
			return err
		}
		if res.body != nil {
			if body, err = json.Marshal(res.body); err != nil {
				return fmt.Errorf("encode response: %w", err)
			}
		}
		rid, tp := requestID(c), s.eventTraceParent(ctx, c)
		for i := range res.events {
			res.events[i].RequestID, res.events[i].TraceParent = rid, tp
		}
		if err := store.InsertEvents(ctx, q, res.events...); err != nil {
			return err
		}
		if idem != nil {
			stored, err := storedResponse(res.body, body)
			if err != nil {
				return err
			}
			err = store.SaveIdempotencyRecord(ctx, q, store.IdempotencyRecord{
				Principal: idem.principal, Key: idem.key, Method: idem.method, Path: idem.path,
				RequestHash: idem.hash, Status: res.status, ContentType: contentTypeJSON, Response: stored,
			})
			if errors.Is(err, store.ErrConflict) {
				// The first request committed between the lock's
				// snapshot and the lock (LockAndGetIdempotencyRecord):
				// roll back and replay its record.
				return errIdempotencyCommitted
			}
			if err != nil {
				return err
			}
		}
		if s.beforeCommit != nil {
			return s.beforeCommit(ctx, tx)
		}
		return nil
	})
	if errors.Is(err, errIdempotencyCommitted) {
		rec, gerr := store.GetIdempotencyRecord(ctx, s.cfg.DB, idem.principal, idem.key)
		if gerr != nil {
			s.fail(c, gerr)
			return
		}
		err = &replayError{rec}
	}
	var re *replayError
	switch {
	case errors.As(err, &re):
		s.replay(c, idem, re.rec)
		return
	case err != nil:
		s.fail(c, err)
		return
	}
	if len(res.events) > 0 && s.cfg.Observer != nil {
		s.cfg.Observer.EventsCommitted()
	}
	if body == nil {
		c.Status(res.status)
		if res.status == http.StatusNoContent {
			c.Writer.WriteHeaderNow()
		}
		return
	}
	c.Data(res.status, contentTypeJSON, body)
}

// readOwned serves GET of one record by the path id, for callers that see
// the record's seller.
func readOwned[R, O any](s *Server, c *gin.Context,
	get func(context.Context, sqlx.QueryerContext, uuid.UUID) (R, error),
	sellerOf func(R) uuid.UUID, out func(R) O,
) {
	id, err := pathID(c, "id")
	if err != nil {
		s.fail(c, err)
		return
	}
	s.read(c, func(ctx context.Context, q sqlx.QueryerContext) (any, error) {
		r, err := get(ctx, q, id)
		if err != nil {
			return nil, err
		}
		// Another seller's record answers as if it did not exist, so ids
		// cannot be probed across sellers.
		if !principalOf(c).Sees(sellerOf(r)) {
			return nil, store.ErrNotFound
		}
		return out(r), nil
	})
}

// read runs a read-only query function and answers 200 with its result.
func (s *Server) read(c *gin.Context, fn func(ctx context.Context, q sqlx.QueryerContext) (any, error)) {
	out, err := fn(c.Request.Context(), s.cfg.DB)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, out)
}
