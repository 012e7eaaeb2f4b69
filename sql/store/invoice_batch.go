package store

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// Batch billing: the queries below bill many accounts of a run in one
// transaction, a statement per step whatever the number of accounts.

// The accounts are taken from the end of the run's pending accounts (by id,
// descending) while the tasks run from the start, so concurrent batches
// rarely want the same rows; SKIP LOCKED makes sure they never wait on each
// other. Accounts that noted an error are left to their own task, which
// bills them alone.
const claimRunAccountsQuery = `
WITH picked AS (
    SELECT account_id FROM invoice_run_accounts
    WHERE run_id = $1 AND status = 'pending' AND error = '' AND account_id <> ALL($2::uuid[])
    ORDER BY account_id DESC
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
SELECT ra.account_id, a.name AS account_name, a.billing_email AS account_email, a.vat_id AS account_vat_id,
       p.starts_at AS late_from, p.ends_at AS late_to
FROM picked ra
JOIN invoice_runs r ON r.id = $1
JOIN corporate_accounts a ON a.id = ra.account_id
LEFT JOIN invoice_runs p ON p.period_end = r.period_start AND p.discovered_at IS NOT NULL
     AND NOT EXISTS (SELECT 1 FROM invoice_run_accounts pa
                     WHERE pa.run_id = p.id AND pa.account_id = ra.account_id AND pa.status <> 'done')
ORDER BY ra.account_id`

// ClaimRunAccounts locks up to limit pending accounts of a run, other than
// those in except, without waiting for rows another transaction holds, and
// returns their billing contexts (Status pending, Run as given). It skips
// pending accounts that noted an error (NoteRunAccountError): their own
// task bills them alone.
func ClaimRunAccounts(ctx context.Context, q sqlx.QueryerContext, run InvoiceRun, except []uuid.UUID, limit int) ([]BillingContext, error) {
	if limit < 1 {
		return nil, nil
	}
	var rows []struct {
		AccountID    uuid.UUID  `db:"account_id"`
		AccountName  string     `db:"account_name"`
		AccountEmail string     `db:"account_email"`
		AccountVATID string     `db:"account_vat_id"`
		LateFrom     *time.Time `db:"late_from"`
		LateTo       *time.Time `db:"late_to"`
	}
	if err := sqlx.SelectContext(ctx, q, &rows, claimRunAccountsQuery, run.ID, pq.Array(uuidStrings(except)), limit); err != nil {
		return nil, fmt.Errorf("claim accounts of run %s: %w", run.ID, translate(err))
	}
	out := make([]BillingContext, len(rows))
	for i, r := range rows {
		out[i] = BillingContext{
			Status:  RunAccountPending,
			Run:     run,
			Account: BillingAccount{ID: r.AccountID, Name: r.AccountName, BillingEmail: r.AccountEmail, VATID: r.AccountVATID},
		}
		if r.LateFrom != nil && r.LateTo != nil {
			out[i].Late = TimeRange{From: *r.LateFrom, To: *r.LateTo}
		}
	}
	return out, nil
}

// batchArgs spreads billing contexts over the arrays the batch queries
// unnest: account ids and each account's late window (NULL when none).
func batchArgs(bcs []BillingContext) (ids, lateFrom, lateTo any) {
	n := len(bcs)
	id := make([]string, n)
	from := make([]any, n)
	to := make([]any, n)
	for i, bc := range bcs {
		id[i] = bc.Account.ID.String()
		if f, _ := bc.Late.args(); f != nil {
			from[i] = bc.Late.From.UTC().Format(time.RFC3339Nano)
			to[i] = bc.Late.To.UTC().Format(time.RFC3339Nano)
		}
	}
	return pq.Array(id), pq.GenericArray{A: from}, pq.GenericArray{A: to}
}

