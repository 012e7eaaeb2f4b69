package workers

import (
	"fmt"

	"github.com/google/uuid"

	"github.com/bazaarhq/bazaar/sql/store"
)

// Event types the workers record.
const (
	EventInventoryReserved          = "inventory.reserved"
	EventInventoryReservationFailed = "inventory.reservation_failed"
	EventInventoryReleased          = "inventory.released"
	EventInventoryRestocked         = "inventory.restocked"
	EventPaymentSucceeded           = "payment.succeeded"
	EventPaymentFailed              = "payment.failed"
	EventPaymentRefunded            = "payment.refunded"
	// EventPaymentDisputed is a buyer's dispute (chargeback) of a charge,
	// reported by the provider's webhook.
	EventPaymentDisputed = "payment.disputed"
	// EventOrderPaymentActionRequired is a charge waiting for the buyer
	// (3-D Secure); the order stays pending until the provider settles it.
	EventOrderPaymentActionRequired = "order.payment_action_required"
	EventOrderFollowUpOverdue       = "order.followup_overdue"
	EventUserSegmentsChanged        = "user.segments_changed"
)

// Event types the workers react to, recorded by the API.
const (
	eventUserRegistered = "user.registered"
	eventUserUpdated    = "user.updated"
	eventOrderCreated   = "order.created"
	eventOrderConfirmed = "order.confirmed"
	eventOrderCancelled = "order.cancelled"
	eventOrderShipped   = "order.shipped"
	eventOrderDelivered = "order.delivered"
	eventReturnResolved = "return.resolved"
)

// OrderStepData is the data of the inventory.* and payment.* events of an
// order's saga.
type OrderStepData struct {
	OrderID     uuid.UUID `json:"order_id"`
	UserID      uuid.UUID `json:"user_id"`
	AmountMinor int64     `json:"amount_minor,omitempty"`
	Currency    string    `json:"currency,omitempty"`
	// Reason says why a step failed (out_of_stock, a decline code).
	Reason    string    `json:"reason,omitempty"`
	ProductID uuid.UUID `json:"product_id,omitzero"`
	PaymentID uuid.UUID `json:"payment_id,omitzero"`
	ChargeID  string    `json:"charge_id,omitempty"`
	RefundID  string    `json:"refund_id,omitempty"`
	// ReturnID is the accepted return a payment.refunded gives money back for.
	ReturnID uuid.UUID `json:"return_id,omitzero"`
	// Destination is the seller's connected account the charge paid out to
	// and ApplicationFeeMinor the marketplace's commission; PlatformOnly
	// flags a charge kept whole by the platform (no connected account).
	Destination         string `json:"destination,omitempty"`
	ApplicationFeeMinor int64  `json:"application_fee_minor,omitempty"`
	PlatformOnly        bool   `json:"platform_only,omitempty"`
}

// PaymentActionData is the data of order.payment_action_required: what
// the storefront needs to let the buyer finish the payment.
type PaymentActionData struct {
	OrderID      uuid.UUID `json:"order_id"`
	UserID       uuid.UUID `json:"user_id"`
	PaymentID    uuid.UUID `json:"payment_id"`
	ChargeID     string    `json:"charge_id"`
	Status       string    `json:"status"`
	ClientSecret string    `json:"client_secret,omitempty"`
	NextAction   string    `json:"next_action,omitempty"`
	RedirectURL  string    `json:"redirect_url,omitempty"`
}

// DisputeData is the data of payment.disputed.
type DisputeData struct {
	OrderID     uuid.UUID `json:"order_id"`
	PaymentID   uuid.UUID `json:"payment_id"`
	ChargeID    string    `json:"charge_id"`
	DisputeID   string    `json:"dispute_id"`
	Reason      string    `json:"reason,omitempty"`
	AmountMinor int64     `json:"amount_minor"`
	Currency    string    `json:"currency"`
}

// RestockData is the data of inventory.restocked.
type RestockData struct {
	ReturnID  uuid.UUID `json:"return_id"`
	OrderID   uuid.UUID `json:"order_id"`
	ProductID uuid.UUID `json:"product_id"`
	Quantity  int       `json:"quantity"`
}

// FollowUpData is the data of order.followup_overdue.
type FollowUpData struct {
	OrderID  uuid.UUID `json:"order_id"`
	Status   string    `json:"status"`
	PlacedAt string    `json:"placed_at"`
	Waited   string    `json:"waited"`
}

// SegmentsData is the data of user.segments_changed.
type SegmentsData struct {
	UserID   uuid.UUID `json:"user_id"`
	Segments []string  `json:"segments"`
}

// newEvent builds an event carrying the request id and trace context of
// the task that records it, so the chain of events of one request can be
// followed across services.
func newEvent(m Meta, typ, subject string, seller *uuid.UUID, data any) (store.Event, error) {
	e, err := store.NewEvent(typ, subject, seller, 1, data)
	if err != nil {
		return store.Event{}, fmt.Errorf("new %s event: %w", typ, err)
	}
	e.RequestID = m.RequestID
	e.TraceParent = m.TraceParent
	return e, nil
}

// stamp copies the request id and trace context of a task onto an event
// built by the store's constructors.
func stamp(m Meta, e store.Event) store.Event {
	e.RequestID = m.RequestID
	e.TraceParent = m.TraceParent
	return e
}
