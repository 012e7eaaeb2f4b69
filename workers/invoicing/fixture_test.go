package invoicing

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream/redistest"
	"github.com/bazaarhq/bazaar/workers"
)

// testClock is a clock tests move by hand.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// invEnv is one invoicing test's database, Redis database, invoicer on a
// controllable clock and an asynq server running the invoicing tasks.
type invEnv struct {
	db     *sqlx.DB
	rdb    *redis.Client
	clock  *testClock
	loc    *time.Location
	iv     *Invoicer
	client *asynq.Client
	fx     *invFixture
}

func newInvEnv(t *testing.T, mutate ...func(*Config)) *invEnv {
	t.Helper()
	db, _ := storetest.NewDB(t)
	rdb := redis.NewClient(redistest.DB(t))
	t.Cleanup(func() { _ = rdb.Close() })
	loc, err := time.LoadLocation("Europe/Berlin")
	require.NoError(t, err)
	clock := &testClock{t: time.Date(2026, 11, 1, 2, 0, 0, 0, loc)}
	client := asynq.NewClientFromRedisClient(rdb)
	t.Cleanup(func() { _ = client.Close() })
	tax, err := ParseTaxTable("EUR=1900,GBP=2000,USD=0")
	require.NoError(t, err)
	cfg := Config{
		DB: db, Client: client, Location: loc, Tax: &tax, ChunkSize: 2, Now: clock.Now, Logger: testLogger(t),
	}
	for _, m := range mutate {
		m(&cfg)
	}
	iv, err := New(cfg)
	require.NoError(t, err)
	e := &invEnv{db: db, rdb: rdb, clock: clock, loc: loc, iv: iv, client: client, fx: newInvFixture(t, db)}
	e.startWorker(t)
	return e
}

// startWorker runs the invoicing handlers on an asynq server of their own.
func (e *invEnv) startWorker(t *testing.T) {
	t.Helper()
	srv := asynq.NewServerFromRedisClient(e.rdb, asynq.Config{
		Concurrency:       4,
		Queues:            map[string]int{workers.QueueLow: 1},
		TaskCheckInterval: 20 * time.Millisecond,
		LogLevel:          asynq.FatalLevel,
		ShutdownTimeout:   2 * time.Second,
	})
	mux := asynq.NewServeMux()
	RegisterInvoiceTasks(mux, e.iv)
	require.NoError(t, srv.Start(mux))
	t.Cleanup(srv.Shutdown)
}

// run starts the run of a period and waits for it to complete.
func (e *invEnv) run(t *testing.T, p Period) store.InvoiceRun {
	t.Helper()
	run, created, err := e.iv.StartRun(context.Background(), RunRequest{Period: p, Trigger: TriggerManual})
	require.NoError(t, err)
	require.True(t, created)
	return e.waitCompleted(t, run.ID, 1)
}

// waitCompleted waits until a run has completed n times.
func (e *invEnv) waitCompleted(t *testing.T, runID uuid.UUID, n int) store.InvoiceRun {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		run, err := store.GetInvoiceRun(context.Background(), e.db, runID)
		require.NoError(t, err)
		if run.Status == store.RunCompleted && run.Completions >= n {
			return run
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s did not complete %d times: %+v", runID, n, run)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *invEnv) invoices(t *testing.T, f store.InvoiceFilter) []store.Invoice {
	t.Helper()
	out, next, err := store.ListInvoices(context.Background(), e.db, f, store.Page{Limit: 1000})
	require.NoError(t, err)
	require.Nil(t, next)
	return out
}

func (e *invEnv) progress(t *testing.T, runID uuid.UUID) store.RunProgress {
	t.Helper()
	p, err := store.InvoiceRunProgress(context.Background(), e.db, runID)
	require.NoError(t, err)
	return p
}

func (e *invEnv) eventCount(t *testing.T, typ string) int {
	t.Helper()
	var n int
	require.NoError(t, e.db.GetContext(context.Background(), &n, `SELECT count(*) FROM events WHERE type = $1`, typ))
	return n
}

func mustPeriod(t testing.TB, first, last string) Period {
	t.Helper()
	p, err := ParsePeriod(first, last)
	require.NoError(t, err)
	return p
}

// invFixture writes marketplace records directly, with the exact
// statuses and timestamps a test needs.
type invFixture struct {
	db      *sqlx.DB
	seller  uuid.UUID
	product uuid.UUID
}

func newInvFixture(t testing.TB, db *sqlx.DB) *invFixture {
	t.Helper()
	f := &invFixture{db: db, seller: uuid.New(), product: uuid.New()}
	ctx := context.Background()
	_, err := db.ExecContext(ctx, `INSERT INTO sellers (id, name, email) VALUES ($1, 'Kettle & Co', 'sales@kettle.test')`, f.seller)
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, `INSERT INTO products (id, seller_id, sku, name, price_minor, currency, stock)
		VALUES ($1, $2, 'TEA-1', 'Teapot', 1000, 'EUR', 1000)`, f.product, f.seller)
	require.NoError(t, err)
	return f
}

