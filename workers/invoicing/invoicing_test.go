package invoicing

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/stream"
	"github.com/bazaarhq/bazaar/workers"
)

// billedRow is one (account, period, currency) amount, as the invoices say
// and as an independent query over the orders and returns says.
type billedRow struct {
	AccountID   uuid.UUID `db:"account_id"`
	PeriodStart string    `db:"period_start"`
	Currency    string    `db:"currency"`
	Subtotal    int64     `db:"subtotal"`
	Lines       int       `db:"lines"`
}

// expectedBilling recomputes what each corporate account owes per
// bi-weekly period (1st-14th, 15th-end of month in Europe/Berlin) and
// currency straight from orders and returns, without the store's queries.
const expectedBillingQuery = `
WITH movements AS (
    SELECT u.corporate_account_id AS account_id, o.currency, o.total_minor AS amount, o.confirmed_at AS at
    FROM orders o JOIN users u ON u.id = o.user_id
    WHERE o.status IN ('confirmed', 'shipped', 'delivered') AND o.confirmed_at IS NOT NULL
      AND u.corporate_account_id IS NOT NULL
    UNION ALL
    SELECT u.corporate_account_id, r.currency, -r.refund_minor, r.resolved_at
    FROM returns r JOIN users u ON u.id = r.user_id
    WHERE r.status = 'accepted' AND u.corporate_account_id IS NOT NULL
), dated AS (
    SELECT account_id, currency, amount, (at AT TIME ZONE 'Europe/Berlin')::date AS day FROM movements
)
SELECT account_id, currency,
       to_char(CASE WHEN extract(day FROM day) >= 15 THEN date_trunc('month', day) + interval '14 days'
                    ELSE date_trunc('month', day) END, 'YYYY-MM-DD') AS period_start,
       sum(amount)::bigint AS subtotal, count(*)::integer AS lines
FROM dated
GROUP BY 1, 2, 3`

const invoicedQuery = `
SELECT i.account_id, i.currency, to_char(i.period_start, 'YYYY-MM-DD') AS period_start, i.subtotal_minor AS subtotal,
       (SELECT count(*) FROM invoice_lines l WHERE l.invoice_id = i.id)::integer AS lines
FROM invoices i`

func sortRows(rows []billedRow) {
	sort.Slice(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if a.AccountID != b.AccountID {
			return a.AccountID.String() < b.AccountID.String()
		}
		if a.PeriodStart != b.PeriodStart {
			return a.PeriodStart < b.PeriodStart
		}
		return a.Currency < b.Currency
	})
}

