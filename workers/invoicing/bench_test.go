package invoicing

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream/redistest"
	"github.com/bazaarhq/bazaar/workers"
)

const benchOrdersPerAccount = 10

// benchAccounts is 10,000, or BENCH_INVOICE_ACCOUNTS when set (for a
// quicker look). BENCH_INVOICE_UNPREPARED=1 runs the statements unnamed
// (Config.DisablePrepared), to weigh the prepared statements.
func benchAccounts(b *testing.B) int {
	if v := os.Getenv("BENCH_INVOICE_ACCOUNTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("BENCH_INVOICE_ACCOUNTS=%q is not a positive number", v)
		}
		return n
	}
	return 10_000
}

// benchBaselineAccounts caps the baseline run, which bills one account per
// transaction and takes minutes over 10,000 accounts; its time grows
// linearly with the accounts, so its rate compares.
const benchBaselineAccounts = 1000

// BenchmarkInvoiceRun measures one invoice run over 10,000 corporate
// accounts with 10 orders each (in two currencies, so 20,000 invoices):
// from StartRun to the run's completion, with the tasks on an asynq server
// of concurrency 10 in this process, as "bazaar work" runs them. It
// reports the run's duration, accounts and invoices per second and the
// peak Go heap in use while it ran. In the same run it measures a baseline,
// the same run billing each account in its own transaction (BatchSize 1)
// over at most 1,000 accounts, and reports the ratio of the two rates.
// Seeding is not timed.
func BenchmarkInvoiceRun(b *testing.B) {
	accounts := benchAccounts(b)
	for range b.N {
		b.StopTimer()
		base := benchInvoiceRun(b, min(accounts, benchBaselineAccounts), 1)
		r := benchInvoiceRun(b, accounts, 0)
		aps := float64(r.progress.Accounts) / r.took.Seconds()
		baseAPS := float64(base.progress.Accounts) / base.took.Seconds()
		b.ReportMetric(r.took.Seconds(), "run-s")
		b.ReportMetric(aps, "accounts/s")
		b.ReportMetric(float64(r.progress.Invoices)/r.took.Seconds(), "invoices/s")
		b.ReportMetric(float64(r.peak)/(1<<20), "peak-heap-MB")
		b.ReportMetric(baseAPS, "baseline-accounts/s")
		b.ReportMetric(aps/baseAPS, "x-baseline")
		b.ReportMetric(r.discovery.Seconds(), "discovery-s")
		b.ReportMetric(float64(r.pgCPU.Microseconds())/float64(r.progress.Accounts), "pg-cpu-us/account")
		b.ReportMetric(float64(base.pgCPU.Microseconds())/float64(base.progress.Accounts), "baseline-pg-cpu-us/account")
		b.ReportMetric(float64(r.statements)/float64(r.progress.Accounts), "statements/account")
		b.ReportMetric(float64(base.statements)/float64(base.progress.Accounts), "baseline-statements/account")
	}
}

type invoiceBenchResult struct {
	took       time.Duration
	progress   store.RunProgress
	peak       uint64
	statements int64
	discovery  time.Duration
	pgCPU      time.Duration
}

// benchInvoiceRun seeds a database of its own with accounts and times one
// run over them, the timer running only for the run.
func benchInvoiceRun(b *testing.B, accounts, batchSize int) invoiceBenchResult {
	b.Helper()
	ctx := context.Background()
	seedDB, dsn := storetest.NewDB(b)
	// The run goes through a pool that counts its statements; seeding and
	// watching the run do not.
	db, statements := countingDB(b, withApplication(dsn))
	seller, product := uuid.New(), uuid.New()
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO sellers (id, name, email) VALUES ($1, 'Bench seller', 'bench@bazaar.test')`, []any{seller}},
		{`INSERT INTO products (id, seller_id, sku, name, price_minor, currency) VALUES ($1, $2, 'B-1', 'Bench', 1000, 'EUR')`, []any{product, seller}},
		{`WITH a AS (
		    INSERT INTO corporate_accounts (id, name, billing_email)
		    SELECT gen_random_uuid(), 'Corp ' || g, 'billing-' || g || '@corp.test' FROM generate_series(1, $1) g
		    RETURNING id)
		  INSERT INTO users (id, email, corporate_account_id)
		  SELECT gen_random_uuid(), 'buyer-' || a.id || '@corp.test', a.id FROM a`, []any{accounts}},
		{`INSERT INTO orders (id, seller_id, user_id, status, currency, subtotal_minor, total_minor, confirmed_at)
		  SELECT gen_random_uuid(), $1, u.id, 'confirmed', CASE WHEN o % 5 = 0 THEN 'USD' ELSE 'EUR' END,
		         1000 + o, 1499 + o, timestamptz '2026-10-15 08:00:00+00' + o * interval '1 day'
		  FROM users u CROSS JOIN generate_series(1, $2) o`, []any{seller, benchOrdersPerAccount}},
		{`INSERT INTO order_items (id, order_id, product_id, sku, name, quantity, unit_price_minor, line_total_minor)
		  SELECT gen_random_uuid(), o.id, $1, 'B-1', 'Bench', 1, o.subtotal_minor, o.subtotal_minor FROM orders o`, []any{product}},
		{`ANALYZE`, nil},
	} {
		if _, err := seedDB.ExecContext(ctx, q.sql, q.args...); err != nil {
			b.Fatalf("seed: %v", err)
		}
	}

	rdb := redis.NewClient(redistest.DB(b))
	client := asynq.NewClientFromRedisClient(rdb)
	iv, err := New(Config{
		DB: db, Client: client, Now: func() time.Time { return time.Date(2026, 11, 1, 2, 0, 0, 0, time.UTC) },
		Logger: slog.New(slog.DiscardHandler), BatchSize: batchSize,
		DisablePrepared: os.Getenv("BENCH_INVOICE_UNPREPARED") != "",
	})
	if err != nil {
		b.Fatal(err)
	}
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency: 10, Queues: map[string]int{workers.QueueLow: 1},
		TaskCheckInterval: 20 * time.Millisecond, LogLevel: asynq.FatalLevel,
	})
	mux := asynq.NewServeMux()
	RegisterInvoiceTasks(mux, iv)
	if err := srv.Start(mux); err != nil {
		b.Fatal(err)
	}
	// As "bazaar work" keeps its pool: idle connections stay open.
	db.SetMaxOpenConns(20)
	db.SetMaxIdleConns(20)

	runtime.GC()
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()

	b.StartTimer()
	start := time.Now()
	p, _ := ParsePeriod("2026-10-15", "2026-10-31")
	run, _, err := iv.StartRun(ctx, RunRequest{Period: p})
	if err != nil {
		b.Fatal(err)
	}
	for {
		run, err = store.GetInvoiceRun(ctx, seedDB, run.ID)
		if err != nil {
			b.Fatal(err)
		}
		if run.Status == store.RunCompleted {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(start)
	counted := statements.Load()
	pgCPU := backendCPU(ctx, seedDB)
	b.StopTimer()
	close(stop)
	<-sampled

	pr, err := store.InvoiceRunProgress(ctx, seedDB, run.ID)
	if err != nil {
		b.Fatal(err)
	}
	if pr.Accounts != accounts || pr.Done != accounts || pr.Invoices != 2*accounts {
		b.Fatalf("run ended with %+v", pr)
	}
	srv.Shutdown()
	_ = client.Close()
	_ = rdb.Close()
	return invoiceBenchResult{
		took: took, progress: pr, peak: peak.Load(), statements: counted,
		discovery: run.DiscoveredAt.Sub(start), pgCPU: pgCPU,
	}
}
