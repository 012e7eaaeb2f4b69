package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// SentEmail records one mail handed to the mail server.
type SentEmail struct {
	DedupeKey string    `db:"dedupe_key"`
	Kind      string    `db:"kind"`
	Recipient string    `db:"recipient"`
	Subject   string    `db:"subject"`
	SentAt    time.Time `db:"sent_at"`
}

// EmailSent reports whether a mail with this key was sent before.
func EmailSent(ctx context.Context, q sqlx.QueryerContext, key string) (bool, error) {
	var ok bool
	if err := sqlx.GetContext(ctx, q, &ok, `SELECT EXISTS (SELECT 1 FROM sent_emails WHERE dedupe_key = $1)`, key); err != nil {
		return false, fmt.Errorf("email sent %s: %w", key, translate(err))
	}
	return ok, nil
}

// RecordEmailSent records a sent mail; a key recorded before is kept as it was.
func RecordEmailSent(ctx context.Context, q sqlx.ExtContext, e SentEmail) error {
	_, err := q.ExecContext(ctx, `
INSERT INTO sent_emails (dedupe_key, kind, recipient, subject) VALUES ($1, $2, $3, $4)
ON CONFLICT (dedupe_key) DO NOTHING`, e.DedupeKey, e.Kind, e.Recipient, e.Subject)
	if err != nil {
		return fmt.Errorf("record email %s: %w", e.DedupeKey, translate(err))
	}
	return nil
}

// CountSentEmails counts recorded mails of one kind.
func CountSentEmails(ctx context.Context, q sqlx.QueryerContext, kind string) (int, error) {
	var n int
	if err := sqlx.GetContext(ctx, q, &n, `SELECT count(*) FROM sent_emails WHERE kind = $1`, kind); err != nil {
		return 0, fmt.Errorf("count emails: %w", translate(err))
	}
	return n, nil
}
