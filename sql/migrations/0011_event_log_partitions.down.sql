-- Back to one events table that is both outbox and log. Partitions detached
-- for an archive (BAZAAR_EVENT_ARCHIVE=detach) are left alone.

CREATE TABLE events_legacy (
    seq           bigint NOT NULL UNIQUE,
    id            uuid PRIMARY KEY,
    type          text NOT NULL CHECK (type ~ '^[a-z0-9_]+(\.[a-z0-9_]+)+$'),
    source        text NOT NULL,
    specversion   text NOT NULL DEFAULT '1.0',
    subject       text NOT NULL,
    seller_id     uuid,
    dataschema    text NOT NULL DEFAULT '',
    time          timestamptz NOT NULL DEFAULT now(),
    data          jsonb NOT NULL,
    request_id    text NOT NULL DEFAULT '',
    traceparent   text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz,
    stream        text,
    stream_id     text
);

INSERT INTO events_legacy (seq, id, type, source, specversion, subject, seller_id, dataschema, time, data,
                           request_id, traceparent, created_at, published_at, stream, stream_id)
SELECT e.seq, e.id, e.type, e.source, e.specversion, e.subject, e.seller_id, e.dataschema, e.time, e.data,
       e.request_id, e.traceparent, e.created_at,
       CASE WHEN o.seq IS NULL THEN p.published_at END,
       CASE WHEN o.seq IS NULL THEN p.stream END,
       CASE WHEN o.seq IS NULL THEN p.ms || '-' || p.n END
FROM events e
LEFT JOIN event_positions p ON p.seq = e.seq AND p.time = e.time
LEFT JOIN outbox o ON o.seq = e.seq;

ALTER SEQUENCE events_seq_seq OWNED BY events_legacy.seq;
ALTER TABLE events_legacy ALTER COLUMN seq SET DEFAULT nextval('events_seq_seq');

DROP FUNCTION event_log_ensure_partition(timestamptz);
DROP TABLE event_log_horizon;
DROP TABLE outbox;
DROP TABLE event_positions;
DROP TABLE events;

ALTER TABLE events_legacy RENAME TO events;
ALTER TABLE events RENAME CONSTRAINT events_legacy_pkey TO events_pkey;
ALTER TABLE events RENAME CONSTRAINT events_legacy_seq_key TO events_seq_key;
CREATE INDEX events_unpublished_idx ON events (seq) WHERE published_at IS NULL;
CREATE INDEX events_subject_idx ON events (subject, seq);
CREATE INDEX events_type_time_idx ON events (type, time);
CREATE INDEX events_seller_idx ON events (seller_id, seq) WHERE seller_id IS NOT NULL;
CREATE INDEX events_unpublished_subject_idx ON events (subject, seq) WHERE published_at IS NULL;
CREATE INDEX events_time_idx ON events (time);
CREATE INDEX events_stream_pos_idx ON events (
    stream,
    (split_part(stream_id, '-', 1)::numeric),
    (split_part(stream_id, '-', 2)::numeric)
) WHERE stream_id IS NOT NULL;
