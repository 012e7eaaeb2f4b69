package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
)

func TestJobTokens(t *testing.T) {
	t.Parallel()
	for _, id := range []int64{1, 42, 9223372036854775807} {
		tok := store.PrintJob{ID: id}.Token()
		require.LessOrEqual(t, len(tok), 30, "Epson's printjobid limit")
		got, ok := store.ParseJobToken(tok)
		require.True(t, ok)
		require.Equal(t, id, got)
	}
	for _, bad := range []string{"", "bz", "42", "bz-1", "bz1x", "bz99999999999999999999", "BZ1"} {
		_, ok := store.ParseJobToken(bad)
		require.False(t, ok, bad)
	}
}

// Printers of one seller polling at the same time never get the same
// order: each order is handed to one printer, oldest first.
func TestNextPrintJobsConcurrentPrinters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	var orders []uuid.UUID
	for range 12 {
		orders = append(orders, f.order(t).ID)
	}
	var printers []store.Printer
	for i := range 2 {
		sellerID := f.seller.ID
		key, err := store.CreateAPIKey(ctx, f.db, store.KeyPrinter, &sellerID, "p", "secret-"+uuid.NewString(), "bzr_pr_x")
		require.NoError(t, err)
		p, err := store.CreatePrinter(ctx, f.db, store.Printer{KeyID: key.ID, SellerID: sellerID, Protocol: store.ProtocolEpsonSDP, PollIntervalSeconds: 5, DotWidth: 576})
		require.NoError(t, err)
		require.Equal(t, store.ProtocolEpsonSDP, p.Protocol, "printer %d", i)
		printers = append(printers, p)
	}

	now := time.Now()
	var mu sync.Mutex
	got := map[uuid.UUID][]uuid.UUID{} // printer -> orders handed out
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			p := printers[i%2]
			err := store.WithTx(ctx, f.db, func(tx *sqlx.Tx) error {
				jobs, err := store.NextPrintJobs(ctx, tx, p, now, time.Minute, 3)
				mu.Lock()
				defer mu.Unlock()
				for _, j := range jobs {
					got[p.KeyID] = append(got[p.KeyID], j.OrderID)
				}
				return err
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()

	owner := map[uuid.UUID]uuid.UUID{}
	for printer, os := range got {
		for _, o := range os {
			if prev, ok := owner[o]; ok {
				require.Equal(t, prev, printer, "order %s handed to two printers", o)
			}
			owner[o] = printer
		}
	}
	require.NotEmpty(t, owner)

	// Polled again, each printer gets its own offered jobs and new ones,
	// oldest first, and between them every order once.
	seen := map[uuid.UUID]bool{}
	for _, p := range printers {
		jobs, err := store.NextPrintJobs(ctx, f.db, p, now, time.Minute, 20)
		require.NoError(t, err)
		for i := 1; i < len(jobs); i++ {
			require.True(t, !jobs[i].OrderCreatedAt.Before(jobs[i-1].OrderCreatedAt), "oldest first")
		}
		for _, j := range jobs {
			require.Equal(t, p.KeyID, j.PrinterKeyID)
			require.False(t, seen[j.OrderID], "order %s handed to two printers", j.OrderID)
			seen[j.OrderID] = true
		}
	}
	require.Len(t, seen, len(orders))
}
