-- Bookkeeping pruned by age on a schedule (scheduler/maintenance.go): each
-- batched delete finds its oldest rows through one of these indexes.
-- processed_events has processed_events_time_idx since 0002.
CREATE INDEX IF NOT EXISTS sent_emails_sent_idx ON sent_emails (sent_at);
CREATE INDEX IF NOT EXISTS task_failures_failed_idx ON task_failures (failed_at);
CREATE INDEX IF NOT EXISTS provider_events_received_idx ON provider_events (received_at);
CREATE INDEX IF NOT EXISTS mail_claims_claimed_idx ON mail_claims (claimed_at);
