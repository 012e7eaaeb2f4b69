package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
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

// eventColumns are the columns of an events row (alias e); Event's
// publication fields come from event_positions (alias p, see eventSelect).
const eventColumns = `e.seq, e.id, e.type, e.source, e.specversion, e.subject, e.seller_id, e.dataschema, e.time, e.data,
       e.request_id, e.traceparent, e.created_at`

// positionColumns fill Event's publication fields from event_positions p
// (NULL when the event is not published yet).
const positionColumns = `p.published_at, p.stream,
       CASE WHEN p.seq IS NOT NULL THEN p.ms::text || '-' || p.n::text END AS stream_id`

// eventSelect reads events with where they were published. The join on
// (seq, time) prunes to the one partition holding each event's position.
const eventSelect = `SELECT ` + eventColumns + `, ` + positionColumns + `
FROM events e LEFT JOIN event_positions p ON p.seq = e.seq AND p.time = e.time`

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

// BeginPublish prepares tx for a relay batch in one round trip: it takes
// the publish lock shared (LockPublishShared) and relaxes the commit
// (RelaxCommit).
func BeginPublish(ctx context.Context, tx *sqlx.Tx) error {
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock_shared($1), set_config('synchronous_commit', 'off', true)`, publishLockKey); err != nil {
		return fmt.Errorf("begin publish: %w", translate(err))
	}
	return nil
}

// HasUnpublished reports whether any event waits for the relay: one cheap
// probe of the outbox, so an idle relay's poll costs a single round trip.
func HasUnpublished(ctx context.Context, q sqlx.QueryerContext) (bool, error) {
	var ok bool
	if err := sqlx.GetContext(ctx, q, &ok, `SELECT EXISTS (SELECT 1 FROM outbox)`); err != nil {
		return false, fmt.Errorf("outbox probe: %w", translate(err))
	}
	return ok, nil
}

// claimUnpublishedQuery locks the oldest outbox rows and reads their events
// in one index scan of the partitions their times span (seq = ANY, the time
// bounds prune the rest at executor start). A nested-loop join costs a
// partition-pruned probe per event; a merge join would walk the log's whole
// history. The rows come in seq order within a partition; ClaimUnpublished
// sorts them.
const claimUnpublishedQuery = `
WITH c AS (SELECT seq, time FROM outbox ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED)
SELECT ` + eventColumns + `
FROM events e
WHERE e.seq = ANY(ARRAY(SELECT seq FROM c))
  AND e.time >= (SELECT min(time) FROM c) AND e.time <= (SELECT max(time) FROM c)`

// claimLaneQuery is claimUnpublishedQuery restricted to one lane: the
// outbox rows whose subject hashes to $3 modulo $2. The seq index is walked
// in order and the other lanes' rows are skipped without being locked.
const claimLaneQuery = `
WITH c AS (SELECT seq, time FROM outbox WHERE ` + laneFilter + `
           ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED)
SELECT ` + eventColumns + `
FROM events e
WHERE e.seq = ANY(ARRAY(SELECT seq FROM c))
  AND e.time >= (SELECT min(time) FROM c) AND e.time <= (SELECT max(time) FROM c)`

// laneFilter keeps the outbox rows of lane $3 of $2. hashtext is stable
// within a cluster, which is all relays sharing one database need.
const laneFilter = `(hashtext(subject) & 2147483647) % $2 = $3`

// Lane is one of Of disjoint slices of the outbox, by subject hash: every
// event of a subject is in the same lane, so lanes can publish
// concurrently without reordering any subject. The zero Lane and Of <= 1
// mean the whole outbox.
type Lane struct {
	Index, Of int
}

func (l Lane) whole() bool { return l.Of <= 1 }

// ClaimUnpublished locks up to limit outbox rows, oldest first, skipping
// rows another relay holds, and returns their events in seq order. The
// locks last until tx ends.
func ClaimUnpublished(ctx context.Context, tx *sqlx.Tx, limit int) ([]Event, error) {
	return ClaimLane(ctx, tx, limit, Lane{})
}

// ClaimLane is ClaimUnpublished for the rows of one lane.
func ClaimLane(ctx context.Context, tx *sqlx.Tx, limit int, lane Lane) ([]Event, error) {
	out := make([]Event, 0, limit)
	var err error
	if lane.whole() {
		err = tx.SelectContext(ctx, &out, claimUnpublishedQuery, limit)
	} else {
		err = tx.SelectContext(ctx, &out, claimLaneQuery, limit, lane.Of, lane.Index)
	}
	if err != nil {
		return nil, fmt.Errorf("claim unpublished events: %w", translate(err))
	}
	slices.SortFunc(out, func(a, b Event) int { return cmp.Compare(a.Seq, b.Seq) })
	return out, nil
}

// olderWaitingQuery counts the outbox rows at or below the highest claimed
// seq: when they are only the claimed ones, no claimed event has an older
// one waiting, whatever its subject.
const olderWaitingQuery = `SELECT count(*) FROM outbox WHERE seq <= $1`

// olderWaitingInLaneQuery is olderWaitingQuery within one lane: the claimed
// subjects are all in it, so the other lanes' rows cannot hold them back.
const olderWaitingInLaneQuery = `SELECT count(*) FROM outbox WHERE seq <= $1 AND ` + laneFilter

// firstWaitingQuery finds, per claimed subject, its lowest outbox seq below
// the subject's highest claimed one that is not claimed; the claimed seqs
// are hashed once (an anti-join), not compared one by one per row.
const firstWaitingQuery = `
SELECT o.subject, min(o.seq) AS seq
FROM unnest($1::text[], $2::bigint[]) AS c(subject, max_seq)
JOIN outbox o ON o.subject = c.subject AND o.seq < c.max_seq
LEFT JOIN unnest($3::bigint[]) AS k(seq) ON k.seq = o.seq
WHERE k.seq IS NULL
GROUP BY o.subject`

// Claim is the part of a relay's claim FirstWaiting checks: one subject
// and the highest seq claimed for it.
type Claim struct {
	Subject string
	MaxSeq  int64
}

// FirstWaiting returns, for the subjects of claims, the lowest seq of an
// event that is still in the outbox, older than the subject's highest
// claimed seq and not itself among claimed. Subjects with no such event are
// absent. A relay publishes a claimed event only when its seq is below
// this, so a subject's events reach Redis in seq order even when another
// relay holds an older one.
//
// It first counts the outbox up to the highest claimed seq, in one index
// range, and returns at once when only the claimed rows are there (the
// common case: one relay, or relays that did not interleave); each check is
// a statement of its own, so it sees every commit made before it.
func FirstWaiting(ctx context.Context, tx *sqlx.Tx, claims []Claim, claimed []int64) (map[string]int64, error) {
	return FirstWaitingInLane(ctx, tx, Lane{}, claims, claimed)
}

// FirstWaitingInLane is FirstWaiting for claims taken from one lane
// (ClaimLane): its first count covers only that lane's rows.
func FirstWaitingInLane(ctx context.Context, tx *sqlx.Tx, lane Lane, claims []Claim, claimed []int64) (map[string]int64, error) {
	if len(claimed) == 0 {
		return map[string]int64{}, nil
	}
	var top int64
	for _, c := range claims {
		top = max(top, c.MaxSeq)
	}
	var n int
	var err error
	if lane.whole() {
		err = tx.GetContext(ctx, &n, olderWaitingQuery, top)
	} else {
		err = tx.GetContext(ctx, &n, olderWaitingInLaneQuery, top, lane.Of, lane.Index)
	}
	if err != nil {
		return nil, fmt.Errorf("first waiting events: %w", translate(err))
	}
	if n <= len(claimed) {
		return map[string]int64{}, nil
	}
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
	Seq int64
	// Time is the event's time, which names the partitions of its rows.
	Time     time.Time
	Stream   string
	StreamID string
}

// markPublishedQuery takes the events out of the outbox and appends their
// positions, in one statement; the data-modifying CTE always runs. An event
// the consistency audit published again gets its new position in place of
// the lost one.
const markPublishedQuery = `
WITH done AS (DELETE FROM outbox WHERE seq = ANY($1::bigint[]))
INSERT INTO event_positions (seq, time, stream, ms, n)
SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::bigint[], $5::bigint[])
ON CONFLICT (seq, time) DO UPDATE SET stream = excluded.stream, ms = excluded.ms, n = excluded.n, published_at = now()`

// MarkPublished records that events were added to their streams: it deletes
// their outbox rows and records their positions. The event log's rows are
// not written.
func MarkPublished(ctx context.Context, tx *sqlx.Tx, pubs []Publication) error {
	if len(pubs) == 0 {
		return nil
	}
	seqs := make([]int64, len(pubs))
	times := make([]string, len(pubs))
	streams := make([]string, len(pubs))
	ms := make([]int64, len(pubs))
	ns := make([]int64, len(pubs))
	for i, p := range pubs {
		if p.Time.IsZero() {
			return fmt.Errorf("mark event %d published: no event time", p.Seq)
		}
		m, n, err := splitEntryID(p.StreamID)
		if err != nil {
			return fmt.Errorf("mark events published: %w", err)
		}
		seqs[i], times[i], streams[i], ms[i], ns[i] = p.Seq, p.Time.UTC().Format(time.RFC3339Nano), p.Stream, m, n
	}
	_, err := tx.ExecContext(ctx, markPublishedQuery, pq.Array(seqs), pq.Array(times), pq.Array(streams), pq.Array(ms), pq.Array(ns))
	if err != nil {
		return fmt.Errorf("mark events published: %w", translate(err))
	}
	return nil
}

// splitEntryID parses a stream entry id "ms-n".
func splitEntryID(id string) (ms, n int64, err error) {
	a, b, ok := strings.Cut(id, "-")
	if !ok {
		return 0, 0, fmt.Errorf("entry id %q: want ms-n", id)
	}
	if ms, err = strconv.ParseInt(a, 10, 64); err != nil {
		return 0, 0, fmt.Errorf("entry id %q: %w", id, err)
	}
	if n, err = strconv.ParseInt(b, 10, 64); err != nil {
		return 0, 0, fmt.Errorf("entry id %q: %w", id, err)
	}
	return ms, n, nil
}

// Backlog describes the events still waiting for the relay.
type Backlog struct {
	Count int64 `db:"count"`
	// Oldest is when the oldest waiting event was recorded; nil when none waits.
	Oldest *time.Time `db:"oldest"`
}

const backlogQuery = `
SELECT (SELECT count(*) FROM outbox) AS count,
       (SELECT e.created_at FROM outbox o JOIN events e ON e.seq = o.seq AND e.time = o.time
        ORDER BY o.seq LIMIT 1) AS oldest`

// OutboxBacklog counts the events in the outbox and finds when the oldest
// was recorded.
func OutboxBacklog(ctx context.Context, q sqlx.QueryerContext) (Backlog, error) {
	var b Backlog
	if err := sqlx.GetContext(ctx, q, &b, backlogQuery); err != nil {
		return Backlog{}, fmt.Errorf("outbox backlog: %w", translate(err))
	}
	return b, nil
}

// publishedSinceQuery walks positions in seq order (their primary key,
// merged over the partitions from since on) and reads each event beside it.
const publishedSinceQuery = `
SELECT ` + eventColumns + `, ` + positionColumns + `
FROM event_positions p JOIN events e ON e.seq = p.seq AND e.time = p.time
WHERE p.time >= $1 AND p.stream = ANY($2) AND p.seq > $3
ORDER BY p.seq LIMIT $4`

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
SELECT ms::text || '-' || n::text FROM event_positions
WHERE stream = $1
ORDER BY ms DESC, n DESC
LIMIT 1`

// LastStreamID returns the highest entry id recorded for stream, or "" when
// no event was published to it: one backward step of event_positions'
// (stream, ms, n) index per partition.
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
SELECT e.type, count(*) AS events
FROM events e JOIN event_positions p ON p.seq = e.seq AND p.time = e.time
WHERE e.time >= $1
GROUP BY e.type ORDER BY e.type`

// PublishedTypeCounts counts the published events since a time by type.
func PublishedTypeCounts(ctx context.Context, q sqlx.QueryerContext, since time.Time) ([]TypeCount, error) {
	out := []TypeCount{}
	if err := sqlx.SelectContext(ctx, q, &out, publishedTypeCountsQuery, since); err != nil {
		return nil, fmt.Errorf("published events by type: %w", translate(err))
	}
	return out, nil
}

const publishedOfTypesSinceQuery = `
SELECT ` + eventColumns + `, ` + positionColumns + `
FROM events e JOIN event_positions p ON p.seq = e.seq AND p.time = e.time
WHERE e.time >= $1 AND e.type = ANY($2) AND e.seq > $3
ORDER BY e.seq LIMIT $4`

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
