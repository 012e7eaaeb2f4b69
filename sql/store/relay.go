package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// publishLockKey is the advisory lock that separates publishing from taking
// a replay cut: every relay transaction holds it shared, and a consumer
// group starting "from a time" holds it exclusively while it notes where
// each stream ends, so no event is half published (in Redis but not yet
// marked here) at that moment.
const publishLockKey = 0x6261_7a61_0001

const eventColumns = `seq, id, type, source, specversion, subject, seller_id, dataschema, time, data,
       request_id, traceparent, created_at, published_at, stream, stream_id`

// LockPublishShared takes the publish lock in shared mode for the rest of tx.
// Relays call it before claiming, so they never wait on each other.
func LockPublishShared(ctx context.Context, tx *sqlx.Tx) error {
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock_shared($1)`, publishLockKey); err != nil {
		return fmt.Errorf("publish lock: %w", translate(err))
	}
	return nil
}

// LockPublishExclusive takes the publish lock exclusively for the rest of tx,
// waiting for relay transactions in flight to finish.
func LockPublishExclusive(ctx context.Context, tx *sqlx.Tx) error {
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, publishLockKey); err != nil {
		return fmt.Errorf("publish lock: %w", translate(err))
	}
	return nil
}

// RelaxCommit lets tx commit without waiting for its WAL flush. The relay
// uses it for its publish marks: a mark lost to a database crash only means
// the event is published again, which at-least-once consumers absorb, and
// the flush wait would otherwise bound the relay's throughput.
func RelaxCommit(ctx context.Context, tx *sqlx.Tx) error {
	if _, err := tx.ExecContext(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
		return fmt.Errorf("relax commit: %w", translate(err))
	}
	return nil
}

// HasUnpublished reports whether any event waits for the relay: one cheap
// index probe, so an idle relay's poll costs a single round trip.
func HasUnpublished(ctx context.Context, q sqlx.QueryerContext) (bool, error) {
	var ok bool
	if err := sqlx.GetContext(ctx, q, &ok, `SELECT EXISTS (SELECT 1 FROM events WHERE published_at IS NULL)`); err != nil {
		return false, fmt.Errorf("outbox probe: %w", translate(err))
	}
	return ok, nil
}

const claimUnpublishedQuery = `
SELECT ` + eventColumns + `
FROM events WHERE published_at IS NULL
ORDER BY seq LIMIT $1
FOR UPDATE SKIP LOCKED`

// ClaimUnpublished locks up to limit unpublished events, oldest first,
// skipping rows another relay holds. The locks last until tx ends.
func ClaimUnpublished(ctx context.Context, tx *sqlx.Tx, limit int) ([]Event, error) {
	var out []Event
	if err := tx.SelectContext(ctx, &out, claimUnpublishedQuery, limit); err != nil {
		return nil, fmt.Errorf("claim unpublished events: %w", translate(err))
	}
	return out, nil
}

const firstWaitingQuery = `
SELECT c.subject, w.seq
FROM unnest($1::text[], $2::bigint[]) AS c(subject, max_seq)
CROSS JOIN LATERAL (
    SELECT e.seq FROM events e
    WHERE e.subject = c.subject AND e.published_at IS NULL AND e.seq < c.max_seq
      AND e.seq <> ALL($3::bigint[])
    ORDER BY e.seq LIMIT 1
) w`

// Claim is the part of a relay's claim FirstWaiting checks: one subject
// and the highest seq claimed for it.
type Claim struct {
	Subject string
	MaxSeq  int64
}

// FirstWaiting returns, for the subjects of claims, the lowest seq of an
// event that is still unpublished, older than the subject's highest claimed
// seq and not itself among claimed. Subjects with no such event are absent.
// A relay publishes a claimed event only when its seq is below this, so a
// subject's events reach Redis in seq order even when another relay holds
// an older one.
func FirstWaiting(ctx context.Context, tx *sqlx.Tx, claims []Claim, claimed []int64) (map[string]int64, error) {
	subjects := make([]string, len(claims))
	maxSeqs := make([]int64, len(claims))
	for i, c := range claims {
		subjects[i], maxSeqs[i] = c.Subject, c.MaxSeq
	}
	rows, err := tx.QueryxContext(ctx, firstWaitingQuery, pq.Array(subjects), pq.Array(maxSeqs), pq.Array(claimed))
	if err != nil {
		return nil, fmt.Errorf("first waiting events: %w", translate(err))
	}
	defer rows.Close()
	out := make(map[string]int64)
	for rows.Next() {
		var subject string
		var seq int64
		if err := rows.Scan(&subject, &seq); err != nil {
			return nil, fmt.Errorf("first waiting events: %w", err)
		}
		out[subject] = seq
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("first waiting events: %w", translate(err))
	}
	return out, nil
}

// Publication records where one event landed.
type Publication struct {
	Seq      int64
	Stream   string
	StreamID string
}

// markPublishedQuery repeats the seqs as "= ANY" so the planner looks
// them up in the seq index instead of hashing the whole event log.
const markPublishedQuery = `
UPDATE events e SET published_at = now(), stream = p.stream, stream_id = p.stream_id
FROM unnest($1::bigint[], $2::text[], $3::text[]) AS p(seq, stream, stream_id)
WHERE e.seq = p.seq AND e.seq = ANY($1::bigint[])`

// MarkPublished records that events were added to their streams.
func MarkPublished(ctx context.Context, tx *sqlx.Tx, pubs []Publication) error {
	if len(pubs) == 0 {
		return nil
	}
	seqs := make([]int64, len(pubs))
	streams := make([]string, len(pubs))
	ids := make([]string, len(pubs))
	for i, p := range pubs {
		seqs[i], streams[i], ids[i] = p.Seq, p.Stream, p.StreamID
	}
	if _, err := tx.ExecContext(ctx, markPublishedQuery, pq.Array(seqs), pq.Array(streams), pq.Array(ids)); err != nil {
		return fmt.Errorf("mark events published: %w", translate(err))
	}
	return nil
}

// Backlog describes the events still waiting for the relay.
type Backlog struct {
	Count int64 `db:"count"`
	// Oldest is when the oldest waiting event was recorded; nil when none waits.
	Oldest *time.Time `db:"oldest"`
}

const backlogQuery = `SELECT count(*) AS count, min(created_at) AS oldest FROM events WHERE published_at IS NULL`

// OutboxBacklog counts unpublished events and finds the oldest one.
func OutboxBacklog(ctx context.Context, q sqlx.QueryerContext) (Backlog, error) {
	var b Backlog
	if err := sqlx.GetContext(ctx, q, &b, backlogQuery); err != nil {
		return Backlog{}, fmt.Errorf("outbox backlog: %w", translate(err))
	}
	return b, nil
}

const publishedSinceQuery = `
SELECT ` + eventColumns + `
FROM events
WHERE published_at IS NOT NULL AND time >= $1 AND stream = ANY($2) AND seq > $3
ORDER BY seq LIMIT $4`

// PublishedSince returns up to limit published events on streams whose time
// is at or after since and whose seq is above afterSeq, in seq order. It
// pages through the event log when a consumer group replays history.
func PublishedSince(ctx context.Context, q sqlx.QueryerContext, since time.Time, streams []string, afterSeq int64, limit int) ([]Event, error) {
	var out []Event
	if err := sqlx.SelectContext(ctx, q, &out, publishedSinceQuery, since, pq.Array(streams), afterSeq, limit); err != nil {
		return nil, fmt.Errorf("published events since %s: %w", since.Format(time.RFC3339), translate(err))
	}
	return out, nil
}

const lastStreamIDQuery = `
SELECT stream_id FROM events
WHERE stream = $1 AND stream_id IS NOT NULL
ORDER BY split_part(stream_id, '-', 1)::bigint DESC, split_part(stream_id, '-', 2)::bigint DESC
LIMIT 1`

// LastStreamID returns the highest entry id recorded for stream, or "" when
// no event was published to it. It scans the stream's history, so it is
// for rare operations (creating a group that replays the log).
func LastStreamID(ctx context.Context, q sqlx.QueryerContext, stream string) (string, error) {
	var id string
	err := sqlx.GetContext(ctx, q, &id, lastStreamIDQuery, stream)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return "", nil
		}
		return "", fmt.Errorf("last entry id of %s: %w", stream, translate(err))
	}
	return id, nil
}

// TypeCount is how many events of one type there are.
type TypeCount struct {
	Type   string `db:"type"`
	Events int64  `db:"events"`
}

const publishedTypeCountsQuery = `
SELECT type, count(*) AS events FROM events
WHERE published_at IS NOT NULL AND time >= $1
GROUP BY type ORDER BY type`

// PublishedTypeCounts counts the published events since a time by type.
func PublishedTypeCounts(ctx context.Context, q sqlx.QueryerContext, since time.Time) ([]TypeCount, error) {
	out := []TypeCount{}
	if err := sqlx.SelectContext(ctx, q, &out, publishedTypeCountsQuery, since); err != nil {
		return nil, fmt.Errorf("published events by type: %w", translate(err))
	}
	return out, nil
}

const publishedOfTypesSinceQuery = `
SELECT ` + eventColumns + `
FROM events
WHERE published_at IS NOT NULL AND time >= $1 AND type = ANY($2) AND seq > $3
ORDER BY seq LIMIT $4`

// PublishedOfTypesSince returns up to limit published events of the types
// whose time is at or after since and whose seq is above afterSeq, in seq
// order.
func PublishedOfTypesSince(ctx context.Context, q sqlx.QueryerContext, since time.Time, types []string, afterSeq int64, limit int) ([]Event, error) {
	var out []Event
	if err := sqlx.SelectContext(ctx, q, &out, publishedOfTypesSinceQuery, since, pq.Array(types), afterSeq, limit); err != nil {
		return nil, fmt.Errorf("published events of types since %s: %w", since.Format(time.RFC3339), translate(err))
	}
	return out, nil
}
