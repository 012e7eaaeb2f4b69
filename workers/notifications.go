package workers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"

	"github.com/bazaarhq/bazaar/internal/backoff"
	"github.com/bazaarhq/bazaar/sql/store"
)

// sendOnce sends a mail unless one with the same key was sent before, and
// records it. The key is derived from what the mail is about (the welcome
// of a user, the confirmation of an order), not from the task, so neither a
// redelivered event nor a person running an old task again sends it twice.
//
// Before the hand-off to SMTP the attempt claims the key (mail_claims); the
// claim is deleted in the transaction that records the mail. A retry that
// finds a fresh claim (another attempt is sending, or sent and could not
// record it yet because PostgreSQL was unreachable) waits for a later try
// instead of sending. The record is retried with backoff until the task's
// deadline, at least recordGrace past the hand-off. What remains is the
// window no mail protocol closes: an attempt that dies between the server's
// acceptance and the record leaves a claim, and once that claim is older
// than Config.MailClaimTTL the mail is sent again (at least once).
func (w *Workers) sendOnce(ctx context.Context, key, kind string, m Mail) error {
	log := Logger(ctx, w.log).With("mail_kind", kind, "dedupe_key", key)
	sent, err := store.EmailSent(ctx, w.db, key)
	if err != nil {
		return err
	}
	if sent {
		log.Info("mail sent before; not sending again")
		return nil
	}
	claim := uuid.New()
	ok, claimedAt, err := store.ClaimEmail(ctx, w.db, key, claim, w.cfg.MailClaimTTL)
	if err != nil {
		return err
	}
	if !ok {
		// Waiting for the claim is no failure of this task.
		return &DeferredError{Dependency: "the earlier attempt's mail record", Err: fmt.Errorf("%s mail %s: %w (claimed at %s)",
			kind, key, errMailClaimed, claimedAt.UTC().Format(time.RFC3339))}
	}
	// Checked again under the claim: an attempt that recorded the mail
	// between the first check and the claim released its claim in the
	// same transaction.
	if sent, err = store.EmailSent(ctx, w.db, key); err != nil || sent {
		w.releaseClaim(ctx, log, key, claim)
		if sent {
			log.Info("mail sent before; not sending again")
		}
		return err
	}
	if err := w.mailer.Send(ctx, m); err != nil {
		// The server did not confirm the mail, so another attempt may send.
		w.releaseClaim(ctx, log, key, claim)
		return fmt.Errorf("send %s mail: %w", kind, err)
	}
	if err := w.recordSent(ctx, log, claim, store.SentEmail{
		DedupeKey: key, Kind: kind, Recipient: strings.Join(m.To, ","), Subject: m.Subject,
	}); err != nil {
		// The claim stays: retries wait for it rather than mail twice.
		return fmt.Errorf("%s mail %s sent but not recorded: %w", kind, key, err)
	}
	log.Info("mail sent", "to", strings.Join(m.To, ","))
	return nil
}

// errMailClaimed reports a mail another attempt claimed and may have sent.
var errMailClaimed = errors.New("another attempt is sending this mail or has sent it")

// recordGrace is the least time recordSent has after the hand-off, even
// when the task's own deadline is nearer: the mail is out and its record
// is what keeps it from going out again.
const recordGrace = 5 * time.Second

// recordBackoff spaces the attempts to record a sent mail.
var recordBackoff = backoff.Policy{Base: 100 * time.Millisecond, Max: 2 * time.Second}

// recordSent records a sent mail and deletes its claim in one transaction,
// retrying until the task's deadline (at least recordGrace from now).
func (w *Workers) recordSent(ctx context.Context, log *slog.Logger, claim uuid.UUID, e store.SentEmail) error {
	deadline := time.Now().Add(recordGrace)
	if d, ok := ctx.Deadline(); ok && d.After(deadline) {
		deadline = d
	}
	rctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	for attempt := 0; ; attempt++ {
		err := store.WithTx(rctx, w.db, func(tx *sqlx.Tx) error {
			if err := store.RecordEmailSent(rctx, tx, e); err != nil {
				return err
			}
			return store.ReleaseEmailClaim(rctx, tx, e.DedupeKey, claim)
		})
		if err == nil {
			if attempt > 0 {
				log.Info("sent mail recorded after retrying", "attempts", attempt+1)
			}
			return nil
		}
		if attempt == 0 {
			log.Warn("record sent mail; retrying", "error", err)
		}
		t := time.NewTimer(recordBackoff.Delay(attempt))
		select {
		case <-rctx.Done():
			t.Stop()
			return fmt.Errorf("record sent mail: %w", err)
		case <-t.C:
		}
	}
}

