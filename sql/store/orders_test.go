package store_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
)

type fixture struct {
	db      *sqlx.DB
	seller  store.Seller
	user    store.User
	product store.Product
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	ctx := context.Background()
	db, _ := storetest.NewDB(t)
	s, err := store.CreateSeller(ctx, db, "Shop", "shop@example.com")
	require.NoError(t, err)
	u, err := store.CreateUser(ctx, db, store.User{Email: "b@example.com", Name: "B"}, nil)
	require.NoError(t, err)
	p, err := store.CreateProduct(ctx, db, store.Product{SellerID: s.ID, SKU: "mug", Name: "Mug", PriceMinor: 1250, Currency: "EUR", Stock: 3})
	require.NoError(t, err)
	return fixture{db: db, seller: s, user: u, product: p}
}

func (f fixture) order(t *testing.T) store.Order {
	t.Helper()
	o, err := store.CreateOrder(context.Background(), f.db, store.Order{
		SellerID: f.seller.ID, UserID: f.user.ID, Currency: "EUR", SubtotalMinor: 2500, TotalMinor: 2500,
		PaymentMethod: "pm_test", Items: []store.OrderItem{{ProductID: f.product.ID, SKU: "mug", Name: "Mug", Quantity: 2, UnitPriceMinor: 1250, LineTotalMinor: 2500}},
	})
	require.NoError(t, err)
	return o
}

func TestOrderStateMachine(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)

	all := []store.OrderStatus{store.OrderPending, store.OrderConfirmed, store.OrderCancelled, store.OrderShipped, store.OrderDelivered}
	legal := map[[2]store.OrderStatus]bool{
		{store.OrderPending, store.OrderConfirmed}:   true,
		{store.OrderPending, store.OrderCancelled}:   true,
		{store.OrderConfirmed, store.OrderShipped}:   true,
		{store.OrderConfirmed, store.OrderCancelled}: true,
		{store.OrderShipped, store.OrderDelivered}:   true,
	}
	// path reaches each state from pending through legal moves.
	path := map[store.OrderStatus][]store.OrderStatus{
		store.OrderPending:   nil,
		store.OrderConfirmed: {store.OrderConfirmed},
		store.OrderCancelled: {store.OrderCancelled},
		store.OrderShipped:   {store.OrderConfirmed, store.OrderShipped},
		store.OrderDelivered: {store.OrderConfirmed, store.OrderShipped, store.OrderDelivered},
	}
	for _, from := range all {
		for _, to := range all {
			require.Equal(t, legal[[2]store.OrderStatus{from, to}], store.CanTransition(from, to), "%s -> %s", from, to)
			o := f.order(t)
			for _, step := range path[from] {
				_, err := store.TransitionOrder(ctx, f.db, o.ID, step, "")
				require.NoError(t, err)
			}
			got, err := store.TransitionOrder(ctx, f.db, o.ID, to, "why")
			if legal[[2]store.OrderStatus{from, to}] {
				require.NoError(t, err, "%s -> %s", from, to)
				require.Equal(t, to, got.Status)
				require.Len(t, got.Items, 1)
			} else {
				require.ErrorIs(t, err, store.ErrInvalidTransition, "%s -> %s", from, to)
				cur, err := store.GetOrder(ctx, f.db, o.ID)
				require.NoError(t, err)
				require.Equal(t, from, cur.Status)
			}
		}
	}
	_, err := store.TransitionOrder(ctx, f.db, uuid.New(), store.OrderCancelled, "")
	require.ErrorIs(t, err, store.ErrNotFound)

	o := f.order(t)
	c, err := store.TransitionOrder(ctx, f.db, o.ID, store.OrderCancelled, "out of stock")
	require.NoError(t, err)
	require.Equal(t, "out of stock", c.CancelReason)
	require.NotNil(t, c.CancelledAt)
}

func TestStockNeverNegative(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	p, prev, err := store.AdjustStock(ctx, f.db, f.product.ID, -2)
	require.NoError(t, err)
	require.Equal(t, 3, prev)
	require.Equal(t, 1, p.Stock)
	_, _, err = store.AdjustStock(ctx, f.db, f.product.ID, -2)
	require.ErrorIs(t, err, store.ErrInsufficientStock)
	_, _, err = store.SetStock(ctx, f.db, f.product.ID, -1)
	require.ErrorIs(t, err, store.ErrInsufficientStock)
	got, err := store.GetProduct(ctx, f.db, f.product.ID)
	require.NoError(t, err)
	require.Equal(t, 1, got.Stock)
}

