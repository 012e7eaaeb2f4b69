package invoicing

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/workers"
)

// pendingRun records the run of p with accounts pending and its discovery
// finished, without enqueueing anything, so a test hands out the account
// tasks itself.
func (e *invEnv) pendingRun(t *testing.T, p Period, accounts ...uuid.UUID) store.InvoiceRun {
	t.Helper()
	ctx := context.Background()
	run, created, _, err := CreateRun(ctx, e.db, RunRequest{Period: p}, e.loc, e.clock.Now())
	require.NoError(t, err)
	require.True(t, created)
	run, err = store.AddRunAccounts(ctx, e.db, run.ID, accounts, uuid.Nil, true)
	require.NoError(t, err)
	return run
}

// billAccount runs the account task of one account as a worker would.
func (e *invEnv) billAccount(t *testing.T, run store.InvoiceRun, account uuid.UUID) error {
	t.Helper()
	payload, err := json.Marshal(InvoiceAccountPayload{Meta: workers.Meta{Version: workers.PayloadVersion}, RunID: run.ID, AccountID: account, Attempt: 1})
	require.NoError(t, err)
	return e.iv.HandleAccount(context.Background(), asynq.NewTask(workers.TypeInvoiceAccount, payload))
}

func (e *invEnv) runAccount(t *testing.T, run store.InvoiceRun, account uuid.UUID) store.RunAccount {
	t.Helper()
	ra, err := store.GetRunAccount(context.Background(), e.db, run.ID, account)
	require.NoError(t, err)
	return ra
}

// numbers returns the numbers of every invoice, ascending.
func (e *invEnv) numbers(t *testing.T) []string {
	t.Helper()
	var out []string
	require.NoError(t, e.db.SelectContext(context.Background(), &out, `SELECT number FROM invoices ORDER BY number`))
	return out
}

func invoiceNumbers(from, to int) []string {
	var out []string
	for n := from; n <= to; n++ {
		out = append(out, fmt.Sprintf("INV-2026-%06d", n))
	}
	return out
}

func TestInvoiceAccountTaskBillsABatchWithConsecutiveNumbers(t *testing.T) {
	t.Parallel()
	e := newInvEnv(t)
	fx, loc := e.fx, e.loc
	var accounts []uuid.UUID
	for i := range 5 {
		a := fx.account(t, fmt.Sprintf("Corp %d", i))
		u := fx.user(t, a)
		fx.order(t, u, "EUR", "confirmed", at(loc, 2026, 10, 20, 9, 0), 1000)
		if i == 2 {
			fx.order(t, u, "USD", "confirmed", at(loc, 2026, 10, 21, 9, 0), 700)
		}
		accounts = append(accounts, a)
	}
	run := e.pendingRun(t, mustPeriod(t, "2026-10-15", "2026-10-31"), accounts...)

	require.NoError(t, e.billAccount(t, run, accounts[0]))
	require.Equal(t, store.RunProgress{Accounts: 5, Done: 5, Invoices: 6}, e.progress(t, run.ID),
		"one task billed every pending account of the run")
	require.Equal(t, invoiceNumbers(1, 6), e.numbers(t), "one batch takes consecutive numbers")
	require.Equal(t, 6, e.eventCount(t, workers.EventInvoiceCreated))
	for _, inv := range e.invoices(t, store.InvoiceFilter{}) {
		events, err := store.EventsBySubject(context.Background(), e.db, inv.ID.String())
		require.NoError(t, err)
		require.Len(t, events, 1)
		var d InvoiceCreatedData
		require.NoError(t, json.Unmarshal(events[0].Data, &d))
		require.Equal(t, inv.Number, d.Number)
		require.Equal(t, inv.AccountID, d.AccountID)
		require.Equal(t, inv.TotalMinor, d.TotalMinor)
	}
	got, err := store.GetInvoiceRun(context.Background(), e.db, run.ID)
	require.NoError(t, err)
	require.Equal(t, store.RunCompleted, got.Status)
	require.Equal(t, 1, e.eventCount(t, workers.EventInvoiceRunCompleted))

	// The other accounts' own tasks find them billed and change nothing.
	for _, a := range accounts[1:] {
		require.NoError(t, e.billAccount(t, run, a))
	}
	require.Len(t, e.invoices(t, store.InvoiceFilter{}), 6)
	require.Equal(t, 1, e.eventCount(t, workers.EventInvoiceRunCompleted))
}

