package invoicing

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"golang.org/x/text/currency"

	"github.com/bazaarhq/bazaar/sql/store"
)

// BillingError means an account's records cannot be billed as they are: a
// currency without a tax rate, an order whose items do not add up to its
// subtotal. Retrying changes nothing until a person fixes the data, so the
// account is marked failed at once with this error's text.
type BillingError struct {
	Reason string
}

func (e *BillingError) Error() string { return e.Reason }

func billingErrorf(format string, a ...any) error {
	return &BillingError{Reason: fmt.Sprintf(format, a...)}
}

// TaxTable holds the tax rate of each currency in basis points (1900 =
// 19%), and optionally a rate for every other currency. Invoices of a
// currency it has no rate for fail: guessing a rate on a legal document is
// worse than stopping.
type TaxTable struct {
	rates      map[string]int
	fallback   int
	hasDefault bool
}

// DefaultTaxRates is the tax table used when none is configured.
const DefaultTaxRates = "EUR=1900,GBP=2000,USD=0"

// ParseTaxTable reads a table written as "EUR=1900,GBP=2000,*=0": ISO 4217
// codes (or * for every other currency) and basis points from 0 to 10000.
func ParseTaxTable(s string) (TaxTable, error) {
	t := TaxTable{rates: map[string]int{}}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		code, bpsText, ok := strings.Cut(part, "=")
		code = strings.ToUpper(strings.TrimSpace(code))
		if !ok {
			return TaxTable{}, fmt.Errorf("tax rate %q: want CURRENCY=BASIS_POINTS such as EUR=1900", part)
		}
		bps, err := strconv.Atoi(strings.TrimSpace(bpsText))
		if err != nil || bps < 0 || bps > 10000 {
			return TaxTable{}, fmt.Errorf("tax rate %q: basis points must be a whole number from 0 to 10000", part)
		}
		if code == "*" {
			t.fallback, t.hasDefault = bps, true
			continue
		}
		if _, err := currency.ParseISO(code); err != nil {
			return TaxTable{}, fmt.Errorf("tax rate %q: %q is not an ISO 4217 currency code", part, code)
		}
		t.rates[code] = bps
	}
	return t, nil
}

// Rate returns the rate of a currency in basis points.
func (t TaxTable) Rate(code string) (int, bool) {
	if r, ok := t.rates[code]; ok {
		return r, true
	}
	return t.fallback, t.hasDefault
}

// String writes the table back in the form ParseTaxTable reads.
func (t TaxTable) String() string {
	parts := make([]string, 0, len(t.rates)+1)
	for code, bps := range t.rates {
		parts = append(parts, fmt.Sprintf("%s=%d", code, bps))
	}
	sort.Strings(parts)
	if t.hasDefault {
		parts = append(parts, fmt.Sprintf("*=%d", t.fallback))
	}
	return strings.Join(parts, ",")
}

// draftInvoice is one invoice before it gets its number.
type draftInvoice struct {
	inv   store.Invoice
	lines []store.InvoiceLine
}

