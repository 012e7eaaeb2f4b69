package workers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"

	"github.com/bazaarhq/bazaar/sql/store"
)

// scheduleFollowUps enqueues an order's deferred tasks: the follow-up check
// FollowUpDelay after it was placed, and the reminder mail ReminderLead
// before its scheduled time. A reminder whose time has already passed
// (an order placed less than ReminderLead ahead) is not sent: the
// confirmation mail tells the time.
func (w *Workers) scheduleFollowUps(ctx context.Context, m Meta, o store.Order) error {
	if o.Status == store.OrderCancelled {
		return nil // cancelled before its creation was handled: nothing to follow
	}
	fu, err := NewOrderTask(TypeOrderFollowUp, m, o.ID, "")
	if err != nil {
		return err
	}
	at := o.CreatedAt.Add(w.cfg.FollowUpDelay)
	if err := w.enqueue(ctx, fu, FollowUpTaskID(o.ID), asynq.ProcessAt(notBefore(at))); err != nil {
		return err
	}
	if o.ScheduledAt == nil {
		return nil
	}
	remindAt := o.ScheduledAt.Add(-w.cfg.ReminderLead)
	if remindAt.Before(time.Now()) {
		Logger(ctx, w.log).Info("scheduled time too close for a reminder", "order_id", o.ID, "scheduled_at", o.ScheduledAt)
		return nil
	}
	rt, err := newTask(TypeEmailOrderReminder, OrderPayload{Meta: m, OrderID: o.ID, ScheduledAt: o.ScheduledAt})
	if err != nil {
		return err
	}
	return w.enqueue(ctx, rt, ReminderTaskID(o.ID), asynq.ProcessAt(notBefore(remindAt)))
}

// notBefore rounds t up to a whole second: asynq keeps the time of a
// scheduled task in whole seconds, truncated, and would otherwise run it up
// to a second early.
func notBefore(t time.Time) time.Time {
	if r := t.Truncate(time.Second); !r.Equal(t) {
		return r.Add(time.Second)
	}
	return t
}

// CancelFollowUps deletes an order's pending deferred tasks (follow-up and
// reminder). A task that is gone, or running right now, is left alone:
// each checks the order's state when it runs.
func (w *Workers) CancelFollowUps(ctx context.Context, orderID uuid.UUID) error {
	var errs []error
	for typ, id := range map[string]string{
		TypeOrderFollowUp:      FollowUpTaskID(orderID),
		TypeEmailOrderReminder: ReminderTaskID(orderID),
	} {
		err := w.inspector.DeleteTask(w.policy(typ).Queue, id)
		switch {
		case err == nil:
			Logger(ctx, w.log).Info("deferred task deleted", "order_id", orderID, "task_id", id)
		case errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
		default:
			info, ierr := w.inspector.GetTaskInfo(w.policy(typ).Queue, id)
			if ierr == nil && (info.State == asynq.TaskStateActive || info.State == asynq.TaskStateCompleted) {
				continue
			}
			errs = append(errs, fmt.Errorf("delete %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

// followUp checks that an order placed FollowUpDelay ago moved past pending
// (stock and payment settled it, or the seller acted on it). If it did not,
// it records order.followup_overdue for people and dashboards to act on.
func (w *Workers) followUp(ctx context.Context, t *asynq.Task) error {
	p, err := decode[OrderPayload](t)
	if err != nil {
		return err
	}
	log := Logger(ctx, w.log).With("order_id", p.OrderID)
	o, err := store.GetOrder(ctx, w.db, p.OrderID)
	if err != nil {
		return missingIsPermanent(err)
	}
	outcome := string(o.Status)
	overdue := o.Status == store.OrderPending
	if overdue {
		outcome = "overdue"
	}
	err = w.inTx(ctx, func(tx *sqlx.Tx) (int, error) {
		first, err := store.RecordFollowup(ctx, tx, o.ID, "followup", outcome)
		if err != nil || !first || !overdue {
			return 0, err
		}
		ev, err := newEvent(p.Meta, EventOrderFollowUpOverdue, o.ID.String(), &o.SellerID, FollowUpData{
			OrderID: o.ID, Status: string(o.Status), PlacedAt: o.CreatedAt.UTC().Format(time.RFC3339),
			Waited: time.Since(o.CreatedAt).Round(time.Second).String(),
		})
		if err != nil {
			return 0, err
		}
		return 1, store.InsertEvents(ctx, tx, ev)
	})
	if err != nil {
		return fmt.Errorf("follow up: %w", err)
	}
	if overdue {
		log.Warn("order still pending after the follow-up delay", "placed_at", o.CreatedAt, "waited", time.Since(o.CreatedAt).Round(time.Second).String())
	} else {
		log.Info("order followed up", "status", o.Status)
	}
	return nil
}