// One statement writes every invoice of a batch and all their lines; the
// lines' foreign key is checked at the statement's end, when the invoice
// rows exist.
const insertInvoicesQuery = `
WITH lines AS (
    INSERT INTO invoice_lines (invoice_id, position, kind, order_id, return_id, description, occurred_at, amount_minor, late)
    SELECT l.invoice_id, l.position, l.kind, l.order_id, l.return_id, l.description, l.occurred_at, l.amount_minor, l.late
    FROM unnest($19::uuid[], $20::integer[], $21::text[], $22::uuid[], $23::uuid[], $24::text[], $25::timestamptz[], $26::bigint[], $27::boolean[])
         AS l(invoice_id, position, kind, order_id, return_id, description, occurred_at, amount_minor, late)
)
INSERT INTO invoices (id, run_id, account_id, account_name, billing_email, vat_id, period_start, period_end,
                      timezone, currency, orders_minor, credits_minor, subtotal_minor, tax_rate_bps, tax_minor, total_minor,
                      issued_at, due_on)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::date[], $8::date[],
                     $9::text[], $10::text[], $11::bigint[], $12::bigint[], $13::bigint[], $14::integer[], $15::bigint[], $16::bigint[],
                     $17::timestamptz[], $18::date[])`

// InsertInvoices writes unnumbered invoices and their lines (each line
// naming its invoice) in one round trip; NumberInvoices numbers them later
// in the same transaction. A second invoice for the same (account, period,
// currency), or a line for an order or return already on an invoice, is
// ErrConflict.
func InsertInvoices(ctx context.Context, q sqlx.ExecerContext, invs []Invoice, lines []InvoiceLine) error {
	if len(invs) == 0 {
		return nil
	}
	n := len(invs)
	var (
		ids, runs, accts                             = make([]string, n), make([]string, n), make([]string, n)
		names, emails, vats, starts, ends, zones, cu = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		ordersM, credits, subs, taxes, totals        = make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		rates                                        = make([]int64, n)
		issued, due                                  = make([]string, n), make([]string, n)
	)
	for i, inv := range invs {
		ids[i], runs[i], accts[i] = inv.ID.String(), inv.RunID.String(), inv.AccountID.String()
		names[i], emails[i], vats[i] = inv.AccountName, inv.BillingEmail, inv.VATID
		starts[i], ends[i], zones[i], cu[i] = inv.PeriodStart.Format(DateLayout), inv.PeriodEnd.Format(DateLayout), inv.Timezone, inv.Currency
		ordersM[i], credits[i], subs[i], taxes[i], totals[i] = inv.OrdersMinor, inv.CreditsMinor, inv.SubtotalMinor, inv.TaxMinor, inv.TotalMinor
		rates[i] = int64(inv.TaxRateBps)
		issued[i], due[i] = inv.IssuedAt.UTC().Format(time.RFC3339Nano), inv.DueOn.Format(DateLayout)
	}
	m := len(lines)
	var (
		lInv, kinds, orders, descs, times = make([]string, m), make([]string, m), make([]string, m), make([]string, m), make([]string, m)
		returns                           = make([]*string, m)
		pos, amounts                      = make([]int64, m), make([]int64, m)
		late                              = make([]bool, m)
	)
	for i, l := range lines {
		lInv[i], pos[i], kinds[i], orders[i] = l.InvoiceID.String(), int64(l.Position), l.Kind, l.OrderID.String()
		if l.ReturnID != nil {
			s := l.ReturnID.String()
			returns[i] = &s
		}
		descs[i], times[i], amounts[i], late[i] = l.Description, l.OccurredAt.UTC().Format(time.RFC3339Nano), l.AmountMinor, l.Late
	}
	_, err := q.ExecContext(ctx, insertInvoicesQuery,
		pq.Array(ids), pq.Array(runs), pq.Array(accts), pq.Array(names), pq.Array(emails), pq.Array(vats),
		pq.Array(starts), pq.Array(ends), pq.Array(zones), pq.Array(cu),
		pq.Array(ordersM), pq.Array(credits), pq.Array(subs), pq.Array(rates), pq.Array(taxes), pq.Array(totals),
		pq.Array(issued), pq.Array(due),
		pq.Array(lInv), pq.Array(pos), pq.Array(kinds), pq.Array(orders), nullableStrings(returns), pq.Array(descs),
		pq.Array(times), pq.Array(amounts), pq.Array(late))
	if err != nil {
		return fmt.Errorf("insert %d invoices: %w", n, translate(err))
	}
	return nil
}

