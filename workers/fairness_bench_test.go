package workers

import (
	"context"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
)

// BenchmarkFairnessFlood runs the whole pipeline (outbox relay, consumer
// groups, asynq workers of concurrency 10, the saga on PostgreSQL) while
// one big seller floods orders as fast as they can be written (100 per
// transaction, over 50 products) and 20 small sellers place one order a second each. With
// fairness on and off, it measures:
//   - the small sellers' commit -> order.confirmed latency, p50 and p99,
//     alone (no flood) and during the flood;
//   - the big seller's throughput (orders confirmed per second) during
//     the flood, as a ratio of its throughput alone.
//
// BAZAAR_BENCH_FLOOD sets the flood's size (default 1000; the target's
// figure is 10000, which takes many minutes per run on a small machine).
// The workers and the relay with the consumer groups each have a
// PostgreSQL pool of storetest.MaxConns (4) connections, as tests do, so
// absolute rates are far below a deployment's (25 per process); the
// comparison is what counts.
func BenchmarkFairnessFlood(b *testing.B) {
	flood := 1000
	if v, err := strconv.Atoi(os.Getenv("BAZAAR_BENCH_FLOOD")); err == nil && v > 0 {
		flood = v
	}
	const small = 20
	for _, tc := range []struct {
		name   string
		unfair bool
	}{{"fairness_off", true}, {"fairness_on", false}} {
		b.Run(tc.name, func(b *testing.B) {
			for range b.N {
				alone := floodRun(b, tc.unfair, 0, small, 5*time.Second)
				bigAlone := floodRun(b, tc.unfair, flood, 0, 0)
				during := floodRun(b, tc.unfair, flood, small, 0)
				b.ReportMetric(alone.p50.Seconds(), "idle_p50_s")
				b.ReportMetric(alone.p99.Seconds(), "idle_p99_s")
				b.ReportMetric(during.p50.Seconds(), "flood_p50_s")
				b.ReportMetric(during.p99.Seconds(), "flood_p99_s")
				b.ReportMetric(during.p99.Seconds()/alone.p99.Seconds(), "p99_ratio")
				b.ReportMetric(bigAlone.bigRate, "big_alone_orders/s")
				b.ReportMetric(during.bigRate, "big_flood_orders/s")
				b.ReportMetric(during.bigRate/bigAlone.bigRate, "big_throughput_ratio")
				// Where the small sellers' p99 goes during the flood: from
				// the order's commit to inventory.reserved, from there to
				// payment.succeeded, and from there to order.confirmed.
				b.ReportMetric(during.steps[0].Seconds(), "flood_reserve_p99_s")
				b.ReportMetric(during.steps[1].Seconds(), "flood_charge_p99_s")
				b.ReportMetric(during.steps[2].Seconds(), "flood_confirm_p99_s")
				// Where within a step: from the event's commit to its XADD
				// (the outbox relay), and from its XADD to the next step's
				// event (consumer group, task queue and the task itself),
				// p99 over the three steps of the small sellers' orders.
				b.ReportMetric(during.relay.Seconds(), "flood_relay_p99_s")
				b.ReportMetric(during.after.Seconds(), "flood_after_relay_p99_s")
				// The first part of that: from the XADD to the consumer
				// group's record of the event, written once it enqueued
				// the step's task (its backlog and the enqueue).
				b.ReportMetric(during.group.Seconds(), "flood_group_p99_s")
			}
		})
	}
}

// BenchmarkPausedSellerCost measures what a paused seller with many
// waiting events costs the others: the 20 small sellers' commit ->
// order.confirmed latency for 5 s with no seller paused, and again, in the
// same run, while one paused seller has BAZAAR_BENCH_PAUSED (default
// 5000) orders' events parked in the consumer groups, then with none
// again. The ratio of the paused p99 to the mean idle p99 is the cost.
func BenchmarkPausedSellerCost(b *testing.B) {
	held := 5000
	if v, err := strconv.Atoi(os.Getenv("BAZAAR_BENCH_PAUSED")); err == nil && v > 0 {
		held = v
	}
	const small = 20
	b.Run("paused_seller", func(b *testing.B) {
		for range b.N {
			// Idle before and after: on a shared machine the load
			// drifts, and the paused run is compared with both.
			before := floodRun(b, false, 0, small, 5*time.Second)
			paused := pausedRun(b, held, small, 5*time.Second)
			after := floodRun(b, false, 0, small, 5*time.Second)
			idle99 := (before.p99 + after.p99).Seconds() / 2
			b.ReportMetric(before.p99.Seconds(), "idle_before_p99_s")
			b.ReportMetric(after.p99.Seconds(), "idle_after_p99_s")
			b.ReportMetric((before.p50+after.p50).Seconds()/2, "idle_p50_s")
			b.ReportMetric(paused.p50.Seconds(), "paused_p50_s")
			b.ReportMetric(paused.p99.Seconds(), "paused_p99_s")
			b.ReportMetric(paused.p99.Seconds()/idle99, "p99_ratio")
		}
	})
}

