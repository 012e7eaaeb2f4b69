package workers

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
)

// orders places n orders of one unit of p for u in one transaction, as
// many API requests at once would.
func (b *testBundle) orders(t testing.TB, u store.User, p store.Product, n int) []store.Order {
	t.Helper()
	out := make([]store.Order, 0, n)
	err := store.WithTx(context.Background(), b.db, func(tx *sqlx.Tx) error {
		for range n {
			o, err := store.CreateOrder(context.Background(), tx, store.Order{
				SellerID: p.SellerID, UserID: u.ID, Currency: p.Currency, SubtotalMinor: p.PriceMinor, TotalMinor: p.PriceMinor,
				PaymentMethod: "tok_visa",
				Items:         []store.OrderItem{{ProductID: p.ID, SKU: p.SKU, Name: p.Name, Quantity: 1, UnitPriceMinor: p.PriceMinor, LineTotalMinor: p.PriceMinor}},
			})
			if err != nil {
				return err
			}
			ev, err := store.NewOrderEvent(eventOrderCreated, o)
			if err != nil {
				return err
			}
			if err := store.InsertEvents(context.Background(), tx, ev); err != nil {
				return err
			}
			out = append(out, o)
		}
		return nil
	})
	require.NoError(t, err)
	return out
}

// confirmedWhileWaiting counts the orders confirmed after o was placed and
// before o itself was: how many overtook it.
func (b *testBundle) confirmedWhileWaiting(t *testing.T, o store.Order) int {
	t.Helper()
	var n int
	require.NoError(t, b.db.Get(&n, `
SELECT count(*) FROM events c
WHERE c.type = 'order.confirmed'
  AND c.seq > (SELECT seq FROM events WHERE type = 'order.created' AND subject = $1)
  AND c.seq < (SELECT seq FROM events WHERE type = 'order.confirmed' AND subject = $1)`, o.ID.String()))
	return n
}

// floodAndTrickle places flood orders of one seller, then one order of each
// of the small sellers, and waits until all are confirmed.
func floodAndTrickle(t *testing.T, b *testBundle, flood, small int) (big []store.Order, trickle []store.Order) {
	t.Helper()
	u := b.register(t, "buyer-"+uuid.NewString()[:8]+"@example.test", false)
	bigSeller := b.seller(t)
	bigProduct := b.product(t, bigSeller.ID, flood, 500)
	big = b.orders(t, u, bigProduct, flood)
	for range small {
		s := b.seller(t)
		trickle = append(trickle, b.order(t, u, b.product(t, s.ID, 1, 900), 1, "tok_visa", nil))
	}
	eventually(t, 2*time.Minute, func() bool {
		return b.eventCount(t, eventOrderConfirmed, "") == flood+small
	}, "every order confirmed")
	return big, trickle
}

func TestTrickleOfSmallSellersCompletesAheadOfAFlood(t *testing.T) {
	const flood, small = 200, 4
	for _, tc := range []struct {
		name   string
		unfair bool
	}{{"fair", false}, {"unfair", true}} {
		t.Run(tc.name, func(t *testing.T) {
			b := setup(t, setupOpts{unfair: tc.unfair, mutate: func(c *Config) { c.Concurrency = 4 }})
			_, trickle := floodAndTrickle(t, b, flood, small)
			var got []int
			for _, o := range trickle {
				got = append(got, b.confirmedWhileWaiting(t, o))
			}
			t.Logf("flood orders confirmed while each small order waited: %v", got)
			if tc.unfair {
				// First come, first served: the small sellers wait
				// behind most of the flood. This is what fairness fixes;
				// it shows the scenario is a real test of it.
				for i, r := range got {
					require.Greater(t, r, flood/2, "without fairness, %v flood orders overtook small order %d", got, i)
				}
				return
			}
			for i, r := range got {
				require.Less(t, r, flood/4, "with fairness, %v flood orders overtook small order %d", got, i)
			}
		})
	}
}

