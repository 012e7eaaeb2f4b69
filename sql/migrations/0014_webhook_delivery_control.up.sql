-- Seller webhooks, continued: per-endpoint ordering, redelivery by
-- generation, and the failure streak that disables an endpoint.

ALTER TABLE webhook_endpoints
    -- ordered endpoints get one delivery at a time, in recording order.
    ADD COLUMN ordered boolean NOT NULL DEFAULT false,
    -- failing_since is the first failed attempt since the last delivered
    -- one (NULL while the endpoint delivers); BAZAAR_WEBHOOK_DISABLE_AFTER
    -- past it the endpoint is disabled.
    ADD COLUMN failing_since timestamptz,
    ADD COLUMN disabled_at timestamptz;

ALTER TABLE webhook_deliveries
    -- seq is the recording order, which ordered endpoints deliver in.
    ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY,
    -- generation counts manual redeliveries; a task of an older
    -- generation finds the delivery taken over and does nothing.
    ADD COLUMN generation integer NOT NULL DEFAULT 0;

-- The head of an ordered endpoint: its oldest pending delivery.
CREATE INDEX webhook_deliveries_pending_idx ON webhook_deliveries (endpoint_id, seq)
    WHERE status = 'pending';
