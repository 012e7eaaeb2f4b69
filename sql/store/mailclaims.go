package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
)

// ClaimEmail claims the sending of the mail with this key for claim. It
// succeeds when no claim exists or the existing one was made more than ttl
// ago (by the database clock); otherwise it reports false and when the
// standing claim was made.
func ClaimEmail(ctx context.Context, q sqlx.ExtContext, key string, claim uuid.UUID, ttl time.Duration) (bool, time.Time, error) {
	var at time.Time
	err := sqlx.GetContext(ctx, q, &at, `
INSERT INTO mail_claims (dedupe_key, claim_id) VALUES ($1, $2)
ON CONFLICT (dedupe_key) DO UPDATE SET claim_id = EXCLUDED.claim_id, claimed_at = now()
WHERE mail_claims.claimed_at < now() - make_interval(secs => $3)
RETURNING claimed_at`, key, claim, ttl.Seconds())
	if err == nil {
		return true, at, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return false, time.Time{}, fmt.Errorf("claim email %s: %w", key, translate(err))
	}
	err = sqlx.GetContext(ctx, q, &at, `SELECT claimed_at FROM mail_claims WHERE dedupe_key = $1`, key)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return false, time.Time{}, fmt.Errorf("claim email %s: %w", key, translate(err))
	}
	return false, at, nil
}

// ReleaseEmailClaim deletes claim's claim on the mail with this key; a
// claim taken over by another attempt is left alone.
func ReleaseEmailClaim(ctx context.Context, q sqlx.ExecerContext, key string, claim uuid.UUID) error {
	if _, err := q.ExecContext(ctx, `DELETE FROM mail_claims WHERE dedupe_key = $1 AND claim_id = $2`, key, claim); err != nil {
		return fmt.Errorf("release email claim %s: %w", key, translate(err))
	}
	return nil
}