func TestPausedSellerWaitsDuringAFloodAndResumes(t *testing.T) {
	t.Parallel()
	const flood = 100
	b := setup(t, setupOpts{pauseSync: 20 * time.Millisecond, mutate: func(c *Config) { c.Concurrency = 4 }})
	ctx := context.Background()
	u := b.register(t, "buyer@example.test", false)
	bigSeller := b.seller(t)
	bigOrders := b.orders(t, u, b.product(t, bigSeller.ID, flood, 500), flood)
	_, err := store.PauseSeller(ctx, b.db, bigSeller.ID, "payout review")
	require.NoError(t, err)

	// While it is paused, another seller's orders go through...
	small := b.seller(t)
	var smallOrders []store.Order
	for range 3 {
		smallOrders = append(smallOrders, b.order(t, u, b.product(t, small.ID, 1, 900), 1, "tok_visa", nil))
	}
	for _, o := range smallOrders {
		eventually(t, 30*time.Second, func() bool { return b.status(t, o.ID) == store.OrderConfirmed }, "small order confirmed while the big seller is paused")
	}
	// ...and the paused seller's wait: once the tasks in flight at the
	// pause are done, nothing of its orders moves on.
	b.settle(t, 30*time.Second)
	var waiting int
	require.NoError(t, b.db.Get(&waiting, `SELECT count(*) FROM orders WHERE seller_id = $1 AND status = 'pending'`, bigSeller.ID))
	require.Positive(t, waiting, "the paused seller's orders wait")
	confirmed := b.eventCount(t, eventOrderConfirmed, "")
	held, err := b.streams.Keys(ctx, b.prefix+"parked:{"+bigSeller.ID.String()+"}:*").Result()
	require.NoError(t, err)
	require.NotEmpty(t, held, "its events are held in parked streams")

	_, err = store.ResumeSeller(ctx, b.db, bigSeller.ID)
	require.NoError(t, err)
	eventually(t, 2*time.Minute, func() bool {
		var n int
		require.NoError(t, b.db.Get(&n, `SELECT count(*) FROM orders WHERE seller_id = $1 AND status = 'confirmed'`, bigSeller.ID))
		return n == flood
	}, "every order of the resumed seller confirmed")
	require.Greater(t, b.eventCount(t, eventOrderConfirmed, ""), confirmed)
	b.settle(t, 30*time.Second)

	// Nothing was lost or failed: one confirmation per order, no task
	// failure, no dead letter, and each order's saga in its order.
	var failures int
	require.NoError(t, b.db.Get(&failures, `SELECT count(*) FROM task_failures`))
	require.Zero(t, failures)
	for _, g := range b.w.Groups() {
		n, err := b.streams.XLen(ctx, b.prefix+"dlq:"+g.Name).Result()
		require.NoError(t, err)
		require.Zero(t, n, "dead letters of %s", g.Name)
	}
	for _, o := range bigOrders[:10] {
		var types []string
		require.NoError(t, b.db.Select(&types, `SELECT type FROM events WHERE subject = $1 AND type LIKE 'order.%' ORDER BY seq`, o.ID.String()))
		require.Equal(t, []string{eventOrderCreated, eventOrderConfirmed}, types)
		require.Equal(t, 1, b.sink.Count(u.Email, "Your order "+shortID(o.ID.String())+" is confirmed"), "one confirmation mail")
	}
}

// pendingOf lists the tasks of type typ waiting in the queues qs.
func (b *testBundle) pendingOf(t *testing.T, typ string, qs ...string) int {
	t.Helper()
	n := 0
	for _, q := range qs {
		tasks, err := b.insp.ListPendingTasks(q, asynq.PageSize(1000))
		if err != nil {
			continue // the queue does not exist (yet)
		}
		for _, ti := range tasks {
			if ti.Type == typ {
				n++
			}
		}
	}
	return n
}

// Work without a seller (a user's welcome mail) is a tenant of its own: it
// waits behind a seller's share of the mail queue, not behind the seller's
// whole backlog. The mail queue is paused while a seller's flood of
// confirmation mails builds up, so the backlog is there, whatever the
// machine's speed, when the user registers.
func TestFairSharesOfWorkWithoutASeller(t *testing.T) {
	const flood = 100
	for _, tc := range []struct {
		name   string
		unfair bool
	}{{"fair", false}, {"unfair", true}} {
		t.Run(tc.name, func(t *testing.T) {
			b := setup(t, setupOpts{unfair: tc.unfair, mutate: func(c *Config) { c.Concurrency = 4 }})
			u := b.register(t, "buyer-"+uuid.NewString()[:8]+"@example.test", false)
			eventually(t, time.Minute, func() bool { return b.sink.Count(u.Email, "Welcome to Bazaar") == 1 }, "the buyer's welcome mail")
			mailQueues := []string{QueueDefault, OverflowQueue(QueueDefault)}
			for _, q := range mailQueues {
				require.NoError(t, b.insp.PauseQueue(q))
			}
			seller := b.seller(t)
			b.orders(t, u, b.product(t, seller.ID, flood, 500), flood)
			eventually(t, 2*time.Minute, func() bool {
				return b.pendingOf(t, TypeEmailOrderConfirmed, mailQueues...) == flood
			}, "the flood's confirmation mails waiting")

			late := b.register(t, "late-"+uuid.NewString()[:8]+"@example.test", false)
			eventually(t, time.Minute, func() bool {
				return b.pendingOf(t, TypeEmailWelcome, mailQueues...) == 1
			}, "the late user's welcome mail waiting")
			for _, q := range mailQueues {
				require.NoError(t, b.insp.UnpauseQueue(q))
			}
			eventually(t, 2*time.Minute, func() bool { return b.sink.Count(late.Email, "Welcome to Bazaar") == 1 }, "the late user's welcome mail")

			ahead := 0
			mails := b.sink.Mails()
			slices.Reverse(mails) // oldest first
			for _, m := range mails {
				if containsFold(m.To, late.Email) {
					break
				}
				if containsFold(m.To, u.Email) && strings.HasSuffix(m.Subject, " is confirmed") {
					ahead++
				}
			}
			t.Logf("confirmation mails of the flood sent before the late user's welcome mail: %d of %d", ahead, flood)
			if tc.unfair {
				// First come, first served: the welcome mail waits for
				// the whole flood, which is what fairness prevents.
				require.Greater(t, ahead, flood/2)
				return
			}
			require.Less(t, ahead, flood/4)
		})
	}
}