func TestInvoiceRunsBillEachAccountPerPeriodAndCurrency(t *testing.T) {
	t.Parallel()
	e := newInvEnv(t)
	ctx := context.Background()
	fx, loc := e.fx, e.loc

	alpha, beta, gamma := fx.account(t, "Alpha GmbH"), fx.account(t, "Beta Ltd"), fx.account(t, "Gamma SA")
	a1, a2, b1, g1 := fx.user(t, alpha), fx.user(t, alpha), fx.user(t, beta), fx.user(t, gamma)
	consumer := uuid.New()
	_, err := e.db.ExecContext(ctx, `INSERT INTO users (id, email) VALUES ($1, 'someone@home.test')`, consumer)
	require.NoError(t, err)

	// Period 1: 15-31 October; period 2: 1-14 November (Berlin time).
	fx.order(t, a1, "EUR", "confirmed", at(loc, 2026, 10, 15, 0, 0), 1000, 2500) // first instant of period 1
	returned := fx.order(t, a2, "EUR", "shipped", at(loc, 2026, 10, 20, 9, 0), 4000)
	usd := fx.order(t, a1, "USD", "delivered", at(loc, 2026, 10, 31, 23, 59), 1234) // 22:59 UTC
	fx.order(t, a1, "GBP", "confirmed", at(loc, 2026, 11, 1, 0, 30), 999)           // still October in UTC
	fx.order(t, a2, "EUR", "confirmed", at(loc, 2026, 11, 14, 23, 0), 5000)
	fx.order(t, a1, "EUR", "cancelled", at(loc, 2026, 10, 16, 10, 0), 777) // confirmed, then cancelled
	fx.order(t, a1, "EUR", "pending", nil, 888)
	fx.order(t, a1, "EUR", "confirmed", at(loc, 2026, 11, 15, 0, 0), 666) // the period after
	fx.ret(t, returned, "accepted", 1500, at(loc, 2026, 10, 25, 12, 0))
	fx.ret(t, returned, "rejected", 0, at(loc, 2026, 10, 26, 12, 0))
	fx.ret(t, returned, "open", 0, nil)
	fx.ret(t, usd, "accepted", 500, at(loc, 2026, 11, 3, 8, 0)) // a credit-only USD invoice in period 2
	fx.order(t, b1, "GBP", "confirmed", at(loc, 2026, 10, 18, 14, 0), 300, 700)
	fx.order(t, b1, "USD", "confirmed", at(loc, 2026, 11, 2, 14, 0), 10000)
	fx.order(t, g1, "EUR", "pending", nil, 100)
	fx.order(t, g1, "EUR", "cancelled", nil, 100)
	fx.order(t, consumer, "EUR", "confirmed", at(loc, 2026, 10, 20, 9, 0), 4200) // no corporate account

	p1, p2 := mustPeriod(t, "2026-10-15", "2026-10-31"), mustPeriod(t, "2026-11-01", "2026-11-14")
	e.clock.Set(time.Date(2026, 11, 1, 2, 0, 0, 0, loc))
	run1 := e.run(t, p1)
	e.clock.Set(time.Date(2026, 11, 15, 2, 0, 0, 0, loc))
	run2 := e.run(t, p2)

	require.Equal(t, store.RunProgress{Accounts: 2, Done: 2, Invoices: 3}, e.progress(t, run1.ID))
	require.Equal(t, store.RunProgress{Accounts: 2, Done: 2, Invoices: 4}, e.progress(t, run2.ID))
	require.Empty(t, e.invoices(t, store.InvoiceFilter{AccountID: &gamma}), "an account with nothing confirmed gets no invoice")

	var want, got []billedRow
	require.NoError(t, e.db.SelectContext(ctx, &want, expectedBillingQuery))
	require.NoError(t, e.db.SelectContext(ctx, &got, invoicedQuery))
	inPeriods := want[:0]
	for _, r := range want {
		if r.PeriodStart == p1.Key() || r.PeriodStart == p2.Key() {
			inPeriods = append(inPeriods, r)
		}
	}
	sortRows(inPeriods)
	sortRows(got)
	require.Len(t, got, 7)
	if d := cmp.Diff(inPeriods, got); d != "" {
		t.Fatalf("invoices differ from the orders minus returns (-want +got):\n%s", d)
	}

	rates := map[string]int{"EUR": 1900, "GBP": 2000, "USD": 0}
	for _, inv := range e.invoices(t, store.InvoiceFilter{}) {
		require.Equal(t, rates[inv.Currency], inv.TaxRateBps, inv.Number)
		tax, err := taxOf(inv.SubtotalMinor, inv.TaxRateBps)
		require.NoError(t, err)
		require.Equal(t, tax, inv.TaxMinor, inv.Number)
		require.Equal(t, inv.SubtotalMinor+inv.TaxMinor, inv.TotalMinor, inv.Number)
		lines, err := store.InvoiceLines(ctx, e.db, inv.ID)
		require.NoError(t, err)
		var sum int64
		for _, l := range lines {
			sum += l.AmountMinor
		}
		require.Equal(t, inv.SubtotalMinor, sum, inv.Number)
		require.Regexp(t, `^INV-2026-\d{6}$`, inv.Number)
		require.Equal(t, inv.IssuedAt.In(loc).AddDate(0, 0, 14).Format(store.DateLayout), inv.DueOn.Format(store.DateLayout))
	}
	// Alpha's period-1 EUR invoice: 1000+2500+499 and 4000+499 less the 1500 credit, plus 19%.
	eur := e.invoices(t, store.InvoiceFilter{AccountID: &alpha, RunID: &run1.ID, Currency: "EUR"})
	require.Len(t, eur, 1)
	require.Equal(t, []int64{8498, 1500, 6998, 1330, 8328},
		[]int64{eur[0].OrdersMinor, eur[0].CreditsMinor, eur[0].SubtotalMinor, eur[0].TaxMinor, eur[0].TotalMinor})
	// Alpha's period-2 USD invoice only credits a return: it is negative.
	usdCredit := e.invoices(t, store.InvoiceFilter{AccountID: &alpha, RunID: &run2.ID, Currency: "USD"})
	require.Len(t, usdCredit, 1)
	require.Equal(t, int64(-500), usdCredit[0].TotalMinor)

	// Gapless numbering: seven invoices, numbers 1..7 of 2026.
	var numbers []string
	require.NoError(t, e.db.SelectContext(ctx, &numbers, `SELECT number FROM invoices ORDER BY number`))
	require.Equal(t, "INV-2026-000001", numbers[0])
	require.Equal(t, "INV-2026-000007", numbers[6])

	require.Equal(t, 7, e.eventCount(t, workers.EventInvoiceCreated))
	require.Equal(t, 2, e.eventCount(t, workers.EventInvoiceRunStarted))
	require.Equal(t, 2, e.eventCount(t, workers.EventInvoiceRunCompleted))
	evs, err := store.EventsBySubject(ctx, e.db, run1.ID.String())
	require.NoError(t, err)
	require.Equal(t, workers.EventInvoiceRunCompleted, evs[len(evs)-1].Type)
	var data InvoiceRunData
	require.NoError(t, json.Unmarshal(evs[len(evs)-1].Data, &data))
	wantRun := InvoiceRunData{
		RunID: run1.ID, PeriodStart: "2026-10-15", PeriodEnd: "2026-10-31", Trigger: TriggerManual,
		Accounts: 2, Done: 2, Invoices: 3, Completion: 1,
	}
	require.Equal(t, wantRun, data)
	created, err := store.EventsBySubject(ctx, e.db, eur[0].ID.String())
	require.NoError(t, err)
	require.Len(t, created, 1)
	var cd InvoiceCreatedData
	require.NoError(t, json.Unmarshal(created[0].Data, &cd))
	require.Equal(t, eur[0].Number, cd.Number)
	require.Equal(t, eur[0].BillingEmail, cd.BillingEmail)
	require.Equal(t, "2026-10-31", cd.PeriodEnd)

	// Asking again for a period, or running an account's task again,
	// bills nothing twice.
	again, createdAgain, err := e.iv.StartRun(ctx, RunRequest{Period: p1})
	require.NoError(t, err)
	require.False(t, createdAgain)
	require.Equal(t, run1.ID, again.ID)
	payload, err := json.Marshal(InvoiceAccountPayload{Meta: workers.Meta{Version: workers.PayloadVersion}, RunID: run1.ID, AccountID: alpha, Attempt: 1})
	require.NoError(t, err)
	require.NoError(t, e.iv.HandleAccount(ctx, asynq.NewTask(workers.TypeInvoiceAccount, payload)))
	require.Len(t, e.invoices(t, store.InvoiceFilter{}), 7)
	require.Equal(t, 7, e.eventCount(t, workers.EventInvoiceCreated))
}

