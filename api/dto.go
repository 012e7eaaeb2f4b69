package api

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"

	"github.com/bazaarhq/bazaar/sql/store"
)

// The JSON shapes of responses. Store records have no JSON tags; these
// types are the API's contract and mirror openapi.yaml.

type listDTO[T any] struct {
	Items      []T     `json:"items"`
	NextCursor *string `json:"next_cursor"`
}

func listOf[R, T any](rows []R, next *store.Cursor, conv func(R) T) listDTO[T] {
	out := listDTO[T]{Items: make([]T, len(rows)), NextCursor: encodeCursor(next)}
	for i, r := range rows {
		out.Items[i] = conv(r)
	}
	return out
}

type sellerDTO struct {
	ID    uuid.UUID `json:"id"`
	Name  string    `json:"name"`
	Email string    `json:"email"`
	// StripeAccount is the connected account payouts go to ("" for none);
	// FeeBPS the seller's own commission (null: the marketplace's).
	StripeAccount string `json:"stripe_account"`
	FeeBPS        *int   `json:"fee_bps"`
	// PausedAt is when the seller was paused (null: running), PauseReason
	// why; OrderLimit its own order rate limit (null: none).
	PausedAt    *time.Time     `json:"paused_at"`
	PauseReason string         `json:"pause_reason"`
	OrderLimit  *orderLimitDTO `json:"order_limit"`
	CreatedAt   time.Time      `json:"created_at"`
	UpdatedAt   time.Time      `json:"updated_at"`
}

func sellerOut(s store.Seller) sellerDTO {
	return sellerDTO{
		ID: s.ID, Name: s.Name, Email: s.Email, StripeAccount: s.StripeAccount, FeeBPS: s.FeeBPS,
		PausedAt: s.PausedAt, PauseReason: s.PauseReason, OrderLimit: orderLimitOut(s),
		CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt,
	}
}

type apiKeyDTO struct {
	ID        uuid.UUID  `json:"id"`
	Role      string     `json:"role"`
	SellerID  *uuid.UUID `json:"seller_id"`
	Name      string     `json:"name"`
	Prefix    string     `json:"prefix"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at"`
	// Key is the secret, present only in the response that created it.
	Key string `json:"key,omitempty"`
}

// withoutSecret is what the idempotency record of a key creation keeps,
// and so what a replay answers: the key's metadata, not its secret.
func (k apiKeyDTO) withoutSecret() any {
	k.Key = ""
	return k
}

func apiKeyOut(k store.APIKey) apiKeyDTO {
	return apiKeyDTO{
		ID: k.ID, Role: string(k.Role), SellerID: k.SellerID, Name: k.Name, Prefix: k.KeyPrefix,
		CreatedAt: k.CreatedAt, RevokedAt: k.RevokedAt,
	}
}

type corporateAccountDTO struct {
	ID           uuid.UUID `json:"id"`
	Name         string    `json:"name"`
	BillingEmail string    `json:"billing_email"`
	VATID        string    `json:"vat_id"`
	CreatedAt    time.Time `json:"created_at"`
}

type userDTO struct {
	ID               uuid.UUID            `json:"id"`
	Email            string               `json:"email"`
	Name             string               `json:"name"`
	Country          string               `json:"country"`
	MarketingOptIn   bool                 `json:"marketing_opt_in"`
	CorporateAccount *corporateAccountDTO `json:"corporate_account"`
	LastLoginAt      *time.Time           `json:"last_login_at"`
	CreatedAt        time.Time            `json:"created_at"`
	UpdatedAt        time.Time            `json:"updated_at"`
}

func userOut(u store.User) userDTO {
	out := userDTO{
		ID: u.ID, Email: u.Email, Name: u.Name, Country: u.Country, MarketingOptIn: u.MarketingOptIn,
		LastLoginAt: u.LastLoginAt, CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt,
	}
	if a := u.CorporateAccount; a != nil {
		out.CorporateAccount = &corporateAccountDTO{ID: a.ID, Name: a.Name, BillingEmail: a.BillingEmail, VATID: a.VATID, CreatedAt: a.CreatedAt}
	}
	return out
}

type sessionDTO struct {
	UserID     uuid.UUID `json:"user_id"`
	LoggedInAt time.Time `json:"logged_in_at"`
}

