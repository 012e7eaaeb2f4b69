package workers

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/stream"
)

// issueInvoices writes one completed run of 15-31 October (Europe/Berlin)
// with an unnumbered invoice per total given, then numbers them and
// records their invoice.created events in one transaction, the way an
// invoice run's batch ends (workers/invoicing bills; here only its output
// matters).
func issueInvoices(t *testing.T, b *testBundle, totals ...int64) []store.Invoice {
	t.Helper()
	ctx := context.Background()
	loc, err := time.LoadLocation("Europe/Berlin")
	require.NoError(t, err)
	start, end := time.Date(2026, 10, 15, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	issued := time.Date(2026, 11, 1, 2, 0, 0, 0, loc)
	var invs []store.Invoice
	err = store.WithTx(ctx, b.db, func(tx *sqlx.Tx) error {
		run, _, err := store.CreateInvoiceRun(ctx, tx, store.InvoiceRun{
			ID: uuid.New(), PeriodStart: start, PeriodEnd: end, Timezone: loc.String(),
			StartsAt: time.Date(2026, 10, 15, 0, 0, 0, 0, loc), EndsAt: time.Date(2026, 11, 1, 0, 0, 0, 0, loc), Trigger: "manual",
		})
		if err != nil {
			return err
		}
		ids := make([]uuid.UUID, len(totals))
		events := make([]store.Event, len(totals))
		for i, total := range totals {
			id, account := uuid.New(), uuid.New()
			ids[i] = id
			if _, err := tx.ExecContext(ctx, `INSERT INTO corporate_accounts (id, name, billing_email) VALUES ($1, $2, $3)`,
				account, fmt.Sprintf("Account %d GmbH", i), fmt.Sprintf("billing-%d@corp.test", i)); err != nil {
				return err
			}
			invs = append(invs, store.Invoice{
				ID: id, RunID: run.ID, AccountID: account, AccountName: fmt.Sprintf("Account %d GmbH", i),
				BillingEmail: fmt.Sprintf("billing-%d@corp.test", i), PeriodStart: start, PeriodEnd: end,
				Timezone: loc.String(), Currency: "EUR", OrdersMinor: total, SubtotalMinor: total,
				TotalMinor: total, IssuedAt: issued, DueOn: time.Date(2026, 11, 15, 0, 0, 0, 0, time.UTC),
			})
			if events[i], err = store.NewEvent(EventInvoiceCreated, id.String(), nil, 1, map[string]any{"invoice_id": id}); err != nil {
				return err
			}
		}
		if err := store.InsertInvoices(ctx, tx, invs, nil); err != nil {
			return err
		}
		numbers, err := store.NumberInvoices(ctx, tx, 2026, ids, events)
		for i := range invs {
			invs[i].Number = numbers[invs[i].ID]
		}
		return err
	})
	require.NoError(t, err)
	b.waker.EventsCommitted()
	return invs
}

// attachment returns the one attachment of a raw mail: its file name,
// content type and decoded bytes.
func attachment(t *testing.T, raw []byte) (name, contentType string, data []byte) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	require.NoError(t, err)
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(mt, "multipart/"), "mail is %s, not multipart", mt)
	mr := multipart.NewReader(msg.Body, params["boundary"])
	found := 0
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		if part.FileName() == "" {
			continue
		}
		found++
		name = part.FileName()
		contentType, _, err = mime.ParseMediaType(part.Header.Get("Content-Type"))
		require.NoError(t, err)
		var body io.Reader = part
		if strings.EqualFold(part.Header.Get("Content-Transfer-Encoding"), "base64") {
			body = base64.NewDecoder(base64.StdEncoding, part)
		}
		data, err = io.ReadAll(body)
		require.NoError(t, err)
	}
	require.Equal(t, 1, found, "attachments")
	return name, contentType, data
}

