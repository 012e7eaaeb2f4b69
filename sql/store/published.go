package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// PublishedEntry is one published event as the consistency audit compares
// it with its stream: the event's seq and id, and where it landed.
type PublishedEntry struct {
	Seq      int64     `db:"seq"`
	ID       string    `db:"id"`
	Stream   string    `db:"stream"`
	StreamID string    `db:"stream_id"`
	Time     time.Time `db:"time"`
}

// publishedBetweenQuery walks event_positions in seq order within the
// partitions of [from, to) and reads each event's id beside it.
const publishedBetweenQuery = `
SELECT p.seq, e.id::text AS id, p.stream, p.ms::text || '-' || p.n::text AS stream_id, p.time
FROM event_positions p JOIN events e ON e.seq = p.seq AND e.time = p.time
WHERE p.stream = $1 AND p.time >= $2 AND p.time < $3 AND p.seq > $4
ORDER BY p.seq
LIMIT $5`

// PublishedBetween returns up to limit published events of stream whose
// event time is in [from, to) and whose seq is above afterSeq, in seq
// order. Page by passing the last entry's Seq as afterSeq.
func PublishedBetween(ctx context.Context, q sqlx.QueryerContext, stream string, from, to time.Time, afterSeq int64, limit int) ([]PublishedEntry, error) {
	if limit <= 0 {
		limit = 1000
	}
	out := make([]PublishedEntry, 0, min(limit, 1024))
	if err := sqlx.SelectContext(ctx, q, &out, publishedBetweenQuery, stream, from, to, afterSeq, limit); err != nil {
		return nil, fmt.Errorf("published events of %s: %w", stream, translate(err))
	}
	return out, nil
}

const eventsByIDQuery = `
SELECT ` + eventColumns + `
FROM events e WHERE e.id = ANY($1::uuid[]) ORDER BY e.seq`

// EventsByID returns the recorded events among ids, in seq order; ids with
// no event are absent. The auditor uses it to find stream entries with no
// event row and to load the events it publishes again.
func EventsByID(ctx context.Context, q sqlx.QueryerContext, ids []uuid.UUID) ([]Event, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	strs := make([]string, len(ids))
	for i, id := range ids {
		strs[i] = id.String()
	}
	var out []Event
	if err := sqlx.SelectContext(ctx, q, &out, eventsByIDQuery, pq.Array(strs)); err != nil {
		return nil, fmt.Errorf("events by id: %w", translate(err))
	}
	return out, nil
}
