package workers

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/stream"
	"github.com/bazaarhq/bazaar/stream/redistest"
)

// TestOrderStormSurvivesSentinelFailover: orders keep coming while the
// Redis primary is killed (SIGKILL) and Sentinel promotes its replica. The
// relay waits for one replica before marking a batch published, so no
// event the database counts as published is lost with the old primary:
// a consumer of every event sees each at least once (exactly once after
// deduplication by event id), and every order reaches confirmed, charged
// and mailed once.
func TestOrderStormSurvivesSentinelFailover(t *testing.T) {
	t.Parallel()
	sn := redistest.StartSentinel(t)
	var mu sync.Mutex
	deliveries := map[string]int{}
	audit := stream.Subscription{Group: "storm-audit", Patterns: []string{"#"}, Handler: func(_ context.Context, m stream.Message) error {
		mu.Lock()
		deliveries[m.ID]++
		mu.Unlock()
		return nil
	}}
	b := setup(t, setupOpts{sentinel: sn, extra: []stream.Subscription{audit}})
	ctx := context.Background()
	s := b.seller(t)
	p := b.product(t, s.ID, 1000, 100)
	u := b.register(t, "storm@example.test", false)

	const n = 40
	orders := make([]store.Order, 0, n)
	for i := range n / 2 {
		orders = append(orders, b.order(t, u, p, 1, "tok_visa", nil))
		if i%5 == 0 {
			b.waker.EventsCommitted()
		}
	}
	// Mid-storm: the primary dies with whatever it had not replicated.
	old := sn.Primary.Addr()
	sn.Primary.Stop()
	promoted := make(chan error, 1)
	go func() {
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_, err := sn.WaitPromoted(pctx, old)
		promoted <- err
	}()
	for range n / 2 {
		orders = append(orders, b.order(t, u, p, 1, "tok_visa", nil))
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(t, <-promoted, "the sentinels promote the replica")
	// The old primary comes back (empty) and the sentinels make it the new
	// primary's replica, which the relay's wait needs again. A sentinel
	// that finds its timer late (a loaded machine) goes into TILT mode
	// for 30 s and reconfigures nobody meanwhile, hence the long wait.
	require.NoError(t, sn.Primary.Start())
	sctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	require.NoError(t, sn.Primary.WaitInSync(sctx), "the old primary replicates the new one")

	for _, o := range orders {
		eventually(t, 90*time.Second, func() bool { return b.status(t, o.ID) == store.OrderConfirmed }, "order %s confirmed after the failover", o.ID)
	}
	eventually(t, 30*time.Second, func() bool { return b.sink.Count(u.Email, "is confirmed") == n }, "a confirmation mail per order")
	require.Equal(t, n, b.gateway.Charges(), "each order charged once")
	for _, o := range orders {
		for _, typ := range []string{EventInventoryReserved, EventPaymentSucceeded, eventOrderConfirmed} {
			require.Equal(t, 1, b.eventCount(t, typ, o.ID.String()), "%s of %s", typ, o.ID)
		}
	}
	// Every event is published and reached the consumer: none is lost
	// with the old primary; a repeat (a batch retried after a failed
	// wait) is absorbed by deduplication on the event id.
	eventually(t, 30*time.Second, func() bool {
		var waiting int
		return b.db.GetContext(ctx, &waiting, `SELECT count(*) FROM outbox`) == nil && waiting == 0
	}, "every event published")
	var ids []string
	require.NoError(t, b.db.SelectContext(ctx, &ids, `SELECT id::text FROM events`))
	eventually(t, 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, id := range ids {
			if deliveries[id] == 0 {
				return false
			}
		}
		return true
	}, "the consumer saw every published event")
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, deliveries, len(ids), "the consumer saw no event the database does not have")
	repeats := 0
	for _, c := range deliveries {
		repeats += c - 1
	}
	t.Logf("%d events, %d orders; %d repeated deliveries absorbed", len(ids), n, repeats)
}
