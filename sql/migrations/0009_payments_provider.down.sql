DROP TABLE sandbox_refunds;
DROP TABLE sandbox_charges;
DROP TABLE return_refunds;
DROP TABLE provider_events;
ALTER TABLE sellers DROP COLUMN fee_bps;
ALTER TABLE sellers DROP COLUMN stripe_account;
DROP INDEX payments_charge_idx;
ALTER TABLE payments DROP COLUMN application_fee_minor;
ALTER TABLE payments DROP COLUMN destination;
DELETE FROM payments WHERE status = 'pending';
ALTER TABLE payments DROP CONSTRAINT payments_status_check;
ALTER TABLE payments ADD CONSTRAINT payments_status_check
    CHECK (status IN ('succeeded', 'failed', 'refunded'));
