package workers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/google/uuid"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/stream"
)

// Consumer group names, one per service.
const (
	GroupNotifications = "notifications"
	GroupBenefits      = "benefits"
	GroupSegments      = "segments"
	GroupInventory     = "inventory"
	GroupPayments      = "payments"
	GroupOrders        = "orders"
	GroupFollowUps     = "followups"
)

// Group is one consumer group: its name, the topic patterns it binds and
// the handler that turns each of its events into tasks. Handle only
// enqueues (and, for follow-ups, deletes) tasks, so it is quick and safe to
// call again for a redelivered event: the tasks' ids are derived from the
// group and the event.
type Group struct {
	Name     string
	Patterns []string
	Handle   func(ctx context.Context, env stream.Envelope) error
}

// aggregate names which id of an event a task is about.
type aggregate int

const (
	aboutUser aggregate = iota
	aboutOrder
	aboutReturn
	aboutInvoice
)

// reaction is one task a group makes of an event.
type reaction struct {
	kind     string // tells apart the tasks of one event in the TaskID
	taskType string
	about    aggregate
	reason   func(env stream.Envelope) string
}

// Groups returns the consumer groups of every service.
func (w *Workers) Groups() []Group {
	r := func(kind, typ string, about aggregate) reaction {
		return reaction{kind: kind, taskType: typ, about: about}
	}
	tables := []struct {
		name string
		on   map[string][]reaction
	}{
		{GroupNotifications, map[string][]reaction{
			eventUserRegistered: {r("", TypeEmailWelcome, aboutUser)},
			eventOrderConfirmed: {r("", TypeEmailOrderConfirmed, aboutOrder)},
			eventOrderCancelled: {r("", TypeEmailOrderCancelled, aboutOrder)},
			eventOrderShipped:   {r("", TypeEmailOrderShipped, aboutOrder)},
			eventReturnResolved: {r("", TypeEmailReturnResolved, aboutReturn)},
			EventInvoiceCreated: {r("", TypeEmailInvoice, aboutInvoice)},
		}},
		{GroupBenefits, map[string][]reaction{
			eventUserRegistered: {r("", TypePointsOpen, aboutUser)},
			eventOrderDelivered: {r("", TypePointsGrant, aboutOrder)},
			eventReturnResolved: {r("", TypePointsRevoke, aboutReturn)},
		}},
		{GroupSegments, map[string][]reaction{
			eventUserRegistered: {r("", TypeSegmentsEvaluate, aboutUser)},
			eventUserUpdated:    {r("", TypeSegmentsEvaluate, aboutUser)},
			eventOrderConfirmed: {r("", TypeSegmentsEvaluate, aboutOrder)},
			eventOrderCancelled: {r("", TypeSegmentsEvaluate, aboutOrder)},
			eventOrderDelivered: {r("", TypeSegmentsEvaluate, aboutOrder)},
		}},
		{GroupInventory, map[string][]reaction{
			eventOrderCreated:   {r("", TypeInventoryReserve, aboutOrder)},
			eventOrderCancelled: {r("", TypeInventoryRelease, aboutOrder)},
			eventReturnResolved: {r("", TypeInventoryRestock, aboutReturn)},
		}},
		{GroupPayments, map[string][]reaction{
			EventInventoryReserved: {r("", TypePaymentCharge, aboutOrder)},
			eventOrderCancelled:    {r("", TypePaymentRefund, aboutOrder)},
			eventReturnResolved:    {r("", TypePaymentRefundReturn, aboutReturn)},
		}},
		{GroupOrders, map[string][]reaction{
			EventPaymentSucceeded: {r("", TypeOrderConfirm, aboutOrder)},
			EventPaymentFailed: {{taskType: TypeOrderCancel, about: aboutOrder, reason: func(env stream.Envelope) string {
				var d OrderStepData
				_ = json.Unmarshal(env.Data, &d)
				return "payment_failed:" + d.Reason
			}}},
			EventInventoryReservationFailed: {{taskType: TypeOrderCancel, about: aboutOrder, reason: func(stream.Envelope) string {
				return "out_of_stock"
			}}},
		}},
	}
	groups := make([]Group, 0, len(tables)+1)
	for _, tb := range tables {
		groups = append(groups, Group{
			Name:     tb.name,
			Patterns: slices.Sorted(maps.Keys(tb.on)),
			Handle:   w.reactor(tb.name, tb.on),
		})
	}
	groups = append(groups, Group{
		Name:     GroupFollowUps,
		Patterns: []string{eventOrderCancelled, eventOrderCreated},
		Handle:   w.followUpsGroup,
	})
	return groups
}

