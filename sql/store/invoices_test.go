package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
)

// Runs never overlap: the same period finds the run, an overlapping one is
// a conflict, an adjacent one is fine.
func TestInvoiceRunsDoNotOverlap(t *testing.T) {
	t.Parallel()
	db, _ := storetest.NewDB(t)
	ctx := context.Background()
	create := func(start, end string) (store.InvoiceRun, bool, error) {
		s, err := time.Parse(store.DateLayout, start)
		require.NoError(t, err)
		e, err := time.Parse(store.DateLayout, end)
		require.NoError(t, err)
		return store.CreateInvoiceRun(ctx, db, store.InvoiceRun{
			ID: uuid.New(), PeriodStart: s, PeriodEnd: e, Timezone: "UTC", StartsAt: s, EndsAt: e, Trigger: "manual",
		})
	}
	first, created, err := create("2026-10-15", "2026-11-01")
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, store.RunDiscovering, first.Status)

	same, created, err := create("2026-10-15", "2026-11-01")
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, first.ID, same.ID)

	for _, p := range [][2]string{{"2026-10-20", "2026-10-21"}, {"2026-10-01", "2026-10-16"}, {"2026-10-31", "2026-11-15"}, {"2026-10-15", "2026-10-20"}} {
		_, _, err := create(p[0], p[1])
		require.ErrorIs(t, err, store.ErrConflict, p)
		require.ErrorContains(t, err, first.ID.String())
	}
	_, created, err = create("2026-11-01", "2026-11-15")
	require.NoError(t, err)
	require.True(t, created, "the next period touches but does not overlap")
}

// An order is billed on one invoice only and an account has one invoice
// per period and currency, whatever the caller does.
func TestInvoiceUniqueness(t *testing.T) {
	t.Parallel()
	db, _ := storetest.NewDB(t)
	ctx := context.Background()
	seller, product, account, user, order := uuid.New(), uuid.New(), uuid.New(), uuid.New(), uuid.New()
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO sellers (id, name, email) VALUES ($1, 'S', 's@x.test')`, []any{seller}},
		{`INSERT INTO products (id, seller_id, sku, name, price_minor, currency) VALUES ($1, $2, 'P', 'P', 100, 'EUR')`, []any{product, seller}},
		{`INSERT INTO corporate_accounts (id, name, billing_email) VALUES ($1, 'C', 'c@x.test')`, []any{account}},
		{`INSERT INTO users (id, email, corporate_account_id) VALUES ($1, 'u@x.test', $2)`, []any{user, account}},
		{`INSERT INTO orders (id, seller_id, user_id, status, currency, subtotal_minor, total_minor, confirmed_at)
		  VALUES ($1, $2, $3, 'confirmed', 'EUR', 100, 100, '2026-10-20T10:00:00Z')`, []any{order, seller, user}},
	} {
		_, err := db.ExecContext(ctx, q.sql, q.args...)
		require.NoError(t, err)
	}
	start := time.Date(2026, 10, 15, 0, 0, 0, 0, time.UTC)
	end := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	run, _, err := store.CreateInvoiceRun(ctx, db, store.InvoiceRun{
		ID: uuid.New(), PeriodStart: start, PeriodEnd: end, Timezone: "UTC", StartsAt: start, EndsAt: end, Trigger: "manual",
	})
	require.NoError(t, err)
	invoice := func(currency string) store.Invoice {
		return store.Invoice{
			ID: uuid.New(), RunID: run.ID, AccountID: account, AccountName: "C", BillingEmail: "c@x.test",
			PeriodStart: start, PeriodEnd: end, Timezone: "UTC", Currency: currency,
			OrdersMinor: 100, SubtotalMinor: 100, TotalMinor: 100, IssuedAt: end, DueOn: end,
		}
	}
	line := store.InvoiceLine{Position: 1, Kind: "order", OrderID: order, Description: "o", OccurredAt: start, AmountMinor: 100}

	first, err := store.InsertInvoice(ctx, db, invoice("EUR"), []store.InvoiceLine{line})
	require.NoError(t, err)
	require.Empty(t, first.Number, "numbered later in its transaction")
	_, err = store.InsertInvoice(ctx, db, invoice("EUR"), nil)
	require.ErrorIs(t, err, store.ErrConflict, "second EUR invoice of the period")
	_, err = store.InsertInvoice(ctx, db, invoice("USD"), []store.InvoiceLine{line})
	require.ErrorIs(t, err, store.ErrConflict, "the order is on an invoice already")

	// Numbering is gapless per year and adds the number to the events.
	second, err := store.InsertInvoice(ctx, db, invoice("USD"), nil)
	require.NoError(t, err)
	events := make([]store.Event, 2)
	for i, inv := range []store.Invoice{first, second} {
		events[i], err = store.NewEvent("invoice.created", inv.ID.String(), nil, 1, map[string]any{"number": "", "total_minor": inv.TotalMinor})
		require.NoError(t, err)
	}
	numbers, err := store.NumberInvoices(ctx, db, 2026, []uuid.UUID{first.ID, second.ID}, events)
	require.NoError(t, err)
	require.Equal(t, map[uuid.UUID]string{first.ID: "INV-2026-000001", second.ID: "INV-2026-000002"}, numbers)
	evs, err := store.EventsBySubject(ctx, db, second.ID.String())
	require.NoError(t, err)
	require.Len(t, evs, 1)
	require.JSONEq(t, `{"number": "INV-2026-000002", "total_minor": 100}`, string(evs[0].Data))
	_, err = store.NumberInvoices(ctx, db, 2026, []uuid.UUID{first.ID}, events[:1])
	require.ErrorIs(t, err, store.ErrConflict, "an invoice is numbered once")
	got, err := store.GetInvoice(ctx, db, second.ID)
	require.NoError(t, err)
	require.Equal(t, "INV-2026-000002", got.Number)
}