// TaxRate is a currency's tax rate in basis points, as the billing
// statement takes it.
type TaxRate struct {
	Currency string
	Bps      int
}

// BillBatch is what billing a batch of accounts in one statement wrote.
type BillBatch struct {
	// Invoices are the unnumbered invoices written, with the columns the
	// invoice.created event needs.
	Invoices []Invoice
	// Problems are the accounts left unbilled and pending, each with the
	// first of its records that cannot be billed.
	Problems []BillingProblem
	// Finished is how many accounts were marked done.
	Finished int
}

// BillingProblem names why an account of a batch was not billed: Kind
// "items" (an order whose items do not add up to its subtotal), "currency"
// (a currency without a rate, Currency) or "overflow" (a subtotal, in
// SubtotalMinor, too large to tax).
type BillingProblem struct {
	AccountID     uuid.UUID
	Kind          string
	OrderID       uuid.UUID
	ItemCount     int
	ItemsMinor    int64
	SubtotalMinor int64
	Currency      string
}

// maxTaxable is the largest subtotal, either sign, whose tax in basis
// points fits a bigint: the bound Go's tax rounding checks too.
const maxTaxable = 922337203685477

// billBatchQuery bills every account of a batch in one statement: it
// reads their billable orders (confirmed, shipped or delivered, confirmed
// in the period or the account's late window, on no invoice line yet) and
// creditable returns (accepted, resolved in either, credited on no line
// yet), checks them,
// computes each invoice's totals and tax from its lines, writes the
// invoices and their lines and marks the billed accounts done. An account
// with a record it cannot bill is left out whole and left pending, and
// reported with the first such record in the order billing meets them:
// orders by currency and time, then returns, then the subtotals.
//
// Ids are UUIDv7 built from the statement's clock, like the ones Go makes,
// so invoices sort by creation. Tax is rounded half away from zero, which
// numeric round() does.
var billBatchQuery = `
WITH x AS (
    SELECT * FROM unnest($2::uuid[], $3::timestamptz[], $4::timestamptz[]) AS x(account_id, late_from, late_to)
), rate AS (
    SELECT * FROM unnest($7::text[], $8::integer[]) AS t(currency, bps)
), item AS (
    SELECT x.account_id, 0 AS part, 'order' AS kind, o.id AS order_id, NULL::uuid AS return_id, o.id AS line_key,
           btrim(o.currency) AS currency, o.total_minor AS amount_minor, o.confirmed_at AS occurred_at,
           o.confirmed_at < $5 AS late,
           'Order ' || o.id || ', ' || coalesce(i.item_count, 0) ||
               CASE WHEN coalesce(i.item_count, 0) = 1 THEN ' item' ELSE ' items' END || ', by ' || u.email AS description,
           coalesce(i.item_count, 0)::integer AS item_count, coalesce(i.items_minor, 0)::bigint AS items_minor,
           o.subtotal_minor
    FROM x
    JOIN users u ON u.corporate_account_id = x.account_id
    JOIN orders o ON o.user_id = u.id
    LEFT JOIN LATERAL (
        SELECT sum(line_total_minor) AS items_minor, count(*) AS item_count
        FROM order_items WHERE order_id = o.id
    ) i ON true
    WHERE o.status IN ('confirmed', 'shipped', 'delivered')
      AND ((o.confirmed_at >= $5 AND o.confirmed_at < $6) OR (o.confirmed_at >= x.late_from AND o.confirmed_at < x.late_to))
      AND NOT EXISTS (SELECT 1 FROM invoice_lines l WHERE l.order_id = o.id AND l.kind = 'order')
    UNION ALL
    SELECT x.account_id, 1, 'return', r.order_id, r.id, r.id,
           btrim(r.currency), -r.refund_minor, r.resolved_at, r.resolved_at < $5,
           'Return ' || r.id || ' of order ' || r.order_id || ', ' || r.quantity ||
               CASE WHEN r.quantity = 1 THEN ' piece' ELSE ' pieces' END,
           0, 0, 0
    FROM x
    JOIN users u ON u.corporate_account_id = x.account_id
    JOIN returns r ON r.user_id = u.id
    WHERE r.status = 'accepted'
      AND ((r.resolved_at >= $5 AND r.resolved_at < $6) OR (r.resolved_at >= x.late_from AND r.resolved_at < x.late_to))
      AND NOT EXISTS (SELECT 1 FROM invoice_lines l WHERE l.return_id = r.id AND l.kind = 'return')
), checked AS (
    SELECT item.*, rate.bps,
           CASE WHEN item.part = 0 AND (item.item_count = 0 OR item.items_minor <> item.subtotal_minor) THEN 'items'
                WHEN rate.bps IS NULL THEN 'currency' END AS problem
    FROM item LEFT JOIN rate ON rate.currency = item.currency
), total AS (
    SELECT account_id, currency, min(bps) AS bps,
           coalesce(sum(amount_minor) FILTER (WHERE part = 0), 0) AS orders_minor,
           coalesce(-sum(amount_minor) FILTER (WHERE part = 1), 0) AS credits_minor,
           sum(amount_minor) AS subtotal_minor
    FROM checked GROUP BY account_id, currency
), bad AS (
    SELECT DISTINCT ON (account_id) account_id, problem, order_id, item_count, items_minor, subtotal_minor, currency
    FROM (
        SELECT account_id, part, currency, occurred_at, line_key, problem, order_id, item_count, items_minor, subtotal_minor::numeric
        FROM checked WHERE problem IS NOT NULL
        UNION ALL
        SELECT account_id, 2, currency, NULL, NULL, 'overflow', NULL, 0, 0, subtotal_minor
        FROM total WHERE abs(subtotal_minor) > ` + fmt.Sprint(maxTaxable) + `
    ) p
    ORDER BY account_id, part, currency, occurred_at, line_key
), inv AS (
    SELECT encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) PLACING
               substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3) FROM 1 FOR 6),
               52, 1), 53, 1), 'hex')::uuid AS id,
           t.account_id, t.currency, t.bps, t.orders_minor, t.credits_minor, t.subtotal_minor,
           round(t.subtotal_minor * t.bps / 10000)::bigint AS tax_minor
    FROM total t
    WHERE NOT EXISTS (SELECT 1 FROM bad WHERE bad.account_id = t.account_id)
), written AS (
    INSERT INTO invoices (id, run_id, account_id, account_name, billing_email, vat_id, period_start, period_end,
                          timezone, currency, orders_minor, credits_minor, subtotal_minor, tax_rate_bps, tax_minor, total_minor,
                          issued_at, due_on)
    SELECT inv.id, r.id, inv.account_id, a.name, a.billing_email, a.vat_id, r.period_start, r.period_end,
           r.timezone, inv.currency, inv.orders_minor, inv.credits_minor, inv.subtotal_minor, inv.bps, inv.tax_minor,
           inv.subtotal_minor + inv.tax_minor, $9, $10::date
    FROM inv
    JOIN corporate_accounts a ON a.id = inv.account_id
    JOIN invoice_runs r ON r.id = $1
    RETURNING id, account_id, account_name, billing_email, currency, total_minor
), lines AS (
    INSERT INTO invoice_lines (invoice_id, position, kind, order_id, return_id, description, occurred_at, amount_minor, late)
    SELECT inv.id, row_number() OVER (PARTITION BY c.account_id, c.currency ORDER BY c.part, c.occurred_at, c.line_key),
           c.kind, c.order_id, c.return_id, c.description, c.occurred_at, c.amount_minor, c.late
    FROM checked c JOIN inv ON inv.account_id = c.account_id AND inv.currency = c.currency
), finished AS (
    UPDATE invoice_run_accounts ra
    SET status = 'done', error = '', invoices = coalesce(n.invoices, 0), updated_at = now()
    FROM x LEFT JOIN (SELECT account_id, count(*)::integer AS invoices FROM inv GROUP BY account_id) n USING (account_id)
    WHERE ra.run_id = $1 AND ra.account_id = x.account_id AND ra.status = 'pending'
      AND NOT EXISTS (SELECT 1 FROM bad WHERE bad.account_id = x.account_id)
    RETURNING ra.account_id
)
SELECT 'invoice' AS row_kind, account_id, id AS invoice_id, account_name, billing_email, currency, total_minor,
       '' AS problem, NULL::uuid AS order_id, 0 AS item_count, 0::bigint AS items_minor, 0::numeric AS subtotal_minor, 0 AS finished
FROM written
UNION ALL
SELECT 'problem', account_id, NULL, '', '', currency, 0, problem, order_id, item_count, items_minor, subtotal_minor, 0
FROM bad
UNION ALL
SELECT 'finished', NULL, NULL, '', '', '', 0, '', NULL, 0, 0, 0, (SELECT count(*)::integer FROM finished)`

