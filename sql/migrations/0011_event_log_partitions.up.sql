-- The event log becomes a table partitioned by month of the event time, the
-- relay's queue a narrow outbox table it deletes from, and the stream
-- positions of published events a narrow append-only table partitioned like
-- the log. Publishing no longer rewrites rows of the log. See "Event log,
-- outbox and positions" in docs/architecture.md.

ALTER TABLE events RENAME TO events_legacy;
ALTER TABLE events_legacy RENAME CONSTRAINT events_pkey TO events_legacy_pkey;
ALTER TABLE events_legacy RENAME CONSTRAINT events_seq_key TO events_legacy_seq_key;
DROP INDEX events_unpublished_idx;
DROP INDEX events_subject_idx;
DROP INDEX events_type_time_idx;
DROP INDEX events_seller_idx;
DROP INDEX events_unpublished_subject_idx;
DROP INDEX events_time_idx;
DROP INDEX events_stream_pos_idx;

-- seq keeps its sequence: seq order is commit order per subject, as before.
CREATE TABLE events (
    seq           bigint NOT NULL DEFAULT nextval('events_seq_seq'),
    id            uuid NOT NULL,
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
    PRIMARY KEY (seq, time)
) PARTITION BY RANGE (time);
ALTER SEQUENCE events_seq_seq OWNED BY events.seq;
CREATE INDEX events_subject_idx ON events (subject, seq);
CREATE INDEX events_type_time_idx ON events (type, time);
CREATE TABLE events_default PARTITION OF events DEFAULT;

-- Where each published event landed: stream key and entry id ms-n. One row
-- per event, in the partition of the event's own time.
CREATE TABLE event_positions (
    seq           bigint NOT NULL,
    time          timestamptz NOT NULL,
    stream        text NOT NULL,
    ms            bigint NOT NULL,
    n             bigint NOT NULL,
    published_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (seq, time)
) PARTITION BY RANGE (time);
CREATE INDEX event_positions_stream_idx ON event_positions (stream, ms, n);
CREATE TABLE event_positions_default PARTITION OF event_positions DEFAULT;

-- The relay's queue: events recorded and not yet published. Rows are
-- inserted with their event and deleted once published, so the table stays
-- short; vacuum it after every 10,000 dead rows whatever its size.
CREATE TABLE outbox (
    seq      bigint PRIMARY KEY,
    time     timestamptz NOT NULL,
    subject  text NOT NULL
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000,
        autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 10000);
CREATE INDEX outbox_subject_idx ON outbox (subject, seq);

-- The newest upper bound of a partition dropped (or detached) for retention:
-- the log holds no event older than this.
CREATE TABLE event_log_horizon (
    singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    expired_before  timestamptz NOT NULL
);

-- event_log_ensure_partition makes sure the month holding at has a partition
-- of events and of event_positions. A new partition is created detached,
-- filled with the rows of its range that sit in the default partition (none
-- when the scheduler keeps ahead), and attached, which locks the parent only
-- in SHARE UPDATE EXCLUSIVE mode: writers do not wait. Returns the number of
-- partitions created (0, 1 or 2).
CREATE FUNCTION event_log_ensure_partition(at timestamptz) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    lo_utc   timestamp := date_trunc('month', at AT TIME ZONE 'UTC');
    lo       timestamptz := lo_utc AT TIME ZONE 'UTC';
    hi       timestamptz := (lo_utc + interval '1 month') AT TIME ZONE 'UTC';
    suffix   text := to_char(lo_utc, '"_y"YYYY"m"MM');
    parent   text;
    part     text;
    created  integer := 0;
BEGIN
    FOREACH parent IN ARRAY ARRAY['events', 'event_positions'] LOOP
        part := parent || suffix;
        CONTINUE WHEN to_regclass(part) IS NOT NULL;
        EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING CONSTRAINTS INCLUDING STORAGE)', part, parent);
        EXECUTE format('WITH m AS (DELETE FROM %I WHERE time >= $1 AND time < $2 RETURNING *) INSERT INTO %I SELECT * FROM m',
                       parent || '_default', part) USING lo, hi;
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', parent, part, lo, hi);
        created := created + 1;
    END LOOP;
    RETURN created;
END
$$;

-- Partitions for every month that has events, and for this month and the
-- next three (the scheduler keeps ahead from here on).
SELECT event_log_ensure_partition(m)
FROM (
    SELECT DISTINCT date_trunc('month', time AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS m FROM events_legacy
    UNION
    SELECT now() + make_interval(months => k) FROM generate_series(0, 3) AS k
) months
ORDER BY m;

INSERT INTO events (seq, id, type, source, specversion, subject, seller_id, dataschema, time, data,
                    request_id, traceparent, created_at)
SELECT seq, id, type, source, specversion, subject, seller_id, dataschema, time, data,
       request_id, traceparent, created_at
FROM events_legacy;

INSERT INTO event_positions (seq, time, stream, ms, n, published_at)
SELECT seq, time, stream, split_part(stream_id, '-', 1)::bigint, split_part(stream_id, '-', 2)::bigint, published_at
FROM events_legacy
WHERE published_at IS NOT NULL AND stream IS NOT NULL AND stream_id IS NOT NULL;

INSERT INTO outbox (seq, time, subject)
SELECT seq, time, subject FROM events_legacy
WHERE published_at IS NULL;

DROP TABLE events_legacy;
