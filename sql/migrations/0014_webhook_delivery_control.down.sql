DROP INDEX IF EXISTS webhook_deliveries_pending_idx;
ALTER TABLE webhook_deliveries DROP COLUMN IF EXISTS generation, DROP COLUMN IF EXISTS seq;
ALTER TABLE webhook_endpoints DROP COLUMN IF EXISTS disabled_at, DROP COLUMN IF EXISTS failing_since,
    DROP COLUMN IF EXISTS ordered;
