package store

import (
	"context"
	"fmt"
	"math"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
)

// EventLogQuery selects published events of one stream by their stream
// entry ids, the positions SSE cursors are made of. Positions are compared
// as numbers (milliseconds, then sequence), never as text.
type EventLogQuery struct {
	// Stream is the Redis stream key the relay recorded.
	Stream string
	// AfterMs and AfterSeq are the exclusive lower bound.
	AfterMs, AfterSeq uint64
	// UntilMs and UntilSeq are the inclusive upper bound.
	UntilMs, UntilSeq uint64
	// Seller, when set, keeps that seller's events and those with no seller.
	Seller *uuid.UUID
	// Limit caps the rows returned (default 256).
	Limit int
}

// eventLogRangeQuery walks event_positions' (stream, ms, n) index and
// reads each event by (seq, time), one partition per row.
const eventLogRangeQuery = `
SELECT ` + eventColumns + `, ` + positionColumns + `
FROM event_positions p JOIN events e ON e.seq = p.seq AND e.time = p.time
WHERE p.stream = $1
  AND (p.ms, p.n) > ($2::bigint, $3::bigint)
  AND (p.ms, p.n) <= ($4::bigint, $5::bigint)
  AND ($6::uuid IS NULL OR e.seller_id = $6 OR e.seller_id IS NULL)
ORDER BY p.ms, p.n
LIMIT $7`

// EventLogRange returns the published events of q.Stream whose entry ids
// lie in the range, in stream order. It serves SSE resumes older than the
// stream's trim.
func EventLogRange(ctx context.Context, db sqlx.QueryerContext, q EventLogQuery) ([]Event, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 256
	}
	var out []Event
	err := sqlx.SelectContext(ctx, db, &out, eventLogRangeQuery, q.Stream,
		clamp(q.AfterMs), clamp(q.AfterSeq), clamp(q.UntilMs), clamp(q.UntilSeq), q.Seller, limit)
	if err != nil {
		return nil, fmt.Errorf("event log range: %w", translate(err))
	}
	return out, nil
}

const eventLogReachesQuery = `
SELECT EXISTS (
  SELECT 1 FROM event_positions
  WHERE stream = $1 AND (ms, n) <= ($2::bigint, $3::bigint))`

// EventLogReaches reports whether the event log still holds an event of
// stream at or before the given entry id, that is whether it covers every
// event after that position.
func EventLogReaches(ctx context.Context, db sqlx.QueryerContext, stream string, ms, seq uint64) (bool, error) {
	var ok bool
	if err := sqlx.GetContext(ctx, db, &ok, eventLogReachesQuery, stream, clamp(ms), clamp(seq)); err != nil {
		return false, fmt.Errorf("event log reaches: %w", translate(err))
	}
	return ok, nil
}

// clamp maps an entry id part to the bigint range positions are stored in.
// The relay's ids ("*") are far below it, so a bound above it (a cursor a
// client made up) selects the same positions as the highest bigint.
func clamp(v uint64) int64 {
	if v > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(v)
}

const latestEventOfTypeQuery = eventSelect + `
WHERE e.type = $1 ORDER BY e.time DESC, e.seq DESC LIMIT 1`

// LatestEventOfType returns the most recent recorded event of a type
// (published or not); ErrNotFound when there is none.
func LatestEventOfType(ctx context.Context, q sqlx.QueryerContext, typ string) (Event, error) {
	var e Event
	if err := sqlx.GetContext(ctx, q, &e, latestEventOfTypeQuery, typ); err != nil {
		return Event{}, fmt.Errorf("latest %s event: %w", typ, translate(err))
	}
	return e, nil
}