// releaseClaim deletes a claim whose mail was not sent; if that fails the
// claim expires after MailClaimTTL.
func (w *Workers) releaseClaim(ctx context.Context, log *slog.Logger, key string, claim uuid.UUID) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordGrace)
	defer cancel()
	if err := store.ReleaseEmailClaim(rctx, w.db, key, claim); err != nil {
		log.Warn("release mail claim; it expires by itself", "error", err)
	}
}

func (w *Workers) getUser(ctx context.Context, p UserPayload) (store.User, error) {
	u, err := store.GetUser(ctx, w.db, p.UserID)
	return u, missingIsPermanent(err)
}

// orderWithBuyer reads an order and its buyer.
func (w *Workers) orderWithBuyer(ctx context.Context, id fmt.Stringer, get func() (store.Order, error)) (store.Order, store.User, error) {
	o, err := get()
	if err != nil {
		return o, store.User{}, missingIsPermanent(err)
	}
	u, err := store.GetUser(ctx, w.db, o.UserID)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return o, u, permanent(err)
		}
		return o, u, fmt.Errorf("buyer of %s: %w", id, err)
	}
	return o, u, nil
}

func (w *Workers) emailWelcome(ctx context.Context, t *asynq.Task) error {
	p, err := decode[UserPayload](t)
	if err != nil {
		return err
	}
	u, err := w.getUser(ctx, p)
	if err != nil {
		return err
	}
	return w.sendOnce(ctx, "welcome:"+u.ID.String(), "welcome", Mail{
		To:      []string{u.Email},
		Subject: "Welcome to Bazaar",
		Text: fmt.Sprintf("Hello %s,\n\nwelcome to Bazaar. Your account is ready and your points balance is open.\n\nHappy shopping!\n",
			greetingName(u.Name)),
	})
}

// orderMail sends one of the mails about an order.
func (w *Workers) orderMail(kind string, build func(o store.Order, u store.User, p OrderPayload) (Mail, bool)) asynq.HandlerFunc {
	return func(ctx context.Context, t *asynq.Task) error {
		p, err := decode[OrderPayload](t)
		if err != nil {
			return err
		}
		o, u, err := w.orderWithBuyer(ctx, p.OrderID, func() (store.Order, error) { return store.GetOrder(ctx, w.db, p.OrderID) })
		if err != nil {
			return err
		}
		m, ok := build(o, u, p)
		if !ok {
			Logger(ctx, w.log).Info("mail no longer applies; not sent", "mail_kind", kind, "order_id", o.ID, "status", o.Status)
			return nil
		}
		m.To = []string{u.Email}
		return w.sendOnce(ctx, kind+":"+o.ID.String()+suffix(kind, p), kind, m)
	}
}

// suffix keeps one reminder per scheduled time, so a rescheduled order is
// reminded of its new time.
func suffix(kind string, p OrderPayload) string {
	if kind == "order_reminder" && p.ScheduledAt != nil {
		return ":" + p.ScheduledAt.UTC().Format(time.RFC3339)
	}
	return ""
}

