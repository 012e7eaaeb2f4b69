package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
)

func count(t *testing.T, db *sqlx.DB, table string) int {
	t.Helper()
	var n int
	require.NoError(t, db.Get(&n, `SELECT count(*) FROM `+table))
	return n
}

// The record and its event commit together or not at all.
func TestOutboxCommitsWithRecord(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := storetest.NewDB(t)

	boom := errors.New("boom")
	err := store.WithTx(ctx, db, func(tx *sqlx.Tx) error {
		s, err := store.CreateSeller(ctx, tx, "Rolled Back", "rb@example.com")
		require.NoError(t, err)
		ev, err := store.NewSellerEvent("seller.created", s)
		require.NoError(t, err)
		require.NoError(t, store.InsertEvents(ctx, tx, ev))
		return boom // fail after both inserts
	})
	require.ErrorIs(t, err, boom)
	require.Zero(t, count(t, db, "sellers"))
	require.Zero(t, count(t, db, "events"))

	var created store.Seller
	err = store.WithTx(ctx, db, func(tx *sqlx.Tx) error {
		s, err := store.CreateSeller(ctx, tx, "Kept", "kept@example.com")
		if err != nil {
			return err
		}
		created = s
		ev, err := store.NewSellerEvent("seller.created", s)
		if err != nil {
			return err
		}
		return store.InsertEvents(ctx, tx, ev)
	})
	require.NoError(t, err)
	evs, err := store.EventsBySubject(ctx, db, created.ID.String())
	require.NoError(t, err)
	require.Len(t, evs, 1)
	require.Equal(t, "seller.created", evs[0].Type)
	require.Equal(t, created.ID, *evs[0].SellerID)
	require.Nil(t, evs[0].PublishedAt)
}

func TestListSellersPages(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := storetest.NewDB(t)
	for range 5 {
		_, err := store.CreateSeller(ctx, db, "S", "s@example.com")
		require.NoError(t, err)
	}
	var seen []store.Seller
	p := store.Page{Limit: 2}
	for pages := 0; ; pages++ {
		require.Less(t, pages, 4)
		rows, next, err := store.ListSellers(ctx, db, p)
		require.NoError(t, err)
		seen = append(seen, rows...)
		if next == nil {
			break
		}
		p.After = next
	}
	require.Len(t, seen, 5)
	for i := 1; i < len(seen); i++ {
		require.True(t, seen[i-1].CreatedAt.Before(seen[i].CreatedAt) ||
			(seen[i-1].CreatedAt.Equal(seen[i].CreatedAt) && seen[i-1].ID.String() < seen[i].ID.String()))
	}
}