func TestInvoiceCreatedMailsTheInvoiceWithItsPDFOnce(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("pdftotext"); err != nil {
		t.Fatal("pdftotext is missing: install poppler-utils (apt-get install -y poppler-utils)")
	}
	b := setup(t)
	ctx := context.Background()
	invs := issueInvoices(t, b, 832800, 4000, 70000)

	for _, inv := range invs {
		eventually(t, 20*time.Second, func() bool { return b.sink.Count(inv.BillingEmail, inv.Number) == 1 }, "mail of %s", inv.Number)
	}
	b.settle(t, 10*time.Second)

	byNumber := map[string]SinkMail{}
	for _, m := range b.sink.Mails() {
		byNumber[strings.TrimPrefix(strings.TrimSuffix(m.Subject, " from "+InvoiceIssuer), "Invoice ")] = m
	}
	require.Equal(t, len(invs), len(b.sink.Mails()), "one mail per invoice, nothing else")
	require.Equal(t, len(invs), len(byNumber), "one mail per invoice number")
	dir := t.TempDir()
	for _, inv := range invs {
		m, ok := byNumber[inv.Number]
		require.True(t, ok, inv.Number)
		require.Equal(t, []string{inv.BillingEmail}, m.To)
		require.Contains(t, m.Text, "Total: "+FormatMoney(inv.TotalMinor, inv.Currency))
		require.Contains(t, m.Text, "Due on: "+inv.DueOn.Format(store.DateLayout))
		require.Contains(t, m.Text, "from 2026-10-15 to 2026-10-31")

		name, ctype, pdf := attachment(t, m.Raw)
		require.Equal(t, inv.Number+".pdf", name)
		require.Equal(t, "application/pdf", ctype)
		require.True(t, bytes.HasPrefix(pdf, []byte("%PDF")), "attachment starts %q", pdf[:min(len(pdf), 8)])
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, pdf, 0o600))
		text, err := exec.Command("pdftotext", "-layout", path, "-").Output()
		require.NoError(t, err)
		require.Contains(t, string(text), inv.Number)
		require.Contains(t, string(text), FormatMoney(inv.TotalMinor, inv.Currency))
	}

	// The event delivered again enqueues nothing (its TaskID is kept), and
	// the task run again under another id (a person re-running an
	// archived copy) finds the mail recorded: no second mail either way.
	notifications := b.group(t, GroupNotifications)
	for _, inv := range invs {
		evs, err := store.EventsBySubject(ctx, b.db, inv.ID.String())
		require.NoError(t, err)
		require.Len(t, evs, 1)
		require.Equal(t, EventInvoiceCreated, evs[0].Type)
		require.NoError(t, notifications.Handle(ctx, stream.EnvelopeOf(evs[0])))
		again, err := NewInvoiceTask(TypeEmailInvoice, Meta{Version: PayloadVersion}, inv.ID)
		require.NoError(t, err)
		require.NoError(t, b.w.Enqueue(ctx, again, "test:again:"+inv.ID.String()))
	}
	b.settle(t, 10*time.Second)
	require.Equal(t, len(invs), len(b.sink.Mails()), "no mail twice")
	for _, inv := range invs {
		require.Equal(t, 1, b.sink.Count(inv.BillingEmail, inv.Number), inv.Number)
	}
}

func TestInvoiceMailOfAMissingInvoiceIsNotRetried(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noStart: true})
	task, err := NewInvoiceTask(TypeEmailInvoice, Meta{Version: PayloadVersion}, uuid.New())
	require.NoError(t, err)
	err = b.w.emailInvoice(context.Background(), task)
	require.ErrorIs(t, err, asynq.SkipRetry)
	require.ErrorIs(t, err, store.ErrNotFound)
	require.Zero(t, len(b.sink.Mails()), "no mail")
}

func TestInvoiceMailText(t *testing.T) {
	t.Parallel()
	base := store.Invoice{
		Number: "INV-2026-000007", AccountName: "Alpha GmbH", Currency: "EUR",
		PeriodStart: time.Date(2026, 10, 15, 0, 0, 0, 0, time.UTC), PeriodEnd: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
		DueOn: time.Date(2026, 11, 15, 0, 0, 0, 0, time.UTC),
	}
	tests := []struct {
		name     string
		total    int64
		want     []string
		wantNone string
	}{
		{"due", 832800, []string{"invoice INV-2026-000007", "from 2026-10-15 to 2026-10-31", "Total: " + FormatMoney(832800, "EUR"), "Due on: 2026-11-15"}, "credit"},
		{"credit", -50000, []string{"we credit you " + FormatMoney(50000, "EUR")}, "Due on"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			inv := base
			inv.TotalMinor = tc.total
			text := invoiceMailText(inv)
			require.True(t, strings.HasPrefix(text, "Hello Alpha GmbH,"), text)
			for _, w := range tc.want {
				require.Contains(t, text, w)
			}
			require.NotContains(t, text, tc.wantNone)
		})
	}
}
