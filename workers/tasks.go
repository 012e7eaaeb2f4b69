package workers

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"

	"github.com/bazaarhq/bazaar/stream"
)

// Task types. The part before the colon is the service that runs it.
const (
	TypeEmailWelcome        = "email:welcome"
	TypeEmailOrderConfirmed = "email:order_confirmed"
	TypeEmailOrderCancelled = "email:order_cancelled"
	TypeEmailOrderShipped   = "email:order_shipped"
	TypeEmailReturnResolved = "email:return_resolved"
	TypeEmailOrderReminder  = "email:order_reminder"
	TypeEmailInvoice        = "email:invoice"
	// TypeEmailWebhookDisabled tells a seller that Bazaar disabled one of
	// its webhook endpoints (workers/webhooks).
	TypeEmailWebhookDisabled = "email:webhook_disabled"
	TypePointsOpen           = "benefits:open_account"
	TypePointsGrant          = "benefits:grant"
	TypePointsRevoke         = "benefits:revoke"
	TypeSegmentsEvaluate     = "segments:evaluate"
	TypeInventoryReserve     = "inventory:reserve"
	TypeInventoryRelease     = "inventory:release"
	TypeInventoryRestock     = "inventory:restock"
	TypePaymentCharge        = "payment:charge"
	TypePaymentRefund        = "payment:refund"
	TypePaymentRefundReturn  = "payment:refund_return"
	TypeOrderConfirm         = "order:confirm"
	TypeOrderCancel          = "order:cancel"
	TypeOrderFollowUp        = "order:followup"
)

// Task types of batch invoicing (workers/invoicing): one run task per
// period discovers the accounts to bill and hands each to an account task.
const (
	TypeInvoiceRun     = "invoice:run"
	TypeInvoiceAccount = "invoice:account"
)

// Event types recorded by invoicing (workers/invoicing); the
// notifications group mails each invoice on invoice.created.
const (
	EventInvoiceCreated      = "invoice.created"
	EventInvoiceRunStarted   = "invoicing.run_started"
	EventInvoiceRunCompleted = "invoicing.run_completed"
	// EventInvoiceRetryRequested asks for a run's failed accounts to be
	// billed again (they are pending again when it is recorded).
	EventInvoiceRetryRequested = "invoicing.retry_requested"
)

// Queue names, from most to least urgent.
const (
	QueueCritical = "critical"
	QueueDefault  = "default"
	QueueLow      = "low"
	// QueueDeferred holds tasks due at a set time (order follow-ups), so a
	// backlog in low (an invoice run of thousands of accounts) cannot make
	// them late: asynq picks a queue by weight before it takes a task.
	QueueDeferred = "deferred"
)

// PayloadVersion is the version of the task payloads this build writes and
// reads. A handler refuses (without retrying) a payload of a newer version.
const PayloadVersion = 1

// Meta travels in every task payload: the version of the payload and where
// the task came from, so its log lines carry the request id and trace
// context of the HTTP request that started the chain.
type Meta struct {
	Version     int    `json:"v"`
	EventID     string `json:"event_id,omitempty"`
	EventType   string `json:"event_type,omitempty"`
	RequestID   string `json:"request_id,omitempty"`
	TraceParent string `json:"traceparent,omitempty"`
}

// MetaOf returns the Meta of tasks caused by an event.
func MetaOf(env stream.Envelope) Meta {
	return Meta{
		Version:     PayloadVersion,
		EventID:     env.ID,
		EventType:   env.Type,
		RequestID:   env.RequestID,
		TraceParent: env.TraceParent,
	}
}

// UserPayload is the payload of tasks about one user.
type UserPayload struct {
	Meta
	UserID uuid.UUID `json:"user_id"`
}

// OrderPayload is the payload of tasks about one order. Reason says why an
// order is cancelled; ScheduledAt is the delivery time a reminder is for.
type OrderPayload struct {
	Meta
	OrderID     uuid.UUID  `json:"order_id"`
	Reason      string     `json:"reason,omitempty"`
	ScheduledAt *time.Time `json:"scheduled_at,omitempty"`
}

// ReturnPayload is the payload of tasks about one return.
type ReturnPayload struct {
	Meta
	ReturnID uuid.UUID `json:"return_id"`
}

// InvoicePayload is the payload of tasks about one invoice.
type InvoicePayload struct {
	Meta
	InvoiceID uuid.UUID `json:"invoice_id"`
}

// WebhookDisabledPayload is the payload of TypeEmailWebhookDisabled: the
// endpoint and when it was disabled, which keys the mail (one per
// disabling).
type WebhookDisabledPayload struct {
	Meta
	EndpointID uuid.UUID `json:"endpoint_id"`
	DisabledAt time.Time `json:"disabled_at"`
}

// NewWebhookDisabledTask builds the mail telling a seller that its
// endpoint was disabled at disabledAt.
func NewWebhookDisabledTask(endpointID uuid.UUID, disabledAt time.Time) (*asynq.Task, error) {
	return newTask(TypeEmailWebhookDisabled, WebhookDisabledPayload{
		Meta: Meta{Version: PayloadVersion}, EndpointID: endpointID, DisabledAt: disabledAt.UTC(),
	})
}

// SegmentsPayload is the payload of a segment evaluation: of UserID, or of
// the buyer of OrderID when UserID is nil.
type SegmentsPayload struct {
	Meta
	UserID  uuid.UUID `json:"user_id,omitzero"`
	OrderID uuid.UUID `json:"order_id,omitzero"`
}

