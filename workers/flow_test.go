package workers

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream"
)

func TestRegistrationSendsWelcomeOpensPointsAndAssignsSegments(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()

	buyer := b.register(t, "ada@example.test", false)
	corp := b.register(t, "grace@acme.test", true)

	for _, u := range []store.User{buyer, corp} {
		eventually(t, 10*time.Second, func() bool { return b.sink.Count(u.Email, "Welcome to Bazaar") == 1 }, "welcome mail to %s", u.Email)
		eventually(t, 5*time.Second, func() bool {
			_, err := store.GetPointsAccount(ctx, b.db, u.ID)
			return err == nil
		}, "points account of %s", u.Email)
	}
	eventually(t, 5*time.Second, func() bool {
		s, _ := store.UserSegments(ctx, b.db, corp.ID)
		return len(s) == 2
	}, "segments of the corporate buyer")
	b.settle(t, 5*time.Second)

	segs, err := store.UserSegments(ctx, b.db, buyer.ID)
	require.NoError(t, err)
	require.Equal(t, []string{SegmentNew}, segs)
	segs, err = store.UserSegments(ctx, b.db, corp.ID)
	require.NoError(t, err)
	require.Equal(t, []string{SegmentCorporate, SegmentNew}, segs)
	acct, err := store.GetPointsAccount(ctx, b.db, buyer.ID)
	require.NoError(t, err)
	require.Zero(t, acct.Balance)
	require.Equal(t, 1, b.sink.Count(buyer.Email, "Welcome"), "exactly one welcome mail")
	require.Equal(t, 1, b.eventCount(t, EventUserSegmentsChanged, buyer.ID.String()))
}

func TestOrderIsReservedChargedConfirmedAndMailed(t *testing.T) {
	t.Parallel()
	for _, p := range storetest.Pools {
		t.Run(p.String(), func(t *testing.T) {
			t.Parallel()
			testOrderIsReservedChargedConfirmedAndMailed(t, setupOpts{pool: p})
		})
	}
}

func testOrderIsReservedChargedConfirmedAndMailed(t *testing.T, opts setupOpts) {
	b := setup(t, opts)
	ctx := context.Background()
	s := b.seller(t)
	p := b.product(t, s.ID, 5, 1250)
	u := b.register(t, "buyer@example.test", false)

	o := b.order(t, u, p, 2, "tok_visa", nil)

	eventually(t, 10*time.Second, func() bool { return b.status(t, o.ID) == store.OrderConfirmed }, "order confirmed")
	eventually(t, 10*time.Second, func() bool { return b.sink.Count(u.Email, "is confirmed") == 1 }, "confirmation mail")
	require.Equal(t, 3, b.stock(t, p.ID), "two of five units reserved")
	r, err := store.GetReservation(ctx, b.db, o.ID)
	require.NoError(t, err)
	require.Equal(t, store.ReservationReserved, r.Status)
	pay, err := store.PaymentByOrder(ctx, b.db, o.ID)
	require.NoError(t, err)
	require.Equal(t, store.PaymentSucceeded, pay.Status)
	require.Equal(t, int64(2500), pay.AmountMinor)
	require.Equal(t, 1, b.gateway.Charges())

	mails := b.sink.Mails()
	var confirmation SinkMail
	for _, m := range mails {
		if m.Subject == "Your order "+shortID(o.ID.String())+" is confirmed" {
			confirmation = m
		}
	}
	require.Contains(t, confirmation.Text, "2 x Teapot")
	require.Contains(t, confirmation.Text, "Total: 25.00 EUR")

	// The saga's events carry the request context of the chain.
	for _, typ := range []string{EventInventoryReserved, EventPaymentSucceeded, eventOrderConfirmed} {
		require.Equal(t, 1, b.eventCount(t, typ, o.ID.String()), typ)
	}

	// Delivered: points granted once; a repeated delivery event grants nothing more.
	b.transition(t, o.ID, store.OrderShipped, "")
	b.transition(t, o.ID, store.OrderDelivered, "")
	eventually(t, 10*time.Second, func() bool {
		a, err := store.GetPointsAccount(ctx, b.db, u.ID)
		return err == nil && a.Balance == 25
	}, "25 points for 25.00 EUR")
	eventually(t, 10*time.Second, func() bool { return b.sink.Count(u.Email, "on its way") == 1 }, "shipment mail")
	b.settle(t, 5*time.Second)
	evs, err := store.EventsBySubject(ctx, b.db, o.ID.String())
	require.NoError(t, err)
	for _, e := range evs {
		if e.Type == eventOrderDelivered {
			require.NoError(t, b.group(t, GroupBenefits).Handle(ctx, stream.EnvelopeOf(e)))
		}
	}
	grant, err := NewOrderTask(TypePointsGrant, Meta{Version: 1}, o.ID, "")
	require.NoError(t, err)
	require.NoError(t, b.w.Enqueue(ctx, grant, "test:regrant"))
	b.settle(t, 5*time.Second)
	a, err := store.GetPointsAccount(ctx, b.db, u.ID)
	require.NoError(t, err)
	require.Equal(t, int64(25), a.Balance, "points granted once")
	segs, err := store.UserSegments(ctx, b.db, u.ID)
	require.NoError(t, err)
	require.Empty(t, segs, "one order: no longer new, not yet repeat")
}

