-- A mail about to be handed to the SMTP server. The claim is written before
-- the hand-off and deleted in the transaction that records the mail in
-- sent_emails, so a retry that finds a fresh claim knows another attempt may
-- have sent the mail and waits instead of sending it again. A claim older
-- than the workers' claim TTL belongs to an attempt that died mid-send.
CREATE TABLE mail_claims (
    dedupe_key text PRIMARY KEY,
    claim_id   uuid NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now()
);