func TestLateOrdersGoToTheNextPeriodAndLeaveIssuedInvoicesAlone(t *testing.T) {
	t.Parallel()
	e := newInvEnv(t)
	ctx := context.Background()
	fx, loc := e.fx, e.loc
	alpha, delta := fx.account(t, "Alpha GmbH"), fx.account(t, "Delta AG")
	a1, d1 := fx.user(t, alpha), fx.user(t, delta)
	fx.order(t, a1, "EUR", "confirmed", at(loc, 2026, 10, 20, 9, 0), 1000)

	p1, p2 := mustPeriod(t, "2026-10-15", "2026-10-31"), mustPeriod(t, "2026-11-01", "2026-11-14")
	e.clock.Set(time.Date(2026, 11, 1, 2, 0, 0, 0, loc))
	run1 := e.run(t, p1)
	before := e.invoices(t, store.InvoiceFilter{RunID: &run1.ID})
	require.Len(t, before, 1)
	linesBefore, err := store.InvoiceLines(ctx, e.db, before[0].ID)
	require.NoError(t, err)

	// Confirmed within period 1, but committed after its run billed it.
	lateAlpha := fx.order(t, a1, "EUR", "confirmed", at(loc, 2026, 10, 31, 23, 0), 2000)
	lateDelta := fx.order(t, d1, "EUR", "confirmed", at(loc, 2026, 10, 30, 12, 0), 3000)
	fx.order(t, a1, "EUR", "confirmed", at(loc, 2026, 11, 5, 12, 0), 4000)

	e.clock.Set(time.Date(2026, 11, 15, 2, 0, 0, 0, loc))
	run2 := e.run(t, p2)
	require.Equal(t, 2, e.progress(t, run2.ID).Invoices)

	after := e.invoices(t, store.InvoiceFilter{RunID: &run1.ID})
	require.Empty(t, cmp.Diff(before, after), "an issued invoice never changes")
	linesAfter, err := store.InvoiceLines(ctx, e.db, before[0].ID)
	require.NoError(t, err)
	require.Empty(t, cmp.Diff(linesBefore, linesAfter))

	lateLines := map[uuid.UUID]bool{}
	for _, acct := range []uuid.UUID{alpha, delta} {
		invs := e.invoices(t, store.InvoiceFilter{RunID: &run2.ID, AccountID: &acct})
		require.Len(t, invs, 1)
		lines, err := store.InvoiceLines(ctx, e.db, invs[0].ID)
		require.NoError(t, err)
		for _, l := range lines {
			if l.Late {
				lateLines[l.OrderID] = true
			}
		}
	}
	require.Equal(t, map[uuid.UUID]bool{lateAlpha: true, lateDelta: true}, lateLines)
}