func TestDeclinedCardCancelsOrderAndReleasesStock(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	s := b.seller(t)
	p := b.product(t, s.ID, 5, 900)
	u := b.register(t, "declined@example.test", false)

	o := b.order(t, u, p, 3, "tok_decline", nil)

	eventually(t, 10*time.Second, func() bool { return b.status(t, o.ID) == store.OrderCancelled }, "order cancelled")
	eventually(t, 10*time.Second, func() bool {
		r, err := store.GetReservation(ctx, b.db, o.ID)
		return err == nil && r.Status == store.ReservationReleased
	}, "reservation released")
	eventually(t, 10*time.Second, func() bool { return b.sink.Count(u.Email, "was cancelled") == 1 }, "cancellation mail")
	b.settle(t, 5*time.Second)

	require.Equal(t, 5, b.stock(t, p.ID), "stock back")
	got, err := store.GetOrder(ctx, b.db, o.ID)
	require.NoError(t, err)
	require.Equal(t, "payment_failed:card_declined", got.CancelReason)
	pay, err := store.PaymentByOrder(ctx, b.db, o.ID)
	require.NoError(t, err)
	require.Equal(t, store.PaymentFailed, pay.Status)
	require.Equal(t, 0, b.sink.Count(u.Email, "is confirmed"), "no confirmation mail")
	require.Equal(t, 0, b.eventCount(t, eventOrderConfirmed, o.ID.String()))
	require.Equal(t, 0, b.eventCount(t, EventPaymentRefunded, o.ID.String()), "nothing charged, nothing refunded")
	for _, m := range b.sink.Mails() {
		if m.Subject == "Your order "+shortID(o.ID.String())+" was cancelled" {
			require.Contains(t, m.Text, "declined")
		}
	}
}

