package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
)

// Seller is a merchant selling on the marketplace.
type Seller struct {
	ID    uuid.UUID `db:"id"`
	Name  string    `db:"name"`
	Email string    `db:"email"`
	// StripeAccount is the seller's connected account ("acct_..."), where
	// its charges pay out; empty when the seller has none yet.
	StripeAccount string `db:"stripe_account"`
	// FeeBPS overrides the marketplace's commission for this seller, in
	// basis points (nil: the default).
	FeeBPS *int `db:"fee_bps"`
	// PausedAt is when an operator paused the seller (nil: running), and
	// PauseReason why. PauseVersion counts pauses and resumes.
	PausedAt     *time.Time `db:"paused_at"`
	PauseReason  string     `db:"pause_reason"`
	PauseVersion int64      `db:"pause_version"`
	// OrderRate and OrderBurst limit the orders placed for the seller per
	// second (nil: no limit of its own).
	OrderRate  *int      `db:"order_rate"`
	OrderBurst *int      `db:"order_burst"`
	CreatedAt  time.Time `db:"created_at"`
	UpdatedAt  time.Time `db:"updated_at"`
}

const sellerColumns = `id, name, email, stripe_account, fee_bps, paused_at, pause_reason, pause_version, order_rate, order_burst, created_at, updated_at`

const insertSellerQuery = `
INSERT INTO sellers (id, name, email) VALUES ($1, $2, $3)
RETURNING ` + sellerColumns

// CreateSeller inserts a seller with a fresh UUIDv7 id and returns it as stored.
func CreateSeller(ctx context.Context, q sqlx.QueryerContext, name, email string) (Seller, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return Seller{}, fmt.Errorf("seller id: %w", err)
	}
	var s Seller
	if err := sqlx.GetContext(ctx, q, &s, insertSellerQuery, id, name, email); err != nil {
		return Seller{}, fmt.Errorf("create seller: %w", translate(err))
	}
	return s, nil
}

const getSellerQuery = `SELECT ` + sellerColumns + ` FROM sellers WHERE id = $1`

// GetSeller reads one seller; ErrNotFound when there is none.
func GetSeller(ctx context.Context, q sqlx.QueryerContext, id uuid.UUID) (Seller, error) {
	var s Seller
	if err := sqlx.GetContext(ctx, q, &s, getSellerQuery, id); err != nil {
		return Seller{}, fmt.Errorf("get seller %s: %w", id, translate(err))
	}
	return s, nil
}

const listSellersQuery = `
SELECT ` + sellerColumns + ` FROM sellers
WHERE ($1::timestamptz IS NULL OR (created_at, id) > ($1, $2))
ORDER BY created_at, id LIMIT $3`

// ListSellers returns one page of sellers, oldest first, and the cursor of
// the next page (nil on the last).
func ListSellers(ctx context.Context, q sqlx.QueryerContext, p Page) ([]Seller, *Cursor, error) {
	t, id := cursorArgs(p.After)
	var out []Seller
	if err := sqlx.SelectContext(ctx, q, &out, listSellersQuery, t, id, p.limit()+1); err != nil {
		return nil, nil, fmt.Errorf("list sellers: %w", translate(err))
	}
	rows, next := pageOf(out, p.limit(), func(s Seller) Cursor { return Cursor{s.CreatedAt, s.ID} })
	return rows, next, nil
}

// cursorArgs turns a cursor into query arguments, NULLs for the first page.
func cursorArgs(c *Cursor) (*time.Time, uuid.NullUUID) {
	if c == nil {
		return nil, uuid.NullUUID{}
	}
	t := c.CreatedAt
	return &t, uuid.NullUUID{UUID: c.ID, Valid: true}
}

// SellerEventData is the data of seller.* events.
type SellerEventData struct {
	SellerID  uuid.UUID `json:"seller_id"`
	Name      string    `json:"name"`
	Email     string    `json:"email"`
	CreatedAt time.Time `json:"created_at"`
}

// NewSellerEvent builds a seller event (seller.created) carrying the seller.
func NewSellerEvent(typ string, s Seller) (Event, error) {
	return NewEvent(typ, s.ID.String(), &s.ID, 1, SellerEventData{
		SellerID: s.ID, Name: s.Name, Email: s.Email, CreatedAt: s.CreatedAt,
	})
}

// SellerPayout is a change to how a seller is paid: nil fields stay as
// they are; ClearFee drops the seller's own commission.
type SellerPayout struct {
	StripeAccount *string
	FeeBPS        *int
	ClearFee      bool
}

const updateSellerPayoutQuery = `
UPDATE sellers SET
    stripe_account = coalesce($2, stripe_account),
    fee_bps = CASE WHEN $4 THEN NULL ELSE coalesce($3, fee_bps) END,
    updated_at = now()
WHERE id = $1
RETURNING ` + sellerColumns

// UpdateSellerPayout changes a seller's connected account or commission
// and returns the seller as stored; ErrNotFound when there is none.
func UpdateSellerPayout(ctx context.Context, q sqlx.QueryerContext, id uuid.UUID, p SellerPayout) (Seller, error) {
	var s Seller
	if err := sqlx.GetContext(ctx, q, &s, updateSellerPayoutQuery, id, p.StripeAccount, p.FeeBPS, p.ClearFee); err != nil {
		return Seller{}, fmt.Errorf("update seller %s: %w", id, translate(err))
	}
	return s, nil
}