func TestFailingAccountEndsFailedAndRetryFailedBillsOnlyIt(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		breakIt string
		fixIt   string
		wantErr string
	}{
		{
			name:    "items do not add up to the subtotal",
			breakIt: `UPDATE orders SET subtotal_minor = subtotal_minor + 1 WHERE id = $1`,
			fixIt:   `UPDATE orders SET subtotal_minor = subtotal_minor - 1 WHERE id = $1`,
			wantErr: "items add up to 1000 but its subtotal is 1001",
		},
		{
			name:    "currency without a tax rate",
			breakIt: `UPDATE orders SET currency = 'CHF' WHERE id = $1`,
			fixIt:   `UPDATE orders SET currency = 'EUR' WHERE id = $1`,
			wantErr: "no tax rate for currency CHF",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newInvEnv(t)
			insp := asynq.NewInspectorFromRedisClient(e.rdb)
			t.Cleanup(func() { _ = insp.Close() })
			e.iv.cfg.Inspector = insp
			ctx := context.Background()
			fx, loc := e.fx, e.loc
			accounts := []uuid.UUID{fx.account(t, "Ok One"), fx.account(t, "Broken"), fx.account(t, "Ok Two")}
			bad := accounts[1]
			var badOrder uuid.UUID
			for _, a := range accounts {
				u := fx.user(t, a)
				id := fx.order(t, u, "EUR", "confirmed", at(loc, 2026, 10, 20, 9, 0), 1000)
				if a == bad {
					badOrder = id
				}
			}
			_, err := e.db.ExecContext(ctx, tc.breakIt, badOrder)
			require.NoError(t, err)

			run := e.run(t, mustPeriod(t, "2026-10-15", "2026-10-31"))
			require.Equal(t, store.RunProgress{Accounts: 3, Done: 2, Failed: 1, Invoices: 2}, e.progress(t, run.ID))
			failed, err := store.ListRunAccounts(ctx, e.db, run.ID, store.RunAccountFailed, uuid.Nil, 10)
			require.NoError(t, err)
			require.Len(t, failed, 1)
			require.Equal(t, bad, failed[0].AccountID)
			require.Contains(t, failed[0].Error, tc.wantErr)
			require.NotContains(t, failed[0].Error, bad.String(), "the account's error is the cause alone")
			archived, err := insp.ListArchivedTasks(workers.QueueLow)
			require.NoError(t, err)
			require.Len(t, archived, 1, "the failed account's task is archived")
			require.Equal(t, 1, strings.Count(archived[0].LastErr, "invoice account "), "wrapped once: %s", archived[0].LastErr)
			require.Empty(t, e.invoices(t, store.InvoiceFilter{AccountID: &bad}))
			before := e.invoices(t, store.InvoiceFilter{})
			require.Equal(t, 1, e.eventCount(t, workers.EventInvoiceRunCompleted))

			_, err = e.db.ExecContext(ctx, tc.fixIt, badOrder)
			require.NoError(t, err)
			n, err := e.iv.RetryFailed(ctx, run.ID)
			require.NoError(t, err)
			require.Equal(t, 1, n)
			run = e.waitCompleted(t, run.ID, 2)
			require.Equal(t, store.RunProgress{Accounts: 3, Done: 3, Invoices: 3}, e.progress(t, run.ID))

			ra, err := store.GetRunAccount(ctx, e.db, run.ID, bad)
			require.NoError(t, err)
			require.Equal(t, store.RunAccountDone, ra.Status)
			require.Equal(t, 2, ra.Attempts)
			eventually(t, 10*time.Second, func() bool {
				archived, err := insp.ListArchivedTasks(workers.QueueLow)
				return err == nil && len(archived) == 0
			}, "the failed attempt's task left the archive once the retry billed the account")
			after := e.invoices(t, store.InvoiceFilter{})
			require.Len(t, after, 3)
			require.Equal(t, bad, after[0].AccountID, "the newest invoice is the retried account's")
			require.Empty(t, cmp.Diff(before, after[1:]), "the other accounts' invoices are untouched")
			require.Equal(t, 2, e.eventCount(t, workers.EventInvoiceRunCompleted))

			n, err = e.iv.RetryFailed(ctx, run.ID)
			require.NoError(t, err)
			require.Zero(t, n)
			again, err := store.GetInvoiceRun(ctx, e.db, run.ID)
			require.NoError(t, err)
			require.Equal(t, run, again)
		})
	}
}