type productDTO struct {
	ID          uuid.UUID         `json:"id"`
	SellerID    uuid.UUID         `json:"seller_id"`
	ParentID    *uuid.UUID        `json:"parent_id"`
	SKU         string            `json:"sku"`
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Category    string            `json:"category"`
	Attributes  map[string]string `json:"attributes"`
	PriceMinor  int64             `json:"price_minor"`
	Currency    string            `json:"currency"`
	Stock       int               `json:"stock"`
	CreatedAt   time.Time         `json:"created_at"`
	UpdatedAt   time.Time         `json:"updated_at"`
}

func productOut(p store.Product) productDTO {
	attrs := map[string]string{}
	// Attributes are written by this API as a string map only.
	_ = json.Unmarshal(p.Attributes, &attrs)
	return productDTO{
		ID: p.ID, SellerID: p.SellerID, ParentID: p.ParentID, SKU: p.SKU, Name: p.Name,
		Description: p.Description, Category: p.Category, Attributes: attrs, PriceMinor: p.PriceMinor,
		Currency: p.Currency, Stock: p.Stock, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt,
	}
}

type orderItemDTO struct {
	ID             uuid.UUID `json:"id"`
	ProductID      uuid.UUID `json:"product_id"`
	SKU            string    `json:"sku"`
	Name           string    `json:"name"`
	Quantity       int       `json:"quantity"`
	UnitPriceMinor int64     `json:"unit_price_minor"`
	LineTotalMinor int64     `json:"line_total_minor"`
}

type orderDTO struct {
	ID            uuid.UUID      `json:"id"`
	SellerID      uuid.UUID      `json:"seller_id"`
	UserID        uuid.UUID      `json:"user_id"`
	Status        string         `json:"status"`
	Currency      string         `json:"currency"`
	SubtotalMinor int64          `json:"subtotal_minor"`
	TotalMinor    int64          `json:"total_minor"`
	PaymentMethod string         `json:"payment_method"`
	ScheduledAt   *time.Time     `json:"scheduled_at"`
	CancelReason  string         `json:"cancel_reason"`
	Items         []orderItemDTO `json:"items"`
	CreatedAt     time.Time      `json:"created_at"`
	UpdatedAt     time.Time      `json:"updated_at"`
	ConfirmedAt   *time.Time     `json:"confirmed_at"`
	CancelledAt   *time.Time     `json:"cancelled_at"`
	ShippedAt     *time.Time     `json:"shipped_at"`
	DeliveredAt   *time.Time     `json:"delivered_at"`
}

func orderOut(o store.Order) orderDTO {
	out := orderDTO{
		ID: o.ID, SellerID: o.SellerID, UserID: o.UserID, Status: string(o.Status), Currency: o.Currency,
		SubtotalMinor: o.SubtotalMinor, TotalMinor: o.TotalMinor, PaymentMethod: o.PaymentMethod,
		ScheduledAt: o.ScheduledAt, CancelReason: o.CancelReason, Items: make([]orderItemDTO, len(o.Items)),
		CreatedAt: o.CreatedAt, UpdatedAt: o.UpdatedAt, ConfirmedAt: o.ConfirmedAt, CancelledAt: o.CancelledAt,
		ShippedAt: o.ShippedAt, DeliveredAt: o.DeliveredAt,
	}
	for i, it := range o.Items {
		out.Items[i] = orderItemDTO{
			ID: it.ID, ProductID: it.ProductID, SKU: it.SKU, Name: it.Name,
			Quantity: it.Quantity, UnitPriceMinor: it.UnitPriceMinor, LineTotalMinor: it.LineTotalMinor,
		}
	}
	return out
}

type returnDTO struct {
	ID          uuid.UUID  `json:"id"`
	OrderID     uuid.UUID  `json:"order_id"`
	OrderItemID uuid.UUID  `json:"order_item_id"`
	SellerID    uuid.UUID  `json:"seller_id"`
	UserID      uuid.UUID  `json:"user_id"`
	Quantity    int        `json:"quantity"`
	Reason      string     `json:"reason"`
	Status      string     `json:"status"`
	Resolution  string     `json:"resolution"`
	RefundMinor int64      `json:"refund_minor"`
	Currency    string     `json:"currency"`
	CreatedAt   time.Time  `json:"created_at"`
	ResolvedAt  *time.Time `json:"resolved_at"`
}

func returnOut(r store.Return) returnDTO {
	return returnDTO{
		ID: r.ID, OrderID: r.OrderID, OrderItemID: r.OrderItemID, SellerID: r.SellerID, UserID: r.UserID,
		Quantity: r.Quantity, Reason: r.Reason, Status: string(r.Status), Resolution: r.Resolution,
		RefundMinor: r.RefundMinor, Currency: r.Currency, CreatedAt: r.CreatedAt, ResolvedAt: r.ResolvedAt,
	}
}
