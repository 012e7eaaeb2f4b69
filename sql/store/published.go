package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
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