func TestInvoiceBatchLeavesAnUnbillableAccountToFailAlone(t *testing.T) {
	t.Parallel()
	e := newInvEnv(t)
	ctx := context.Background()
	fx, loc := e.fx, e.loc
	good, bad, other := fx.account(t, "Good"), fx.account(t, "Broken"), fx.account(t, "Other")
	for _, a := range []uuid.UUID{good, bad, other} {
		id := fx.order(t, fx.user(t, a), "EUR", "confirmed", at(loc, 2026, 10, 20, 9, 0), 1000)
		if a == bad {
			_, err := e.db.ExecContext(ctx, `UPDATE orders SET currency = 'CHF' WHERE id = $1`, id)
			require.NoError(t, err)
		}
	}
	run := e.pendingRun(t, mustPeriod(t, "2026-10-15", "2026-10-31"), good, bad, other)

	require.NoError(t, e.billAccount(t, run, good))
	require.Equal(t, store.RunProgress{Accounts: 3, Pending: 1, Done: 2, Invoices: 2}, e.progress(t, run.ID))
	ra := e.runAccount(t, run, bad)
	require.Equal(t, store.RunAccountPending, ra.Status, "left to its own task")
	require.Contains(t, ra.Error, "no tax rate for currency CHF")
	require.Equal(t, invoiceNumbers(1, 2), e.numbers(t))

	err := e.billAccount(t, run, bad)
	require.Error(t, err)
	require.ErrorIs(t, err, asynq.SkipRetry)
	ra = e.runAccount(t, run, bad)
	require.Equal(t, store.RunAccountFailed, ra.Status)
	require.Contains(t, ra.Error, "no tax rate for currency CHF")
	require.Empty(t, e.invoices(t, store.InvoiceFilter{AccountID: &bad}))
	got, err := store.GetInvoiceRun(ctx, e.db, run.ID)
	require.NoError(t, err)
	require.Equal(t, store.RunCompleted, got.Status)
}

func TestInvoiceBatchTheDatabaseRefusesIsBilledAccountByAccount(t *testing.T) {
	t.Parallel()
	e := newInvEnv(t)
	ctx := context.Background()
	fx, loc := e.fx, e.loc
	own, clash, other := fx.account(t, "Own"), fx.account(t, "Clash"), fx.account(t, "Other")
	for _, a := range []uuid.UUID{own, clash, other} {
		fx.order(t, fx.user(t, a), "EUR", "confirmed", at(loc, 2026, 10, 20, 9, 0), 1000)
	}
	run := e.pendingRun(t, mustPeriod(t, "2026-10-15", "2026-10-31"), own, clash, other)
	// An invoice of the clashing account for the period and currency is
	// already there, so the database refuses a second one: the batch that
	// holds the account fails as a whole.
	_, err := store.InsertInvoice(ctx, e.db, store.Invoice{
		ID: uuid.New(), Number: "MANUAL-1", RunID: run.ID, AccountID: clash, AccountName: "Clash", BillingEmail: "b@corp.test",
		PeriodStart: run.PeriodStart, PeriodEnd: run.PeriodEnd, Timezone: run.Timezone, Currency: "EUR",
		IssuedAt: e.clock.Now(), DueOn: run.PeriodEnd,
	}, nil)
	require.NoError(t, err)

	require.NoError(t, e.billAccount(t, run, own))
	require.Equal(t, store.RunAccountDone, e.runAccount(t, run, own).Status)
	require.Equal(t, store.RunAccountDone, e.runAccount(t, run, other).Status, "billed alone after its batch failed")
	ra := e.runAccount(t, run, clash)
	require.Equal(t, store.RunAccountPending, ra.Status, "left to its own task")
	require.Contains(t, ra.Error, "conflict")
	require.Equal(t, append(invoiceNumbers(1, 2), "MANUAL-1"), e.numbers(t), "the failed batch left no hole")

	require.Error(t, e.billAccount(t, run, clash))
	require.Equal(t, store.RunAccountFailed, e.runAccount(t, run, clash).Status)
	require.Equal(t, store.RunProgress{Accounts: 3, Done: 2, Failed: 1, Invoices: 2}, e.progress(t, run.ID))
}

