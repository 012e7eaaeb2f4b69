package store_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
)

func TestAckOrderAndUnprintedOrders(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	sellerID := f.seller.ID
	key, err := store.CreateAPIKey(ctx, f.db, store.KeyPrinter, &sellerID, "printer", "secret-"+uuid.NewString(), "bzr_pr_x")
	require.NoError(t, err)
	var orders []uuid.UUID
	for range 3 {
		orders = append(orders, f.order(t).ID)
	}
	ids := func(os []store.Order) []uuid.UUID {
		out := []uuid.UUID{}
		for _, o := range os {
			out = append(out, o.ID)
		}
		return out
	}

	page, next, err := store.UnprintedOrders(ctx, f.db, sellerID, store.Page{Limit: 2})
	require.NoError(t, err)
	require.Equal(t, orders[:2], ids(page), "oldest first")
	require.NotNil(t, next)
	require.Len(t, page[0].Items, 1, "with items")
	rest, next, err := store.UnprintedOrders(ctx, f.db, sellerID, store.Page{Limit: 2, After: next})
	require.NoError(t, err)
	require.Equal(t, orders[2:], ids(rest))
	require.Nil(t, next)

	ack, created, err := store.AckOrder(ctx, f.db, key.ID, sellerID, orders[1])
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, orders[1], ack.OrderID)
	again, created, err := store.AckOrder(ctx, f.db, key.ID, sellerID, orders[1])
	require.NoError(t, err)
	require.False(t, created, "a repeat returns the first acknowledgement")
	require.Equal(t, ack.AckedAt, again.AckedAt)

	_, _, err = store.AckOrder(ctx, f.db, key.ID, uuid.New(), orders[0])
	require.ErrorIs(t, err, store.ErrNotFound, "another seller's order")
	_, _, err = store.AckOrder(ctx, f.db, key.ID, sellerID, uuid.New())
	require.ErrorIs(t, err, store.ErrNotFound)

	all, _, err := store.UnprintedOrders(ctx, f.db, sellerID, store.Page{})
	require.NoError(t, err)
	require.Equal(t, []uuid.UUID{orders[0], orders[2]}, ids(all))
}

// Stream positions compare as numbers: "9-0" < "10-0" < "10-2" < "10-10".
func TestEventLogRangeOrdersByStreamPosition(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	positions := []string{"10-10", "9-0", "10-2", "10-0", "11-0"}
	for _, pos := range positions {
		ev, err := store.NewEvent("order.created", uuid.NewString(), &f.seller.ID, 1, map[string]int{"n": 1})
		require.NoError(t, err)
		require.NoError(t, store.InsertEvents(ctx, f.db, ev))
		require.NoError(t, markPublished(ctx, f.db, ev.ID, "s", pos))
	}
	rows, err := store.EventLogRange(ctx, f.db, store.EventLogQuery{Stream: "s", AfterMs: 9, AfterSeq: 0, UntilMs: 10, UntilSeq: 10})
	require.NoError(t, err)
	var got []string
	for _, r := range rows {
		got = append(got, *r.StreamID)
	}
	require.Equal(t, []string{"10-0", "10-2", "10-10"}, got)

	other := uuid.New()
	rows, err = store.EventLogRange(ctx, f.db, store.EventLogQuery{Stream: "s", UntilMs: 99, Seller: &other})
	require.NoError(t, err)
	require.Empty(t, rows, "another seller's events are left out")

	ok, err := store.EventLogReaches(ctx, f.db, "s", 9, 0)
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = store.EventLogReaches(ctx, f.db, "s", 8, ^uint64(0))
	require.NoError(t, err)
	require.False(t, ok, "the log starts after 8-max")

	latest, err := store.LatestEventOfType(ctx, f.db, "order.created")
	require.NoError(t, err)
	require.Equal(t, "11-0", *latest.StreamID)
	_, err = store.LatestEventOfType(ctx, f.db, "system.maintenance")
	require.ErrorIs(t, err, store.ErrNotFound)
}