func TestStartRunRefusesOpenAndOverlappingPeriods(t *testing.T) {
	t.Parallel()
	e := newInvEnv(t)
	ctx := context.Background()
	e.clock.Set(time.Date(2026, 11, 1, 2, 0, 0, 0, e.loc))

	_, _, err := e.iv.StartRun(ctx, RunRequest{Period: mustPeriod(t, "2026-11-01", "2026-11-14")})
	require.ErrorIs(t, err, ErrPeriodOpen)
	// Ends at midnight Berlin time, which is still in the future at 23:30 UTC.
	e.clock.Set(time.Date(2026, 10, 31, 22, 30, 0, 0, time.UTC))
	_, _, err = e.iv.StartRun(ctx, RunRequest{Period: mustPeriod(t, "2026-10-15", "2026-10-31")})
	require.ErrorIs(t, err, ErrPeriodOpen)

	e.clock.Set(time.Date(2026, 11, 1, 2, 0, 0, 0, e.loc))
	first, created, err := e.iv.StartRun(ctx, RunRequest{Period: mustPeriod(t, "2026-10-15", "2026-10-31")})
	require.NoError(t, err)
	require.True(t, created)
	from, to := mustPeriod(t, "2026-10-15", "2026-10-31").Bounds(e.loc)
	require.True(t, first.StartsAt.Equal(from) && first.EndsAt.Equal(to))
	require.Equal(t, "2026-10-14T22:00:00Z", first.StartsAt.UTC().Format(time.RFC3339))
	require.Equal(t, "2026-10-31T23:00:00Z", first.EndsAt.UTC().Format(time.RFC3339))

	_, _, err = e.iv.StartRun(ctx, RunRequest{Period: mustPeriod(t, "2026-10-20", "2026-10-25")})
	require.ErrorIs(t, err, store.ErrConflict)
	second, created, err := e.iv.StartRun(ctx, RunRequest{Period: mustPeriod(t, "2026-10-15", "2026-10-31")})
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, first.ID, second.ID)
	var runs int
	require.NoError(t, e.db.GetContext(ctx, &runs, `SELECT count(*) FROM invoice_runs`))
	require.Equal(t, 1, runs)
}

