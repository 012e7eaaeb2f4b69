package store

import (
	"context"
	"fmt"
	"strconv"

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

// The position expressions match the events_stream_pos_idx index.
const eventLogRangeQuery = `
SELECT seq, id, type, source, specversion, subject, seller_id, dataschema, time, data,
       request_id, traceparent, created_at, published_at, stream, stream_id
FROM events
WHERE stream = $1 AND stream_id IS NOT NULL
  AND (split_part(stream_id, '-', 1)::numeric, split_part(stream_id, '-', 2)::numeric) > ($2::numeric, $3::numeric)
  AND (split_part(stream_id, '-', 1)::numeric, split_part(stream_id, '-', 2)::numeric) <= ($4::numeric, $5::numeric)
  AND ($6::uuid IS NULL OR seller_id = $6 OR seller_id IS NULL)
ORDER BY split_part(stream_id, '-', 1)::numeric, split_part(stream_id, '-', 2)::numeric
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
		u64(q.AfterMs), u64(q.AfterSeq), u64(q.UntilMs), u64(q.UntilSeq), q.Seller, limit)
	if err != nil {
		return nil, fmt.Errorf("event log range: %w", translate(err))
	}
	return out, nil
}

const eventLogReachesQuery = `
SELECT EXISTS (
  SELECT 1 FROM events
  WHERE stream = $1 AND stream_id IS NOT NULL
    AND (split_part(stream_id, '-', 1)::numeric, split_part(stream_id, '-', 2)::numeric) <= ($2::numeric, $3::numeric))`

// EventLogReaches reports whether the event log still holds an event of
// stream at or before the given entry id, that is whether it covers every
// event after that position.
func EventLogReaches(ctx context.Context, db sqlx.QueryerContext, stream string, ms, seq uint64) (bool, error) {
	var ok bool
	if err := sqlx.GetContext(ctx, db, &ok, eventLogReachesQuery, stream, u64(ms), u64(seq)); err != nil {
		return false, fmt.Errorf("event log reaches: %w", translate(err))
	}
	return ok, nil
}

// u64 passes an unsigned 64-bit number as text: database/sql refuses
// uint64 values above the int64 range, and sequence numbers may be there.
func u64(v uint64) string { return strconv.FormatUint(v, 10) }

const latestEventOfTypeQuery = `
SELECT seq, id, type, source, specversion, subject, seller_id, dataschema, time, data,
       request_id, traceparent, created_at, published_at, stream, stream_id
FROM events WHERE type = $1 ORDER BY time DESC, seq DESC LIMIT 1`

// LatestEventOfType returns the most recent recorded event of a type
// (published or not); ErrNotFound when there is none.
func LatestEventOfType(ctx context.Context, q sqlx.QueryerContext, typ string) (Event, error) {
	var e Event
	if err := sqlx.GetContext(ctx, q, &e, latestEventOfTypeQuery, typ); err != nil {
		return Event{}, fmt.Errorf("latest %s event: %w", typ, translate(err))
	}
	return e, nil
}
