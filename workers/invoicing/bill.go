package invoicing

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"

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

// isoCurrencies lists every upper-case code currency.ParseISO knows, so
// the billing statement can tell a currency without a rate from one that
// is no currency at all without asking Go about each order.
var isoCurrencies = sync.OnceValue(func() []string {
	var out []string
	code := []byte("AAA")
	for a := byte('A'); a <= 'Z'; a++ {
		for b := byte('A'); b <= 'Z'; b++ {
			for c := byte('A'); c <= 'Z'; c++ {
				code[0], code[1], code[2] = a, b, c
				if _, err := currency.ParseISO(string(code)); err == nil {
					out = append(out, string(code))
				}
			}
		}
	}
	return out
})

// billingRates spreads the table over every ISO 4217 currency it has a
// rate for, as the billing statement takes it: a currency left out cannot
// be billed.
func (t TaxTable) billingRates() []store.TaxRate {
	var out []store.TaxRate
	for _, code := range isoCurrencies() {
		if bps, ok := t.Rate(code); ok {
			out = append(out, store.TaxRate{Currency: code, Bps: bps})
		}
	}
	return out
}

// checkCurrency says why a currency cannot be billed, or nil.
func (t TaxTable) checkCurrency(code string) error {
	if _, err := currency.ParseISO(code); err != nil || len(code) != 3 || strings.ToUpper(code) != code {
		return billingErrorf("currency %q is not an ISO 4217 code", code)
	}
	if _, ok := t.Rate(code); !ok {
		return billingErrorf("no tax rate for currency %s (configure it in the tax table)", code)
	}
	return nil
}

// problemError writes what the billing statement found wrong with an
// account as the BillingError the account fails with.
func (t TaxTable) problemError(p store.BillingProblem) error {
	switch p.Kind {
	case "items":
		return billingErrorf("order %s: its %d items add up to %d but its subtotal is %d",
			p.OrderID, p.ItemCount, p.ItemsMinor, p.SubtotalMinor)
	case "currency":
		if err := t.checkCurrency(p.Currency); err != nil {
			return err
		}
	case "overflow":
		return billingErrorf("subtotal in %s is too large to tax", p.Currency)
	}
	return billingErrorf("account cannot be billed: %s", p.Kind)
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

// isBillingError reports whether err is a data problem no retry fixes.
func isBillingError(err error) bool {
	var be *BillingError
	return errors.As(err, &be)
}