// billAccount turns an account's billable orders and creditable returns into
// one invoice per currency, in currency order. Each order is one line at its
// total; each return is a credit line at its refund. Tax is charged on the
// net subtotal (orders less credits), rounded half away from zero, so a
// period with more credits than orders gives a negative (credit) invoice.
func billAccount(run store.InvoiceRun, acct store.BillingAccount, orders []store.BillableOrder,
	returns []store.CreditableReturn, tax TaxTable, issuedAt time.Time, loc *time.Location, termDays int,
) ([]draftInvoice, error) {
	byCurrency := map[string]*draftInvoice{}
	var codes []string
	draft := func(code string) (*draftInvoice, error) {
		if d, ok := byCurrency[code]; ok {
			return d, nil
		}
		if _, err := currency.ParseISO(code); err != nil || len(code) != 3 || strings.ToUpper(code) != code {
			return nil, billingErrorf("currency %q is not an ISO 4217 code", code)
		}
		rate, ok := tax.Rate(code)
		if !ok {
			return nil, billingErrorf("no tax rate for currency %s (configure it in the tax table)", code)
		}
		id, err := uuid.NewV7()
		if err != nil {
			return nil, fmt.Errorf("invoice id: %w", err)
		}
		issued := issuedAt.In(loc)
		due := time.Date(issued.Year(), issued.Month(), issued.Day()+termDays, 0, 0, 0, 0, time.UTC)
		d := &draftInvoice{inv: store.Invoice{
			ID:           id,
			RunID:        run.ID,
			AccountID:    acct.ID,
			AccountName:  acct.Name,
			BillingEmail: acct.BillingEmail,
			VATID:        acct.VATID,
			PeriodStart:  run.PeriodStart,
			PeriodEnd:    run.PeriodEnd,
			Timezone:     run.Timezone,
			Currency:     code,
			TaxRateBps:   rate,
			IssuedAt:     issuedAt,
			DueOn:        due,
		}}
		byCurrency[code] = d
		codes = append(codes, code)
		return d, nil
	}
	for _, o := range orders {
		if o.ItemCount == 0 || o.ItemsMinor != o.SubtotalMinor {
			return nil, billingErrorf("order %s: its %d items add up to %d but its subtotal is %d",
				o.ID, o.ItemCount, o.ItemsMinor, o.SubtotalMinor)
		}
		d, err := draft(strings.TrimSpace(o.Currency))
		if err != nil {
			return nil, err
		}
		d.inv.OrdersMinor += o.TotalMinor
		d.lines = append(d.lines, store.InvoiceLine{
			Kind:        "order",
			OrderID:     o.ID,
			Description: fmt.Sprintf("Order %s, %d %s, by %s", o.ID, o.ItemCount, plural(o.ItemCount, "item", "items"), o.BuyerEmail),
			OccurredAt:  o.ConfirmedAt,
			AmountMinor: o.TotalMinor,
			Late:        o.Late,
		})
	}
	for _, r := range returns {
		d, err := draft(strings.TrimSpace(r.Currency))
		if err != nil {
			return nil, err
		}
		d.inv.CreditsMinor += r.RefundMinor
		id := r.ID
		d.lines = append(d.lines, store.InvoiceLine{
			Kind:        "return",
			OrderID:     r.OrderID,
			ReturnID:    &id,
			Description: fmt.Sprintf("Return %s of order %s, %d %s", r.ID, r.OrderID, r.Quantity, plural(r.Quantity, "piece", "pieces")),
			OccurredAt:  r.ResolvedAt,
			AmountMinor: -r.RefundMinor,
			Late:        r.Late,
		})
	}
	slices.Sort(codes)
	out := make([]draftInvoice, 0, len(codes))
	for _, code := range codes {
		d := byCurrency[code]
		d.inv.SubtotalMinor = d.inv.OrdersMinor - d.inv.CreditsMinor
		t, err := taxOf(d.inv.SubtotalMinor, d.inv.TaxRateBps)
		if err != nil {
			return nil, err
		}
		d.inv.TaxMinor = t
		d.inv.TotalMinor = d.inv.SubtotalMinor + t
		for i := range d.lines {
			d.lines[i].InvoiceID = d.inv.ID
			d.lines[i].Position = i + 1
		}
		out = append(out, *d)
	}
	return out, nil
}

// taxOf returns amount*bps/10000 rounded half away from zero.
func taxOf(amount int64, bps int) (int64, error) {
	if amount > math.MaxInt64/10000 || amount < -math.MaxInt64/10000 {
		return 0, billingErrorf("subtotal %d is too large to tax", amount)
	}
	p := amount * int64(bps)
	if p < 0 {
		return -((-p + 5000) / 10000), nil
	}
	return (p + 5000) / 10000, nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// isBillingError reports whether err is a data problem no retry fixes.
func isBillingError(err error) bool {
	var be *BillingError
	return errors.As(err, &be)
}
