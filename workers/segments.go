package workers

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"

	"github.com/bazaarhq/bazaar/sql/store"
)

// Customer segments.
const (
	SegmentNew       = "new"
	SegmentRepeat    = "repeat"
	SegmentCorporate = "corporate"
	SegmentHighValue = "high_value"
)

// Segments computes a user's segments from the facts:
//   - new: no order has gone through yet;
//   - repeat: two or more orders went through;
//   - corporate: the user buys for a corporate account;
//   - high_value: spent at least highValueMinor in one currency.
func Segments(f store.SegmentFacts, highValueMinor int64) []string {
	var out []string
	if f.Corporate {
		out = append(out, SegmentCorporate)
	}
	if f.SpentMinor >= highValueMinor {
		out = append(out, SegmentHighValue)
	}
	if f.Orders == 0 {
		out = append(out, SegmentNew)
	}
	if f.Orders >= 2 {
		out = append(out, SegmentRepeat)
	}
	return out
}

// evaluateSegments recomputes a user's segments and records
// user.segments_changed when they changed. It is idempotent by nature: it
// sets the segments from the current facts.
func (w *Workers) evaluateSegments(ctx context.Context, t *asynq.Task) error {
	p, err := decode[SegmentsPayload](t)
	if err != nil {
		return err
	}
	userID := p.UserID
	if userID == uuid.Nil {
		o, err := store.GetOrder(ctx, w.db, p.OrderID)
		if err != nil {
			return missingIsPermanent(err)
		}
		userID = o.UserID
	}
	var segs []string
	changed := false
	err = w.inTx(ctx, func(tx *sqlx.Tx) (int, error) {
		f, err := store.UserSegmentFacts(ctx, tx, userID)
		if err != nil {
			return 0, err
		}
		segs = Segments(f, w.cfg.HighValueMinor)
		changed, err = store.SetUserSegments(ctx, tx, userID, segs)
		if err != nil || !changed {
			return 0, err
		}
		now, err := store.UserSegments(ctx, tx, userID)
		if err != nil {
			return 0, err
		}
		ev, err := newEvent(p.Meta, EventUserSegmentsChanged, userID.String(), nil, SegmentsData{UserID: userID, Segments: now})
		if err != nil {
			return 0, err
		}
		return 1, store.InsertEvents(ctx, tx, ev)
	})
	if errors.Is(err, store.ErrNotFound) {
		return permanent(err)
	}
	if err != nil {
		return fmt.Errorf("evaluate segments: %w", err)
	}
	Logger(ctx, w.log).Info("segments evaluated", "user_id", userID, "segments", segs, "changed", changed)
	return nil
}