// NewUserTask builds a task of type typ about a user.
func NewUserTask(typ string, m Meta, userID uuid.UUID) (*asynq.Task, error) {
	return newTask(typ, UserPayload{Meta: m, UserID: userID})
}

// NewOrderTask builds a task of type typ about an order.
func NewOrderTask(typ string, m Meta, orderID uuid.UUID, reason string) (*asynq.Task, error) {
	return newTask(typ, OrderPayload{Meta: m, OrderID: orderID, Reason: reason})
}

// NewInvoiceTask builds a task of type typ about an invoice.
func NewInvoiceTask(typ string, m Meta, invoiceID uuid.UUID) (*asynq.Task, error) {
	return newTask(typ, InvoicePayload{Meta: m, InvoiceID: invoiceID})
}

// NewReturnTask builds a task of type typ about a return.
func NewReturnTask(typ string, m Meta, returnID uuid.UUID) (*asynq.Task, error) {
	return newTask(typ, ReturnPayload{Meta: m, ReturnID: returnID})
}

func newTask(typ string, payload any) (*asynq.Task, error) {
	b, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("marshal %s payload: %w", typ, err)
	}
	return asynq.NewTask(typ, b), nil
}

// versioned is implemented by every payload through its embedded Meta.
type versioned interface{ meta() Meta }

func (m Meta) meta() Meta { return m }

// errBadPayload marks payloads no retry can fix.
var errBadPayload = errors.New("bad task payload")

// decode reads a task payload. A payload that does not parse, or is of a
// version this build does not know, fails permanently (SkipRetry): running
// it again cannot help, so it goes straight to the archive for a person.
func decode[P versioned](t *asynq.Task) (P, error) {
	var p P
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return p, fmt.Errorf("%s: %w: %w", t.Type(), errBadPayload, errors.Join(err, asynq.SkipRetry))
	}
	if v := p.meta().Version; v < 1 || v > PayloadVersion {
		return p, fmt.Errorf("%s: payload version %d, this build reads 1..%d: %w", t.Type(), v, PayloadVersion, errors.Join(errBadPayload, asynq.SkipRetry))
	}
	return p, nil
}

// TaskID is the deterministic id of the task a consumer group makes of an
// event: enqueueing it again (the event delivered twice) is refused by
// asynq as a duplicate. kind tells apart several tasks of one event.
func TaskID(group, eventID, kind string) string {
	if kind == "" {
		return group + ":" + eventID
	}
	return group + ":" + eventID + ":" + kind
}

// FollowUpTaskID and ReminderTaskID name an order's deferred tasks by the
// order, so cancelling the order can find and delete them.
func FollowUpTaskID(orderID uuid.UUID) string { return "followups:" + orderID.String() + ":followup" }

// ReminderTaskID is the id of an order's reminder mail task.
func ReminderTaskID(orderID uuid.UUID) string { return "followups:" + orderID.String() + ":reminder" }

// TaskPolicy is how one task type is queued and retried.
type TaskPolicy struct {
	Queue    string
	MaxRetry int
	Timeout  time.Duration
}

// DefaultPolicies are the queue, retry budget and time limit of each task
// type. The saga's steps are critical: a buyer waits for them. Mail has
// many retries over hours (a mail server may be down for a while);
// segments and follow-ups can wait.
var DefaultPolicies = map[string]TaskPolicy{
	TypeEmailWelcome:         {QueueDefault, 12, 30 * time.Second},
	TypeEmailOrderConfirmed:  {QueueDefault, 12, 30 * time.Second},
	TypeEmailOrderCancelled:  {QueueDefault, 12, 30 * time.Second},
	TypeEmailOrderShipped:    {QueueDefault, 12, 30 * time.Second},
	TypeEmailReturnResolved:  {QueueDefault, 12, 30 * time.Second},
	TypeEmailOrderReminder:   {QueueDefault, 6, 30 * time.Second},
	TypeEmailInvoice:         {QueueDefault, 12, time.Minute},
	TypeEmailWebhookDisabled: {QueueDefault, 12, 30 * time.Second},
	TypePointsOpen:           {QueueDefault, 10, 10 * time.Second},
	TypePointsGrant:          {QueueDefault, 10, 10 * time.Second},
	TypePointsRevoke:         {QueueDefault, 10, 10 * time.Second},
	TypeSegmentsEvaluate:     {QueueLow, 5, 10 * time.Second},
	TypeInventoryReserve:     {QueueCritical, 10, 10 * time.Second},
	TypeInventoryRelease:     {QueueCritical, 20, 10 * time.Second},
	TypeInventoryRestock:     {QueueDefault, 20, 10 * time.Second},
	TypePaymentCharge:        {QueueCritical, 8, 30 * time.Second},
	TypePaymentRefund:        {QueueCritical, 20, 30 * time.Second},
	TypePaymentRefundReturn:  {QueueCritical, 20, 30 * time.Second},
	TypeOrderConfirm:         {QueueCritical, 10, 10 * time.Second},
	TypeOrderCancel:          {QueueCritical, 10, 10 * time.Second},
	TypeOrderFollowUp:        {QueueDeferred, 5, 10 * time.Second},
}

// fallbackPolicy applies to task types missing from the policies.
var fallbackPolicy = TaskPolicy{Queue: QueueDefault, MaxRetry: 10, Timeout: 30 * time.Second}
