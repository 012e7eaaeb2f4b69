package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
)

func TestReserveStockOnceAndNeverOversell(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t) // 3 in stock, orders take 2
	first, second := f.order(t), f.order(t)

	reserve := func(o store.Order) error {
		return store.WithTx(ctx, f.db, func(tx *sqlx.Tx) error { return store.ReserveStock(ctx, tx, o.ID, o.Items) })
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, o := range []store.Order{first, second} {
		wg.Go(func() { errs[i] = reserve(o) })
	}
	wg.Wait()
	ok, short := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, store.ErrInsufficientStock):
			short++
		default:
			t.Fatalf("unexpected: %v", err)
		}
	}
	require.Equal(t, 1, ok)
	require.Equal(t, 1, short)
	n, err := store.ProductStock(ctx, f.db, f.product.ID)
	require.NoError(t, err)
	require.Equal(t, 1, n)

	winner := first
	if errs[0] != nil {
		winner = second
	}
	require.ErrorIs(t, reserve(winner), store.ErrConflict, "a second reservation of one order is refused")

	released, err := store.ReleaseStock(ctx, f.db, winner.ID)
	require.NoError(t, err)
	require.True(t, released)
	released, err = store.ReleaseStock(ctx, f.db, winner.ID)
	require.NoError(t, err)
	require.False(t, released, "released once")
	n, err = store.ProductStock(ctx, f.db, f.product.ID)
	require.NoError(t, err)
	require.Equal(t, 3, n)
	r, err := store.GetReservation(ctx, f.db, winner.ID)
	require.NoError(t, err)
	require.Equal(t, store.ReservationReleased, r.Status)

	// A cancelled order is not reserved.
	third := f.order(t)
	_, err = store.TransitionOrder(ctx, f.db, third.ID, store.OrderCancelled, "buyer")
	require.NoError(t, err)
	require.ErrorIs(t, reserve(third), store.ErrInvalidTransition)
}

func TestPaymentsOnePerOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	o := f.order(t)
	p := store.Payment{OrderID: o.ID, Status: store.PaymentSucceeded, AmountMinor: 2500, Currency: "EUR", Gateway: "sandbox", ChargeID: "ch_1", IdempotencyKey: "k"}
	require.NoError(t, store.InsertPayment(ctx, f.db, p))
	require.ErrorIs(t, store.InsertPayment(ctx, f.db, p), store.ErrConflict)
	require.NoError(t, store.MarkPaymentRefunded(ctx, f.db, o.ID, "re_1"))
	require.ErrorIs(t, store.MarkPaymentRefunded(ctx, f.db, o.ID, "re_2"), store.ErrInvalidTransition)
	got, err := store.PaymentByOrder(ctx, f.db, o.ID)
	require.NoError(t, err)
	require.Equal(t, store.PaymentRefunded, got.Status)
	require.Equal(t, "re_1", got.RefundID)
	_, err = store.PaymentByOrder(ctx, f.db, uuid.New())
	require.ErrorIs(t, err, store.ErrNotFound)
}

func TestPointsMoveOncePerSourceAndNeverBelowZero(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	add := func(delta int64, key string) (bool, error) {
		var applied bool
		err := store.WithTx(ctx, f.db, func(tx *sqlx.Tx) error {
			_, ok, err := store.AddPoints(ctx, tx, f.user.ID, delta, "test", key)
			applied = ok
			return err
		})
		return applied, err
	}
	_, err := add(10, "grant:x")
	require.ErrorIs(t, err, store.ErrNotFound, "no account yet")
	opened, err := store.OpenPointsAccount(ctx, f.db, f.user.ID)
	require.NoError(t, err)
	require.True(t, opened)
	opened, err = store.OpenPointsAccount(ctx, f.db, f.user.ID)
	require.NoError(t, err)
	require.False(t, opened)

	ok, err := add(25, "grant:a")
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = add(25, "grant:a")
	require.NoError(t, err)
	require.False(t, ok, "same source twice")
	ok, err = add(-40, "revoke:b")
	require.NoError(t, err)
	require.True(t, ok)
	a, err := store.GetPointsAccount(ctx, f.db, f.user.ID)
	require.NoError(t, err)
	require.Zero(t, a.Balance, "never below zero")
	ledger, err := store.PointsLedger(ctx, f.db, f.user.ID)
	require.NoError(t, err)
	require.Len(t, ledger, 2)
	require.Equal(t, int64(-25), ledger[1].Delta, "records what was actually taken")
}

