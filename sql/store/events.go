package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// EventSource is the CloudEvents source of events Bazaar records.
const EventSource = "/bazaar"

// Event is one row of the event log, with where it was published. Data is the JSON payload;
// the rest are CloudEvents attributes and delivery bookkeeping.
type Event struct {
	Seq         int64           `db:"seq"`
	ID          uuid.UUID       `db:"id"`
	Type        string          `db:"type"`
	Source      string          `db:"source"`
	SpecVersion string          `db:"specversion"`
	Subject     string          `db:"subject"`
	SellerID    *uuid.UUID      `db:"seller_id"`
	DataSchema  string          `db:"dataschema"`
	Time        time.Time       `db:"time"`
	Data        json.RawMessage `db:"data"`
	RequestID   string          `db:"request_id"`
	TraceParent string          `db:"traceparent"`
	CreatedAt   time.Time       `db:"created_at"`
	PublishedAt *time.Time      `db:"published_at"`
	Stream      *string         `db:"stream"`
	StreamID    *string         `db:"stream_id"`
}

// NewEvent builds an event with a fresh UUIDv7 id and the data marshalled to
// JSON. schemaVersion becomes the dataschema ("urn:bazaar:order.created:1").
func NewEvent(typ, subject string, sellerID *uuid.UUID, schemaVersion int, data any) (Event, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return Event{}, fmt.Errorf("event id: %w", err)
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return Event{}, fmt.Errorf("marshal %s: %w", typ, err)
	}
	return Event{
		ID:          id,
		Type:        typ,
		Source:      EventSource,
		SpecVersion: "1.0",
		Subject:     subject,
		SellerID:    sellerID,
		DataSchema:  fmt.Sprintf("urn:bazaar:%s:%d", typ, schemaVersion),
		Time:        time.Now().UTC().Truncate(time.Microsecond),
		Data:        raw,
	}, nil
}

// TxObserver is told when a transaction that recorded events commits, so a
// relay in the same process can wake at once instead of waiting for its poll.
type TxObserver interface {
	EventsCommitted()
}

// insertEventsQuery records events and queues them for the relay in one
// statement: every insert into events must put its rows in the outbox too,
// or the relay never sees them.
const insertEventsQuery = `
WITH e AS (
    INSERT INTO events (id, type, source, specversion, subject, seller_id, dataschema, time, data, request_id, traceparent)
    SELECT id, type, source, specversion, subject, NULLIF(seller_id, '')::uuid, dataschema, time, data, request_id, traceparent
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                $8::timestamptz[], $9::jsonb[], $10::text[], $11::text[])
         AS x(id, type, source, specversion, subject, seller_id, dataschema, time, data, request_id, traceparent)
    RETURNING seq, time, subject
)
INSERT INTO outbox (seq, time, subject) SELECT seq, time, subject FROM e`

// InsertEvents records events in the event log and the outbox, all in one
// statement. Call it with the transaction that writes the records the
// events describe.
func InsertEvents(ctx context.Context, q sqlx.ExtContext, events ...Event) error {
	if len(events) == 0 {
		return nil
	}
	n := len(events)
	ids, types, sources, specs, subjects, sellers, schemas, times, data, rids, tps :=
		make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n),
		make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	for i := range events {
		e := &events[i]
		if e.Source == "" {
			e.Source = EventSource
		}
		if e.SpecVersion == "" {
			e.SpecVersion = "1.0"
		}
		if e.Time.IsZero() {
			e.Time = time.Now().UTC()
		}
		// PostgreSQL keeps microseconds; the event keeps exactly what is
		// stored, since its time names the partitions of its rows.
		e.Time = e.Time.Truncate(time.Microsecond)
		ids[i], types[i], sources[i], specs[i], subjects[i] = e.ID.String(), e.Type, e.Source, e.SpecVersion, e.Subject
		if e.SellerID != nil {
			sellers[i] = e.SellerID.String()
		}
		schemas[i], times[i], data[i], rids[i], tps[i] = e.DataSchema, e.Time.UTC().Format(time.RFC3339Nano), string(e.Data), e.RequestID, e.TraceParent
	}
	_, err := q.ExecContext(ctx, insertEventsQuery, pq.Array(ids), pq.Array(types), pq.Array(sources), pq.Array(specs),
		pq.Array(subjects), pq.Array(sellers), pq.Array(schemas), pq.Array(times), pq.Array(data), pq.Array(rids), pq.Array(tps))
	if err != nil {
		if n == 1 {
			return fmt.Errorf("insert event %s: %w", events[0].Type, translate(err))
		}
		return fmt.Errorf("insert %d events: %w", n, translate(err))
	}
	return nil
}

const eventsBySubjectQuery = eventSelect + `
WHERE e.subject = $1 ORDER BY e.seq`

// EventsBySubject returns every recorded event of one aggregate, oldest first.
func EventsBySubject(ctx context.Context, q sqlx.QueryerContext, subject string) ([]Event, error) {
	var out []Event
	if err := sqlx.SelectContext(ctx, q, &out, eventsBySubjectQuery, subject); err != nil {
		return nil, fmt.Errorf("events by subject: %w", translate(err))
	}
	return out, nil
}
