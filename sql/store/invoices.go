package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// Invoice run statuses.
const (
	RunDiscovering = "discovering"
	RunRunning     = "running"
	RunCompleted   = "completed"
)

// Statuses of one account in an invoice run.
const (
	RunAccountPending = "pending"
	RunAccountDone    = "done"
	RunAccountFailed  = "failed"
)

// DateLayout is how calendar dates (periods, due dates) travel to and from
// PostgreSQL date columns: as text, so no session time zone can shift them.
const DateLayout = "2006-01-02"

// InvoiceRun is one batch that bills every corporate account for one
// period. PeriodStart and PeriodEnd are calendar days (midnight UTC values),
// PeriodEnd exclusive; StartsAt and EndsAt are the same bounds as instants in
// Timezone. Its progress is counted apart (InvoiceRunProgress).
type InvoiceRun struct {
	ID           uuid.UUID  `db:"id"`
	PeriodStart  time.Time  `db:"period_start"`
	PeriodEnd    time.Time  `db:"period_end"`
	Timezone     string     `db:"timezone"`
	StartsAt     time.Time  `db:"starts_at"`
	EndsAt       time.Time  `db:"ends_at"`
	Trigger      string     `db:"trigger"`
	Status       string     `db:"status"`
	Cursor       *uuid.UUID `db:"cursor"`
	Completions  int        `db:"completions"`
	CreatedAt    time.Time  `db:"created_at"`
	DiscoveredAt *time.Time `db:"discovered_at"`
	CompletedAt  *time.Time `db:"completed_at"`
}

const runColumns = `id, period_start, period_end, timezone, starts_at, ends_at, trigger, status, cursor,
completions, created_at, discovered_at, completed_at`

// RunProgress counts a run's accounts by status and the invoices written.
type RunProgress struct {
	Accounts int `db:"accounts"`
	Pending  int `db:"pending"`
	Done     int `db:"done"`
	Failed   int `db:"failed"`
	Invoices int `db:"invoices"`
}

const runProgressQuery = `
SELECT count(*)::integer AS accounts,
       (count(*) FILTER (WHERE status = 'pending'))::integer AS pending,
       (count(*) FILTER (WHERE status = 'done'))::integer AS done,
       (count(*) FILTER (WHERE status = 'failed'))::integer AS failed,
       coalesce(sum(invoices), 0)::integer AS invoices
FROM invoice_run_accounts WHERE run_id = $1`

// InvoiceRunProgress counts a run's accounts by status (one index scan of
// the run's accounts).
func InvoiceRunProgress(ctx context.Context, q sqlx.QueryerContext, runID uuid.UUID) (RunProgress, error) {
	var out RunProgress
	if err := sqlx.GetContext(ctx, q, &out, runProgressQuery, runID); err != nil {
		return RunProgress{}, fmt.Errorf("progress of run %s: %w", runID, translate(err))
	}
	return out, nil
}

const hasPendingQuery = `SELECT EXISTS (SELECT 1 FROM invoice_run_accounts WHERE run_id = $1 AND status = 'pending')`

// HasPendingAccounts reports whether any account of a run is still pending.
func HasPendingAccounts(ctx context.Context, q sqlx.QueryerContext, runID uuid.UUID) (bool, error) {
	var out bool
	if err := sqlx.GetContext(ctx, q, &out, hasPendingQuery, runID); err != nil {
		return false, fmt.Errorf("pending accounts of run %s: %w", runID, translate(err))
	}
	return out, nil
}

const runAccountStateQuery = `
SELECT ra.status,
       EXISTS (SELECT 1 FROM invoice_run_accounts p WHERE p.run_id = ra.run_id AND p.status = 'pending') AS pending,
       EXISTS (SELECT 1 FROM invoice_run_accounts p WHERE p.run_id = ra.run_id AND p.status = 'pending' AND p.error = '') AS claimable
FROM invoice_run_accounts ra WHERE ra.run_id = $1 AND ra.account_id = $2`

// RunAccountState is an account's status in a run, with whether any
// account of the run is pending and whether one of those could be claimed
// by a batch (ClaimRunAccounts: no noted error).
type RunAccountState struct {
	Status    string `db:"status"`
	Pending   bool   `db:"pending"`
	Claimable bool   `db:"claimable"`
}

// GetRunAccountState returns an account's state in a run in one round
// trip: what a task finding its account billed by another task needs to
// know. ErrNotFound when the account is not part of the run.
func GetRunAccountState(ctx context.Context, q sqlx.QueryerContext, runID, accountID uuid.UUID) (RunAccountState, error) {
	var out RunAccountState
	if err := sqlx.GetContext(ctx, q, &out, runAccountStateQuery, runID, accountID); err != nil {
		return RunAccountState{}, fmt.Errorf("run account %s: %w", accountID, translate(err))
	}
	return out, nil
}