func TestParentUpdateSyncsChildren(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	var children []store.Product
	for _, sku := range []string{"mug-red", "mug-blue"} {
		c, err := store.CreateProduct(ctx, f.db, store.Product{SellerID: f.seller.ID, ParentID: &f.product.ID, SKU: sku, PriceMinor: 1300})
		require.NoError(t, err)
		require.Equal(t, "Mug", c.Name)
		require.Equal(t, "EUR", c.Currency)
		children = append(children, c)
	}
	name, cat := "Big mug", "kitchen"
	var changed []store.Product
	err := store.WithTx(ctx, f.db, func(tx *sqlx.Tx) error {
		var err error
		_, changed, err = store.UpdateProduct(ctx, tx, f.product.ID, store.ProductChanges{Name: &name, Category: &cat})
		return err
	})
	require.NoError(t, err)
	require.Len(t, changed, 2)
	for _, c := range children {
		got, err := store.GetProduct(ctx, f.db, c.ID)
		require.NoError(t, err)
		require.Equal(t, "Big mug", got.Name)
		require.Equal(t, "kitchen", got.Category)
		require.Equal(t, int64(1300), got.PriceMinor, "variant's own fields stay")
	}
	_, _, err = store.UpdateProduct(ctx, f.db, children[0].ID, store.ProductChanges{Name: &name})
	require.ErrorIs(t, err, store.ErrInvalidTransition)

	// A variant of a variant, or of another seller's product, is refused.
	_, err = store.CreateProduct(ctx, f.db, store.Product{SellerID: f.seller.ID, ParentID: &children[0].ID, SKU: "x", PriceMinor: 1})
	require.ErrorIs(t, err, store.ErrReferenced)
	other, err := store.CreateSeller(ctx, f.db, "Other", "o@example.com")
	require.NoError(t, err)
	_, err = store.CreateProduct(ctx, f.db, store.Product{SellerID: other.ID, ParentID: &f.product.ID, SKU: "x", PriceMinor: 1})
	require.ErrorIs(t, err, store.ErrReferenced)
}

func TestReturnableQuantity(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	o := f.order(t)
	it, left, err := store.ReturnableItem(ctx, f.db, o.ID, o.Items[0].ID)
	require.NoError(t, err)
	require.Equal(t, 2, left)
	r, err := store.CreateReturn(ctx, f.db, store.Return{OrderID: o.ID, OrderItemID: it.ID, SellerID: o.SellerID, UserID: o.UserID, Quantity: 1, Reason: "broken", Currency: "EUR"})
	require.NoError(t, err)
	_, left, err = store.ReturnableItem(ctx, f.db, o.ID, it.ID)
	require.NoError(t, err)
	require.Equal(t, 1, left)
	_, err = store.ResolveReturn(ctx, f.db, r.ID, store.ReturnStatusRejected, 0, "no")
	require.NoError(t, err)
	_, left, err = store.ReturnableItem(ctx, f.db, o.ID, it.ID)
	require.NoError(t, err)
	require.Equal(t, 2, left, "a rejected return gives its units back")
	_, err = store.ResolveReturn(ctx, f.db, r.ID, store.ReturnStatusAccepted, 100, "")
	require.ErrorIs(t, err, store.ErrInvalidTransition)
	_, _, err = store.ReturnableItem(ctx, f.db, uuid.New(), it.ID)
	require.ErrorIs(t, err, store.ErrNotFound)
}

