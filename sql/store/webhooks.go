package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// WebhookEndpoint is a URL a seller registered to receive the events whose
// types match one of Topics.
type WebhookEndpoint struct {
	ID             uuid.UUID      `db:"id"`
	SellerID       uuid.UUID      `db:"seller_id"`
	URL            string         `db:"url"`
	Topics         pq.StringArray `db:"topics"`
	Description    string         `db:"description"`
	Disabled       bool           `db:"disabled"`
	DisabledReason string         `db:"disabled_reason"`
	// DisabledAt is when the endpoint was last disabled (nil while enabled).
	DisabledAt *time.Time `db:"disabled_at"`
	// Ordered endpoints receive one delivery at a time, in recording order.
	Ordered bool `db:"ordered"`
	// FailingSince is the first failed attempt since the endpoint last
	// accepted a delivery; nil while it delivers.
	FailingSince      *time.Time `db:"failing_since"`
	Secret            string     `db:"secret"`
	PreviousSecret    string     `db:"previous_secret"`
	PreviousExpiresAt *time.Time `db:"previous_expires_at"`
	CreatedAt         time.Time  `db:"created_at"`
	UpdatedAt         time.Time  `db:"updated_at"`
}

// Secrets returns the secrets that sign a delivery at now: the current one
// and, during a rotation window, the previous one.
func (e WebhookEndpoint) Secrets(now time.Time) []string {
	s := []string{e.Secret}
	if e.PreviousSecret != "" && e.PreviousExpiresAt != nil && now.Before(*e.PreviousExpiresAt) {
		s = append(s, e.PreviousSecret)
	}
	return s
}

const webhookEndpointColumns = `id, seller_id, url, topics, description, disabled, disabled_reason,
disabled_at, ordered, failing_since, secret, previous_secret, previous_expires_at, created_at, updated_at`

// CreateWebhookEndpoint stores a new endpoint (its ID, SellerID, URL,
// Topics, Description, Ordered and Secret) and returns it as stored.
func CreateWebhookEndpoint(ctx context.Context, q sqlx.ExtContext, e WebhookEndpoint) (WebhookEndpoint, error) {
	const query = `INSERT INTO webhook_endpoints (id, seller_id, url, topics, description, secret, ordered)
VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ` + webhookEndpointColumns
	var out WebhookEndpoint
	if err := sqlx.GetContext(ctx, q, &out, query, e.ID, e.SellerID, e.URL, e.Topics, e.Description, e.Secret, e.Ordered); err != nil {
		return WebhookEndpoint{}, fmt.Errorf("create webhook endpoint: %w", translate(err))
	}
	return out, nil
}

// GetWebhookEndpoint returns the endpoint id of seller, or ErrNotFound.
func GetWebhookEndpoint(ctx context.Context, q sqlx.QueryerContext, sellerID, id uuid.UUID) (WebhookEndpoint, error) {
	const query = `SELECT ` + webhookEndpointColumns + ` FROM webhook_endpoints WHERE id = $1 AND seller_id = $2`
	var out WebhookEndpoint
	if err := sqlx.GetContext(ctx, q, &out, query, id, sellerID); err != nil {
		return WebhookEndpoint{}, fmt.Errorf("get webhook endpoint %s: %w", id, translate(err))
	}
	return out, nil
}

// WebhookEndpointByID returns the endpoint id whatever its seller, or
// ErrNotFound (a delivery task knows only the endpoint).
func WebhookEndpointByID(ctx context.Context, q sqlx.QueryerContext, id uuid.UUID) (WebhookEndpoint, error) {
	const query = `SELECT ` + webhookEndpointColumns + ` FROM webhook_endpoints WHERE id = $1`
	var out WebhookEndpoint
	if err := sqlx.GetContext(ctx, q, &out, query, id); err != nil {
		return WebhookEndpoint{}, fmt.Errorf("get webhook endpoint %s: %w", id, translate(err))
	}
	return out, nil
}

// ListWebhookEndpoints returns one page of a seller's endpoints, oldest
// first, and the cursor of the next page (nil on the last).
func ListWebhookEndpoints(ctx context.Context, q sqlx.QueryerContext, sellerID uuid.UUID, p Page) ([]WebhookEndpoint, *Cursor, error) {
	const query = `SELECT ` + webhookEndpointColumns + ` FROM webhook_endpoints
WHERE seller_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3))
ORDER BY created_at, id LIMIT $4`
	var afterAt *time.Time
	var afterID *uuid.UUID
	if p.After != nil {
		afterAt, afterID = &p.After.CreatedAt, &p.After.ID
	}
	out := []WebhookEndpoint{}
	if err := sqlx.SelectContext(ctx, q, &out, query, sellerID, afterAt, afterID, p.limit()+1); err != nil {
		return nil, nil, fmt.Errorf("list webhook endpoints: %w", translate(err))
	}
	rows, next := pageOf(out, p.limit(), func(e WebhookEndpoint) Cursor { return Cursor{e.CreatedAt, e.ID} })
	return rows, next, nil
}