// reactor returns the handler of a group that enqueues, for each event,
// the tasks its table names. Each event is enqueued once per group: the
// group records it in processed_events after every task is in Redis, so a
// redelivered event (a delivery whose XACK was lost, a reclaim) finds the
// record and enqueues nothing, even when its tasks finished and asynq
// forgot their ids (Config.Retention). The record is looked up and written
// by two statements outside a transaction, so no PostgreSQL connection is
// held while Redis answers: under a flood the groups and the tasks share
// the pool. A crash (or a failed write of the record) after the enqueue,
// or a concurrent duplicate, enqueues again under the same TaskIDs:
// refused while the first tasks wait, and run as no-ops by the handlers'
// own keys once they finished.
func (w *Workers) reactor(group string, on map[string][]reaction) func(context.Context, stream.Envelope) error {
	return func(ctx context.Context, env stream.Envelope) error {
		if _, ok := on[env.Type]; !ok {
			return nil
		}
		id, err := uuid.Parse(env.ID)
		if err != nil {
			return fmt.Errorf("event id %q: %w", env.ID, errBadEvent)
		}
		done, err := store.Processed(ctx, w.db, reactorMark+group, id)
		if err != nil || done {
			return err
		}
		if err := w.react(ctx, group, on[env.Type], env); err != nil {
			return err
		}
		_, err = store.MarkProcessed(ctx, w.db, reactorMark+group, id)
		return err
	}
}

// reactorMark prefixes a group's name in the processed_events records of
// the events it enqueued tasks for.
const reactorMark = "tasks:"

// react enqueues the tasks of one event.
func (w *Workers) react(ctx context.Context, group string, reactions []reaction, env stream.Envelope) error {
	m := MetaOf(env)
	for _, re := range reactions {
		id, err := aggregateID(env, re.about)
		if err != nil {
			return err
		}
		var p any
		switch {
		case re.taskType == TypeSegmentsEvaluate && re.about == aboutUser:
			p = SegmentsPayload{Meta: m, UserID: id}
		case re.taskType == TypeSegmentsEvaluate:
			p = SegmentsPayload{Meta: m, OrderID: id}
		case re.about == aboutUser:
			p = UserPayload{Meta: m, UserID: id}
		case re.about == aboutReturn:
			p = ReturnPayload{Meta: m, ReturnID: id}
		case re.about == aboutInvoice:
			p = InvoicePayload{Meta: m, InvoiceID: id}
		default:
			op := OrderPayload{Meta: m, OrderID: id}
			if re.reason != nil {
				op.Reason = re.reason(env)
			}
			p = op
		}
		t, err := newTask(re.taskType, p)
		if err != nil {
			return err
		}
		if err := w.enqueueFair(ctx, stream.FairKey(env), t, TaskID(group, env.ID, re.kind)); err != nil {
			return err
		}
	}
	return nil
}

// followUpsGroup schedules an order's deferred tasks when it is placed and
// deletes them when it is cancelled.
func (w *Workers) followUpsGroup(ctx context.Context, env stream.Envelope) error {
	id, err := aggregateID(env, aboutOrder)
	if err != nil {
		return err
	}
	switch env.Type {
	case eventOrderCreated:
		o, err := store.GetOrder(ctx, w.db, id)
		if errors.Is(err, store.ErrNotFound) {
			w.log.Warn("order of event not found; no follow-ups", "order_id", id, "event_id", env.ID)
			return nil
		}
		if err != nil {
			return err
		}
		return w.scheduleFollowUps(ctx, MetaOf(env), o)
	case eventOrderCancelled:
		return w.CancelFollowUps(ctx, id)
	}
	return nil
}

// errBadEvent marks an event no retry can make sense of; the stream moves
// it to the group's dead letters once its deliveries are used up.
var errBadEvent = errors.New("bad event")

// aggregateID finds the id a task is about: the matching field of the
// event's data (user_id, order_id, return_id, invoice_id), else the
// event's subject.
func aggregateID(env stream.Envelope, about aggregate) (uuid.UUID, error) {
	field := map[aggregate]string{aboutUser: "user_id", aboutOrder: "order_id", aboutReturn: "return_id", aboutInvoice: "invoice_id"}[about]
	var data map[string]json.RawMessage
	if json.Unmarshal(env.Data, &data) == nil {
		var s string
		if raw, ok := data[field]; ok && json.Unmarshal(raw, &s) == nil {
			if id, err := uuid.Parse(s); err == nil {
				return id, nil
			}
		}
	}
	id, err := uuid.Parse(env.Subject)
	if err != nil {
		return uuid.Nil, fmt.Errorf("%s %s: no %s in data and subject %q is no id: %w", env.Type, env.ID, field, env.Subject, errBadEvent)
	}
	return id, nil
}