const createInvoiceRunQuery = `
INSERT INTO invoice_runs (id, period_start, period_end, timezone, starts_at, ends_at, trigger)
VALUES ($1, $2::date, $3::date, $4, $5, $6, $7)
ON CONFLICT DO NOTHING
RETURNING ` + runColumns

const runByPeriodQuery = `SELECT ` + runColumns + ` FROM invoice_runs WHERE period_start = $1::date AND period_end = $2::date`

const overlappingRunQuery = `
SELECT ` + runColumns + ` FROM invoice_runs
WHERE daterange(period_start, period_end) && daterange($1::date, $2::date)
ORDER BY period_start LIMIT 1`

// CreateInvoiceRun inserts run unless a run for the same period exists, in
// which case it returns that one and false. A period that overlaps another
// run's without being equal to it is ErrConflict: no order may fall into two
// runs.
func CreateInvoiceRun(ctx context.Context, q sqlx.ExtContext, run InvoiceRun) (InvoiceRun, bool, error) {
	var out InvoiceRun
	start, end := run.PeriodStart.Format(DateLayout), run.PeriodEnd.Format(DateLayout)
	err := sqlx.GetContext(ctx, q, &out, createInvoiceRunQuery,
		run.ID, start, end, run.Timezone, run.StartsAt, run.EndsAt, run.Trigger)
	if err == nil {
		return out, true, nil
	}
	if err = translate(err); !errors.Is(err, ErrNotFound) {
		return InvoiceRun{}, false, fmt.Errorf("create invoice run: %w", err)
	}
	err = sqlx.GetContext(ctx, q, &out, runByPeriodQuery, start, end)
	if err == nil {
		return out, false, nil
	}
	if err = translate(err); !errors.Is(err, ErrNotFound) {
		return InvoiceRun{}, false, fmt.Errorf("find invoice run: %w", err)
	}
	if err := sqlx.GetContext(ctx, q, &out, overlappingRunQuery, start, end); err != nil {
		return InvoiceRun{}, false, fmt.Errorf("find overlapping invoice run: %w", translate(err))
	}
	return InvoiceRun{}, false, fmt.Errorf("period %s..%s overlaps run %s for %s..%s: %w",
		start, end, out.ID, out.PeriodStart.Format(DateLayout), out.PeriodEnd.Format(DateLayout), ErrConflict)
}

const getInvoiceRunQuery = `SELECT ` + runColumns + ` FROM invoice_runs WHERE id = $1`

// GetInvoiceRun returns one run or ErrNotFound.
func GetInvoiceRun(ctx context.Context, q sqlx.QueryerContext, id uuid.UUID) (InvoiceRun, error) {
	var out InvoiceRun
	if err := sqlx.GetContext(ctx, q, &out, getInvoiceRunQuery, id); err != nil {
		return InvoiceRun{}, fmt.Errorf("get invoice run %s: %w", id, translate(err))
	}
	return out, nil
}

// LockInvoiceRun returns one run locked until the transaction q ends, as
// every change of a run's counters is. It is FOR NO KEY UPDATE, which still
// lets invoices referencing the run be written meanwhile.
func LockInvoiceRun(ctx context.Context, q sqlx.QueryerContext, id uuid.UUID) (InvoiceRun, error) {
	var out InvoiceRun
	if err := sqlx.GetContext(ctx, q, &out, getInvoiceRunQuery+` FOR NO KEY UPDATE`, id); err != nil {
		return InvoiceRun{}, fmt.Errorf("lock invoice run %s: %w", id, translate(err))
	}
	return out, nil
}

const runEndingOnQuery = `SELECT ` + runColumns + ` FROM invoice_runs WHERE period_end = $1::date`

// InvoiceRunEndingOn returns the run whose period ends where another one
// starts (the previous period's run), or ErrNotFound.
func InvoiceRunEndingOn(ctx context.Context, q sqlx.QueryerContext, day time.Time) (InvoiceRun, error) {
	var out InvoiceRun
	if err := sqlx.GetContext(ctx, q, &out, runEndingOnQuery, day.Format(DateLayout)); err != nil {
		return InvoiceRun{}, fmt.Errorf("invoice run ending on %s: %w", day.Format(DateLayout), translate(err))
	}
	return out, nil
}

const listInvoiceRunsQuery = `
SELECT ` + runColumns + ` FROM invoice_runs
WHERE ($1::timestamptz IS NULL OR (created_at, id) < ($1, $2))
ORDER BY created_at DESC, id DESC LIMIT $3`