// pausedRun pauses a seller, places held orders for it (100 per
// transaction), waits until the consumer groups have parked their events,
// then lets small sellers place an order a second each for trickleFor.
func pausedRun(b *testing.B, held, small int, trickleFor time.Duration) floodResult {
	b.Helper()
	b.StopTimer()
	t := setup(b, setupOpts{quiet: true, ownPool: true, pauseSync: 50 * time.Millisecond})
	ctx := context.Background()
	u := t.register(b, "buyer-"+uuid.NewString()[:8]+"@example.test", false)
	big := t.seller(b)
	_, err := store.PauseSeller(ctx, t.db, big.ID, "benchmark")
	require.NoError(b, err)
	holdKey := t.prefix + "hold:{" + big.ID.String() + "}"
	deadline := time.Now().Add(time.Minute)
	for t.streams.HGet(ctx, holdKey, "state").Val() != "paused" {
		require.True(b, time.Now().Before(deadline), "the pause applied")
		time.Sleep(20 * time.Millisecond)
	}
	p := t.product(b, big.ID, held+1, 500)
	for placed := 0; placed < held; placed += 100 {
		t.orders(b, u, p, min(100, held-placed))
	}
	// Parked: every group that reads order.created has all of them.
	deadline = time.Now().Add(10 * time.Minute)
	for {
		keys, err := t.streams.Keys(ctx, t.prefix+"parked:{"+big.ID.String()+"}:*").Result()
		require.NoError(b, err)
		low := int64(-1)
		for _, k := range keys {
			n := t.streams.XLen(ctx, k).Val()
			if low < 0 || n < low {
				low = n
			}
		}
		if len(keys) > 0 && low >= int64(held) {
			break
		}
		require.True(b, time.Now().Before(deadline), "%d events parked in time", held)
		time.Sleep(100 * time.Millisecond)
	}
	smallProducts := make([]store.Product, small)
	for i := range smallProducts {
		smallProducts[i] = t.product(b, t.seller(b).ID, 1000, 900)
	}
	b.StartTimer()
	return trickle(b, t, u, smallProducts, trickleFor)
}

type floodResult struct {
	p50, p99 time.Duration    // the small sellers' latency
	steps    [3]time.Duration // its p99 per saga step
	relay    time.Duration    // p99 of commit -> XADD over its steps' events
	group    time.Duration    // p99 of XADD -> the group's record, after its enqueue
	after    time.Duration    // p99 of XADD -> the next step's event
	bigRate  float64          // the big seller's orders confirmed per second
}

// floodRun places flood orders of one seller (none: 0) while small
// sellers each place an order a second, for trickleFor or, with a flood,
// until the flood is confirmed.
func floodRun(b *testing.B, unfair bool, flood, small int, trickleFor time.Duration) floodResult {
	b.Helper()
	b.StopTimer()
	t := setup(b, setupOpts{unfair: unfair, quiet: true, ownPool: true})
	u := t.register(b, "buyer-"+uuid.NewString()[:8]+"@example.test", false)
	bigSeller := t.seller(b)
	// A flash sale of a catalogue: the flood spreads over 50 products, so
	// what is measured is scheduling, not one stock row's lock.
	bigProducts := make([]store.Product, 50)
	for i := range bigProducts {
		bigProducts[i] = t.product(b, bigSeller.ID, flood+1, 500)
	}
	smallProducts := make([]store.Product, small)
	for i := range smallProducts {
		smallProducts[i] = t.product(b, t.seller(b).ID, 1000, 900)
	}
	b.StartTimer()

	start := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var smallOrders []uuid.UUID
	for i, p := range smallProducts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Spread the sellers over the second.
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			time.Sleep(time.Duration(i) * time.Second / time.Duration(max(small, 1)))
			for {
				o := t.order(b, u, p, 1, "tok_visa", nil)
				mu.Lock()
				smallOrders = append(smallOrders, o.ID)
				mu.Unlock()
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		}()
	}
	if flood > 0 {
		for placed, i := 0, 0; placed < flood; placed, i = placed+100, i+1 {
			t.orders(b, u, bigProducts[i%len(bigProducts)], min(100, flood-placed))
		}
		waitConfirmed(b, t, bigSeller.ID, flood)
	} else {
		time.Sleep(trickleFor)
	}
	bigDone := time.Since(start)
	close(stop)
	wg.Wait()
	mu.Lock()
	ids := slices.Clone(smallOrders)
	mu.Unlock()
	var lat []time.Duration
	for _, id := range ids {
		lat = append(lat, confirmLatency(b, t, id))
	}
	b.StopTimer()
	res := floodResult{}
	if flood > 0 {
		res.bigRate = float64(flood) / bigDone.Seconds()
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		res.p50 = lat[len(lat)/2]
		res.p99 = lat[min(len(lat)-1, len(lat)*99/100)]
		for i, prev := range []string{"order.created", "inventory.reserved", "payment.succeeded"} {
			next := []string{"inventory.reserved", "payment.succeeded", "order.confirmed"}[i]
			var d []float64
			require.NoError(b, t.db.Select(&d, `
SELECT extract(epoch FROM (n.time - p.time)) FROM events p
JOIN events n ON n.subject = p.subject AND n.type = $2
WHERE p.type = $1 AND p.subject = ANY($3)
ORDER BY 1`, prev, next, pq.Array(uuidStrings(ids))))
			if len(d) > 0 {
				res.steps[i] = time.Duration(d[min(len(d)-1, len(d)*99/100)] * float64(time.Second))
			}
		}
	}
	if len(ids) > 0 {
		res.relay, res.group, res.after = relayWait(b, t, ids)
	}
	return res
}