func TestRedeliveredEventSendsNoSecondMail(t *testing.T) {
	t.Parallel()
	eachPool(t, func(t *testing.T, b *testBundle) {
		ctx := context.Background()
		u := b.register(t, "twice@example.test", false)
		eventually(t, 10*time.Second, func() bool { return b.sink.Count(u.Email, "Welcome") == 1 }, "welcome mail")
		b.settle(t, 5*time.Second)

		evs, err := store.EventsBySubject(ctx, b.db, u.ID.String())
		require.NoError(t, err)
		require.NotEmpty(t, evs)
		require.Equal(t, eventUserRegistered, evs[0].Type)
		env := stream.EnvelopeOf(evs[0])

		// The event comes again after its task finished (and was deleted):
		// the group finds it in processed_events and enqueues nothing; the
		// handler reports success.
		notify := b.group(t, GroupNotifications)
		require.NoError(t, notify.Handle(ctx, env))
		require.NoError(t, notify.Handle(ctx, env))
		_, err = b.insp.GetTaskInfo(QueueDefault, TaskID(GroupNotifications, env.ID, ""))
		require.ErrorIs(t, err, asynq.ErrTaskNotFound, "the finished task is gone and no duplicate was enqueued")

		// Even a task under another id (a person enqueued it by hand) does
		// not mail twice.
		again, err := NewUserTask(TypeEmailWelcome, MetaOf(env), u.ID)
		require.NoError(t, err)
		require.NoError(t, b.w.Enqueue(ctx, again, "test:by-hand"))
		eventually(t, 5*time.Second, func() bool {
			_, err := b.insp.GetTaskInfo(QueueDefault, "test:by-hand")
			return errors.Is(err, asynq.ErrTaskNotFound) // finished and deleted
		}, "hand-made task ran")
		require.Equal(t, 1, b.sink.Count(u.Email, "Welcome"), "still one welcome mail")

		// A crash between the enqueue and the commit leaves no mark, and
		// with no retention nothing in Redis remembers the finished task:
		// the redelivered event runs its task again under the same id,
		// and the effect's own key keeps it to one mail.
		_, err = b.db.Exec(`DELETE FROM processed_events WHERE event_id = $1 AND group_name = $2`, env.ID, reactorMark+GroupNotifications)
		require.NoError(t, err)
		require.NoError(t, notify.Handle(ctx, env))
		var marks int
		require.NoError(t, b.db.Get(&marks, `SELECT count(*) FROM processed_events WHERE event_id = $1 AND group_name = $2`, env.ID, reactorMark+GroupNotifications))
		require.Equal(t, 1, marks, "the group enqueued the task again")
		id := TaskID(GroupNotifications, env.ID, "")
		eventually(t, 5*time.Second, func() bool {
			_, err := b.insp.GetTaskInfo(QueueDefault, id)
			return errors.Is(err, asynq.ErrTaskNotFound)
		}, "the task ran again")
		b.settle(t, 5*time.Second)
		require.Equal(t, 1, b.sink.Count(u.Email, "Welcome"), "one welcome mail after the task ran twice")
		n, err := store.CountSentEmails(ctx, b.db, "welcome")
		require.NoError(t, err)
		require.Equal(t, 1, n)
	})
}

func TestLastUnitsRaceSellsExactlyTheStock(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{mutate: func(c *Config) { c.Concurrency = 20 }})
	ctx := context.Background()
	s := b.seller(t)
	p := b.product(t, s.ID, 10, 500)

	const buyers = 50
	users := make([]store.User, buyers)
	for i := range users {
		users[i] = b.register(t, "racer"+string(rune('a'+i%26))+string(rune('a'+i/26))+"@example.test", false)
	}
	// Watch stock while the race runs.
	stop := make(chan struct{})
	minStock := 10
	var watch sync.WaitGroup
	watch.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if n, err := store.ProductStock(ctx, b.db, p.ID); err == nil && n < minStock {
				minStock = n
			}
		}
	})
	orders := make([]store.Order, buyers)
	var place sync.WaitGroup
	for i := range users {
		place.Go(func() { orders[i] = b.order(t, users[i], p, 1, "tok_visa", nil) })
	}
	place.Wait()

	eventually(t, 60*time.Second, func() bool {
		var pending int
		require.NoError(t, b.db.Get(&pending, `SELECT count(*) FROM orders WHERE status = 'pending'`))
		return pending == 0
	}, "every order settled")
	b.settle(t, 20*time.Second)
	close(stop)
	watch.Wait()

	var confirmed, cancelled int
	require.NoError(t, b.db.Get(&confirmed, `SELECT count(*) FROM orders WHERE status = 'confirmed'`))
	require.NoError(t, b.db.Get(&cancelled, `SELECT count(*) FROM orders WHERE status = 'cancelled' AND cancel_reason = 'out_of_stock'`))
	require.Equal(t, 10, confirmed)
	require.Equal(t, buyers-10, cancelled)
	require.Equal(t, 0, b.stock(t, p.ID))
	require.GreaterOrEqual(t, minStock, 0, "stock never negative")
	require.Equal(t, 10, b.gateway.Charges())
	var reserved int
	require.NoError(t, b.db.Get(&reserved, `SELECT count(*) FROM inventory_reservations WHERE status = 'reserved'`))
	require.Equal(t, 10, reserved)
	require.Equal(t, 10, b.sink.Count("", "is confirmed"))
}

func TestFollowUpFiresAfterItsDelay(t *testing.T) {
	t.Parallel()
	testFollowUpFiresAfterItsDelay(t, setupOpts{})
}

