package api

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
)

// maxConcurrentInserts bounds insertWhile: on an oldest-first list an
// inserter faster than the pager would otherwise keep adding pages forever.
const maxConcurrentInserts = 200

// insertWhile runs insert in a loop until stop is called (or it has
// inserted maxConcurrentInserts rows), and returns how many inserts
// succeeded.
func insertWhile(t *testing.T, insert func(i int) error) (stop func() int) {
	t.Helper()
	done := make(chan struct{})
	var wg sync.WaitGroup
	var n int
	var err error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range maxConcurrentInserts {
			select {
			case <-done:
				return
			default:
			}
			if err = insert(i); err != nil {
				return
			}
			n++
		}
	}()
	return func() int {
		close(done)
		wg.Wait()
		require.NoError(t, err)
		return n
	}
}

// pageAll follows next_cursor from the first page to the last and
// returns the ids in the order served.
func (b *testBundle) pageAll(path, token string) []string {
	b.t.Helper()
	var ids []string
	cursor := ""
	for pages := 0; ; pages++ {
		require.Less(b.t, pages, 1000, "pagination does not end")
		url := path + "limit=4"
		if cursor != "" {
			url += "&cursor=" + cursor
		}
		res := b.do(http.MethodGet, url, token, nil).status(http.StatusOK).json()
		for _, it := range res["items"].([]any) {
			ids = append(ids, it.(map[string]any)["id"].(string))
		}
		next, ok := res["next_cursor"].(string)
		if !ok {
			return ids
		}
		cursor = next
	}
}

func requireEachOnce(t *testing.T, served []string, existing []uuid.UUID) {
	t.Helper()
	seen := map[string]int{}
	for _, id := range served {
		seen[id]++
		require.Equal(t, 1, seen[id], "%s served twice", id)
	}
	for _, id := range existing {
		require.Equal(t, 1, seen[id.String()], "%s existed before paging and was skipped", id)
	}
}

// Paging through a list while rows are inserted serves every row that
// existed before exactly once and none twice.
func TestPaginationWhileInserting(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	user, err := store.GetUser(ctx, b.db, b.user())
	require.NoError(t, err)

	var products, orders []uuid.UUID
	for i := range 30 {
		p, err := store.CreateProduct(ctx, b.db, store.Product{SellerID: b.sellerA, SKU: fmt.Sprintf("p-%d", i), Name: "P", PriceMinor: 100, Currency: "EUR"})
		require.NoError(t, err)
		products = append(products, p.ID)
	}
	newOrder := func() (uuid.UUID, error) {
		o, err := store.CreateOrder(ctx, b.db, store.Order{
			SellerID: b.sellerA, UserID: user.ID, Currency: "EUR", SubtotalMinor: 100, TotalMinor: 100,
			PaymentMethod: "pm", Items: []store.OrderItem{{ProductID: products[0], SKU: "p-0", Name: "P", Quantity: 1, UnitPriceMinor: 100, LineTotalMinor: 100}},
		})
		return o.ID, err
	}
	for range 30 {
		id, err := newOrder()
		require.NoError(t, err)
		orders = append(orders, id)
	}

	// Products list oldest first: new rows land at the end.
	stop := insertWhile(t, func(i int) error {
		_, err := store.CreateProduct(ctx, b.db, store.Product{SellerID: b.sellerA, SKU: fmt.Sprintf("late-%d", i), Name: "P", PriceMinor: 1, Currency: "EUR"})
		return err
	})
	served := b.pageAll("/v1/sellers/"+b.sellerA.String()+"/products?", b.keyA)
	inserted := stop()
	requireEachOnce(t, served, products)
	t.Logf("products: %d served while %d were inserted", len(served), inserted)

	// Orders list newest first: new rows land before the cursor.
	stop = insertWhile(t, func(int) error { _, err := newOrder(); return err })
	served = b.pageAll("/v1/orders?seller_id="+b.sellerA.String()+"&", b.front)
	inserted = stop()
	requireEachOnce(t, served, orders)
	t.Logf("orders: %d served while %d were inserted", len(served), inserted)
}