// ListInvoiceRuns returns one page of runs, newest first, and the cursor
// of the next page (nil on the last).
func ListInvoiceRuns(ctx context.Context, q sqlx.QueryerContext, p Page) ([]InvoiceRun, *Cursor, error) {
	var (
		at any
		id any
	)
	if p.After != nil {
		at, id = p.After.CreatedAt, p.After.ID
	}
	out := []InvoiceRun{}
	if err := sqlx.SelectContext(ctx, q, &out, listInvoiceRunsQuery, at, id, p.limit()+1); err != nil {
		return nil, nil, fmt.Errorf("list invoice runs: %w", translate(err))
	}
	rows, next := pageOf(out, p.limit(), func(r InvoiceRun) Cursor { return Cursor{r.CreatedAt, r.ID} })
	return rows, next, nil
}

// TimeRange is the half-open interval [From, To). A zero TimeRange matches
// nothing.
type TimeRange struct {
	From, To time.Time
}

func (r TimeRange) args() (any, any) {
	if r.From.IsZero() && r.To.IsZero() {
		return nil, nil
	}
	return r.From, r.To
}

const candidateAccountsQuery = `SELECT id FROM corporate_accounts WHERE id > $1 ORDER BY id LIMIT $2`

// The filter mirrors BillableOrders and CreditableReturns ($2..$5: the
// run's window and the late window). The LATERAL ... LIMIT 1 probes keep
// the planner on per-buyer index lookups: as plain EXISTS it may hash every
// order of the period for each chunk.
const billableAmongQuery = `
SELECT DISTINCT u.corporate_account_id
FROM users u
LEFT JOIN LATERAL (
    SELECT 1 AS hit FROM orders o
    WHERE o.user_id = u.id
      AND o.status IN ('confirmed', 'shipped', 'delivered')
      AND ((o.confirmed_at >= $2 AND o.confirmed_at < $3) OR (o.confirmed_at >= $4 AND o.confirmed_at < $5))
      AND NOT EXISTS (SELECT 1 FROM invoice_lines l WHERE l.order_id = o.id AND l.kind = 'order')
    LIMIT 1
) bo ON true
LEFT JOIN LATERAL (
    SELECT 1 AS hit FROM returns r
    WHERE r.user_id = u.id
      AND r.status = 'accepted'
      AND ((r.resolved_at >= $2 AND r.resolved_at < $3) OR (r.resolved_at >= $4 AND r.resolved_at < $5))
      AND NOT EXISTS (SELECT 1 FROM invoice_lines l WHERE l.return_id = r.id AND l.kind = 'return')
    LIMIT 1
) br ON true
WHERE u.corporate_account_id = ANY($1::uuid[]) AND (bo.hit IS NOT NULL OR br.hit IS NOT NULL)
ORDER BY 1`

// Discovery is one step of a walk over corporate accounts in id order.
type Discovery struct {
	// Billable are the accounts of this step with something to bill.
	Billable []uuid.UUID
	// Last is the last account looked at: the next step starts after it.
	Last uuid.UUID
	// Done is true when no account is left after Last.
	Done bool
}

// DiscoverAccounts looks at the next limit corporate accounts after the
// account id after (uuid.Nil to begin) and keeps those that have unbilled
// confirmed orders or uncredited accepted returns in period or in late.
// Each step costs an index walk of limit accounts and their buyers, however
// many orders the period holds.
func DiscoverAccounts(ctx context.Context, q sqlx.QueryerContext, after uuid.UUID, period, late TimeRange, limit int) (Discovery, error) {
	var candidates []uuid.UUID
	if err := sqlx.SelectContext(ctx, q, &candidates, candidateAccountsQuery, after, limit); err != nil {
		return Discovery{}, fmt.Errorf("discover accounts: %w", translate(err))
	}
	d := Discovery{Last: after, Done: len(candidates) < limit}
	if len(candidates) == 0 {
		return d, nil
	}
	d.Last = candidates[len(candidates)-1]
	lf, lt := late.args()
	if err := sqlx.SelectContext(ctx, q, &d.Billable, billableAmongQuery,
		pq.Array(uuidStrings(candidates)), period.From, period.To, lf, lt); err != nil {
		return Discovery{}, fmt.Errorf("discover accounts: %w", translate(err))
	}
	return d, nil
}

const addRunAccountsQuery = `
INSERT INTO invoice_run_accounts (run_id, account_id)
SELECT $1, unnest($2::uuid[])
ON CONFLICT DO NOTHING`

const advanceRunQuery = `
UPDATE invoice_runs
SET cursor = coalesce($2, cursor),
    status = CASE WHEN $3 THEN 'running' ELSE status END,
    discovered_at = CASE WHEN $3 THEN now() ELSE discovered_at END
WHERE id = $1
RETURNING ` + runColumns