func TestIdempotencyRecords(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := storetest.NewDB(t)
	rec := store.IdempotencyRecord{Principal: "key:1", Key: "k", Method: "POST", Path: "/v1/x", RequestHash: []byte{1}, Status: 201, ContentType: "application/json", Response: []byte(`{}`)}
	_, err := store.GetIdempotencyRecord(ctx, db, "key:1", "k")
	require.ErrorIs(t, err, store.ErrNotFound)
	require.NoError(t, store.SaveIdempotencyRecord(ctx, db, rec))
	got, err := store.GetIdempotencyRecord(ctx, db, "key:1", "k")
	require.NoError(t, err)
	require.Equal(t, 201, got.Status)
	require.WithinDuration(t, got.CreatedAt.Add(store.IdempotencyTTL), got.ExpiresAt, 0)
	require.ErrorIs(t, store.SaveIdempotencyRecord(ctx, db, rec), store.ErrConflict)

	// An expired record is invisible and may be replaced, then swept.
	_, err = db.Exec(`UPDATE idempotency_keys SET expires_at = now() - interval '1 second'`)
	require.NoError(t, err)
	_, err = store.GetIdempotencyRecord(ctx, db, "key:1", "k")
	require.ErrorIs(t, err, store.ErrNotFound)
	rec.Status = 200
	require.NoError(t, store.SaveIdempotencyRecord(ctx, db, rec))
	got, err = store.GetIdempotencyRecord(ctx, db, "key:1", "k")
	require.NoError(t, err)
	require.Equal(t, 200, got.Status)
	_, err = db.Exec(`UPDATE idempotency_keys SET expires_at = now() - interval '1 second'`)
	require.NoError(t, err)
	n, err := store.DeleteExpiredIdempotencyRecords(ctx, db, 100)
	require.NoError(t, err)
	require.EqualValues(t, 1, n)

	// A key held by one transaction cannot be taken by another.
	tx1, err := db.BeginTxx(ctx, nil)
	require.NoError(t, err)
	defer tx1.Rollback() //nolint:errcheck
	ok, err := store.LockIdempotencyKey(ctx, tx1, "key:1", "k")
	require.NoError(t, err)
	require.True(t, ok)
	tx2, err := db.BeginTxx(ctx, nil)
	require.NoError(t, err)
	defer tx2.Rollback() //nolint:errcheck
	ok, err = store.LockIdempotencyKey(ctx, tx2, "key:1", "k")
	require.NoError(t, err)
	require.False(t, ok)
	require.NoError(t, tx1.Rollback())
	ok, err = store.LockIdempotencyKey(ctx, tx2, "key:1", "k")
	require.NoError(t, err)
	require.True(t, ok)
}

func TestAPIKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	k, err := store.CreateAPIKey(ctx, f.db, store.KeySeller, &f.seller.ID, "ci", "bzr_sk_secret", "bzr_sk_secr")
	require.NoError(t, err)
	got, err := store.ActiveAPIKeyByHash(ctx, f.db, store.HashKey("bzr_sk_secret"))
	require.NoError(t, err)
	require.Equal(t, k.ID, got.ID)
	_, err = store.CreateAPIKey(ctx, f.db, store.KeyStorefront, &f.seller.ID, "bad", "x", "x")
	require.Error(t, err, "a storefront key has no seller")

	_, err = store.RevokeAPIKey(ctx, f.db, k.ID, nil)
	require.ErrorIs(t, err, store.ErrNotFound, "not a storefront key")
	_, err = store.RevokeAPIKey(ctx, f.db, k.ID, &f.seller.ID)
	require.NoError(t, err)
	_, err = store.ActiveAPIKeyByHash(ctx, f.db, store.HashKey("bzr_sk_secret"))
	require.ErrorIs(t, err, store.ErrNotFound)
	keys, err := store.ListAPIKeys(ctx, f.db, &f.seller.ID)
	require.NoError(t, err)
	require.Len(t, keys, 1)
	require.NotNil(t, keys[0].RevokedAt)
}

func TestGetOrderReadsItsLines(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	p2, err := store.CreateProduct(ctx, f.db, store.Product{SellerID: f.seller.ID, SKU: "pot", Name: "Teapot", PriceMinor: 3000, Currency: "EUR", Stock: 3})
	require.NoError(t, err)
	o, err := store.CreateOrder(ctx, f.db, store.Order{
		SellerID: f.seller.ID, UserID: f.user.ID, Currency: "EUR", SubtotalMinor: 5500, TotalMinor: 5500, PaymentMethod: "pm_test",
		Items: []store.OrderItem{
			{ProductID: f.product.ID, SKU: "mug", Name: "Mug", Quantity: 2, UnitPriceMinor: 1250, LineTotalMinor: 2500},
			{ProductID: p2.ID, SKU: "pot", Name: "Teapot", Quantity: 1, UnitPriceMinor: 3000, LineTotalMinor: 3000},
		},
	})
	require.NoError(t, err)
	other := f.order(t) // another order's line must not show

	got, err := store.GetOrder(ctx, f.db, o.ID)
	require.NoError(t, err)
	require.Equal(t, o.ID, got.ID)
	require.Equal(t, int64(5500), got.TotalMinor)
	require.Equal(t, o.CreatedAt.UTC(), got.CreatedAt.UTC())
	require.ElementsMatch(t, o.Items, got.Items)
	for _, it := range got.Items {
		require.Equal(t, o.ID, it.OrderID)
	}
	one, err := store.GetOrder(ctx, f.db, other.ID)
	require.NoError(t, err)
	require.Len(t, one.Items, 1)

	_, err = store.GetOrder(ctx, f.db, uuid.New())
	require.ErrorIs(t, err, store.ErrNotFound)
}