func confirmationMail(o store.Order, u store.User, _ OrderPayload) (Mail, bool) {
	if o.Status == store.OrderCancelled || o.Status == store.OrderPending {
		return Mail{}, false
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Hello %s,\n\nyour order %s is confirmed.\n\n", greetingName(u.Name), shortID(o.ID.String()))
	for _, it := range o.Items {
		fmt.Fprintf(&b, "  %d x %s  %s\n", it.Quantity, it.Name, money(it.LineTotalMinor, o.Currency))
	}
	fmt.Fprintf(&b, "\nTotal: %s\n", money(o.TotalMinor, o.Currency))
	if o.ScheduledAt != nil {
		fmt.Fprintf(&b, "Scheduled for: %s\n", o.ScheduledAt.UTC().Format("Mon 2 Jan 2006 15:04 MST"))
	}
	b.WriteString("\nThank you for shopping at Bazaar.\n")
	return Mail{Subject: "Your order " + shortID(o.ID.String()) + " is confirmed", Text: b.String()}, true
}

func cancellationMail(o store.Order, u store.User, _ OrderPayload) (Mail, bool) {
	if o.Status != store.OrderCancelled {
		return Mail{}, false
	}
	why := map[string]string{
		"out_of_stock": "some items are no longer in stock",
	}[o.CancelReason]
	if why == "" && strings.HasPrefix(o.CancelReason, "payment_failed") {
		why = "the payment was declined"
	}
	text := fmt.Sprintf("Hello %s,\n\nyour order %s of %s has been cancelled", greetingName(u.Name), shortID(o.ID.String()), money(o.TotalMinor, o.Currency))
	if why != "" {
		text += " because " + why
	}
	text += ".\nIf you were charged, the money is on its way back to you.\n"
	return Mail{Subject: "Your order " + shortID(o.ID.String()) + " was cancelled", Text: text}, true
}

func shipmentMail(o store.Order, u store.User, _ OrderPayload) (Mail, bool) {
	if o.Status != store.OrderShipped && o.Status != store.OrderDelivered {
		return Mail{}, false
	}
	return Mail{
		Subject: "Your order " + shortID(o.ID.String()) + " is on its way",
		Text:    fmt.Sprintf("Hello %s,\n\nyour order %s has been shipped.\n", greetingName(u.Name), shortID(o.ID.String())),
	}, true
}

// reminderMail says how long the buyer has until the order's scheduled
// time, counted when the mail goes out; a reminder that runs at or after
// that time (a retry that came too late) is dropped.
func reminderMail(now time.Time) func(o store.Order, u store.User, p OrderPayload) (Mail, bool) {
	return func(o store.Order, u store.User, p OrderPayload) (Mail, bool) {
		if o.ScheduledAt == nil || o.Status == store.OrderCancelled || o.Status == store.OrderDelivered {
			return Mail{}, false
		}
		if p.ScheduledAt != nil && !p.ScheduledAt.Equal(*o.ScheduledAt) {
			return Mail{}, false // rescheduled; the reminder of the new time will come
		}
		left := o.ScheduledAt.Sub(now)
		if left <= 0 {
			return Mail{}, false
		}
		return Mail{
			Subject: "Reminder: your order " + shortID(o.ID.String()) + " is due in " + inWords(left),
			Text: fmt.Sprintf("Hello %s,\n\nyour order %s is scheduled for %s.\n", greetingName(u.Name), shortID(o.ID.String()),
				o.ScheduledAt.UTC().Format("Mon 2 Jan 2006 15:04 MST")),
		}, true
	}
}

// inWords rounds d to whole days from two days up, to whole hours from one
// hour up, and to whole minutes below ("3 days", "24 hours", "1 minute").
func inWords(d time.Duration) string {
	n, unit := int64(d.Round(time.Minute)/time.Minute), "minute"
	switch {
	case d >= 47*time.Hour+30*time.Minute:
		n, unit = int64(d.Round(24*time.Hour)/(24*time.Hour)), "day"
	case d >= 59*time.Minute+30*time.Second:
		n, unit = int64(d.Round(time.Hour)/time.Hour), "hour"
	}
	n = max(n, 1)
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

func (w *Workers) emailReturnResolved(ctx context.Context, t *asynq.Task) error {
	_, r, err := w.returnOf(ctx, t)
	if err != nil {
		return err
	}
	if r.Status == store.ReturnStatusOpen {
		return nil
	}
	u, err := w.getUser(ctx, UserPayload{UserID: r.UserID})
	if err != nil {
		return err
	}
	text := fmt.Sprintf("Hello %s,\n\nyour return of %d x %s was %s.\n", greetingName(u.Name), r.Quantity, r.ProductName, r.Status)
	if r.Status == store.ReturnStatusAccepted && r.RefundMinor > 0 {
		text += fmt.Sprintf("We refund %s.\n", money(r.RefundMinor, r.Currency))
	}
	return w.sendOnce(ctx, "return_resolved:"+r.ID.String(), "return_resolved", Mail{
		To:      []string{u.Email},
		Subject: "Your return was " + string(r.Status),
		Text:    text,
	})
}

// emailInvoice mails an invoice to its account's billing address with the
// invoice's PDF attached. The address and amounts come from the invoice,
// which is never changed once written, so a late retry mails what was
// billed.
func (w *Workers) emailInvoice(ctx context.Context, t *asynq.Task) error {
	p, err := decode[InvoicePayload](t)
	if err != nil {
		return err
	}
	inv, err := store.GetInvoice(ctx, w.db, p.InvoiceID)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return permanent(fmt.Errorf("invoice %s: %w", p.InvoiceID, err))
		}
		return err
	}
	pdf, err := RenderInvoicePDF(ctx, w.db, inv.ID)
	if err != nil {
		return err
	}
	return w.sendOnce(ctx, "invoice:"+inv.ID.String(), "invoice", Mail{
		To:          []string{inv.BillingEmail},
		Subject:     "Invoice " + inv.Number + " from " + InvoiceIssuer,
		Text:        invoiceMailText(inv),
		Attachments: []Attachment{{Name: InvoicePDFName(inv), ContentType: "application/pdf", Data: pdf}},
	})
}

