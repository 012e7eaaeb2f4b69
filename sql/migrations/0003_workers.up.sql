-- State of the services the workers run: stock reservations, payments,
-- points, customer segments, follow-up checks, sent mail and dead tasks.
-- Every table here is keyed so that a repeated task changes nothing twice.

-- One reservation per order. status moves reserved -> released (order
-- cancelled); failed records that the order could not be reserved, so a
-- repeated reserve task answers the same way.
CREATE TABLE inventory_reservations (
    order_id     uuid PRIMARY KEY REFERENCES orders (id) ON DELETE CASCADE,
    status       text NOT NULL CHECK (status IN ('reserved', 'released', 'failed')),
    reason       text NOT NULL DEFAULT '',
    reserved_at  timestamptz NOT NULL DEFAULT now(),
    released_at  timestamptz
);

-- One restock per accepted return.
CREATE TABLE inventory_restocks (
    return_id     uuid PRIMARY KEY REFERENCES returns (id) ON DELETE CASCADE,
    product_id    uuid NOT NULL REFERENCES products (id),
    quantity      integer NOT NULL CHECK (quantity > 0),
    restocked_at  timestamptz NOT NULL DEFAULT now()
);

-- One payment per order; the gateway's idempotency key is derived from the
-- order, so a retried charge never charges twice.
CREATE TABLE payments (
    id               uuid PRIMARY KEY,
    order_id         uuid NOT NULL UNIQUE REFERENCES orders (id) ON DELETE CASCADE,
    status           text NOT NULL CHECK (status IN ('succeeded', 'failed', 'refunded')),
    amount_minor     bigint NOT NULL CHECK (amount_minor >= 0),
    currency         char(3) NOT NULL,
    gateway          text NOT NULL,
    charge_id        text NOT NULL DEFAULT '',
    decline_code     text NOT NULL DEFAULT '',
    idempotency_key  text NOT NULL,
    refund_id        text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now(),
    refunded_at      timestamptz
);

-- A points balance per user and the ledger that explains it. source_key
-- (e.g. "grant:<order id>") makes every movement happen once.
CREATE TABLE points_accounts (
    user_id     uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    balance     bigint NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE points_ledger (
    id          bigserial PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES points_accounts (user_id) ON DELETE CASCADE,
    delta       bigint NOT NULL,
    reason      text NOT NULL,
    source_key  text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX points_ledger_user_idx ON points_ledger (user_id, id);

CREATE TABLE user_segments (
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    segment      text NOT NULL CHECK (segment IN ('new', 'repeat', 'corporate', 'high_value')),
    assigned_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, segment)
);
CREATE INDEX user_segments_segment_idx ON user_segments (segment, user_id);

-- Outcome of each deferred check of an order (kind: followup, reminder).
CREATE TABLE order_followups (
    order_id    uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    kind        text NOT NULL,
    outcome     text NOT NULL,
    checked_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, kind)
);

-- Mail already sent, by a key derived from what caused it, so a task run
-- again (after a redelivered event or a person pressing Run) sends once.
CREATE TABLE sent_emails (
    dedupe_key  text PRIMARY KEY,
    kind        text NOT NULL,
    recipient   text NOT NULL,
    subject     text NOT NULL,
    sent_at     timestamptz NOT NULL DEFAULT now()
);

-- Tasks whose last attempt failed: retries exhausted or a permanent error.
-- asynq keeps archived tasks for a while; this is the durable record.
CREATE TABLE task_failures (
    id         bigserial PRIMARY KEY,
    task_id    text NOT NULL,
    task_type  text NOT NULL,
    queue      text NOT NULL,
    payload    bytea NOT NULL,
    error      text NOT NULL,
    retried    integer NOT NULL,
    max_retry  integer NOT NULL,
    failed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX task_failures_type_idx ON task_failures (task_type, failed_at DESC);
CREATE INDEX task_failures_task_idx ON task_failures (task_id);
