package stream

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
)

// recordFor records one order.updated event of subject for seller carrying n.
func recordFor(t testing.TB, b testBundle, seller uuid.UUID, subject string, n int) {
	t.Helper()
	e, err := store.NewEvent("order.updated", subject, &seller, 1, map[string]int{"n": n})
	require.NoError(t, err)
	require.NoError(t, store.InsertEvents(context.Background(), b.db, e))
}

// numbersBySubject returns the n of each message, per subject, in the
// order the handler saw them.
func numbersBySubject(t testing.TB, msgs []Message, seller uuid.UUID) map[string][]int {
	t.Helper()
	out := map[string][]int{}
	for _, m := range msgs {
		if m.Seller != seller.String() {
			continue
		}
		var d struct{ N int }
		require.NoError(t, jsonUnmarshal(m.Data, &d))
		out[m.Subject] = append(out[m.Subject], d.N)
	}
	return out
}

func TestPausedSellerWaitsWithoutBlockingOthersAndResumesInOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	paused, err := store.CreateSeller(ctx, b.db, "Flash Sale Ltd", "big@example.test")
	require.NoError(t, err)
	other, err := store.CreateSeller(ctx, b.db, "Corner Shop", "small@example.test")
	require.NoError(t, err)
	_, err = store.PauseSeller(ctx, b.db, paused.ID, "chargeback review")
	require.NoError(t, err)

	rec := &recorder{}
	g, err := NewGroups(GroupsConfig{
		Redis: b.rdb, DB: b.db, Names: b.names, Logger: b.log, Consumer: "c1",
		Block: 50 * time.Millisecond, LeaseTTL: time.Second, PauseSync: 20 * time.Millisecond,
	})
	require.NoError(t, err)
	require.NoError(t, g.Add(Subscription{
		Group: "fulfil", Patterns: []string{"order.#"}, Handler: rec.handle,
		Concurrency: 4, OrderedBySubject: true, MaxDeliveries: 2, StartFrom: StartBeginning,
	}))
	require.NoError(t, g.Start(ctx))
	t.Cleanup(func() { require.NoError(t, g.Stop(context.Background())) })
	startRelay(t, b, RelayConfig{PollInterval: 10 * time.Millisecond})

	hold := b.names.holdKey(paused.ID.String())
	eventually(t, "pause applied", func() bool { return b.rdb.HGet(ctx, hold, "state").Val() == holdPaused })

	const before, subjects = 60, 5
	for i := range before {
		recordFor(t, b, paused.ID, fmt.Sprintf("big-%d", i%subjects), i)
		if i%6 == 0 {
			recordFor(t, b, other.ID, fmt.Sprintf("small-%d", i), i)
		}
	}
	eventually(t, "the other seller's events handled", func() bool {
		return len(numbersBySubject(t, rec.seen(), other.ID)) == before/6
	})
	parked := b.names.parkedKey(paused.ID.String(), "fulfil")
	eventually(t, "the paused seller's events parked", func() bool { return b.rdb.XLen(ctx, parked).Val() == before })
	require.Empty(t, numbersBySubject(t, rec.seen(), paused.ID), "a paused seller's events wait")
	for _, s := range b.names.Streams("order") {
		p, err := b.rdb.XPending(ctx, s, "fulfil").Result()
		require.NoError(t, err)
		require.Zero(t, p.Count, "held events are not left pending on %s: no delivery is spent", s)
	}

	_, err = store.ResumeSeller(ctx, b.db, paused.ID)
	require.NoError(t, err)
	// Events recorded while the held ones are handed over go behind them.
	const after = 40
	for i := before; i < before+after; i++ {
		recordFor(t, b, paused.ID, fmt.Sprintf("big-%d", i%subjects), i)
	}
	eventually(t, "held and new events handled", func() bool {
		total := 0
		for _, ns := range numbersBySubject(t, rec.seen(), paused.ID) {
			total += len(ns)
		}
		return total >= before+after
	})
	require.Eventually(t, func() bool {
		return b.rdb.HGet(ctx, hold, "state").Val() == holdRunning && b.rdb.Exists(ctx, parked).Val() == 0
	}, 10*time.Second, 10*time.Millisecond, "the hold ends: %v, %d parked", b.rdb.HGetAll(ctx, hold).Val(), b.rdb.XLen(ctx, parked).Val())
	for subject, ns := range numbersBySubject(t, rec.seen(), paused.ID) {
		require.IsIncreasing(t, ns, "subject %s handled in order", subject)
		require.Len(t, ns, (before+after)/subjects, "subject %s handled once each", subject)
	}
	n, err := b.rdb.XLen(ctx, b.names.DLQ("fulfil")).Result()
	require.True(t, err == nil || errors.Is(err, redis.Nil))
	require.Zero(t, n, "nothing failed")
}

func TestFairOrderInterleavesTenantsAndKeepsSubjectOrder(t *testing.T) {
	t.Parallel()
	var items []*item
	add := func(seller, subject string, n int) {
		items = append(items, &item{env: Envelope{Type: "order.updated", Seller: seller, Subject: subject, ID: fmt.Sprint(n)}})
	}
	for i := range 6 {
		add("big", fmt.Sprintf("b%d", i%2), i)
	}
	add("small", "s0", 6)
	add("", "u0", 7) // no seller: a tenant of its own
	add("big", "b0", 8)
	fairOrder(items)
	var got []string
	for _, it := range items {
		got = append(got, it.env.ID)
	}
	require.Equal(t, []string{"0", "6", "7", "1", "2", "3", "4", "5", "8"}, got)
}
