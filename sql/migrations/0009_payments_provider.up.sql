-- Payments through a real provider: charges whose outcome arrives later
-- (pending, e.g. after 3-D Secure), marketplace payouts to sellers, the
-- provider's webhook events recorded once, refunds of accepted returns, and
-- the sandbox gateway's state shared by every worker process.

ALTER TABLE payments DROP CONSTRAINT payments_status_check;
ALTER TABLE payments ADD CONSTRAINT payments_status_check
    CHECK (status IN ('pending', 'succeeded', 'failed', 'refunded'));
-- destination is the seller's connected account the charge pays out to;
-- empty means the platform kept the whole charge (the seller had none).
ALTER TABLE payments ADD COLUMN destination text NOT NULL DEFAULT '';
ALTER TABLE payments ADD COLUMN application_fee_minor bigint NOT NULL DEFAULT 0
    CHECK (application_fee_minor >= 0);
CREATE INDEX payments_charge_idx ON payments (charge_id) WHERE charge_id <> '';

-- A seller's connected account at the provider, and a commission of its
-- own in basis points (NULL: the marketplace's default).
ALTER TABLE sellers ADD COLUMN stripe_account text NOT NULL DEFAULT '';
ALTER TABLE sellers ADD COLUMN fee_bps integer CHECK (fee_bps BETWEEN 0 AND 10000);

-- Each provider webhook event, by its id, so a redelivery changes nothing.
CREATE TABLE provider_events (
    id           text PRIMARY KEY,
    type         text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);

-- One refund per accepted return.
CREATE TABLE return_refunds (
    return_id     uuid PRIMARY KEY REFERENCES returns (id) ON DELETE CASCADE,
    order_id      uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    amount_minor  bigint NOT NULL CHECK (amount_minor > 0),
    refund_id     text NOT NULL,
    refunded_at   timestamptz NOT NULL DEFAULT now()
);

-- The sandbox gateway's charges and refunds by idempotency key. Rows older
-- than the sandbox's retention are pruned, as a provider forgets keys.
CREATE TABLE sandbox_charges (
    idempotency_key  text PRIMARY KEY,
    token            text NOT NULL,
    amount_minor     bigint NOT NULL,
    currency         text NOT NULL,
    charge_id        text NOT NULL DEFAULT '',
    decline_code     text NOT NULL DEFAULT '',
    answered         boolean NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sandbox_charges_created_idx ON sandbox_charges (created_at);

CREATE TABLE sandbox_refunds (
    idempotency_key  text PRIMARY KEY,
    charge_id        text NOT NULL,
    amount_minor     bigint NOT NULL DEFAULT 0,
    refund_id        text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sandbox_refunds_created_idx ON sandbox_refunds (created_at);