// relayWait splits the small sellers' saga steps at the XADD of the event
// that starts each step: the p99 from the event's commit to its stream
// entry (the stream entry id is the XADD's time), and from there to the
// commit of the event the step records.
func relayWait(b *testing.B, t *testBundle, ids []uuid.UUID) (relay, group, after time.Duration) {
	b.Helper()
	var waits []struct {
		Relay float64 `db:"relay"`
		Group float64 `db:"grp"`
		After float64 `db:"after"`
	}
	// processed_events.processed_at is when the step's group recorded the
	// event, right after it enqueued the step's task.
	require.NoError(b, t.db.Select(&waits, `
SELECT extract(epoch FROM (to_timestamp(pos.ms / 1000.0) - p.time)) AS relay,
       extract(epoch FROM (pe.processed_at - to_timestamp(pos.ms / 1000.0))) AS grp,
       extract(epoch FROM (n.time - to_timestamp(pos.ms / 1000.0))) AS after
FROM events p
JOIN event_positions pos ON pos.seq = p.seq AND pos.time = p.time
JOIN processed_events pe ON pe.event_id = p.id AND pe.group_name = CASE p.type
  WHEN 'order.created' THEN 'tasks:inventory'
  WHEN 'inventory.reserved' THEN 'tasks:payments'
  ELSE 'tasks:orders' END
JOIN events n ON n.subject = p.subject AND n.type = CASE p.type
  WHEN 'order.created' THEN 'inventory.reserved'
  WHEN 'inventory.reserved' THEN 'payment.succeeded'
  ELSE 'order.confirmed' END
WHERE p.type IN ('order.created', 'inventory.reserved', 'payment.succeeded')
  AND p.subject = ANY($1)`, pq.Array(uuidStrings(ids))))
	r := make([]float64, len(waits))
	g := make([]float64, len(waits))
	a := make([]float64, len(waits))
	for i, w := range waits {
		r[i], g[i], a[i] = w.Relay, w.Group, w.After
	}
	p99 := func(v []float64) time.Duration {
		if len(v) == 0 {
			return 0
		}
		slices.Sort(v)
		return time.Duration(v[min(len(v)-1, len(v)*99/100)] * float64(time.Second))
	}
	return p99(r), p99(g), p99(a)
}

func uuidStrings(ids []uuid.UUID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}

// waitConfirmed waits until n orders of seller are confirmed.
func waitConfirmed(b *testing.B, t *testBundle, seller uuid.UUID, n int) {
	b.Helper()
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		var got int
		require.NoError(b, t.db.Get(&got, `SELECT count(*) FROM orders WHERE seller_id = $1 AND status = 'confirmed'`, seller))
		if got >= n {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.Fatalf("%d orders of the flood not confirmed in time", n)
}

// confirmLatency waits for an order's order.confirmed and returns the time
// from the order's commit to the confirmation's.
func confirmLatency(b *testing.B, t *testBundle, id uuid.UUID) time.Duration {
	b.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		var d []float64
		require.NoError(b, t.db.Select(&d, `
SELECT extract(epoch FROM (c.time - o.created_at)) FROM orders o
JOIN events c ON c.subject = o.id::text AND c.type = 'order.confirmed'
WHERE o.id = $1`, id))
		if len(d) == 1 {
			return time.Duration(d[0] * float64(time.Second))
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.Fatalf("order %s not confirmed in time", id)
	return 0
}

// trickle has each of products' sellers place an order a second for d and
// returns their commit -> order.confirmed p50 and p99.
func trickle(b *testing.B, t *testBundle, u store.User, products []store.Product, d time.Duration) floodResult {
	b.Helper()
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		ids []uuid.UUID
	)
	end := time.Now().Add(d)
	for i, p := range products {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * time.Second / time.Duration(len(products)))
			for time.Now().Before(end) {
				o := t.order(b, u, p, 1, "tok_visa", nil)
				mu.Lock()
				ids = append(ids, o.ID)
				mu.Unlock()
				time.Sleep(time.Second)
			}
		}()
	}
	wg.Wait()
	lat := make([]time.Duration, 0, len(ids))
	for _, id := range ids {
		lat = append(lat, confirmLatency(b, t, id))
	}
	b.StopTimer()
	var res floodResult
	if len(lat) > 0 {
		slices.Sort(lat)
		res.p50 = lat[len(lat)/2]
		res.p99 = lat[min(len(lat)-1, len(lat)*99/100)]
	}
	return res
}