// ActiveWebhookEndpoints returns every enabled endpoint of a seller.
func ActiveWebhookEndpoints(ctx context.Context, q sqlx.QueryerContext, sellerID uuid.UUID) ([]WebhookEndpoint, error) {
	const query = `SELECT ` + webhookEndpointColumns + ` FROM webhook_endpoints
WHERE seller_id = $1 AND NOT disabled ORDER BY created_at, id`
	out := []WebhookEndpoint{}
	if err := sqlx.SelectContext(ctx, q, &out, query, sellerID); err != nil {
		return nil, fmt.Errorf("active webhook endpoints: %w", translate(err))
	}
	return out, nil
}

// WebhookEndpointPatch holds the fields an update changes; nil fields keep
// their value.
type WebhookEndpointPatch struct {
	URL         *string
	Topics      []string
	Description *string
	Disabled    *bool
	Ordered     *bool
	// Reason is recorded as disabled_reason when Disabled is set.
	Reason string
}

// UpdateWebhookEndpoint applies patch to the endpoint id of seller and
// returns it, or ErrNotFound. Disabling records the reason and time;
// enabling clears them and the failure streak, so the endpoint gets its
// full BAZAAR_WEBHOOK_DISABLE_AFTER again.
func UpdateWebhookEndpoint(ctx context.Context, q sqlx.ExtContext, sellerID, id uuid.UUID, p WebhookEndpointPatch) (WebhookEndpoint, error) {
	const query = `UPDATE webhook_endpoints SET
    url = COALESCE($3, url),
    topics = COALESCE($4, topics),
    description = COALESCE($5, description),
    disabled = COALESCE($6, disabled),
    disabled_reason = CASE WHEN $6::boolean IS NULL OR $6 = disabled THEN disabled_reason WHEN $6 THEN $7 ELSE '' END,
    disabled_at = CASE WHEN $6::boolean IS NULL OR $6 = disabled THEN disabled_at WHEN $6 THEN now() ELSE NULL END,
    failing_since = CASE WHEN $6::boolean IS NOT NULL AND NOT $6 AND disabled THEN NULL ELSE failing_since END,
    ordered = COALESCE($8, ordered),
    updated_at = now()
WHERE id = $1 AND seller_id = $2 RETURNING ` + webhookEndpointColumns
	var topics any
	if p.Topics != nil {
		topics = pq.StringArray(p.Topics)
	}
	var out WebhookEndpoint
	if err := sqlx.GetContext(ctx, q, &out, query, id, sellerID, p.URL, topics, p.Description, p.Disabled, p.Reason, p.Ordered); err != nil {
		return WebhookEndpoint{}, fmt.Errorf("update webhook endpoint %s: %w", id, translate(err))
	}
	return out, nil
}

// DisableWebhookEndpoint disables the endpoint id, recording why and when,
// and fails its pending deliveries with reason. It returns the time it
// was disabled, or nil when it was disabled already (or is gone), so only
// one caller tells the seller.
func DisableWebhookEndpoint(ctx context.Context, q sqlx.ExtContext, id uuid.UUID, reason string) (*time.Time, error) {
	const query = `WITH ep AS (
    UPDATE webhook_endpoints SET disabled = true, disabled_reason = $2, disabled_at = now(), updated_at = now()
    WHERE id = $1 AND NOT disabled RETURNING disabled_at
), failed AS (
    UPDATE webhook_deliveries SET status = 'failed', last_error = 'endpoint disabled: ' || $2,
        next_attempt_at = NULL, updated_at = now()
    WHERE endpoint_id = $1 AND status = 'pending'
)
SELECT disabled_at FROM ep`
	var at []time.Time
	if err := sqlx.SelectContext(ctx, q, &at, query, id, reason); err != nil {
		return nil, fmt.Errorf("disable webhook endpoint %s: %w", id, translate(err))
	}
	if len(at) == 0 {
		return nil, nil
	}
	return &at[0], nil
}

