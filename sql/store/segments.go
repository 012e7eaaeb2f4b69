package store

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// SegmentFacts are what a user's customer segments are computed from: the
// registration data and the history of orders that went through.
type SegmentFacts struct {
	UserID     uuid.UUID `db:"user_id"`
	Corporate  bool      `db:"corporate"`
	Registered time.Time `db:"registered"`
	// Orders counts orders confirmed, shipped or delivered.
	Orders int `db:"orders"`
	// SpentMinor is the largest per-currency total of those orders.
	SpentMinor int64 `db:"spent_minor"`
}

const segmentFactsQuery = `
SELECT u.id AS user_id, u.corporate_account_id IS NOT NULL AS corporate, u.created_at AS registered,
       (SELECT count(*) FROM orders o WHERE o.user_id = u.id AND o.status IN ('confirmed', 'shipped', 'delivered')) AS orders,
       coalesce((SELECT max(t) FROM (SELECT sum(o.total_minor) AS t FROM orders o
                 WHERE o.user_id = u.id AND o.status IN ('confirmed', 'shipped', 'delivered')
                 GROUP BY o.currency) s), 0) AS spent_minor
FROM users u WHERE u.id = $1
FOR UPDATE OF u`

// UserSegmentFacts reads the facts of one user and locks the user's row
// until the transaction ends, so two evaluations of one user run one after
// the other and the later one sees the later facts. ErrNotFound when there
// is no such user.
func UserSegmentFacts(ctx context.Context, q sqlx.QueryerContext, userID uuid.UUID) (SegmentFacts, error) {
	var f SegmentFacts
	if err := sqlx.GetContext(ctx, q, &f, segmentFactsQuery, userID); err != nil {
		return SegmentFacts{}, fmt.Errorf("segment facts %s: %w", userID, translate(err))
	}
	return f, nil
}

// UserSegments lists the segments a user is in, sorted.
func UserSegments(ctx context.Context, q sqlx.QueryerContext, userID uuid.UUID) ([]string, error) {
	out := []string{}
	if err := sqlx.SelectContext(ctx, q, &out, `SELECT segment FROM user_segments WHERE user_id = $1 ORDER BY segment`, userID); err != nil {
		return nil, fmt.Errorf("user segments %s: %w", userID, translate(err))
	}
	return out, nil
}

// SetUserSegments makes a user's segments exactly segs, keeping the
// assignment time of those that stay, and reports whether anything
// changed. Call it in the transaction that read the facts.
func SetUserSegments(ctx context.Context, tx sqlx.ExtContext, userID uuid.UUID, segs []string) (bool, error) {
	before, err := UserSegments(ctx, tx, userID)
	if err != nil {
		return false, err
	}
	want := append([]string{}, segs...) // never nil: a nil array would match nothing below
	slices.Sort(want)
	want = slices.Compact(want)
	if slices.Equal(before, want) {
		return false, nil
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM user_segments WHERE user_id = $1 AND NOT (segment = ANY($2))`, userID, pq.Array(want)); err != nil {
		return false, fmt.Errorf("set segments of %s: %w", userID, translate(err))
	}
	if _, err := tx.ExecContext(ctx, `
INSERT INTO user_segments (user_id, segment) SELECT $1, unnest($2::text[])
ON CONFLICT (user_id, segment) DO NOTHING`, userID, pq.Array(want)); err != nil {
		return false, fmt.Errorf("set segments of %s: %w", userID, translate(err))
	}
	return true, nil
}
