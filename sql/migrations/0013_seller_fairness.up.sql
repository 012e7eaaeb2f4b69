-- Per-seller operations: a pause that holds the seller's events back, and
-- the seller's own order rate limit.
--
-- paused_at/pause_reason say the seller is paused (NULL: running);
-- pause_version counts pauses and resumes, so the consumer groups applying
-- the state in Redis never let an older read undo a newer one.
ALTER TABLE sellers
    ADD COLUMN paused_at         timestamptz,
    ADD COLUMN pause_reason      text NOT NULL DEFAULT '',
    ADD COLUMN pause_version     bigint NOT NULL DEFAULT 0,
    -- order_rate and order_burst limit the orders placed for the seller,
    -- per second (NULL: no limit of its own).
    ADD COLUMN order_rate        integer CHECK (order_rate > 0),
    ADD COLUMN order_burst       integer CHECK (order_burst > 0);

CREATE INDEX sellers_paused_idx ON sellers (id) WHERE paused_at IS NOT NULL;
