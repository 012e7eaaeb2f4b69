-- Effectively-once bookkeeping for consumer-group handlers that write to
-- PostgreSQL: a handler records (group, event) in its own transaction, so a
-- redelivered event finds its row and changes nothing twice.
CREATE TABLE processed_events (
    group_name    text NOT NULL CHECK (group_name <> ''),
    event_id      uuid NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_name, event_id)
);
CREATE INDEX processed_events_time_idx ON processed_events (processed_at);

-- The relay checks, per subject, that no older event is still waiting before
-- it publishes a newer one; this keeps that check off the full history.
CREATE INDEX events_unpublished_subject_idx ON events (subject, seq) WHERE published_at IS NULL;

-- Replay "from a time" walks published events in seq order from a time on.
CREATE INDEX events_time_idx ON events (time);