// FailPendingWebhookDeliveries fails every pending delivery of the
// endpoint id with reason (it is disabled) and returns how many.
func FailPendingWebhookDeliveries(ctx context.Context, q sqlx.ExecerContext, id uuid.UUID, reason string) (int, error) {
	res, err := q.ExecContext(ctx, `UPDATE webhook_deliveries SET status = 'failed', last_error = $2,
    next_attempt_at = NULL, updated_at = now()
WHERE endpoint_id = $1 AND status = 'pending'`, id, reason)
	if err != nil {
		return 0, fmt.Errorf("fail webhook deliveries of %s: %w", id, translate(err))
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// RotateWebhookSecret makes secret the endpoint's signing secret; the old
// one stays valid until keepOldUntil. It returns the endpoint, or
// ErrNotFound.
func RotateWebhookSecret(ctx context.Context, q sqlx.ExtContext, sellerID, id uuid.UUID, secret string, keepOldUntil time.Time) (WebhookEndpoint, error) {
	const query = `UPDATE webhook_endpoints SET previous_secret = secret, previous_expires_at = $4,
    secret = $3, updated_at = now()
WHERE id = $1 AND seller_id = $2 RETURNING ` + webhookEndpointColumns
	var out WebhookEndpoint
	if err := sqlx.GetContext(ctx, q, &out, query, id, sellerID, secret, keepOldUntil); err != nil {
		return WebhookEndpoint{}, fmt.Errorf("rotate webhook secret %s: %w", id, translate(err))
	}
	return out, nil
}

// DeleteWebhookEndpoint deletes the endpoint id of seller and its
// deliveries, or returns ErrNotFound.
func DeleteWebhookEndpoint(ctx context.Context, q sqlx.ExecerContext, sellerID, id uuid.UUID) error {
	res, err := q.ExecContext(ctx, `DELETE FROM webhook_endpoints WHERE id = $1 AND seller_id = $2`, id, sellerID)
	if err != nil {
		return fmt.Errorf("delete webhook endpoint %s: %w", id, translate(err))
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("delete webhook endpoint %s: %w", id, ErrNotFound)
	}
	return nil
}

// WebhookDelivery is one event sent (or to be sent) to one endpoint, with
// the outcome of its latest attempt.
type WebhookDelivery struct {
	ID              uuid.UUID  `db:"id"`
	EndpointID      uuid.UUID  `db:"endpoint_id"`
	EventID         uuid.UUID  `db:"event_id"`
	EventType       string     `db:"event_type"`
	Payload         []byte     `db:"payload"`
	Status          string     `db:"status"`
	Attempts        int        `db:"attempts"`
	ResponseStatus  int        `db:"response_status"`
	LatencyMS       int        `db:"latency_ms"`
	ResponseExcerpt string     `db:"response_excerpt"`
	LastError       string     `db:"last_error"`
	NextAttemptAt   *time.Time `db:"next_attempt_at"`
	RetryFrom       time.Time  `db:"retry_from"`
	// Seq is the recording order, which an ordered endpoint delivers in.
	Seq int64 `db:"seq"`
	// Generation counts manual redeliveries; each has tasks of its own.
	Generation int       `db:"generation"`
	CreatedAt  time.Time `db:"created_at"`
	UpdatedAt  time.Time `db:"updated_at"`
}

// Delivery statuses.
const (
	DeliveryPending   = "pending"
	DeliveryDelivered = "delivered"
	DeliveryFailed    = "failed"
)

const webhookDeliveryColumns = `id, endpoint_id, event_id, event_type, payload, status, attempts,
response_status, latency_ms, response_excerpt, last_error, next_attempt_at, retry_from, seq, generation,
created_at, updated_at`

// EnsureWebhookDelivery records a pending delivery of an event to an
// endpoint, or returns the one already recorded for that pair, so a
// redelivered event makes no second row.
func EnsureWebhookDelivery(ctx context.Context, q sqlx.ExtContext, d WebhookDelivery) (WebhookDelivery, error) {
	const query = `WITH ins AS (
    INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, payload)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (endpoint_id, event_id) DO NOTHING RETURNING ` + webhookDeliveryColumns + `
)
SELECT * FROM ins
UNION ALL
SELECT ` + webhookDeliveryColumns + ` FROM webhook_deliveries
WHERE endpoint_id = $2 AND event_id = $3 AND NOT EXISTS (SELECT 1 FROM ins)`
	var out WebhookDelivery
	if err := sqlx.GetContext(ctx, q, &out, query, d.ID, d.EndpointID, d.EventID, d.EventType, d.Payload); err != nil {
		return WebhookDelivery{}, fmt.Errorf("record webhook delivery: %w", translate(err))
	}
	return out, nil
}

// GetWebhookDelivery returns the delivery id of endpoint, or ErrNotFound.
func GetWebhookDelivery(ctx context.Context, q sqlx.QueryerContext, endpointID, id uuid.UUID) (WebhookDelivery, error) {
	const query = `SELECT ` + webhookDeliveryColumns + ` FROM webhook_deliveries WHERE id = $1 AND endpoint_id = $2`
	var out WebhookDelivery
	if err := sqlx.GetContext(ctx, q, &out, query, id, endpointID); err != nil {
		return WebhookDelivery{}, fmt.Errorf("get webhook delivery %s: %w", id, translate(err))
	}
	return out, nil
}

// WebhookAttempt is the outcome of one attempt of a delivery.
type WebhookAttempt struct {
	Status          string
	ResponseStatus  int
	LatencyMS       int
	ResponseExcerpt string
	Error           string
	NextAttemptAt   *time.Time
	// ReceiverFailed marks an attempt the receiver failed (no answer, or
	// one that is neither 2xx nor 410): it starts or continues the
	// endpoint's failure streak. A delivered attempt ends the streak.
	ReceiverFailed bool
	// At is the attempt's time, by the caller's clock.
	At time.Time
}

// RecordWebhookAttempt counts an attempt of the delivery id, records its
// outcome and keeps its endpoint's failure streak, and returns the
// streak's start (nil when the endpoint is not failing).
func RecordWebhookAttempt(ctx context.Context, q sqlx.ExtContext, id uuid.UUID, a WebhookAttempt) (*time.Time, error) {
	const query = `WITH d AS (
    UPDATE webhook_deliveries SET attempts = attempts + 1, status = $2,
        response_status = $3, latency_ms = $4, response_excerpt = $5, last_error = $6,
        next_attempt_at = $7, updated_at = now()
    WHERE id = $1 RETURNING endpoint_id
)
UPDATE webhook_endpoints e SET failing_since = CASE
        WHEN $2 = 'delivered' THEN NULL
        WHEN $8 THEN COALESCE(e.failing_since, $9)
        ELSE e.failing_since END
FROM d WHERE e.id = d.endpoint_id
RETURNING e.failing_since`
	var since []sql.NullTime
	if err := sqlx.SelectContext(ctx, q, &since, query, id, a.Status, a.ResponseStatus, a.LatencyMS,
		a.ResponseExcerpt, a.Error, a.NextAttemptAt, a.ReceiverFailed, a.At); err != nil {
		return nil, fmt.Errorf("record webhook attempt %s: %w", id, translate(err))
	}
	if len(since) == 0 || !since[0].Valid {
		return nil, nil
	}
	return &since[0].Time, nil
}

// DeferWebhookDelivery notes that the delivery id waits (its receiver's
// host is not being called) until next, without counting an attempt.
func DeferWebhookDelivery(ctx context.Context, q sqlx.ExecerContext, id uuid.UUID, next time.Time, why string) error {
	const query = `UPDATE webhook_deliveries SET next_attempt_at = $2, last_error = $3, updated_at = now()
WHERE id = $1 AND status = 'pending'`
	if _, err := q.ExecContext(ctx, query, id, next, why); err != nil {
		return fmt.Errorf("defer webhook delivery %s: %w", id, translate(err))
	}
	return nil
}

// FailWebhookDelivery gives the pending delivery id up without counting an
// attempt (its retry window ended while its host was not being called).
func FailWebhookDelivery(ctx context.Context, q sqlx.ExecerContext, id uuid.UUID, why string) error {
	const query = `UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL, last_error = $2,
    updated_at = now()
WHERE id = $1 AND status = 'pending'`
	if _, err := q.ExecContext(ctx, query, id, why); err != nil {
		return fmt.Errorf("fail webhook delivery %s: %w", id, translate(err))
	}
	return nil
}

// WebhookDeliveryHead returns the oldest pending delivery of the endpoint
// (by Seq), the one an ordered endpoint sends next, or ErrNotFound.
func WebhookDeliveryHead(ctx context.Context, q sqlx.QueryerContext, endpointID uuid.UUID) (WebhookDeliveryRef, error) {
	const query = `SELECT ` + webhookDeliveryRefColumns + ` FROM webhook_deliveries
WHERE endpoint_id = $1 AND status = 'pending' ORDER BY seq LIMIT 1`
	var out WebhookDeliveryRef
	if err := sqlx.GetContext(ctx, q, &out, query, endpointID); err != nil {
		return WebhookDeliveryRef{}, fmt.Errorf("webhook delivery head of %s: %w", endpointID, translate(err))
	}
	return out, nil
}

// WebhookDeliveryRef names one generation of a delivery, what its task
// needs.
type WebhookDeliveryRef struct {
	ID         uuid.UUID `db:"id"`
	EndpointID uuid.UUID `db:"endpoint_id"`
	EventID    uuid.UUID `db:"event_id"`
	Generation int       `db:"generation"`
	Seq        int64     `db:"seq"`
}

const webhookDeliveryRefColumns = `id, endpoint_id, event_id, generation, seq`

// Ref returns the reference of d.
func (d WebhookDelivery) Ref() WebhookDeliveryRef {
	return WebhookDeliveryRef{ID: d.ID, EndpointID: d.EndpointID, EventID: d.EventID, Generation: d.Generation, Seq: d.Seq}
}

// PendingWebhookDeliveries returns the pending deliveries of the endpoint
// in Seq order.
func PendingWebhookDeliveries(ctx context.Context, q sqlx.QueryerContext, endpointID uuid.UUID) ([]WebhookDeliveryRef, error) {
	const query = `SELECT ` + webhookDeliveryRefColumns + ` FROM webhook_deliveries
WHERE endpoint_id = $1 AND status = 'pending' ORDER BY seq`
	out := []WebhookDeliveryRef{}
	if err := sqlx.SelectContext(ctx, q, &out, query, endpointID); err != nil {
		return nil, fmt.Errorf("pending webhook deliveries of %s: %w", endpointID, translate(err))
	}
	return out, nil
}

// ListWebhookDeliveries returns one page of an endpoint's deliveries,
// newest first, and the cursor of the next page (nil on the last).
func ListWebhookDeliveries(ctx context.Context, q sqlx.QueryerContext, endpointID uuid.UUID, p Page) ([]WebhookDelivery, *Cursor, error) {
	const query = `SELECT ` + webhookDeliveryColumns + ` FROM webhook_deliveries
WHERE endpoint_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
ORDER BY created_at DESC, id DESC LIMIT $4`
	var afterAt *time.Time
	var afterID *uuid.UUID
	if p.After != nil {
		afterAt, afterID = &p.After.CreatedAt, &p.After.ID
	}
	out := []WebhookDelivery{}
	if err := sqlx.SelectContext(ctx, q, &out, query, endpointID, afterAt, afterID, p.limit()+1); err != nil {
		return nil, nil, fmt.Errorf("list webhook deliveries: %w", translate(err))
	}
	rows, next := pageOf(out, p.limit(), func(d WebhookDelivery) Cursor { return Cursor{d.CreatedAt, d.ID} })
	return rows, next, nil
}

// ResetWebhookDelivery puts the delivery id of endpoint back to pending
// in a new generation with a new retry window (from now), for a manual
// redelivery, and returns it, or ErrNotFound.
func ResetWebhookDelivery(ctx context.Context, q sqlx.ExtContext, endpointID, id uuid.UUID) (WebhookDelivery, error) {
	const query = `UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = NULL,
    retry_from = now(), generation = generation + 1, updated_at = now()
WHERE id = $1 AND endpoint_id = $2 RETURNING ` + webhookDeliveryColumns
	var out WebhookDelivery
	if err := sqlx.GetContext(ctx, q, &out, query, id, endpointID); err != nil {
		return WebhookDelivery{}, fmt.Errorf("redeliver webhook %s: %w", id, translate(err))
	}
	return out, nil
}

// ResetWebhookDeliveriesSince does what ResetWebhookDelivery does to every
// delivery of the endpoint recorded at or after since, and returns them
// in Seq order.
func ResetWebhookDeliveriesSince(ctx context.Context, q sqlx.ExtContext, endpointID uuid.UUID, since time.Time) ([]WebhookDeliveryRef, error) {
	const query = `WITH r AS (
    UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = NULL,
        retry_from = now(), generation = generation + 1, updated_at = now()
    WHERE endpoint_id = $1 AND created_at >= $2 RETURNING ` + webhookDeliveryRefColumns + `
)
SELECT * FROM r ORDER BY seq`
	out := []WebhookDeliveryRef{}
	if err := sqlx.SelectContext(ctx, q, &out, query, endpointID, since); err != nil {
		return nil, fmt.Errorf("redeliver webhooks of %s: %w", endpointID, translate(err))
	}
	return out, nil
}