func (f *invFixture) account(t testing.TB, name string) uuid.UUID {
	t.Helper()
	id := uuid.New()
	_, err := f.db.ExecContext(context.Background(), `INSERT INTO corporate_accounts (id, name, billing_email, vat_id)
		VALUES ($1, $2, $3, 'DE123456789')`, id, name, fmt.Sprintf("billing-%s@corp.test", id.String()[:8]))
	require.NoError(t, err)
	return id
}

func (f *invFixture) user(t testing.TB, account uuid.UUID) uuid.UUID {
	t.Helper()
	id := uuid.New()
	_, err := f.db.ExecContext(context.Background(), `INSERT INTO users (id, email, name, corporate_account_id)
		VALUES ($1, $2, 'Buyer', $3)`, id, fmt.Sprintf("buyer-%s@corp.test", id.String()[:8]), account)
	require.NoError(t, err)
	return id
}

// order writes an order of one item per line total; its total is the
// subtotal plus 499 shipping, so tests see which of the two is billed.
// confirmedAt nil leaves it unconfirmed.
func (f *invFixture) order(t testing.TB, user uuid.UUID, currency, status string, confirmedAt *time.Time, lines ...int64) uuid.UUID {
	t.Helper()
	ctx := context.Background()
	id, err := uuid.NewV7()
	require.NoError(t, err)
	var subtotal int64
	for _, l := range lines {
		subtotal += l
	}
	_, err = f.db.ExecContext(ctx, `INSERT INTO orders (id, seller_id, user_id, status, currency, subtotal_minor, total_minor, confirmed_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, id, f.seller, user, status, currency, subtotal, subtotal+499, confirmedAt)
	require.NoError(t, err)
	for _, l := range lines {
		_, err = f.db.ExecContext(ctx, `INSERT INTO order_items (id, order_id, product_id, sku, name, quantity, unit_price_minor, line_total_minor)
			VALUES ($1, $2, $3, 'TEA-1', 'Teapot', 1, $4, $4)`, uuid.New(), id, f.product, l)
		require.NoError(t, err)
	}
	return id
}

// ret writes a return of an order's first item; resolvedAt nil leaves it open.
func (f *invFixture) ret(t testing.TB, orderID uuid.UUID, status string, refund int64, resolvedAt *time.Time) uuid.UUID {
	t.Helper()
	id := uuid.New()
	_, err := f.db.ExecContext(context.Background(), `
INSERT INTO returns (id, order_id, order_item_id, seller_id, user_id, quantity, reason, status, refund_minor, currency, resolved_at)
SELECT $1, o.id, (SELECT i.id FROM order_items i WHERE i.order_id = o.id ORDER BY i.id LIMIT 1), o.seller_id, o.user_id,
       1, 'broken', $3, $4, o.currency, $5
FROM orders o WHERE o.id = $2`, id, orderID, status, refund, resolvedAt)
	require.NoError(t, err)
	return id
}

func at(loc *time.Location, y int, m time.Month, d, h, min int) *time.Time {
	t := time.Date(y, m, d, h, min, 0, 0, loc)
	return &t
}
