package workers

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store/storetest"
)

// Two work processes share one database but nothing in memory: each has
// its own sandbox. Charging one order from both at once charges it once.
func TestSandboxChargesAnOrderOnceAcrossProcesses(t *testing.T) {
	t.Parallel()
	db, _ := storetest.NewDB(t)
	ctx := context.Background()
	procs := []*SandboxGateway{NewSandboxGatewayDB(db), NewSandboxGatewayDB(db)}

	const orders = 20
	for i := range orders {
		req := ChargeRequest{IdempotencyKey: fmt.Sprintf("order:%d:charge", i), Token: "tok_visa", AmountMinor: 2500, Currency: "EUR"}
		ids := make([]string, len(procs))
		var wg sync.WaitGroup
		for p, g := range procs {
			wg.Go(func() {
				c, err := g.Charge(ctx, req)
				if err == nil {
					ids[p] = c.ID
				}
			})
		}
		wg.Wait()
		require.NotEmpty(t, ids[0])
		require.Equal(t, ids[0], ids[1], "both processes learn the one charge")
	}
	require.Equal(t, orders, procs[0].Charges())

	// A lost first answer is learned by the other process.
	lost := ChargeRequest{IdempotencyKey: "order:lost:charge", Token: "tok_timeout_once", AmountMinor: 700, Currency: "EUR"}
	_, err := procs[0].Charge(ctx, lost)
	require.ErrorIs(t, err, ErrGatewayTimeout)
	c, err := procs[1].Charge(ctx, lost)
	require.NoError(t, err)
	require.NotEmpty(t, c.ID)
	require.Equal(t, orders+1, procs[1].Charges())

	// Refunds are shared too: a full refund from either is the same one.
	r0, err := procs[0].Refund(ctx, RefundRequest{IdempotencyKey: "a", ChargeID: c.ID})
	require.NoError(t, err)
	r1, err := procs[1].Refund(ctx, RefundRequest{IdempotencyKey: "b", ChargeID: c.ID})
	require.NoError(t, err)
	require.Equal(t, r0, r1)
}

// BenchmarkSandboxMemory charges b.N orders through the in-memory sandbox
// (the baseline) and the PostgreSQL one, and reports the live heap each
// keeps per charge afterwards. The PostgreSQL sandbox stays flat:
//
//	go test -run '^$' -bench SandboxMemory -benchtime 100000x ./workers/
func BenchmarkSandboxMemory(b *testing.B) {
	run := func(b *testing.B, g *SandboxGateway) {
		ctx := context.Background()
		before := liveHeap()
		b.ResetTimer()
		for i := range b.N {
			_, err := g.Charge(ctx, ChargeRequest{IdempotencyKey: fmt.Sprintf("order:%d:charge", i), Token: "tok_visa", AmountMinor: 100, Currency: "EUR"})
			if err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		grown := liveHeap() - before
		b.ReportMetric(float64(grown)/float64(b.N), "heap-B/charge")
		b.ReportMetric(float64(grown)/(1<<20), "heap-MiB")
		runtime.KeepAlive(g)
	}
	b.Run("memory", func(b *testing.B) { run(b, NewSandboxGateway()) })
	b.Run("postgresql", func(b *testing.B) {
		db, _ := storetest.NewDB(b)
		run(b, NewSandboxGatewayDB(db))
	})
}

func liveHeap() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
