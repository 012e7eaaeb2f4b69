-- Seller webhooks: the endpoints a seller registers to receive its events,
-- and one row per delivery (endpoint, event) with its latest attempt.

CREATE TABLE webhook_endpoints (
    id              uuid PRIMARY KEY,
    seller_id       uuid NOT NULL REFERENCES sellers (id) ON DELETE CASCADE,
    url             text NOT NULL,
    topics          text[] NOT NULL,
    description     text NOT NULL DEFAULT '',
    disabled        boolean NOT NULL DEFAULT false,
    disabled_reason text NOT NULL DEFAULT '',
    -- secret signs deliveries; previous_secret stays valid, and is sent as
    -- a second signature, until previous_expires_at after a rotation.
    secret              text NOT NULL,
    previous_secret     text NOT NULL DEFAULT '',
    previous_expires_at timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_seller_idx ON webhook_endpoints (seller_id, created_at, id);

CREATE TABLE webhook_deliveries (
    id              uuid PRIMARY KEY,
    endpoint_id     uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id        uuid NOT NULL,
    event_type      text NOT NULL,
    payload         bytea NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    response_status integer NOT NULL DEFAULT 0,
    latency_ms      integer NOT NULL DEFAULT 0,
    response_excerpt text NOT NULL DEFAULT '',
    last_error      text NOT NULL DEFAULT '',
    next_attempt_at timestamptz,
    -- retry_from starts the retry window (the first attempt, or a manual
    -- redelivery).
    retry_from      timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_endpoint_idx ON webhook_deliveries (endpoint_id, created_at, id);