func TestConcurrentInvoiceBatchesBillEveryAccountOnceWithGaplessNumbers(t *testing.T) {
	t.Parallel()
	e := newInvEnv(t, func(c *Config) { c.BatchSize = 4 })
	fx, loc := e.fx, e.loc
	const accounts = 30
	for i := range accounts {
		u := fx.user(t, fx.account(t, fmt.Sprintf("Corp %d", i)))
		fx.order(t, u, "EUR", "confirmed", at(loc, 2026, 10, 20, 9, 0), 1000)
		fx.order(t, u, "EUR", "confirmed", at(loc, 2026, 10, 22, 9, 0), 500)
	}
	run := e.run(t, mustPeriod(t, "2026-10-15", "2026-10-31"))
	require.Equal(t, store.RunProgress{Accounts: accounts, Done: accounts, Invoices: accounts}, e.progress(t, run.ID))
	require.Equal(t, invoiceNumbers(1, accounts), e.numbers(t), "every invoice numbered once, no hole")
	var lines int
	require.NoError(t, e.db.GetContext(context.Background(), &lines, `SELECT count(*) FROM invoice_lines`))
	require.Equal(t, 2*accounts, lines, "every order billed once")
	require.Equal(t, accounts, e.eventCount(t, workers.EventInvoiceCreated))
	require.Equal(t, 1, e.eventCount(t, workers.EventInvoiceRunCompleted))
}

func TestTaskOfABilledAccountBillsOtherPendingAccounts(t *testing.T) {
	t.Parallel()
	e := newInvEnv(t, func(c *Config) { c.BatchSize = 2 })
	fx, loc := e.fx, e.loc
	var accounts []uuid.UUID
	for i := range 4 {
		a := fx.account(t, fmt.Sprintf("Corp %d", i))
		fx.order(t, fx.user(t, a), "EUR", "confirmed", at(loc, 2026, 10, 20, 9, 0), 1000)
		accounts = append(accounts, a)
	}
	run := e.pendingRun(t, mustPeriod(t, "2026-10-15", "2026-10-31"), accounts...)

	require.NoError(t, e.billAccount(t, run, accounts[0]))
	require.Equal(t, store.RunProgress{Accounts: 4, Pending: 2, Done: 2, Invoices: 2}, e.progress(t, run.ID))
	// The account of the task that gets the next turn was in that batch: the
	// task bills the two still pending instead of leaving them to tasks
	// queued behind it.
	var billed uuid.UUID
	for _, a := range accounts[1:] {
		if e.runAccount(t, run, a).Status == store.RunAccountDone {
			billed = a
		}
	}
	require.NotEqual(t, uuid.Nil, billed)
	require.NoError(t, e.billAccount(t, run, billed))
	require.Equal(t, store.RunProgress{Accounts: 4, Done: 4, Invoices: 4}, e.progress(t, run.ID))
	require.Equal(t, invoiceNumbers(1, 4), e.numbers(t))
	require.Equal(t, 1, e.eventCount(t, workers.EventInvoiceRunCompleted))

	// Every task delivered again changes nothing.
	for _, a := range accounts {
		require.NoError(t, e.billAccount(t, run, a))
	}
	require.Len(t, e.invoices(t, store.InvoiceFilter{}), 4)
	require.Equal(t, 4, e.eventCount(t, workers.EventInvoiceCreated))
	require.Equal(t, 1, e.eventCount(t, workers.EventInvoiceRunCompleted))
}

func TestBillingStatementRunAgainBillsNothingTwice(t *testing.T) {
	t.Parallel()
	e := newInvEnv(t)
	ctx := context.Background()
	fx, loc := e.fx, e.loc
	a, b := fx.account(t, "Alpha"), fx.account(t, "Beta")
	fx.order(t, fx.user(t, a), "EUR", "confirmed", at(loc, 2026, 10, 20, 9, 0), 1000)
	fx.order(t, fx.user(t, b), "USD", "confirmed", at(loc, 2026, 10, 21, 9, 0), 700)
	run := e.pendingRun(t, mustPeriod(t, "2026-10-15", "2026-10-31"), a, b)
	bcs := []store.BillingContext{
		{Run: run, Account: store.BillingAccount{ID: a}},
		{Run: run, Account: store.BillingAccount{ID: b}},
	}
	issued := e.clock.Now()
	first, err := store.BillAccounts(ctx, e.db, run, bcs, e.iv.rates, issued, run.PeriodEnd)
	require.NoError(t, err)
	require.Len(t, first.Invoices, 2)
	require.Equal(t, 2, first.Finished)

	// As a batch committed before its task was acknowledged would be, when
	// the task comes back: the orders are on invoices and the accounts done.
	again, err := store.BillAccounts(ctx, e.db, run, bcs, e.iv.rates, issued, run.PeriodEnd)
	require.NoError(t, err)
	require.Empty(t, again.Invoices)
	require.Empty(t, again.Problems)
	require.Zero(t, again.Finished)
	var lines int
	require.NoError(t, e.db.GetContext(ctx, &lines, `SELECT count(*) FROM invoice_lines`))
	require.Equal(t, 2, lines)
}