func TestInvoicePDFShowsNumberAndTotal(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"pdftotext", "pdftoppm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: install poppler-utils (apt-get install -y poppler-utils)", tool)
		}
	}
	e := newInvEnv(t)
	ctx := context.Background()
	fx, loc := e.fx, e.loc
	acct := fx.account(t, "Müller & Söhne GmbH")
	u := fx.user(t, acct)
	for i := range 40 { // enough lines for a second page
		fx.order(t, u, "EUR", "confirmed", at(loc, 2026, 10, 15+i%15, 10, i), 123456, 1000)
	}
	run := e.run(t, mustPeriod(t, "2026-10-15", "2026-10-31"))
	invs := e.invoices(t, store.InvoiceFilter{RunID: &run.ID})
	require.Len(t, invs, 1)
	inv := invs[0]

	pdf, err := workers.RenderInvoicePDF(ctx, e.db, inv.ID)
	require.NoError(t, err)
	require.True(t, bytes.HasPrefix(pdf, []byte("%PDF-")))
	again, err := workers.RenderInvoicePDF(ctx, e.db, inv.ID)
	require.NoError(t, err)
	require.Equal(t, pdf, again, "an invoice renders to the same bytes every time")

	dir := t.TempDir()
	path := filepath.Join(dir, workers.InvoicePDFName(inv))
	require.NoError(t, os.WriteFile(path, pdf, 0o600))
	text, err := exec.Command("pdftotext", "-layout", path, "-").Output()
	require.NoError(t, err)
	require.Contains(t, string(text), inv.Number)
	require.Contains(t, string(text), "Müller & Söhne GmbH")
	// Forty orders take more than one page; the totals stand together on
	// the last.
	pages := strings.Split(strings.TrimRight(string(text), "\f"), "\f")
	n := len(pages)
	require.GreaterOrEqual(t, n, 2)
	require.Contains(t, pages[0], fmt.Sprintf("page 1 of %d", n))
	last := pages[n-1]
	require.Regexp(t, `Subtotal +`+regexp.QuoteMeta(workers.FormatMoney(inv.SubtotalMinor, "EUR")), last)
	require.Regexp(t, `Tax 19\.00% +`+regexp.QuoteMeta(workers.FormatMoney(inv.TaxMinor, "EUR")), last)
	require.Regexp(t, `Total +`+regexp.QuoteMeta(workers.FormatMoney(inv.TotalMinor, "EUR")), last)
	require.Contains(t, last, fmt.Sprintf("page %d of %d", n, n))

	out, err := exec.Command("pdftoppm", "-png", "-r", "40", path, filepath.Join(dir, "page")).CombinedOutput()
	require.NoError(t, err, string(out))
	png, err := os.ReadFile(filepath.Join(dir, "page-1.png"))
	require.NoError(t, err)
	require.True(t, bytes.HasPrefix(png, []byte("\x89PNG")))

	_, err = workers.RenderInvoicePDF(ctx, e.db, uuid.New())
	require.ErrorIs(t, err, store.ErrNotFound)
}

func TestParseTaxTable(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in      string
		want    string
		wantErr string
	}{
		{in: "EUR=1900,GBP=2000", want: "EUR=1900,GBP=2000"},
		{in: " eur = 700 , *=0 ", want: "EUR=700,*=0"},
		{in: "", want: ""},
		{in: "EUR", wantErr: "want CURRENCY=BASIS_POINTS"},
		{in: "EUR=19%", wantErr: "whole number from 0 to 10000"},
		{in: "EUR=10001", wantErr: "whole number from 0 to 10000"},
		{in: "XYZ=100", wantErr: "not an ISO 4217 currency code"},
	}
	for _, tc := range cases {
		tt, err := ParseTaxTable(tc.in)
		if tc.wantErr != "" {
			require.ErrorContains(t, err, tc.wantErr, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, tt.String())
	}
	tt, err := ParseTaxTable("EUR=1900")
	require.NoError(t, err)
	_, ok := tt.Rate("USD")
	require.False(t, ok, "no rate and no default")
	tt, err = ParseTaxTable("EUR=1900,*=500")
	require.NoError(t, err)
	r, ok := tt.Rate("USD")
	require.True(t, ok)
	require.Equal(t, 500, r)
}

func TestTaxAndMoneyFormatting(t *testing.T) {
	t.Parallel()
	taxes := []struct {
		amount int64
		bps    int
		want   int64
	}{
		{10000, 1900, 1900},
		{6998, 1900, 1330}, // 1329.62
		{50, 1000, 5},
		{5, 1000, 1},   // 0.5 rounds away from zero
		{-5, 1000, -1}, // and so does -0.5
		{-500, 0, 0},
		{1, 1, 0},
	}
	for _, tc := range taxes {
		got, err := taxOf(tc.amount, tc.bps)
		require.NoError(t, err)
		require.Equal(t, tc.want, got, "%d at %d bps", tc.amount, tc.bps)
	}
	_, err := taxOf(1<<62, 1900)
	var be *BillingError
	require.True(t, errors.As(err, &be))

	money := map[string]string{
		workers.FormatMoney(123456789, "EUR"): "EUR 1,234,567.89",
		workers.FormatMoney(-1200, "EUR"):     "EUR -12.00",
		workers.FormatMoney(5, "GBP"):         "GBP 0.05",
		workers.FormatMoney(0, "USD"):         "USD 0.00",
		workers.FormatMoney(1200, "JPY"):      "JPY 1,200",
		workers.FormatMoney(1234, "KWD"):      "KWD 1.234",
		workers.FormatMoney(100, "EUR"):       "EUR 1.00",
	}
	for got, want := range money {
		require.Equal(t, want, got)
	}
}

