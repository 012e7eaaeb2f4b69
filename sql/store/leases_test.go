package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
)

// One holder at a time: taken when free, renewed by its holder, refused to
// others until it expires, handed over at once when released.
func TestLeaseHasOneHolder(t *testing.T) {
	t.Parallel()
	db, _ := storetest.NewDB(t)
	ctx := context.Background()

	first, ok, err := store.AcquireLease(ctx, db, "scheduler", "a", 300*time.Millisecond)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "a", first.Holder)

	_, ok, err = store.AcquireLease(ctx, db, "scheduler", "b", time.Minute)
	require.NoError(t, err)
	require.False(t, ok, "b may not take a's live lease")
	other, ok, err := store.AcquireLease(ctx, db, "another", "b", time.Minute)
	require.NoError(t, err)
	require.True(t, ok, "leases are per name")
	require.Equal(t, "b", other.Holder)

	renewed, ok, err := store.AcquireLease(ctx, db, "scheduler", "a", 300*time.Millisecond)
	require.NoError(t, err)
	require.True(t, ok)
	require.True(t, renewed.AcquiredAt.Equal(first.AcquiredAt), "renewing keeps acquired_at")
	require.True(t, renewed.ExpiresAt.After(first.ExpiresAt))

	time.Sleep(400 * time.Millisecond)
	taken, ok, err := store.AcquireLease(ctx, db, "scheduler", "b", time.Minute)
	require.NoError(t, err)
	require.True(t, ok, "an expired lease is taken over")
	require.Equal(t, "b", taken.Holder)
	_, ok, err = store.AcquireLease(ctx, db, "scheduler", "a", time.Minute)
	require.NoError(t, err)
	require.False(t, ok, "a lost it")

	require.NoError(t, store.ReleaseLease(ctx, db, "scheduler", "a"), "releasing another's lease does nothing")
	l, err := store.GetLease(ctx, db, "scheduler")
	require.NoError(t, err)
	require.Equal(t, "b", l.Holder)
	require.NoError(t, store.ReleaseLease(ctx, db, "scheduler", "b"))
	_, err = store.GetLease(ctx, db, "scheduler")
	require.ErrorIs(t, err, store.ErrNotFound)
	_, ok, err = store.AcquireLease(ctx, db, "scheduler", "a", time.Minute)
	require.NoError(t, err)
	require.True(t, ok, "a released lease is free at once")
}

// Of many contenders racing for a free lease, exactly one wins.
func TestLeaseRaceHasOneWinner(t *testing.T) {
	t.Parallel()
	db, _ := storetest.NewDB(t)
	ctx := context.Background()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins []string
	)
	for _, holder := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, ok, err := store.AcquireLease(ctx, db, "race", holder, time.Minute)
			if err != nil {
				t.Error(err)
				return
			}
			if ok {
				mu.Lock()
				wins = append(wins, holder)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.Len(t, wins, 1)
}

// A (schedule, period) is recorded once, whoever tries; its hand-over is
// marked once.
func TestFiringIsRecordedOnce(t *testing.T) {
	t.Parallel()
	db, _ := storetest.NewDB(t)
	ctx := context.Background()
	due := time.Date(2026, 11, 1, 1, 0, 0, 0, time.UTC)
	f := store.Firing{Schedule: "invoicing", Period: "2026-10-15", DueAt: due, TaskID: "invoice:run:2026-10-15", FiredBy: "a"}

	got, ok, err := store.InsertFiring(ctx, db, f)
	require.NoError(t, err)
	require.True(t, ok)
	require.Nil(t, got.EnqueuedAt)
	f.FiredBy = "b"
	_, ok, err = store.InsertFiring(ctx, db, f)
	require.NoError(t, err)
	require.False(t, ok)

	pending, err := store.UnenqueuedFirings(ctx, db, "invoicing")
	require.NoError(t, err)
	require.Len(t, pending, 1)
	require.Equal(t, "a", pending[0].FiredBy)
	require.NoError(t, store.MarkFiringEnqueued(ctx, db, "invoicing", "2026-10-15"))
	pending, err = store.UnenqueuedFirings(ctx, db, "invoicing")
	require.NoError(t, err)
	require.Empty(t, pending)

	since, err := store.FiringsSince(ctx, db, "invoicing", due)
	require.NoError(t, err)
	require.Len(t, since, 1)
	require.NotNil(t, since[0].EnqueuedAt)
	since, err = store.FiringsSince(ctx, db, "invoicing", due.Add(time.Second))
	require.NoError(t, err)
	require.Empty(t, since)
}
