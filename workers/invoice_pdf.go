package workers

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"codeberg.org/go-pdf/fpdf"
	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"golang.org/x/text/currency"

	"github.com/bazaarhq/bazaar/sql/store"
)

// InvoiceIssuer is the name printed as the issuer of every invoice.
const InvoiceIssuer = "Bazaar Marketplace"

// RenderInvoicePDF renders a stored invoice as a PDF document (A4). The
// invoice never changes once written and the document's dates are its issue
// time, so the same invoice always renders to the same bytes. The
// notifications service attaches it to the invoice.created mail; the API
// serves it.
func RenderInvoicePDF(ctx context.Context, q sqlx.QueryerContext, invoiceID uuid.UUID) ([]byte, error) {
	inv, err := store.GetInvoice(ctx, q, invoiceID)
	if err != nil {
		return nil, fmt.Errorf("render invoice: %w", err)
	}
	lines, err := store.InvoiceLines(ctx, q, invoiceID)
	if err != nil {
		return nil, fmt.Errorf("render invoice: %w", err)
	}
	return renderInvoice(inv, lines)
}

// InvoicePDFName is the file name of an invoice's PDF ("INV-2026-000042.pdf").
func InvoicePDFName(inv store.Invoice) string { return inv.Number + ".pdf" }

func renderInvoice(inv store.Invoice, lines []store.InvoiceLine) ([]byte, error) {
	loc, err := time.LoadLocation(inv.Timezone)
	if err != nil {
		loc = time.UTC
	}
	const (
		margin = 18.0
		lineH  = 5.5
	)
	pdf := fpdf.New("P", "mm", "A4", "")
	pdf.SetMargins(margin, margin, margin)
	pdf.SetAutoPageBreak(true, 20)
	pdf.SetCreationDate(inv.IssuedAt)
	pdf.SetModificationDate(inv.IssuedAt)
	pdf.SetCatalogSort(true)
	pdf.SetTitle("Invoice "+inv.Number, true)
	pdf.SetAuthor(InvoiceIssuer, true)
	pdf.SetCreator("bazaar", false)
	pdf.AliasNbPages("{nb}")
	// The core fonts speak Windows-1252; the translator maps names such as
	// "Müller GmbH" onto it.
	tr := pdf.UnicodeTranslatorFromDescriptor("")
	pdf.SetFooterFunc(func() {
		pdf.SetY(-14)
		pdf.SetFont("Helvetica", "", 8)
		pdf.SetTextColor(110, 110, 110)
		pdf.CellFormat(0, 5, tr(fmt.Sprintf("%s  ·  %s  ·  page %d of {nb}", inv.Number, InvoiceIssuer, pdf.PageNo())), "", 0, "C", false, 0, "")
	})
	pdf.AddPage()
	pageW, _ := pdf.GetPageSize()
	contentW := pageW - 2*margin

	pdf.SetFont("Helvetica", "B", 20)
	pdf.CellFormat(contentW/2, 10, "Invoice", "", 0, "L", false, 0, "")
	pdf.SetFont("Helvetica", "B", 12)
	pdf.CellFormat(contentW/2, 10, inv.Number, "", 1, "R", false, 0, "")
	pdf.SetFont("Helvetica", "", 10)
	pdf.CellFormat(contentW/2, lineH, tr(InvoiceIssuer), "", 0, "L", false, 0, "")
	pdf.CellFormat(contentW/2, lineH, "Issued "+inv.IssuedAt.In(loc).Format("2 January 2006"), "", 1, "R", false, 0, "")
	pdf.CellFormat(contentW/2, lineH, "", "", 0, "L", false, 0, "")
	pdf.CellFormat(contentW/2, lineH, "Due "+inv.DueOn.Format("2 January 2006"), "", 1, "R", false, 0, "")
	pdf.Ln(6)

	pdf.SetFont("Helvetica", "B", 10)
	pdf.CellFormat(contentW, lineH, "Bill to", "", 1, "L", false, 0, "")
	pdf.SetFont("Helvetica", "", 10)
	pdf.CellFormat(contentW, lineH, tr(inv.AccountName), "", 1, "L", false, 0, "")
	pdf.CellFormat(contentW, lineH, tr(inv.BillingEmail), "", 1, "L", false, 0, "")
	if inv.VATID != "" {
		pdf.CellFormat(contentW, lineH, tr("VAT ID "+inv.VATID), "", 1, "L", false, 0, "")
	}
	pdf.Ln(3)
	last := inv.PeriodEnd.AddDate(0, 0, -1)
	pdf.CellFormat(contentW, lineH, tr(fmt.Sprintf("Period %s to %s (%s)",
		inv.PeriodStart.Format("2 Jan 2006"), last.Format("2 Jan 2006"), inv.Timezone)), "", 1, "L", false, 0, "")
	pdf.CellFormat(contentW, lineH, "Currency "+inv.Currency, "", 1, "L", false, 0, "")
	pdf.Ln(5)

	dateW, amountW := 24.0, 34.0
	descW := contentW - dateW - amountW
	header := func() {
		pdf.SetFont("Helvetica", "B", 9)
		pdf.SetFillColor(235, 235, 235)
		pdf.CellFormat(dateW, 7, "Date", "B", 0, "L", true, 0, "")
		pdf.CellFormat(descW, 7, "Description", "B", 0, "L", true, 0, "")
		pdf.CellFormat(amountW, 7, "Amount", "B", 1, "R", true, 0, "")
		pdf.SetFont("Helvetica", "", 9)
	}
	header()
	_, pageH := pdf.GetPageSize()
	for _, l := range lines {
		desc := l.Description
		if l.Late {
			desc += " (late, from the previous period)"
		}
		wrapped := pdf.SplitText(tr(desc), descW-2)
		h := float64(len(wrapped)) * 4.6
		if pdf.GetY()+h > pageH-24 {
			pdf.AddPage()
			header()
		}
		y := pdf.GetY()
		pdf.CellFormat(dateW, 4.6, l.OccurredAt.In(loc).Format(store.DateLayout), "", 0, "L", false, 0, "")
		for i, w := range wrapped {
			pdf.SetXY(margin+dateW, y+float64(i)*4.6)
			pdf.CellFormat(descW, 4.6, w, "", 0, "L", false, 0, "")
		}
		pdf.SetXY(margin+dateW+descW, y)
		pdf.CellFormat(amountW, 4.6, FormatMoney(l.AmountMinor, inv.Currency), "", 0, "R", false, 0, "")
		pdf.SetXY(margin, y+h+1.2)
	}
	pdf.Ln(3)
	// Keep the totals together on one page.
	if pdf.GetY()+6*6 > pageH-24 {
		pdf.AddPage()
	}

	labelW := contentW - amountW
	total := func(label string, minor int64, bold bool) {
		style := ""
		if bold {
			style = "B"
		}
		pdf.SetFont("Helvetica", style, 10)
		pdf.CellFormat(labelW, 6, label, "", 0, "R", false, 0, "")
		pdf.CellFormat(amountW, 6, FormatMoney(minor, inv.Currency), "", 1, "R", false, 0, "")
	}
	total("Orders", inv.OrdersMinor, false)
	if inv.CreditsMinor != 0 {
		total("Returns credited", -inv.CreditsMinor, false)
	}
	total("Subtotal", inv.SubtotalMinor, false)
	total(fmt.Sprintf("Tax %d.%02d%%", inv.TaxRateBps/100, inv.TaxRateBps%100), inv.TaxMinor, false)
	pdf.SetDrawColor(0, 0, 0)
	y := pdf.GetY()
	pdf.Line(margin+labelW-20, y, margin+contentW, y)
	total("Total", inv.TotalMinor, true)

	var buf bytes.Buffer
	if err := pdf.Output(&buf); err != nil {
		return nil, fmt.Errorf("render invoice %s: %w", inv.Number, err)
	}
	return buf.Bytes(), nil
}

// FormatMoney writes minor units as the currency's major units with its
// ISO 4217 number of decimals and thousands separators: "EUR 1,234.56",
// "JPY 1,200", "EUR -12.00".
func FormatMoney(minor int64, code string) string {
	scale := 2
	if u, err := currency.ParseISO(code); err == nil {
		scale, _ = currency.Standard.Rounding(u)
	}
	neg := minor < 0
	abs := uint64(minor)
	if neg {
		abs = uint64(-minor)
	}
	digits := strconv.FormatUint(abs, 10)
	if len(digits) <= scale {
		digits = strings.Repeat("0", scale-len(digits)+1) + digits
	}
	intPart, frac := digits[:len(digits)-scale], digits[len(digits)-scale:]
	var b strings.Builder
	b.WriteString(code)
	b.WriteByte(' ')
	if neg {
		b.WriteByte('-')
	}
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if scale > 0 {
		b.WriteByte('.')
		b.WriteString(frac)
	}
	return b.String()
}
