package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

const pauseSellerQuery = `
UPDATE sellers SET
    paused_at = coalesce(paused_at, now()),
    pause_reason = $2,
    pause_version = pause_version + CASE WHEN paused_at IS NULL THEN 1 ELSE 0 END,
    updated_at = now()
WHERE id = $1
RETURNING ` + sellerColumns

// PauseSeller marks a seller paused with reason and returns it as stored;
// pausing a paused seller only changes the reason. ErrNotFound when there
// is no such seller.
func PauseSeller(ctx context.Context, q sqlx.QueryerContext, id uuid.UUID, reason string) (Seller, error) {
	var s Seller
	if err := sqlx.GetContext(ctx, q, &s, pauseSellerQuery, id, reason); err != nil {
		return Seller{}, fmt.Errorf("pause seller %s: %w", id, translate(err))
	}
	return s, nil
}

const resumeSellerQuery = `
UPDATE sellers SET
    pause_version = pause_version + CASE WHEN paused_at IS NULL THEN 0 ELSE 1 END,
    paused_at = NULL,
    pause_reason = '',
    updated_at = now()
WHERE id = $1
RETURNING ` + sellerColumns

// ResumeSeller clears a seller's pause and returns it as stored; resuming
// a running seller changes nothing. ErrNotFound when there is no such
// seller.
func ResumeSeller(ctx context.Context, q sqlx.QueryerContext, id uuid.UUID) (Seller, error) {
	var s Seller
	if err := sqlx.GetContext(ctx, q, &s, resumeSellerQuery, id); err != nil {
		return Seller{}, fmt.Errorf("resume seller %s: %w", id, translate(err))
	}
	return s, nil
}

// PauseState is a seller's pause as the consumer groups apply it.
type PauseState struct {
	SellerID uuid.UUID `db:"id"`
	Name     string    `db:"name"`
	Paused   bool      `db:"paused"`
	Version  int64     `db:"pause_version"`
}

const pauseStatesQuery = `
SELECT id, name, paused_at IS NOT NULL AS paused, pause_version FROM sellers
WHERE paused_at IS NOT NULL OR id = ANY($1)
ORDER BY id`

// PauseStates returns the pause state of every paused seller and of the
// sellers in also (the ones the groups still hold back), paused or not.
func PauseStates(ctx context.Context, q sqlx.QueryerContext, also []uuid.UUID) ([]PauseState, error) {
	ids := make([]string, len(also))
	for i, id := range also {
		ids[i] = id.String()
	}
	var out []PauseState
	if err := sqlx.SelectContext(ctx, q, &out, pauseStatesQuery, pq.Array(ids)); err != nil {
		return nil, fmt.Errorf("pause states: %w", translate(err))
	}
	return out, nil
}

// SellerOrderLimit is a seller's own limit on the orders placed for it:
// Rate per second, Burst at once (0: Rate). The zero value is no limit.
type SellerOrderLimit struct {
	Rate, Burst int
}

const setSellerOrderLimitQuery = `
UPDATE sellers SET order_rate = $2, order_burst = $3, updated_at = now()
WHERE id = $1
RETURNING ` + sellerColumns

// SetSellerOrderLimit sets (or with a zero limit clears) a seller's order
// limit and returns the seller as stored; ErrNotFound when there is none.
func SetSellerOrderLimit(ctx context.Context, q sqlx.QueryerContext, id uuid.UUID, l SellerOrderLimit) (Seller, error) {
	var rate, burst *int
	if l.Rate > 0 {
		rate = &l.Rate
		if l.Burst > 0 {
			burst = &l.Burst
		}
	}
	var s Seller
	if err := sqlx.GetContext(ctx, q, &s, setSellerOrderLimitQuery, id, rate, burst); err != nil {
		return Seller{}, fmt.Errorf("set order limit of seller %s: %w", id, translate(err))
	}
	return s, nil
}

const sellerPublishedSinceQuery = `
SELECT ` + eventColumns + `, ` + positionColumns + `
FROM events e JOIN event_positions p ON p.seq = e.seq AND p.time = e.time
WHERE e.seller_id = $1 AND e.seq > $4 AND e.time >= $2 AND p.stream = ANY($3)
ORDER BY e.seq LIMIT $5`

// SellerPublishedSince returns up to limit published events of one seller
// on streams whose time is at or after since and whose seq is above
// afterSeq, in seq order: the pages of a per-seller replay.
func SellerPublishedSince(ctx context.Context, q sqlx.QueryerContext, seller uuid.UUID, since time.Time, streams []string, afterSeq int64, limit int) ([]Event, error) {
	var out []Event
	if err := sqlx.SelectContext(ctx, q, &out, sellerPublishedSinceQuery, seller, since, pq.Array(streams), afterSeq, limit); err != nil {
		return nil, fmt.Errorf("published events of seller %s since %s: %w", seller, since.Format(time.RFC3339), translate(err))
	}
	return out, nil
}

const pausedSellersQuery = `SELECT ` + sellerColumns + ` FROM sellers WHERE paused_at IS NOT NULL ORDER BY paused_at, id`

// PausedSellers returns the paused sellers, the longest paused first.
func PausedSellers(ctx context.Context, q sqlx.QueryerContext) ([]Seller, error) {
	var out []Seller
	if err := sqlx.SelectContext(ctx, q, &out, pausedSellersQuery); err != nil {
		return nil, fmt.Errorf("paused sellers: %w", translate(err))
	}
	return out, nil
}

const runningSellersQuery = `SELECT ` + sellerColumns + ` FROM sellers WHERE paused_at IS NULL ORDER BY name, id LIMIT $1`

// RunningSellers returns up to limit sellers that are not paused, by name.
func RunningSellers(ctx context.Context, q sqlx.QueryerContext, limit int) ([]Seller, error) {
	var out []Seller
	if err := sqlx.SelectContext(ctx, q, &out, runningSellersQuery, limit); err != nil {
		return nil, fmt.Errorf("running sellers: %w", translate(err))
	}
	return out, nil
}
