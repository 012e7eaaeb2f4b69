// Package receipt is the one model of an order receipt and its renderings:
// plain text (also what cmd/printer sends as ESC/POS), a PNG of a printer's
// dot width, and ePOS-Print XML. Every format is drawn from the same lines
// (Layout), so a receipt reads the same on every printer.
//
// It imports only the standard library, golang.org/x/image (fonts and
// rasterising) and golang.org/x/text (currency digits), so the printer
// client and the API can both use it.
package receipt

import (
	"fmt"
	"strings"
	"time"

	"golang.org/x/text/currency"
)

// Receipt is what a receipt shows of an order. Amounts are in minor units
// of Currency.
type Receipt struct {
	OrderID       string
	PlacedAt      time.Time
	ScheduledAt   *time.Time
	Currency      string
	Items         []Item
	SubtotalMinor int64
	TotalMinor    int64
}

// Item is one line of the order.
type Item struct {
	SKU            string
	Name           string
	Quantity       int
	LineTotalMinor int64
}

// Style is how a line is set.
type Style int

// The line styles.
const (
	// Plain is body text.
	Plain Style = iota
	// Heading is emphasised (bold) text.
	Heading
)

// Line is one printed line, at most the layout's columns wide.
type Line struct {
	Text  string
	Style Style
}

// Columns is the width of the standard receipt: 48 characters, what 80 mm
// thermal printers fit in their standard font (12 dots of 576).
const Columns = 48

// Layout sets a receipt as lines of the standard width.
func Layout(r Receipt) []Line {
	const w = Columns
	rule := strings.Repeat("=", w)
	thin := strings.Repeat("-", w)
	ls := []Line{
		{rule, Plain},
		{center("ORDER RECEIPT", w), Heading},
		{rule, Plain},
		{"Order: " + r.OrderID, Plain},
		{"Placed: " + r.PlacedAt.UTC().Format("2006-01-02 15:04 UTC"), Plain},
	}
	if r.ScheduledAt != nil {
		ls = append(ls, Line{"Deliver/pick up: " + r.ScheduledAt.UTC().Format("2006-01-02 15:04 UTC"), Plain})
	}
	ls = append(ls, Line{thin, Plain})
	for _, it := range r.Items {
		ls = append(ls,
			Line{fmt.Sprintf("%3d x %s", it.Quantity, clip(it.Name, 42)), Plain},
			Line{fmt.Sprintf("      %-24s %17s", clip(it.SKU, 24), Money(it.LineTotalMinor, r.Currency)), Plain})
	}
	ls = append(ls,
		Line{thin, Plain},
		Line{fmt.Sprintf("%-30s %17s", "Subtotal", Money(r.SubtotalMinor, r.Currency)), Plain},
		Line{fmt.Sprintf("%-30s %17s", "TOTAL", Money(r.TotalMinor, r.Currency)), Heading},
		Line{rule, Plain},
	)
	return ls
}

// Text renders a receipt as plain text, one line per layout line and a
// blank line after it to tear off.
func Text(r Receipt) string {
	var b strings.Builder
	for _, l := range Layout(r) {
		b.WriteString(l.Text)
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	return b.String()
}

func center(s string, w int) string {
	if len(s) >= w {
		return s
	}
	return strings.Repeat(" ", (w-len(s))/2) + s
}

func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// Money formats minor units with the currency's decimals (EUR 12.50, JPY 1250).
func Money(minor int64, cur string) string {
	scale := 2
	if u, err := currency.ParseISO(cur); err == nil {
		scale, _ = currency.Standard.Rounding(u)
	}
	sign := ""
	if minor < 0 {
		sign, minor = "-", -minor
	}
	if scale == 0 {
		return fmt.Sprintf("%s %s%d", cur, sign, minor)
	}
	div := int64(1)
	for range scale {
		div *= 10
	}
	return fmt.Sprintf("%s %s%d.%0*d", cur, sign, minor/div, scale, minor%div)
}
