package scheduler

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/workers"
)

// The collector reports each schedule's last handed-over firing, the
// completions of invoice runs by status and the failed accounts of the
// latest completed run, and nothing while another scheduler leads.
func TestCollector(t *testing.T) {
	t.Parallel()
	db, _ := storetest.NewDB(t)
	ctx := context.Background()

	due := time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)
	for i, period := range []string{"2026-02-01", "2026-02-15"} {
		_, _, err := store.InsertFiring(ctx, db, store.Firing{
			Schedule: "invoicing", Period: period, DueAt: due.AddDate(0, 0, i), TaskID: "t-" + period, FiredBy: "s1",
		})
		require.NoError(t, err)
	}
	require.NoError(t, store.MarkFiringEnqueued(ctx, db, "invoicing", "2026-02-01"))
	// A firing whose work was never handed over is no success.
	_, _, err := store.InsertFiring(ctx, db, store.Firing{Schedule: "reports", Period: "p", DueAt: due, TaskID: "r", FiredBy: "s1"})
	require.NoError(t, err)
	var enqueuedAt time.Time
	require.NoError(t, db.GetContext(ctx, &enqueuedAt, `SELECT enqueued_at FROM schedule_firings WHERE period = '2026-02-01'`))

	// Three completions: two clean, one leaving two accounts failed.
	for _, failed := range []int{0, 0, 2} {
		e, err := store.NewEvent(workers.EventInvoiceRunCompleted, uuid.NewString(), nil, 1, map[string]int{"failed": failed})
		require.NoError(t, err)
		require.NoError(t, store.InsertEvents(ctx, db, e))
	}
	older := insertRun(t, db, "2026-01-01", "2026-01-15", 1)
	latest := insertRun(t, db, "2026-01-15", "2026-02-01", 1)
	insertRun(t, db, "2026-02-01", "2026-02-15", 0) // running, not yet completed
	addAccount(t, db, older, "failed")
	addAccount(t, db, latest, "failed")
	addAccount(t, db, latest, "failed")
	addAccount(t, db, latest, "done")

	var leading atomic.Bool
	leading.Store(true)
	c, err := NewCollector(CollectorConfig{DB: db, Leading: leading.Load})
	require.NoError(t, err)
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(`
# HELP bazaar_invoice_run_failed_accounts Accounts left failed by the latest completed invoice run.
# TYPE bazaar_invoice_run_failed_accounts gauge
bazaar_invoice_run_failed_accounts 2
# HELP bazaar_invoice_runs_total Invoice runs completed, by status: succeeded (every account billed) or partial (some accounts failed).
# TYPE bazaar_invoice_runs_total counter
bazaar_invoice_runs_total{status="partial"} 1
bazaar_invoice_runs_total{status="succeeded"} 2
`), "bazaar_invoice_run_failed_accounts", "bazaar_invoice_runs_total"))
	want := float64(enqueuedAt.UnixMilli()) / 1000
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(`
# HELP bazaar_scheduler_last_success_timestamp_seconds Unix time of each schedule's last successful run (its work handed over).
# TYPE bazaar_scheduler_last_success_timestamp_seconds gauge
bazaar_scheduler_last_success_timestamp_seconds{schedule="invoicing"} `+strconv.FormatFloat(want, 'g', -1, 64)+`
`), "bazaar_scheduler_last_success_timestamp_seconds"))

	leading.Store(false)
	require.Zero(t, testutil.CollectAndCount(c), "another scheduler reports")
}

func insertRun(t *testing.T, db *sqlx.DB, from, to string, completions int) uuid.UUID {
	t.Helper()
	id := uuid.New()
	status := "running"
	if completions > 0 {
		status = "completed"
	}
	_, err := db.ExecContext(context.Background(), `
INSERT INTO invoice_runs (id, period_start, period_end, timezone, starts_at, ends_at, trigger, status, completions)
VALUES ($1, $2::date, $3::date, 'UTC', $2::date, $3::date, 'manual', $4, $5)`, id, from, to, status, completions)
	require.NoError(t, err)
	return id
}

func addAccount(t *testing.T, db *sqlx.DB, run uuid.UUID, status string) {
	t.Helper()
	account := uuid.New()
	_, err := db.ExecContext(context.Background(),
		`INSERT INTO corporate_accounts (id, name, billing_email) VALUES ($1, 'ACME', 'billing@acme.test')`, account)
	require.NoError(t, err)
	_, err = db.ExecContext(context.Background(),
		`INSERT INTO invoice_run_accounts (run_id, account_id, status) VALUES ($1, $2, $3)`, run, account, status)
	require.NoError(t, err)
}