// AddRunAccounts records accounts as pending in a run, moves its discovery
// cursor to cursor and, when finished, marks discovery complete. Call it
// with the run locked (LockInvoiceRun) in the same transaction.
func AddRunAccounts(ctx context.Context, q sqlx.ExtContext, runID uuid.UUID, accounts []uuid.UUID, cursor uuid.UUID, finished bool) (InvoiceRun, error) {
	if len(accounts) > 0 {
		if _, err := q.ExecContext(ctx, addRunAccountsQuery, runID, pq.Array(uuidStrings(accounts))); err != nil {
			return InvoiceRun{}, fmt.Errorf("add run accounts: %w", translate(err))
		}
	}
	var cur *uuid.UUID
	if cursor != uuid.Nil {
		cur = &cursor
	}
	var out InvoiceRun
	if err := sqlx.GetContext(ctx, q, &out, advanceRunQuery, runID, cur, finished); err != nil {
		return InvoiceRun{}, fmt.Errorf("advance run %s: %w", runID, translate(err))
	}
	return out, nil
}

const completeRunQuery = `
UPDATE invoice_runs SET status = 'completed', completed_at = now(), completions = completions + 1
WHERE id = $1 AND status = 'running'
RETURNING ` + runColumns

// CompleteInvoiceRun marks a run whose discovery finished as completed,
// counting the completion. The caller holds the run's lock and has seen no
// pending account after taking it. A run not running is
// ErrInvalidTransition.
func CompleteInvoiceRun(ctx context.Context, q sqlx.ExtContext, runID uuid.UUID) (InvoiceRun, error) {
	var out InvoiceRun
	if err := sqlx.GetContext(ctx, q, &out, completeRunQuery, runID); err != nil {
		if err = translate(err); errors.Is(err, ErrNotFound) {
			return InvoiceRun{}, fmt.Errorf("complete run %s: %w", runID, ErrInvalidTransition)
		}
		return InvoiceRun{}, fmt.Errorf("complete run %s: %w", runID, err)
	}
	return out, nil
}

// RunAccount is one account's part in an invoice run.
type RunAccount struct {
	RunID     uuid.UUID `db:"run_id"`
	AccountID uuid.UUID `db:"account_id"`
	Status    string    `db:"status"`
	Attempts  int       `db:"attempts"`
	Error     string    `db:"error"`
	Invoices  int       `db:"invoices"`
	UpdatedAt time.Time `db:"updated_at"`
}

const runAccountColumns = `run_id, account_id, status, attempts, error, invoices, updated_at`

const getRunAccountQuery = `SELECT ` + runAccountColumns + ` FROM invoice_run_accounts WHERE run_id = $1 AND account_id = $2`

// GetRunAccount returns one account's part in a run or ErrNotFound.
func GetRunAccount(ctx context.Context, q sqlx.QueryerContext, runID, accountID uuid.UUID) (RunAccount, error) {
	var out RunAccount
	if err := sqlx.GetContext(ctx, q, &out, getRunAccountQuery, runID, accountID); err != nil {
		return RunAccount{}, fmt.Errorf("get run account %s: %w", accountID, translate(err))
	}
	return out, nil
}

const listRunAccountsQuery = `
SELECT ` + runAccountColumns + ` FROM invoice_run_accounts
WHERE run_id = $1 AND ($2 = '' OR status = $2) AND account_id > $3
ORDER BY account_id LIMIT $4`

// ListRunAccounts returns a run's accounts in id order after the account id
// after (uuid.Nil to begin), only those in status when it is not empty.
func ListRunAccounts(ctx context.Context, q sqlx.QueryerContext, runID uuid.UUID, status string, after uuid.UUID, limit int) ([]RunAccount, error) {
	out := []RunAccount{}
	if err := sqlx.SelectContext(ctx, q, &out, listRunAccountsQuery, runID, status, after, limit); err != nil {
		return nil, fmt.Errorf("list run accounts: %w", translate(err))
	}
	return out, nil
}

const finishRunAccountQuery = `
UPDATE invoice_run_accounts SET status = $3, error = $4, invoices = $5, updated_at = now()
WHERE run_id = $1 AND account_id = $2 AND status = 'pending'`

