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

// TestSellerOverItsShareDeferredInOrder: a backlog of one seller's
// events with another seller's few behind it. With fairness the group
// runs the big seller's first SellerShare entries, defers the rest to its
// parked stream and reaches the small seller's events before the big
// seller's third; without, they come after all of them. Either way every
// event runs once, each subject in order, and nothing is left parked.
func TestSellerOverItsShareDeferredInOrder(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		off  bool
	}{{"fair", false}, {"fairness_off", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			ctx := context.Background()
			big, err := store.CreateSeller(ctx, b.db, "Flash Sale Ltd", "big@example.test")
			require.NoError(t, err)
			small, err := store.CreateSeller(ctx, b.db, "Corner Shop", "small@example.test")
			require.NoError(t, err)
			const flood, subjects = 200, 5
			recordFor(t, b, small.ID, "small-0", 0)
			for i := range flood {
				recordFor(t, b, big.ID, fmt.Sprintf("big-%d", i%subjects), i)
			}
			for i := 1; i <= 3; i++ {
				recordFor(t, b, small.ID, fmt.Sprintf("small-%d", i), i)
			}
			startRelay(t, b, RelayConfig{PollInterval: 10 * time.Millisecond})
			eventually(t, "the backlog published", func() bool {
				var n int64
				for _, s := range b.names.Streams("order") {
					n += b.rdb.XLen(ctx, s).Val()
				}
				return n == flood+4
			})

			rec := &recorder{}
			g, err := NewGroups(GroupsConfig{
				Redis: b.rdb, DB: b.db, Names: b.names, Logger: b.log, Consumer: "c1", BatchSize: 20,
				Block: 50 * time.Millisecond, LeaseTTL: time.Second, PauseSync: 20 * time.Millisecond,
				SellerShare: 2, DisableFairness: tc.off,
			})
			require.NoError(t, err)
			require.NoError(t, g.Add(Subscription{
				Group: "fulfil", Patterns: []string{"order.#"}, Handler: rec.handle,
				Concurrency: 2, OrderedBySubject: true, MaxDeliveries: 2, StartFrom: StartBeginning,
			}))
			require.NoError(t, g.Start(ctx))
			t.Cleanup(func() { require.NoError(t, g.Stop(context.Background())) })

			eventually(t, "every event handled", func() bool { return rec.count() >= flood+4 })
			seen := rec.seen()
			require.Len(t, seen, flood+4, "each event once")
			bigRun, lastSmall := 0, 0
			for _, m := range seen {
				switch m.Seller {
				case big.ID.String():
					bigRun++
				case small.ID.String():
					lastSmall = bigRun // the big seller's events run before it
				}
			}
			if tc.off {
				require.Equal(t, flood, lastSmall, "first come, first served")
			} else {
				require.LessOrEqual(t, lastSmall, 2, "the small seller waits for the big seller's share only")
			}
			for subject, ns := range numbersBySubject(t, seen, big.ID) {
				require.IsIncreasing(t, ns, "subject %s handled in order", subject)
				require.Len(t, ns, flood/subjects, "subject %s handled once each", subject)
			}
			parked := b.names.parkedKey(big.ID.String(), "fulfil")
			require.Eventually(t, func() bool { return b.rdb.Exists(ctx, parked).Val() == 0 },
				10*time.Second, 10*time.Millisecond, "nothing left parked")
			require.NotEqual(t, holdDraining, b.rdb.HGet(ctx, b.names.holdKey(big.ID.String()), "state").Val())
			for _, s := range b.names.Streams("order") {
				p, err := b.rdb.XPending(ctx, s, "fulfil").Result()
				require.NoError(t, err)
				require.Zero(t, p.Count, "nothing left pending on %s", s)
			}
		})
	}
}