// emailWebhookDisabled tells a seller that Bazaar disabled one of its
// webhook endpoints, why, and how to turn it back on. One mail per
// disabling: the key carries the time it was disabled. An endpoint enabled
// again (or disabled again since) before the mail went out gets none for
// this disabling.
func (w *Workers) emailWebhookDisabled(ctx context.Context, t *asynq.Task) error {
	p, err := decode[WebhookDisabledPayload](t)
	if err != nil {
		return err
	}
	ep, err := store.WebhookEndpointByID(ctx, w.db, p.EndpointID)
	if err != nil {
		return missingIsPermanent(err)
	}
	if !ep.Disabled || ep.DisabledAt == nil || !ep.DisabledAt.Equal(p.DisabledAt) {
		Logger(ctx, w.log).Info("mail no longer applies; not sent", "mail_kind", "webhook_disabled", "endpoint_id", ep.ID)
		return nil
	}
	s, err := store.GetSeller(ctx, w.db, ep.SellerID)
	if err != nil {
		return missingIsPermanent(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Hello %s,\n\nBazaar stopped sending events to your webhook endpoint\n\n  %s\n", greetingName(s.Name), ep.URL)
	if ep.Description != "" {
		fmt.Fprintf(&b, "  (%s)\n", ep.Description)
	}
	fmt.Fprintf(&b, "\non %s because %s.\n\n", p.DisabledAt.UTC().Format("Mon 2 Jan 2006 15:04 MST"), ep.DisabledReason)
	// What failed during the streak is worth sending again, too.
	since := p.DisabledAt
	if ep.FailingSince != nil && ep.FailingSince.Before(since) {
		since = *ep.FailingSince
	}
	fmt.Fprintf(&b, "Events from then on are not delivered to it. When the endpoint works again, enable it with\n"+
		"PATCH /v1/sellers/%s/webhooks/%s {\"disabled\": false}\nand send what it missed with\n"+
		"POST /v1/sellers/%s/webhooks/%s/redeliver {\"since\": \"%s\"}.\n",
		s.ID, ep.ID, s.ID, ep.ID, since.UTC().Format(time.RFC3339))
	return w.sendOnce(ctx, "webhook_disabled:"+ep.ID.String()+":"+p.DisabledAt.UTC().Format(time.RFC3339Nano), "webhook_disabled", Mail{
		To:      []string{s.Email},
		Subject: "Your webhook endpoint " + ep.URL + " was disabled",
		Text:    b.String(),
	})
}

func invoiceMailText(inv store.Invoice) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Hello %s,\n\nattached is invoice %s for your orders from %s to %s.\n\n",
		greetingName(inv.AccountName), inv.Number,
		inv.PeriodStart.Format(store.DateLayout), inv.PeriodEnd.AddDate(0, 0, -1).Format(store.DateLayout))
	if inv.TotalMinor < 0 {
		// Returns outweighed the orders: nothing is due.
		fmt.Fprintf(&b, "Your returns exceed your orders: we credit you %s.\n", FormatMoney(-inv.TotalMinor, inv.Currency))
	} else {
		fmt.Fprintf(&b, "Total: %s\nDue on: %s\n", FormatMoney(inv.TotalMinor, inv.Currency), inv.DueOn.Format(store.DateLayout))
	}
	b.WriteString("\nThank you for buying at " + InvoiceIssuer + ".\n")
	return b.String()
}

func greetingName(name string) string {
	if strings.TrimSpace(name) == "" {
		return "there"
	}
	return name
}

func shortID(id string) string {
	if len(id) > 8 {
		return "#" + strings.ToUpper(id[len(id)-8:])
	}
	return "#" + id
}

// money formats minor units with two decimals, which holds for the
// currencies the marketplace sells in.
func money(minor int64, currency string) string {
	sign := ""
	if minor < 0 {
		sign, minor = "-", -minor
	}
	return fmt.Sprintf("%s%d.%02d %s", sign, minor/100, minor%100, currency)
}