// FinishRunAccount moves a pending account to done or failed. It reports
// false and changes nothing when the account was not pending (another copy
// of its task finished it).
func FinishRunAccount(ctx context.Context, q sqlx.ExecerContext, runID, accountID uuid.UUID, status, errText string, invoices int) (bool, error) {
	if status != RunAccountDone && status != RunAccountFailed {
		return false, fmt.Errorf("finish run account: status %q: %w", status, ErrInvalidTransition)
	}
	res, err := q.ExecContext(ctx, finishRunAccountQuery, runID, accountID, status, errText, invoices)
	if err != nil {
		return false, fmt.Errorf("finish run account %s: %w", accountID, translate(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("finish run account %s: %w", accountID, err)
	}
	return n == 1, nil
}

const noteRunAccountErrorQuery = `
UPDATE invoice_run_accounts SET error = $3, updated_at = now()
WHERE run_id = $1 AND account_id = $2 AND status = 'pending'`

// NoteRunAccountError records the latest error of a pending account that
// will be tried again, so progress shows why it is slow.
func NoteRunAccountError(ctx context.Context, q sqlx.ExecerContext, runID, accountID uuid.UUID, errText string) error {
	if _, err := q.ExecContext(ctx, noteRunAccountErrorQuery, runID, accountID, errText); err != nil {
		return fmt.Errorf("note run account error: %w", translate(err))
	}
	return nil
}

const resetFailedQuery = `
UPDATE invoice_run_accounts
SET status = 'pending', attempts = attempts + 1, updated_at = now()
WHERE run_id = $1 AND status = 'failed'`

const reopenRunQuery = `
UPDATE invoice_runs SET status = 'running'
WHERE id = $1 AND status = 'completed'
RETURNING ` + runColumns

// ResetFailedRunAccounts moves every failed account of a run back to
// pending with one more attempt and reopens the run if it had completed.
// It returns how many it moved and the run as it now stands. Call it with
// the run locked (LockInvoiceRun), so no completion check runs meanwhile.
// The error text stays until the next outcome replaces it.
func ResetFailedRunAccounts(ctx context.Context, q sqlx.ExtContext, runID uuid.UUID) (int, InvoiceRun, error) {
	res, err := q.ExecContext(ctx, resetFailedQuery, runID)
	if err != nil {
		return 0, InvoiceRun{}, fmt.Errorf("reset failed accounts: %w", translate(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, InvoiceRun{}, fmt.Errorf("reset failed accounts: %w", err)
	}
	if n > 0 {
		var out InvoiceRun
		err := sqlx.GetContext(ctx, q, &out, reopenRunQuery, runID)
		if err == nil {
			return int(n), out, nil
		}
		if err = translate(err); !errors.Is(err, ErrNotFound) {
			return 0, InvoiceRun{}, fmt.Errorf("reopen run %s: %w", runID, err)
		}
	}
	run, err := GetInvoiceRun(ctx, q, runID)
	return int(n), run, err
}

// BillingAccount is what an invoice needs of a corporate account.
type BillingAccount struct {
	ID           uuid.UUID `db:"id"`
	Name         string    `db:"name"`
	BillingEmail string    `db:"billing_email"`
	VATID        string    `db:"vat_id"`
}

// BillingContext is what billing one account in a run starts from.
type BillingContext struct {
	// Status is the account's status in the run.
	Status  string
	Run     InvoiceRun
	Account BillingAccount
	// Late is the previous period, whose unbilled orders and uncredited
	// returns this run also bills: the run whose period ends where this
	// one's starts, once its discovery finished, unless it still has the
	// account pending or failed (it bills those itself). Zero when none.
	Late TimeRange
}

var lockBillingContextQuery = `
SELECT ra.status AS ra_status, ` + prefixed("r.", runColumns) + `,
       a.name AS account_name, a.billing_email AS account_email, a.vat_id AS account_vat_id,
       p.starts_at AS late_from, p.ends_at AS late_to
FROM invoice_run_accounts ra
JOIN invoice_runs r ON r.id = ra.run_id
JOIN corporate_accounts a ON a.id = ra.account_id
LEFT JOIN invoice_runs p ON p.period_end = r.period_start AND p.discovered_at IS NOT NULL
     AND NOT EXISTS (SELECT 1 FROM invoice_run_accounts pa
                     WHERE pa.run_id = p.id AND pa.account_id = ra.account_id AND pa.status <> 'done')
WHERE ra.run_id = $1 AND ra.account_id = $2
FOR UPDATE OF ra`

// LockBillingContext reads, in one round trip, an account's status in a
// run, the run, the account's billing details and the late window, and
// locks the account's row in the run until the transaction ends, so two
// copies of its task cannot bill it at once. ErrNotFound when the account
// is not part of the run.
func LockBillingContext(ctx context.Context, q sqlx.QueryerContext, runID, accountID uuid.UUID) (BillingContext, error) {
	var row struct {
		InvoiceRun
		RAStatus     string     `db:"ra_status"`
		AccountName  string     `db:"account_name"`
		AccountEmail string     `db:"account_email"`
		AccountVATID string     `db:"account_vat_id"`
		LateFrom     *time.Time `db:"late_from"`
		LateTo       *time.Time `db:"late_to"`
	}
	if err := sqlx.GetContext(ctx, q, &row, lockBillingContextQuery, runID, accountID); err != nil {
		return BillingContext{}, fmt.Errorf("billing context of %s: %w", accountID, translate(err))
	}
	bc := BillingContext{
		Status:  row.RAStatus,
		Run:     row.InvoiceRun,
		Account: BillingAccount{ID: accountID, Name: row.AccountName, BillingEmail: row.AccountEmail, VATID: row.AccountVATID},
	}
	if row.LateFrom != nil && row.LateTo != nil {
		bc.Late = TimeRange{From: *row.LateFrom, To: *row.LateTo}
	}
	return bc, nil
}

// prefixed qualifies every column of a comma-separated list with p.
func prefixed(p, columns string) string {
	parts := strings.Split(columns, ",")
	for i, c := range parts {
		parts[i] = p + strings.TrimSpace(c)
	}
	return strings.Join(parts, ", ")
}

// Numbers are formatted here, in the statement that allocates them:
// "INV-2026-000042", more digits past 999999. The same statement records
// each invoice's event with the number merged into its data (and queues
// it in the outbox, as InsertEvents does), so the lock
// on the year's counter is held for this one statement and the commit.
const numberInvoicesQuery = `
WITH alloc AS (
    INSERT INTO invoice_numbers (year, last) VALUES ($1, $2)
    ON CONFLICT (year) DO UPDATE SET last = invoice_numbers.last + EXCLUDED.last
    RETURNING last
), numbered AS (
    SELECT x.id, (SELECT last FROM alloc) - $2 + x.ord AS n
    FROM unnest($3::uuid[]) WITH ORDINALITY AS x(id, ord)
), updated AS (
    UPDATE invoices i
    SET number = 'INV-' || $1 || '-' || CASE WHEN numbered.n < 1000000 THEN lpad(numbered.n::text, 6, '0') ELSE numbered.n::text END
    FROM numbered
    WHERE i.id = numbered.id AND i.number IS NULL
    RETURNING i.id, i.number
), recorded AS (
INSERT INTO events (id, type, source, specversion, subject, dataschema, time, data, request_id, traceparent)
SELECT e.id, e.type, e.source, '1.0', e.subject, e.dataschema, e.time,
       e.data || jsonb_build_object('number', updated.number), e.request_id, e.traceparent
FROM unnest($3::uuid[], $4::uuid[], $5::text[], $6::text[], $7::text[], $8::text[], $9::timestamptz[], $10::jsonb[], $11::text[], $12::text[])
     AS e(invoice_id, id, type, source, subject, dataschema, time, data, request_id, traceparent)
JOIN updated ON updated.id = e.invoice_id
RETURNING seq, time, subject, data->>'number' AS number
), queued AS (
    INSERT INTO outbox (seq, time, subject) SELECT seq, time, subject FROM recorded
)
SELECT subject, number FROM recorded`

// NumberInvoices gives the invoices ids, written in this transaction
// without a number, the next consecutive numbers of a year in the order
// given, records events[i] for ids[i] with the number added to its data
// (key "number"), and returns the numbers by invoice id. The year's
// counter row stays locked until the transaction ends, which keeps
// numbering gapless; every invoicing transaction shares that lock, so make
// this its last statement.
func NumberInvoices(ctx context.Context, q sqlx.QueryerContext, year int, ids []uuid.UUID, events []Event) (map[uuid.UUID]string, error) {
	if len(events) != len(ids) {
		return nil, fmt.Errorf("number invoices: %d events for %d invoices", len(events), len(ids))
	}
	n := len(ids)
	evIDs, types, sources, subjects, schemas, times, data, rids, tps :=
		make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n),
		make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	for i, e := range events {
		if e.Source == "" {
			e.Source = EventSource
		}
		if e.Time.IsZero() {
			e.Time = time.Now().UTC()
		}
		evIDs[i], types[i], sources[i], subjects[i], schemas[i] = e.ID.String(), e.Type, e.Source, e.Subject, e.DataSchema
		times[i], data[i], rids[i], tps[i] = e.Time.UTC().Format(time.RFC3339Nano), string(e.Data), e.RequestID, e.TraceParent
	}
	rows, err := q.QueryxContext(ctx, numberInvoicesQuery, year, n, pq.Array(uuidStrings(ids)),
		pq.Array(evIDs), pq.Array(types), pq.Array(sources), pq.Array(subjects), pq.Array(schemas),
		pq.Array(times), pq.Array(data), pq.Array(rids), pq.Array(tps))
	if err != nil {
		return nil, fmt.Errorf("number invoices: %w", translate(err))
	}
	defer rows.Close()
	out := make(map[uuid.UUID]string, n)
	for rows.Next() {
		var (
			subject string
			number  string
		)
		if err := rows.Scan(&subject, &number); err != nil {
			return nil, fmt.Errorf("number invoices: %w", err)
		}
		id, err := uuid.Parse(subject)
		if err != nil {
			return nil, fmt.Errorf("number invoices: event subject %q: %w", subject, err)
		}
		out[id] = number
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("number invoices: %w", translate(err))
	}
	if len(out) != n {
		return nil, fmt.Errorf("number invoices: %d of %d were unnumbered invoices of this transaction: %w", len(out), n, ErrConflict)
	}
	return out, nil
}

// Invoice is one issued invoice: an account's bill for one period in one
// currency. Amounts are minor units; credits are positive and subtracted.
// PeriodEnd is exclusive. An invoice is never changed once written.
type Invoice struct {
	ID            uuid.UUID `db:"id"`
	Number        string    `db:"number"`
	RunID         uuid.UUID `db:"run_id"`
	AccountID     uuid.UUID `db:"account_id"`
	AccountName   string    `db:"account_name"`
	BillingEmail  string    `db:"billing_email"`
	VATID         string    `db:"vat_id"`
	PeriodStart   time.Time `db:"period_start"`
	PeriodEnd     time.Time `db:"period_end"`
	Timezone      string    `db:"timezone"`
	Currency      string    `db:"currency"`
	OrdersMinor   int64     `db:"orders_minor"`
	CreditsMinor  int64     `db:"credits_minor"`
	SubtotalMinor int64     `db:"subtotal_minor"`
	TaxRateBps    int       `db:"tax_rate_bps"`
	TaxMinor      int64     `db:"tax_minor"`
	TotalMinor    int64     `db:"total_minor"`
	IssuedAt      time.Time `db:"issued_at"`
	DueOn         time.Time `db:"due_on"`
	CreatedAt     time.Time `db:"created_at"`
}

// InvoiceLine bills one order (positive amount) or credits one return
// (negative amount).
type InvoiceLine struct {
	InvoiceID   uuid.UUID  `db:"invoice_id"`
	Position    int        `db:"position"`
	Kind        string     `db:"kind"`
	OrderID     uuid.UUID  `db:"order_id"`
	ReturnID    *uuid.UUID `db:"return_id"`
	Description string     `db:"description"`
	OccurredAt  time.Time  `db:"occurred_at"`
	AmountMinor int64      `db:"amount_minor"`
	Late        bool       `db:"late"`
}

const invoiceColumns = `id, coalesce(number, '') AS number, run_id, account_id, account_name, billing_email, vat_id, period_start, period_end,
timezone, currency, orders_minor, credits_minor, subtotal_minor, tax_rate_bps, tax_minor, total_minor, issued_at, due_on, created_at`

// One statement writes the invoice and its lines; the lines' foreign key
// is checked at the statement's end, when the invoice row exists.
const insertInvoiceQuery = `
WITH lines AS (
    INSERT INTO invoice_lines (invoice_id, position, kind, order_id, return_id, description, occurred_at, amount_minor, late)
    SELECT $1, l.position, l.kind, l.order_id, l.return_id, l.description, l.occurred_at, l.amount_minor, l.late
    FROM unnest($20::integer[], $21::text[], $22::uuid[], $23::uuid[], $24::text[], $25::timestamptz[], $26::bigint[], $27::boolean[])
         AS l(position, kind, order_id, return_id, description, occurred_at, amount_minor, late)
)
INSERT INTO invoices (id, number, run_id, account_id, account_name, billing_email, vat_id, period_start, period_end,
                      timezone, currency, orders_minor, credits_minor, subtotal_minor, tax_rate_bps, tax_minor, total_minor,
                      issued_at, due_on)
VALUES ($1, NULLIF($2, ''), $3, $4, $5, $6, $7, $8::date, $9::date, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19::date)
RETURNING ` + invoiceColumns

// InsertInvoice writes an invoice and its lines in one round trip. An
// empty Number leaves it to NumberInvoices later in the same transaction.
// A second invoice for the same (account, period, currency), or a line for
// an order or return already on an invoice, is ErrConflict.
func InsertInvoice(ctx context.Context, q sqlx.ExtContext, inv Invoice, lines []InvoiceLine) (Invoice, error) {
	n := len(lines)
	pos := make([]int64, n)
	kinds := make([]string, n)
	orders := make([]string, n)
	returns := make([]*string, n)
	descs := make([]string, n)
	times := make([]string, n)
	amounts := make([]int64, n)
	late := make([]bool, n)
	for i, l := range lines {
		pos[i] = int64(l.Position)
		kinds[i] = l.Kind
		orders[i] = l.OrderID.String()
		if l.ReturnID != nil {
			s := l.ReturnID.String()
			returns[i] = &s
		}
		descs[i] = l.Description
		times[i] = l.OccurredAt.UTC().Format(time.RFC3339Nano)
		amounts[i] = l.AmountMinor
		late[i] = l.Late
	}
	var out Invoice
	err := sqlx.GetContext(ctx, q, &out, insertInvoiceQuery,
		inv.ID, inv.Number, inv.RunID, inv.AccountID, inv.AccountName, inv.BillingEmail, inv.VATID,
		inv.PeriodStart.Format(DateLayout), inv.PeriodEnd.Format(DateLayout), inv.Timezone, inv.Currency,
		inv.OrdersMinor, inv.CreditsMinor, inv.SubtotalMinor, inv.TaxRateBps, inv.TaxMinor, inv.TotalMinor,
		inv.IssuedAt, inv.DueOn.Format(DateLayout),
		pq.Array(pos), pq.Array(kinds), pq.Array(orders), nullableStrings(returns), pq.Array(descs),
		pq.Array(times), pq.Array(amounts), pq.Array(late))
	if err != nil {
		return Invoice{}, fmt.Errorf("insert invoice for %s in %s: %w", inv.AccountID, inv.Currency, translate(err))
	}
	return out, nil
}

const getInvoiceQuery = `SELECT ` + invoiceColumns + ` FROM invoices WHERE id = $1`

// GetInvoice returns one invoice or ErrNotFound.
func GetInvoice(ctx context.Context, q sqlx.QueryerContext, id uuid.UUID) (Invoice, error) {
	var out Invoice
	if err := sqlx.GetContext(ctx, q, &out, getInvoiceQuery, id); err != nil {
		return Invoice{}, fmt.Errorf("get invoice %s: %w", id, translate(err))
	}
	return out, nil
}

const invoiceLinesQuery = `
SELECT invoice_id, position, kind, order_id, return_id, description, occurred_at, amount_minor, late
FROM invoice_lines WHERE invoice_id = $1 ORDER BY position`

// InvoiceLines returns an invoice's lines in order.
func InvoiceLines(ctx context.Context, q sqlx.QueryerContext, invoiceID uuid.UUID) ([]InvoiceLine, error) {
	out := []InvoiceLine{}
	if err := sqlx.SelectContext(ctx, q, &out, invoiceLinesQuery, invoiceID); err != nil {
		return nil, fmt.Errorf("lines of invoice %s: %w", invoiceID, translate(err))
	}
	return out, nil
}

// InvoiceFilter narrows ListInvoices; zero fields match everything.
type InvoiceFilter struct {
	AccountID   *uuid.UUID
	RunID       *uuid.UUID
	PeriodStart *time.Time
	Currency    string
	// Search matches invoices whose number or account name contains it,
	// case-insensitively (LIKE wildcards in it are literal).
	Search string
}

// ListInvoices returns one page of invoices matching f, newest first, and
// the cursor of the next page (nil on the last).
func ListInvoices(ctx context.Context, q sqlx.QueryerContext, f InvoiceFilter, p Page) ([]Invoice, *Cursor, error) {
	var (
		where []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if f.AccountID != nil {
		where = append(where, "account_id = "+arg(*f.AccountID))
	}
	if f.RunID != nil {
		where = append(where, "run_id = "+arg(*f.RunID))
	}
	if f.PeriodStart != nil {
		where = append(where, "period_start = "+arg(f.PeriodStart.Format(DateLayout))+"::date")
	}
	if f.Currency != "" {
		where = append(where, "currency = "+arg(f.Currency))
	}
	if f.Search != "" {
		pat := arg("%" + likeEscaper.Replace(f.Search) + "%")
		where = append(where, fmt.Sprintf("(number ILIKE %s OR account_name ILIKE %s)", pat, pat))
	}
	if p.After != nil {
		where = append(where, fmt.Sprintf("(created_at, id) < (%s, %s)", arg(p.After.CreatedAt), arg(p.After.ID)))
	}
	query := `SELECT ` + invoiceColumns + ` FROM invoices`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	query += ` ORDER BY created_at DESC, id DESC LIMIT ` + arg(p.limit()+1)
	out := []Invoice{}
	if err := sqlx.SelectContext(ctx, q, &out, query, args...); err != nil {
		return nil, nil, fmt.Errorf("list invoices: %w", translate(err))
	}
	rows, next := pageOf(out, p.limit(), func(i Invoice) Cursor { return Cursor{i.CreatedAt, i.ID} })
	return rows, next, nil
}

// likeEscaper makes a string match itself in a LIKE pattern (the default
// escape character is the backslash).
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

func uuidStrings(ids []uuid.UUID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}

// nullableStrings turns nil pointers into SQL NULL array elements.
func nullableStrings(in []*string) pq.GenericArray {
	out := make([]any, len(in))
	for i, s := range in {
		if s != nil {
			out[i] = *s
		}
	}
	return pq.GenericArray{A: out}
}
