package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/bazaarhq/bazaar/api/printers/receipt"
)

// order is what a receipt shows: the data of order.* events and the
// orders the API lists.
type order struct {
	ID            string      `json:"order_id"`
	AltID         string      `json:"id"` // the API's order lists name it id
	SellerID      string      `json:"seller_id"`
	Currency      string      `json:"currency"`
	SubtotalMinor int64       `json:"subtotal_minor"`
	TotalMinor    int64       `json:"total_minor"`
	ScheduledAt   *time.Time  `json:"scheduled_at"`
	CreatedAt     time.Time   `json:"created_at"`
	Items         []orderItem `json:"items"`
}

type orderItem struct {
	SKU            string `json:"sku"`
	Name           string `json:"name"`
	Quantity       int    `json:"quantity"`
	UnitPriceMinor int64  `json:"unit_price_minor"`
	LineTotalMinor int64  `json:"line_total_minor"`
}

func (o order) id() string {
	if o.ID != "" {
		return o.ID
	}
	return o.AltID
}

// receiptText renders an order as the 48-column plain-text receipt of
// api/printers/receipt, the one receipt model the polling printers'
// endpoints draw too (as PNG and ePOS-Print XML).
func receiptText(o order) string {
	r := receipt.Receipt{
		OrderID:       o.id(),
		PlacedAt:      o.CreatedAt,
		ScheduledAt:   o.ScheduledAt,
		Currency:      o.Currency,
		SubtotalMinor: o.SubtotalMinor,
		TotalMinor:    o.TotalMinor,
	}
	for _, it := range o.Items {
		r.Items = append(r.Items, receipt.Item{SKU: it.SKU, Name: it.Name, Quantity: it.Quantity, LineTotalMinor: it.LineTotalMinor})
	}
	return receipt.Text(r)
}

// money formats minor units with the currency's decimals (EUR 12.50, JPY 1250).
func money(minor int64, cur string) string { return receipt.Money(minor, cur) }

// output is where receipts go. print returns once the receipt is on the
// printer or durably in the file.
type output interface {
	print(ctx context.Context, receipt string) error
	close() error
}

// textOutput appends receipts to a file (fsynced) or writes them to stdout.
type textOutput struct {
	w    io.Writer
	file *os.File
}

func newTextOutput(path string, stdout io.Writer) (*textOutput, error) {
	if path == "-" {
		return &textOutput{w: stdout}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open receipt output: %w", err)
	}
	return &textOutput{w: f, file: f}, nil
}

func (o *textOutput) print(_ context.Context, receipt string) error {
	if _, err := io.WriteString(o.w, receipt); err != nil {
		return fmt.Errorf("write receipt: %w", err)
	}
	if o.file != nil {
		if err := o.file.Sync(); err != nil {
			return fmt.Errorf("write receipt: %w", err)
		}
	}
	return nil
}

func (o *textOutput) close() error {
	if o.file != nil {
		return o.file.Close()
	}
	return nil
}

// escposOutput sends each receipt as ESC/POS to a network printer's raw
// port (9100), one connection per receipt so a printer restart costs
// nothing but a retry.
type escposOutput struct {
	addr string
}

// ESC/POS commands: initialise, feed n lines, partial cut.
var (
	escInit = []byte{0x1b, '@'}
	escFeed = []byte{0x1b, 'd', 4}
	escCut  = []byte{0x1d, 'V', 66, 0}
)

func (o escposOutput) print(ctx context.Context, receipt string) error {
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", o.addr)
	if err != nil {
		return fmt.Errorf("connect to printer %s: %w", o.addr, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	var b bytes.Buffer
	b.Write(escInit)
	// Thermal printers take CR LF and code page 437; keep to ASCII.
	for _, r := range strings.ReplaceAll(receipt, "\n", "\r\n") {
		if r > 0x7e && r != '\r' && r != '\n' {
			r = '?'
		}
		b.WriteRune(r)
	}
	b.Write(escFeed)
	b.Write(escCut)
	if _, err := conn.Write(b.Bytes()); err != nil {
		return fmt.Errorf("send receipt to %s: %w", o.addr, err)
	}
	// A clean close tells us the printer took every byte.
	if tc, ok := conn.(*net.TCPConn); ok {
		if err := tc.CloseWrite(); err != nil {
			return fmt.Errorf("send receipt to %s: %w", o.addr, err)
		}
	}
	return nil
}

func (escposOutput) close() error { return nil }
