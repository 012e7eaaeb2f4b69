package stream

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
)

func TestReplaySellerReachesOnlyThatGroupAndThatSeller(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	lost, err := store.CreateSeller(ctx, b.db, "Lost Data Ltd", "lost@example.test")
	require.NoError(t, err)
	other, err := store.CreateSeller(ctx, b.db, "Fine Shop", "fine@example.test")
	require.NoError(t, err)
	hooks, books := &recorder{}, &recorder{}
	startGroups(t, b, "c1",
		Subscription{Group: "hooks", Patterns: []string{"order.#"}, Handler: hooks.handle, OrderedBySubject: true, StartFrom: StartBeginning},
		Subscription{Group: "books", Patterns: []string{"order.#"}, Handler: books.handle, OrderedBySubject: true, StartFrom: StartBeginning},
	)
	startRelay(t, b, RelayConfig{PollInterval: 10 * time.Millisecond})
	early := time.Now().Add(-time.Hour)
	// An event of the lost seller from before the replay's start.
	old, err := store.NewEvent("order.updated", "old-order", &lost.ID, 1, map[string]int{"n": -1})
	require.NoError(t, err)
	old.Time = early
	require.NoError(t, store.InsertEvents(ctx, b.db, old))
	since := time.Now().Add(-time.Minute)
	for i := range 6 {
		recordFor(t, b, lost.ID, fmt.Sprintf("lost-%d", i%2), i)
		recordFor(t, b, other.ID, fmt.Sprintf("other-%d", i%2), i)
	}
	eventually(t, "first deliveries", func() bool { return hooks.count() == 13 && books.count() == 13 })

	admin, err := NewAdmin(AdminConfig{Redis: b.rdb, DB: b.db, Names: b.names})
	require.NoError(t, err)
	_, err = admin.ReplaySeller(ctx, "nobody", lost.ID, since)
	require.ErrorIs(t, err, ErrUnknownGroup)
	n, err := admin.ReplaySeller(ctx, "hooks", lost.ID, since)
	require.NoError(t, err)
	require.Equal(t, 6, n, "the lost seller's events since the time, not the older one")

	eventually(t, "replayed deliveries", func() bool { return hooks.count() == 19 })
	replayed := hooks.seen()[13:]
	for _, m := range replayed {
		require.Equal(t, lost.ID.String(), m.Seller, "only the seller's events")
		require.Equal(t, b.names.Retry("hooks"), m.Stream)
	}
	for subject, ns := range numbersBySubject(t, replayed, lost.ID) {
		require.Len(t, ns, 3)
		require.IsIncreasing(t, ns, "subject %s replayed in order", subject)
	}
	// The other group sees nothing again.
	require.Never(t, func() bool { return books.count() != 13 }, 300*time.Millisecond, 20*time.Millisecond)
}
