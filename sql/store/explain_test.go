package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
)

// bigRows is how many rows each listed table gets in TestListQueriesUseIndexes.
const bigRows = 1_000_000

// maxTouched bounds the rows a list query may read from a big table or
// sort for one page of 50: a page, plus the few rows of a narrow filter
// (one user's orders), never the whole matching set.
const maxTouched = 1000

// TestListQueriesUseIndexes runs every list query of the store with each
// documented filter, exactly as the API calls it, against tables of a
// million rows, and fails when PostgreSQL (EXPLAIN ANALYZE) scans a big
// table sequentially, or reads or sorts more than about a page of it. The
// data is skewed as in a real marketplace: one seller has a seventh of all
// orders and confirms them only in its oldest tenth, while others confirm
// a twentieth of theirs throughout; some statuses and currencies are rare.
// Each single-column index then reads thousands of rows for one page,
// which is where a missing index shows. Loading the tables takes most of
// the time (about a minute per million rows on a busy 2-core machine), so
// -short skips the test. UnprintedOrders is left out: it finds a seller's
// unacknowledged orders by skipping the acknowledged ones, oldest first,
// which no index on orders can spare it.
func TestListQueriesUseIndexes(t *testing.T) {
	if testing.Short() {
		t.Skip("loads a million rows per table; runs without -short")
	}
	t.Parallel()
	ctx := context.Background()
	db, _ := storetest.NewDB(t)
	start := time.Now()
	loadBigTables(t, db)
	t.Logf("loaded %d rows per table in %s", bigRows, time.Since(start).Round(time.Millisecond))

	id := func(kind string, n int) *uuid.UUID {
		u := uuid.MustParse(fmt.Sprintf("%08x-0000-0000-0000-%012x", kinds[kind], n))
		return &u
	}
	// The seller with the most orders, a user and an order of it, an
	// account and a run.
	seller, user, order := id("s", 0), id("u", 7), id("o", 7)
	account, run := id("a", 42), id("r", 2)
	period := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	first := store.Page{Limit: 50}
	// A page deep into the hot seller's list.
	var deep store.Page
	{
		_, next, err := store.ListOrders(ctx, db, store.OrderFilter{SellerID: seller}, store.Page{Limit: 1000})
		require.NoError(t, err)
		require.NotNil(t, next)
		deep = store.Page{Limit: 50, After: next}
	}

	cases := []struct {
		name string
		run  func(q sqlx.QueryerContext) error
	}{
		{"sellers", func(q sqlx.QueryerContext) error { _, _, err := store.ListSellers(ctx, q, first); return err }},
		{"sellers after a cursor", func(q sqlx.QueryerContext) error {
			_, _, err := store.ListSellers(ctx, q, store.Page{Limit: 50, After: &store.Cursor{CreatedAt: time.Now().Add(-100 * 24 * time.Hour), ID: uuid.Nil}})
			return err
		}},
		{"orders", orders(ctx, store.OrderFilter{}, first)},
		{"orders of a user", orders(ctx, store.OrderFilter{UserID: user}, first)},
		{"orders of a seller", orders(ctx, store.OrderFilter{SellerID: seller}, first)},
		{"orders of a seller, deep page", orders(ctx, store.OrderFilter{SellerID: seller}, deep)},
		{"orders by status", orders(ctx, store.OrderFilter{Status: store.OrderConfirmed}, first)},
		{"orders of a seller by status", orders(ctx, store.OrderFilter{SellerID: seller, Status: store.OrderConfirmed}, first)},
		{"orders of a seller by status, deep page", orders(ctx, store.OrderFilter{SellerID: seller, Status: store.OrderPending}, deep)},
		{"orders of a seller's user", orders(ctx, store.OrderFilter{SellerID: seller, UserID: user}, first)},
		{"orders of a user by status", orders(ctx, store.OrderFilter{UserID: user, Status: store.OrderConfirmed}, first)},
		{"returns", returns(ctx, store.ReturnFilter{}, first)},
		{"returns of an order", returns(ctx, store.ReturnFilter{OrderID: order}, first)},
		{"returns of a user", returns(ctx, store.ReturnFilter{UserID: user}, first)},
		{"returns of a seller", returns(ctx, store.ReturnFilter{SellerID: seller}, first)},
		{"returns by status", returns(ctx, store.ReturnFilter{Status: store.ReturnStatusOpen}, first)},
		{"returns of a seller by status", returns(ctx, store.ReturnFilter{SellerID: seller, Status: store.ReturnStatusOpen}, first)},
		{"returns of a seller's user", returns(ctx, store.ReturnFilter{SellerID: seller, UserID: user}, first)},
		{"returns of a seller's order", returns(ctx, store.ReturnFilter{SellerID: seller, OrderID: order}, first)},
		{"invoices", invoices(ctx, store.InvoiceFilter{}, first)},
		{"invoices of an account", invoices(ctx, store.InvoiceFilter{AccountID: account}, first)},
		{"invoices of a run", invoices(ctx, store.InvoiceFilter{RunID: run}, first)},
		{"invoices of a period", invoices(ctx, store.InvoiceFilter{PeriodStart: &period}, first)},
		{"invoices in a currency", invoices(ctx, store.InvoiceFilter{Currency: "USD"}, first)},
		{"products of a seller", func(q sqlx.QueryerContext) error {
			_, _, err := store.ListProductsBySeller(ctx, q, *seller, first)
			return err
		}},
	}
	for _, c := range cases {
		e := &explainer{DB: db}
		require.NoError(t, c.run(e), c.name)
		require.NotEmpty(t, e.plans, c.name)
		for _, p := range e.plans {
			for _, bad := range checkPlan(p.plan) {
				t.Errorf("%s: %s\nquery: %s\nplan: %s", c.name, bad, p.query, p.raw)
			}
		}
	}
}