func TestSegmentsFactsAndSet(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	o := f.order(t)
	set := func(segs []string) bool {
		var changed bool
		require.NoError(t, store.WithTx(ctx, f.db, func(tx *sqlx.Tx) error {
			var err error
			changed, err = store.SetUserSegments(ctx, tx, f.user.ID, segs)
			return err
		}))
		return changed
	}
	facts, err := store.UserSegmentFacts(ctx, f.db, f.user.ID)
	require.NoError(t, err)
	require.Zero(t, facts.Orders, "a pending order has not gone through")
	_, err = store.TransitionOrder(ctx, f.db, o.ID, store.OrderConfirmed, "")
	require.NoError(t, err)
	facts, err = store.UserSegmentFacts(ctx, f.db, f.user.ID)
	require.NoError(t, err)
	require.Equal(t, 1, facts.Orders)
	require.Equal(t, int64(2500), facts.SpentMinor)

	require.True(t, set([]string{"new", "corporate"}))
	require.False(t, set([]string{"corporate", "new"}), "same set, no change")
	require.True(t, set(nil))
	segs, err := store.UserSegments(ctx, f.db, f.user.ID)
	require.NoError(t, err)
	require.Empty(t, segs, "an empty set clears every segment")
}

func TestFollowupsAndTaskFailures(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	o := f.order(t)
	first, err := store.RecordFollowup(ctx, f.db, o.ID, "followup", "overdue")
	require.NoError(t, err)
	require.True(t, first)
	first, err = store.RecordFollowup(ctx, f.db, o.ID, "followup", "confirmed")
	require.NoError(t, err)
	require.False(t, first)
	out, err := store.FollowupOutcome(ctx, f.db, o.ID, "followup")
	require.NoError(t, err)
	require.Equal(t, "overdue", out, "the first outcome stays")

	require.NoError(t, store.RecordTaskFailure(ctx, f.db, store.TaskFailure{TaskID: "t1", TaskType: "email:welcome", Queue: "default", Payload: []byte(`{}`), Error: "boom", Retried: 3, MaxRetry: 3}))
	require.NoError(t, store.RecordTaskFailure(ctx, f.db, store.TaskFailure{TaskID: "t2", TaskType: "payment:charge", Queue: "critical", Error: "timeout"}))
	all, err := store.TaskFailures(ctx, f.db, "", 10)
	require.NoError(t, err)
	require.Len(t, all, 2)
	require.Equal(t, "t2", all[0].TaskID, "newest first")
	mail, err := store.TaskFailures(ctx, f.db, "email:welcome", 10)
	require.NoError(t, err)
	require.Len(t, mail, 1)

	sent, err := store.EmailSent(ctx, f.db, "welcome:x")
	require.NoError(t, err)
	require.False(t, sent)
	require.NoError(t, store.RecordEmailSent(ctx, f.db, store.SentEmail{DedupeKey: "welcome:x", Kind: "welcome", Recipient: "a@b", Subject: "Hi"}))
	require.NoError(t, store.RecordEmailSent(ctx, f.db, store.SentEmail{DedupeKey: "welcome:x", Kind: "welcome", Recipient: "a@b", Subject: "Hi"}))
	sent, err = store.EmailSent(ctx, f.db, "welcome:x")
	require.NoError(t, err)
	require.True(t, sent)
}
