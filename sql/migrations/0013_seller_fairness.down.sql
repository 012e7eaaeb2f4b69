DROP INDEX IF EXISTS sellers_paused_idx;
ALTER TABLE sellers
    DROP COLUMN IF EXISTS paused_at,
    DROP COLUMN IF EXISTS pause_reason,
    DROP COLUMN IF EXISTS pause_version,
    DROP COLUMN IF EXISTS order_rate,
    DROP COLUMN IF EXISTS order_burst;