func orders(ctx context.Context, f store.OrderFilter, p store.Page) func(sqlx.QueryerContext) error {
	return func(q sqlx.QueryerContext) error { _, _, err := store.ListOrders(ctx, q, f, p); return err }
}

func returns(ctx context.Context, f store.ReturnFilter, p store.Page) func(sqlx.QueryerContext) error {
	return func(q sqlx.QueryerContext) error { _, _, err := store.ListReturns(ctx, q, f, p); return err }
}

func invoices(ctx context.Context, f store.InvoiceFilter, p store.Page) func(sqlx.QueryerContext) error {
	return func(q sqlx.QueryerContext) error { _, _, err := store.ListInvoices(ctx, q, f, p); return err }
}

// kinds number the kinds of row ids loadBigTables makes: the id of row n
// of kind k is the UUID kkkkkkkk-0000-0000-0000-nnnnnnnnnnnn (hex), so ids
// grow with n and the primary keys fill in order.
var kinds = map[string]int{"s": 1, "o": 2, "u": 3, "ret": 4, "item": 5, "i": 6, "r": 7, "a": 8, "p": 9}

// bigTables are the tables loadBigTables fills.
var bigTables = map[string]bool{"sellers": true, "orders": true, "returns": true, "invoices": true, "products": true}

// loadBigTables fills the listed tables with generate_series on one
// connection, with foreign-key triggers off (session_replication_role) and
// the secondary indexes dropped during the load and then created again from
// their own definitions, which is much faster than growing them row by row.
// Seller 0 has a seventh of the orders, returns and products.
func loadBigTables(t *testing.T, db *sqlx.DB) {
	t.Helper()
	ctx := context.Background()
	conn, err := db.Connx(ctx)
	require.NoError(t, err)
	defer conn.Close()
	var indexes []struct {
		Name string `db:"indexname"`
		Def  string `db:"indexdef"`
	}
	tables := make([]string, 0, len(bigTables))
	for tb := range bigTables {
		tables = append(tables, tb)
	}
	require.NoError(t, sqlx.SelectContext(ctx, conn, &indexes, `
SELECT indexname, indexdef FROM pg_indexes i
WHERE schemaname = 'public' AND tablename = ANY($1)
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = (quote_ident(i.schemaname) || '.' || quote_ident(i.indexname))::regclass)
ORDER BY indexname`, pq.StringArray(tables)))
	stmts := []string{
		`SET session_replication_role = replica`,
		`SET synchronous_commit = off`,
		`SET maintenance_work_mem = '128MB'`,
		`CREATE FUNCTION pg_temp.bigid(kind int, n bigint) RETURNS uuid IMMUTABLE LANGUAGE sql
AS $$ SELECT (lpad(to_hex(kind), 8, '0') || '-0000-0000-0000-' || lpad(to_hex(n), 12, '0'))::uuid $$`,
	}
	for _, ix := range indexes {
		stmts = append(stmts, `DROP INDEX `+ix.Name)
	}
	stmts = append(stmts,
		fmt.Sprintf(`INSERT INTO sellers (id, name, email, created_at)
SELECT pg_temp.bigid(1, i), 'seller', 's@example.test', now() - i * interval '1 second'
FROM generate_series(0, %d) i`, bigRows-1),
		fmt.Sprintf(`INSERT INTO orders (id, seller_id, user_id, status, currency, subtotal_minor, total_minor, created_at)
SELECT pg_temp.bigid(2, i), pg_temp.bigid(1, (i %% 7)), pg_temp.bigid(3, (i %% 100000)),
       CASE WHEN i %% 101 = 0 THEN 'pending'
            WHEN i %% 7 = 0 THEN CASE WHEN i >= %[1]d * 9 / 10 THEN 'confirmed' ELSE 'delivered' END
            WHEN i %% 20 = 1 THEN 'confirmed' WHEN i %% 101 < 10 THEN 'cancelled' WHEN i %% 101 < 30 THEN 'shipped'
            ELSE 'delivered' END,
       'EUR', 100, 100, now() - i * interval '1 second'
FROM generate_series(0, %[1]d - 1) i`, bigRows),
		fmt.Sprintf(`INSERT INTO returns (id, order_id, order_item_id, seller_id, user_id, quantity, reason, status, currency, created_at)
SELECT pg_temp.bigid(4, i), pg_temp.bigid(2, i), pg_temp.bigid(5, i), pg_temp.bigid(1, (i %% 7)), pg_temp.bigid(3, (i %% 100000)), 1, 'broken',
       CASE WHEN i %% 101 = 0 THEN 'open' WHEN i %% 101 < 10 THEN 'rejected' ELSE 'accepted' END,
       'EUR', now() - i * interval '1 second'
FROM generate_series(0, %d) i`, bigRows-1),
		fmt.Sprintf(`INSERT INTO invoices (id, run_id, account_id, account_name, billing_email, period_start, period_end, timezone,
       currency, orders_minor, credits_minor, subtotal_minor, tax_rate_bps, tax_minor, total_minor, issued_at, due_on, created_at)
SELECT pg_temp.bigid(6, i), pg_temp.bigid(7, (i / %[2]d)), pg_temp.bigid(8, (i %% %[2]d)), 'account', 'a@example.test',
       date '2025-01-01' + (i / %[2]d) * interval '1 month', date '2025-02-01' + (i / %[2]d) * interval '1 month', 'UTC',
       CASE WHEN i %% 101 = 0 THEN 'USD' ELSE 'EUR' END, 0, 0, 0, 0, 0, 0, now(), now()::date, now() - i * interval '1 second'
FROM generate_series(0, %[1]d) i`, bigRows-1, bigRows/4),
		fmt.Sprintf(`INSERT INTO products (id, seller_id, sku, name, price_minor, currency, created_at)
SELECT pg_temp.bigid(9, i), pg_temp.bigid(1, (i %% 7)), 'sku-' || i, 'product', 100, 'EUR', now() - i * interval '1 second'
FROM generate_series(0, %d) i`, bigRows-1),
	)
	for _, ix := range indexes {
		stmts = append(stmts, ix.Def)
	}
	stmts = append(stmts, `ANALYZE sellers, orders, returns, invoices, products`)
	for _, s := range stmts {
		_, err := conn.ExecContext(ctx, s)
		require.NoError(t, err, s)
	}
}