func testFollowUpFiresAfterItsDelay(t *testing.T, opts setupOpts) {
	opts.mutate = func(c *Config) {
		c.FollowUpDelay = time.Second
		// Keep the stuck charge from filling the log while we wait.
		c.Policies = map[string]TaskPolicy{TypePaymentCharge: {MaxRetry: 2, Timeout: time.Second}}
	}
	b := setup(t, opts)
	ctx := context.Background()
	s := b.seller(t)
	p := b.product(t, s.ID, 5, 100)
	u := b.register(t, "slow@example.test", false)

	// The gateway never answers: the order stays pending.
	stuck := b.order(t, u, p, 1, "tok_timeout", nil)
	fine := b.order(t, u, p, 1, "tok_visa", nil)

	eventually(t, 10*time.Second, func() bool { return b.eventCount(t, EventOrderFollowUpOverdue, stuck.ID.String()) == 1 }, "overdue event")
	evs, err := store.EventsBySubject(ctx, b.db, stuck.ID.String())
	require.NoError(t, err)
	for _, e := range evs {
		if e.Type == EventOrderFollowUpOverdue {
			// How soon after its delay it fires depends on the delayed-task
			// check interval and the machine's load; the wait above bounds it.
			require.GreaterOrEqual(t, e.Time.Sub(stuck.CreatedAt), time.Second, "not before its delay")
		}
	}
	eventually(t, 10*time.Second, func() bool {
		out, err := store.FollowupOutcome(ctx, b.db, fine.ID, "followup")
		return err == nil && out == string(store.OrderConfirmed)
	}, "confirmed order followed up")
	out, err := store.FollowupOutcome(ctx, b.db, stuck.ID, "followup")
	require.NoError(t, err)
	require.Equal(t, "overdue", out)
	require.Equal(t, 0, b.eventCount(t, EventOrderFollowUpOverdue, fine.ID.String()))

	// The stuck charge exhausted its retries: archived and recorded.
	eventually(t, 10*time.Second, func() bool {
		fs, err := store.TaskFailures(ctx, b.db, TypePaymentCharge, 10)
		return err == nil && len(fs) == 1
	}, "charge failure recorded")
	fs, err := store.TaskFailures(ctx, b.db, TypePaymentCharge, 10)
	require.NoError(t, err)
	require.Contains(t, fs[0].Error, "timeout")
	require.Equal(t, 2, fs[0].Retried)
	info, err := b.insp.GetTaskInfo(QueueCritical, fs[0].TaskID)
	require.NoError(t, err)
	require.Equal(t, asynq.TaskStateArchived, info.State)
}

func TestCancellingAnOrderDeletesItsReminderAndCompensates(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	s := b.seller(t)
	p := b.product(t, s.ID, 5, 4000)
	u := b.register(t, "pickup@example.test", false)
	due := time.Now().Add(48 * time.Hour).Truncate(time.Second)

	o := b.order(t, u, p, 1, "tok_visa", &due)
	eventually(t, 10*time.Second, func() bool { return b.status(t, o.ID) == store.OrderConfirmed }, "order confirmed")
	eventually(t, 5*time.Second, func() bool {
		info, err := b.insp.GetTaskInfo(QueueDefault, ReminderTaskID(o.ID))
		return err == nil && info.State == asynq.TaskStateScheduled
	}, "reminder scheduled")
	info, err := b.insp.GetTaskInfo(QueueDefault, ReminderTaskID(o.ID))
	require.NoError(t, err)
	require.WithinDuration(t, due.Add(-24*time.Hour), info.NextProcessAt, time.Second)

	// The buyer cancels the confirmed order.
	b.transition(t, o.ID, store.OrderCancelled, "buyer changed their mind")

	eventually(t, 10*time.Second, func() bool {
		_, err := b.insp.GetTaskInfo(QueueDefault, ReminderTaskID(o.ID))
		return err != nil
	}, "reminder deleted")
	// Both are deleted by one task, one after the other.
	eventually(t, 10*time.Second, func() bool {
		_, err := b.insp.GetTaskInfo(QueueDeferred, FollowUpTaskID(o.ID))
		return errors.Is(err, asynq.ErrTaskNotFound)
	}, "follow-up deleted")
	eventually(t, 10*time.Second, func() bool {
		pay, err := store.PaymentByOrder(ctx, b.db, o.ID)
		return err == nil && pay.Status == store.PaymentRefunded
	}, "payment refunded")
	eventually(t, 10*time.Second, func() bool { return b.stock(t, p.ID) == 5 }, "stock released")
	b.settle(t, 5*time.Second)
	require.Equal(t, 1, b.eventCount(t, EventPaymentRefunded, o.ID.String()))
}
