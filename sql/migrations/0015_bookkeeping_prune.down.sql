DROP INDEX IF EXISTS mail_claims_claimed_idx;
DROP INDEX IF EXISTS provider_events_received_idx;
DROP INDEX IF EXISTS task_failures_failed_idx;
DROP INDEX IF EXISTS sent_emails_sent_idx;