// explainer runs every query it is given twice: under EXPLAIN (ANALYZE,
// FORMAT JSON), keeping the plan, and then for real, so the store function
// sees its rows as usual and the plan is of exactly the SQL it sent.
type explainer struct {
	*sqlx.DB
	plans []explained
}

type explained struct {
	query string
	raw   []byte
	plan  planNode
}

type planNode struct {
	NodeType  string     `json:"Node Type"`
	Relation  string     `json:"Relation Name"`
	Rows      float64    `json:"Actual Rows"`
	Loops     float64    `json:"Actual Loops"`
	Removed   float64    `json:"Rows Removed by Filter"`
	Rechecked float64    `json:"Rows Removed by Index Recheck"`
	Plans     []planNode `json:"Plans"`
}

func (e *explainer) QueryxContext(ctx context.Context, query string, args ...any) (*sqlx.Rows, error) {
	var raw []byte
	if err := e.DB.QueryRowContext(ctx, "EXPLAIN (ANALYZE, FORMAT JSON) "+query, args...).Scan(&raw); err != nil {
		return nil, fmt.Errorf("explain: %w", err)
	}
	var doc []struct {
		Plan planNode `json:"Plan"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil || len(doc) != 1 {
		return nil, fmt.Errorf("explain output %s: %w", raw, err)
	}
	e.plans = append(e.plans, explained{query: query, raw: raw, plan: doc[0].Plan})
	return e.DB.QueryxContext(ctx, query, args...)
}

// checkPlan lists what is wrong with a plan: a sequential scan of a big
// table, a scan that read more than maxTouched of its rows (kept or
// filtered out), or a sort of more than maxTouched rows.
func checkPlan(n planNode) []string {
	var bad []string
	touched := (n.Rows + n.Removed + n.Rechecked) * max(n.Loops, 1)
	switch {
	case bigTables[n.Relation] && n.NodeType == "Seq Scan":
		bad = append(bad, "sequential scan of "+n.Relation)
	case bigTables[n.Relation] && touched > maxTouched:
		bad = append(bad, fmt.Sprintf("%s of %s read %.0f rows", n.NodeType, n.Relation, touched))
	case n.NodeType == "Sort" && touched > maxTouched:
		bad = append(bad, fmt.Sprintf("sort of %.0f rows", touched))
	}
	for _, c := range n.Plans {
		bad = append(bad, checkPlan(c)...)
	}
	return bad
}