// BillAccounts bills the accounts of bcs, all of one run and locked by
// this transaction, for the run's period and each account's late window,
// in one statement (see billBatchQuery): one unnumbered invoice per
// account and currency, a line per order (its total) and a credit line
// per return (its refund), subtotal = orders - credits, tax = subtotal x
// the currency's rate in rates rounded half away from zero. Accounts with
// a record it cannot bill are left pending and returned as Problems.
// NumberInvoices numbers the invoices later in the same transaction. A
// line for an order or return already on an invoice is ErrConflict.
func BillAccounts(ctx context.Context, q sqlx.QueryerContext, run InvoiceRun, bcs []BillingContext, rates []TaxRate,
	issuedAt, dueOn time.Time,
) (BillBatch, error) {
	if len(bcs) == 0 {
		return BillBatch{}, nil
	}
	ids, lf, lt := batchArgs(bcs)
	codes := make([]string, len(rates))
	bps := make([]int64, len(rates))
	for i, r := range rates {
		codes[i], bps[i] = r.Currency, int64(r.Bps)
	}
	rows, err := q.QueryxContext(ctx, billBatchQuery, run.ID, ids, lf, lt, run.StartsAt, run.EndsAt,
		pq.Array(codes), pq.Array(bps), issuedAt.UTC().Format(time.RFC3339Nano), dueOn.Format(DateLayout))
	if err != nil {
		return BillBatch{}, fmt.Errorf("bill %d accounts: %w", len(bcs), translate(err))
	}
	defer rows.Close()
	var out BillBatch
	for rows.Next() {
		var (
			kind, name, email, currency, problem string
			account, invoice, order              uuid.NullUUID
			total, items                         int64
			subtotal                             string
			count, finished                      int
		)
		if err := rows.Scan(&kind, &account, &invoice, &name, &email, &currency, &total,
			&problem, &order, &count, &items, &subtotal, &finished); err != nil {
			return BillBatch{}, fmt.Errorf("bill %d accounts: %w", len(bcs), err)
		}
		switch kind {
		case "invoice":
			out.Invoices = append(out.Invoices, Invoice{
				ID: invoice.UUID, RunID: run.ID, AccountID: account.UUID, AccountName: name, BillingEmail: email,
				PeriodStart: run.PeriodStart, PeriodEnd: run.PeriodEnd, Timezone: run.Timezone,
				Currency: currency, TotalMinor: total, IssuedAt: issuedAt, DueOn: dueOn,
			})
		case "problem":
			// A subtotal past bigint only matters as text in the message.
			sub, _ := strconv.ParseInt(subtotal, 10, 64)
			out.Problems = append(out.Problems, BillingProblem{
				AccountID: account.UUID, Kind: problem, OrderID: order.UUID, ItemCount: count,
				ItemsMinor: items, SubtotalMinor: sub, Currency: currency,
			})
		case "finished":
			out.Finished = finished
		}
	}
	if err := rows.Err(); err != nil {
		return BillBatch{}, fmt.Errorf("bill %d accounts: %w", len(bcs), translate(err))
	}
	return out, nil
}