func TestPeriods(t *testing.T) {
	t.Parallel()
	p, err := ParsePeriod("2026-10-15", "2026-10-31")
	require.NoError(t, err)
	require.Equal(t, "2026-10-15", p.Key())
	require.Equal(t, "2026-10-15..2026-10-31", p.String())
	require.Equal(t, "invoice:run:2026-10-15", InvoiceRunTaskID(p))
	acct := uuid.MustParse("0193a000-0000-7000-8000-000000000001")
	require.Equal(t, "invoice:0193a000-0000-7000-8000-000000000001:2026-10-15", InvoiceAccountTaskID(acct, p, 1))
	require.Equal(t, "invoice:0193a000-0000-7000-8000-000000000001:2026-10-15:2", InvoiceAccountTaskID(acct, p, 2))

	// Berlin leaves summer time on 25 October 2026: the period spans 17 days
	// and one hour.
	berlin, err := time.LoadLocation("Europe/Berlin")
	require.NoError(t, err)
	from, to := p.Bounds(berlin)
	require.Equal(t, 17*24*time.Hour+time.Hour, to.Sub(from))

	// A firing at 02:00 Berlin on 1 November closes 15-31 October, though
	// the instant is 1 November 01:00 UTC and the previous one 14 October
	// 00:00 UTC.
	prev := time.Date(2026, 10, 15, 2, 0, 0, 0, berlin)
	due := time.Date(2026, 11, 1, 2, 0, 0, 0, berlin)
	require.Equal(t, p, PeriodBetween(prev.UTC(), due.UTC(), berlin))

	for _, bad := range [][2]string{{"2026-10-31", "2026-10-15"}, {"2026-10-15", "2027-10-15"}, {"15.10.2026", "2026-10-31"}, {"2026-10-15", ""}} {
		_, err := ParsePeriod(bad[0], bad[1])
		require.Error(t, err, bad)
	}
}

// The API starts runs and retries failed accounts without touching Redis:
// it records the run and an event, and the invoicing group enqueues.
func TestRunsStartedAndRetriedByEventsAreHandedOverByTheGroup(t *testing.T) {
	t.Parallel()
	e := newInvEnv(t)
	ctx := context.Background()
	fx, loc := e.fx, e.loc
	good, bad := fx.account(t, "Good"), fx.account(t, "Bad")
	fx.order(t, fx.user(t, good), "EUR", "confirmed", at(loc, 2026, 10, 20, 9, 0), 1000)
	badOrder := fx.order(t, fx.user(t, bad), "EUR", "confirmed", at(loc, 2026, 10, 21, 9, 0), 1000)
	_, err := e.db.ExecContext(ctx, `UPDATE orders SET subtotal_minor = 5 WHERE id = $1`, badOrder)
	require.NoError(t, err)

	lastEvent := func(subject string) stream.Envelope {
		t.Helper()
		evs, err := store.EventsBySubject(ctx, e.db, subject)
		require.NoError(t, err)
		return stream.EnvelopeOf(evs[len(evs)-1])
	}
	var run store.InvoiceRun
	require.NoError(t, store.WithTx(ctx, e.db, func(tx *sqlx.Tx) error {
		var (
			created bool
			evs     []store.Event
			err     error
		)
		run, created, evs, err = CreateRun(ctx, tx, RunRequest{Period: mustPeriod(t, "2026-10-15", "2026-10-31")}, loc, e.clock.Now())
		require.True(t, created)
		require.Len(t, evs, 1)
		if err != nil {
			return err
		}
		return store.InsertEvents(ctx, tx, evs...)
	}))
	started := lastEvent(run.ID.String())
	require.Equal(t, workers.EventInvoiceRunStarted, started.Type)
	require.Contains(t, e.iv.Group().Patterns, started.Type)
	require.NoError(t, e.iv.HandleEvent(ctx, started))
	require.NoError(t, e.iv.HandleEvent(ctx, started), "a redelivered event enqueues nothing twice")
	run = e.waitCompleted(t, run.ID, 1)
	require.Equal(t, store.RunProgress{Accounts: 2, Done: 1, Failed: 1, Invoices: 1}, e.progress(t, run.ID))

	_, err = e.db.ExecContext(ctx, `UPDATE orders SET subtotal_minor = 1000 WHERE id = $1`, badOrder)
	require.NoError(t, err)
	require.NoError(t, store.WithTx(ctx, e.db, func(tx *sqlx.Tx) error {
		n, reopened, evs, err := ResetFailedAccounts(ctx, tx, run.ID)
		require.Equal(t, 1, n)
		require.Equal(t, store.RunRunning, reopened.Status)
		if err != nil {
			return err
		}
		return store.InsertEvents(ctx, tx, evs...)
	}))
	retry := lastEvent(run.ID.String())
	require.Equal(t, workers.EventInvoiceRetryRequested, retry.Type)
	require.NoError(t, e.iv.HandleEvent(ctx, retry))
	run = e.waitCompleted(t, run.ID, 2)
	require.Equal(t, store.RunProgress{Accounts: 2, Done: 2, Invoices: 2}, e.progress(t, run.ID))

	before := e.eventCount(t, workers.EventInvoiceCreated)
	require.NoError(t, e.iv.HandleEvent(ctx, started), "events of a completed run change nothing")
	require.NoError(t, e.iv.HandleEvent(ctx, retry))
	time.Sleep(100 * time.Millisecond)
	require.Equal(t, before, e.eventCount(t, workers.EventInvoiceCreated))
	n, _, evs, err := ResetFailedAccounts(ctx, e.db, run.ID)
	require.NoError(t, err)
	require.Zero(t, n)
	require.Empty(t, evs)
	_, _, _, err = ResetFailedAccounts(ctx, e.db, uuid.New())
	require.ErrorIs(t, err, store.ErrNotFound)
}

