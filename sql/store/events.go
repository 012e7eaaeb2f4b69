package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
)

// EventSource is the CloudEvents source of events Bazaar records.
const EventSource = "/bazaar"

// Event is one row of the outbox and event log. Data is the JSON payload;
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
		Time:        time.Now().UTC(),
		Data:        raw,
	}, nil
}

// TxObserver is told when a transaction that recorded events commits, so a
// relay in the same process can wake at once instead of waiting for its poll.
type TxObserver interface {
	EventsCommitted()
}

// jsonb parameters are passed as text (CAST ... AS text): with lib/pq's
// binary_parameters, which PgBouncer's transaction pooling needs, a []byte
// goes in binary format, and binary jsonb wants a version byte first.
const insertEventQuery = `
INSERT INTO events (id, type, source, specversion, subject, seller_id, dataschema, time, data, request_id, traceparent)
VALUES (:id, :type, :source, :specversion, :subject, :seller_id, :dataschema, :time, CAST(CAST(:data AS text) AS jsonb), :request_id, :traceparent)`

// InsertEvents records events in the outbox. Call it with the transaction
// that writes the records the events describe.
func InsertEvents(ctx context.Context, q sqlx.ExtContext, events ...Event) error {
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
		if _, err := sqlx.NamedExecContext(ctx, q, insertEventQuery, e); err != nil {
			return fmt.Errorf("insert event %s: %w", e.Type, translate(err))
		}
	}
	return nil
}

const eventsBySubjectQuery = `
SELECT seq, id, type, source, specversion, subject, seller_id, dataschema, time, data,
       request_id, traceparent, created_at, published_at, stream, stream_id
FROM events WHERE subject = $1 ORDER BY seq`

// EventsBySubject returns every recorded event of one aggregate, oldest first.
func EventsBySubject(ctx context.Context, q sqlx.QueryerContext, subject string) ([]Event, error) {
	var out []Event
	if err := sqlx.SelectContext(ctx, q, &out, eventsBySubjectQuery, subject); err != nil {
		return nil, fmt.Errorf("events by subject: %w", translate(err))
	}
	return out, nil
}
