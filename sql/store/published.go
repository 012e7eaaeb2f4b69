package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// PublishedEntry is where the event log says one event was published: the
// stream and entry id the relay recorded for it.
type PublishedEntry struct {
	Seq      int64
	ID       string
	Stream   string
	StreamID string
	Time     time.Time
}

const publishedBetweenQuery = `
SELECT seq, id::text, stream, stream_id, time
FROM events
WHERE stream = $1 AND published_at IS NOT NULL AND stream_id IS NOT NULL
  AND time >= $2 AND time < $3 AND seq > $4
ORDER BY seq LIMIT $5`

// PublishedBetween returns up to limit published events of stream whose
// event time is in [from, to) and whose seq is above afterSeq, in seq
// order. The consistency auditor pages through it (afterSeq = the last seq
// of the previous page) to compare the log with what the stream holds.
func PublishedBetween(ctx context.Context, q sqlx.QueryerContext, stream string, from, to time.Time, afterSeq int64, limit int) ([]PublishedEntry, error) {
	rows, err := q.QueryxContext(ctx, publishedBetweenQuery, stream, from, to, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("published events of %s: %w", stream, translate(err))
	}
	defer rows.Close()
	var out []PublishedEntry
	for rows.Next() {
		var p PublishedEntry
		if err := rows.Scan(&p.Seq, &p.ID, &p.Stream, &p.StreamID, &p.Time); err != nil {
			return nil, fmt.Errorf("published events of %s: %w", stream, err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("published events of %s: %w", stream, translate(err))
	}
	return out, nil
}

const eventsByIDQuery = `
SELECT ` + eventColumns + `
FROM events WHERE id = ANY($1::uuid[]) ORDER BY seq`

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