// Orders of an account the previous run left failed stay with that run:
// the next run does not sweep them up, and retrying the failed account
// bills them in their own period.
func TestNextRunLeavesAFailedAccountsOrdersToItsRun(t *testing.T) {
	t.Parallel()
	e := newInvEnv(t)
	ctx := context.Background()
	fx, loc := e.fx, e.loc
	acct := fx.account(t, "Broken then fixed")
	u := fx.user(t, acct)
	old := fx.order(t, u, "EUR", "confirmed", at(loc, 2026, 10, 20, 9, 0), 1000)
	_, err := e.db.ExecContext(ctx, `UPDATE orders SET subtotal_minor = 1 WHERE id = $1`, old)
	require.NoError(t, err)
	e.clock.Set(time.Date(2026, 11, 1, 2, 0, 0, 0, loc))
	run1 := e.run(t, mustPeriod(t, "2026-10-15", "2026-10-31"))
	require.Equal(t, store.RunProgress{Accounts: 1, Failed: 1}, e.progress(t, run1.ID))

	_, err = e.db.ExecContext(ctx, `UPDATE orders SET subtotal_minor = 1000 WHERE id = $1`, old)
	require.NoError(t, err)
	fresh := fx.order(t, u, "EUR", "confirmed", at(loc, 2026, 11, 3, 9, 0), 2000)
	e.clock.Set(time.Date(2026, 11, 15, 2, 0, 0, 0, loc))
	run2 := e.run(t, mustPeriod(t, "2026-11-01", "2026-11-14"))
	billed := func(runID uuid.UUID) []uuid.UUID {
		t.Helper()
		var ids []uuid.UUID
		invs, _, err := store.ListInvoices(ctx, e.db, store.InvoiceFilter{RunID: &runID}, store.Page{Limit: 100})
		require.NoError(t, err)
		for _, inv := range invs {
			lines, err := store.InvoiceLines(ctx, e.db, inv.ID)
			require.NoError(t, err)
			for _, l := range lines {
				ids = append(ids, l.OrderID)
			}
		}
		return ids
	}
	require.Equal(t, []uuid.UUID{fresh}, billed(run2.ID))

	n, err := e.iv.RetryFailed(ctx, run1.ID)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	e.waitCompleted(t, run1.ID, 2)
	require.Equal(t, []uuid.UUID{old}, billed(run1.ID))
}

// A period with nothing to bill still completes, once, with its event.
func TestRunWithNothingToBillCompletes(t *testing.T) {
	t.Parallel()
	e := newInvEnv(t)
	e.fx.account(t, "Quiet")
	run := e.run(t, mustPeriod(t, "2026-10-15", "2026-10-31"))
	require.Equal(t, store.RunProgress{}, e.progress(t, run.ID))
	require.Equal(t, 1, run.Completions)
	require.NotNil(t, run.DiscoveredAt)
	require.Equal(t, 1, e.eventCount(t, workers.EventInvoiceRunCompleted))
}
