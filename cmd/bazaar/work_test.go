package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream"
	"github.com/bazaarhq/bazaar/stream/redistest"
	"github.com/bazaarhq/bazaar/workers"
	"github.com/bazaarhq/bazaar/workers/invoicing"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadWorkConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		dev     bool
		wantErr string
	}{
		{"work needs an SMTP host", nil, false, "BAZAAR_SMTP_HOST"},
		{"dev does not", nil, true, ""},
		{"bad TLS mode", map[string]string{"BAZAAR_SMTP_HOST": "mail", "BAZAAR_SMTP_TLS": "maybe"}, false, "BAZAAR_SMTP_TLS"},
		{"bad delay", map[string]string{"BAZAAR_SMTP_HOST": "mail", "BAZAAR_FOLLOWUP_DELAY": "soon"}, false, "BAZAAR_FOLLOWUP_DELAY"},
		{"zero concurrency", map[string]string{"BAZAAR_SMTP_HOST": "mail", "BAZAAR_WORKER_CONCURRENCY": "0"}, false, "BAZAAR_WORKER_CONCURRENCY"},
		{"zero webhook disable", map[string]string{"BAZAAR_SMTP_HOST": "mail", "BAZAAR_WEBHOOK_DISABLE_AFTER": "0s"}, false, "BAZAAR_WEBHOOK_DISABLE_AFTER"},
		{"bad webhook disable", map[string]string{"BAZAAR_SMTP_HOST": "mail", "BAZAAR_WEBHOOK_DISABLE_AFTER": "5d"}, false, "BAZAAR_WEBHOOK_DISABLE_AFTER"},
		{"negative task retention", map[string]string{"BAZAAR_SMTP_HOST": "mail", "BAZAAR_TASK_RETENTION": "-1m"}, false, "BAZAAR_TASK_RETENTION"},
		{"negative group seller share", map[string]string{"BAZAAR_SMTP_HOST": "mail", "BAZAAR_GROUP_SELLER_SHARE": "-1"}, false, "BAZAAR_GROUP_SELLER_SHARE"},
		{"complete", map[string]string{"BAZAAR_SMTP_HOST": "mail", "BAZAAR_SMTP_PORT": "465", "BAZAAR_SMTP_TLS": "tls", "BAZAAR_FOLLOWUP_DELAY": "2m", "BAZAAR_WEBHOOK_DISABLE_AFTER": "48h", "BAZAAR_TASK_RETENTION": "10m", "BAZAAR_GROUP_SELLER_SHARE": "4"}, false, ""},
	}
	for _, tc := range tests {
		wc, err := loadWorkConfig(envOf(tc.env), tc.dev)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("%s: error %v, want one naming %s", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if tc.name == "dev does not" && (wc.WebhookDisableAfter != 120*time.Hour || wc.TaskRetention != 0) {
			t.Fatalf("default webhook disable after: %v", wc.WebhookDisableAfter)
		}
		if tc.name == "complete" && (wc.SMTP.Port != 465 || wc.FollowUpDelay != 2*time.Minute || wc.WebhookDisableAfter != 48*time.Hour || wc.TaskRetention != 10*time.Minute || wc.GroupSellerShare != 4) {
			t.Fatalf("complete: got %+v", wc)
		}
	}
}

func TestDevMailPartsAndMonitor(t *testing.T) {
	t.Parallel()
	wc, err := loadWorkConfig(envOf(map[string]string{"BAZAAR_DEV_SMTP_ADDR": "127.0.0.1:0"}), true)
	if err != nil {
		t.Fatal(err)
	}
	sink, mailer, err := devMailParts(wc, nil)
	if err != nil || sink == nil || mailer == nil {
		t.Fatalf("dev mail parts: %v %v %v", sink, mailer, err)
	}
	if err := sink.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := sink.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	wc.SMTP.Host = "mail.example"
	if sink, _, _ := devMailParts(wc, nil); sink != nil {
		t.Fatal("a configured SMTP host needs no sink")
	}
	cfg, err := loadConfig(envOf(map[string]string{"REDIS_URL": "redis://127.0.0.1:6379/3"}))
	if err != nil {
		t.Fatal(err)
	}
	mon, err := newMonitor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if mon.RootPath() != "/monitor" {
		t.Fatalf("root %q", mon.RootPath())
	}
	_ = mon.Close()
}

// TestWorkRunsInvoicing runs "bazaar work" as a person would and starts an
// invoice run the way the API does (the run and invoicing.run_started in
// one transaction, nothing enqueued): the workers' invoicing group hands
// the run to the invoice tasks, which bill the account, and the
// notifications group mails the invoice with its PDF.
func TestWorkRunsInvoicing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, dbURL := storetest.NewDB(t)
	opt := redistest.DB(t)
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	redisURL := url.URL{Scheme: "redis", Host: opt.Addr, Path: "/" + strconv.Itoa(opt.DB)}
	if opt.Password != "" {
		redisURL.User = url.UserPassword(opt.Username, opt.Password)
	}
	sink := workers.NewMailSink(workers.MailSinkConfig{})
	require.NoError(t, sink.Start(ctx))
	t.Cleanup(func() { _ = sink.Stop(context.Background()) })
	smtpHost, smtpPort, err := net.SplitHostPort(sink.Addr())
	require.NoError(t, err)

	// A corporate buyer with one confirmed order in the second half of October.
	seller, product, account, buyer, order := uuid.New(), uuid.New(), uuid.New(), uuid.New(), uuid.New()
	billing := "billing-" + account.String()[:8] + "@corp.test"
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO sellers (id, name, email) VALUES ($1, 'Kettle & Co', 'sales@kettle.test')`, []any{seller}},
		{`INSERT INTO products (id, seller_id, sku, name, price_minor, currency, stock)
			VALUES ($1, $2, 'TEA-1', 'Teapot', 2500, 'EUR', 10)`, []any{product, seller}},
		{`INSERT INTO corporate_accounts (id, name, billing_email, vat_id) VALUES ($1, 'Alpha GmbH', $2, 'DE123456789')`, []any{account, billing}},
		{`INSERT INTO users (id, email, name, corporate_account_id) VALUES ($1, 'buyer@corp.test', 'Buyer', $2)`, []any{buyer, account}},
		{`INSERT INTO orders (id, seller_id, user_id, status, currency, subtotal_minor, total_minor, confirmed_at)
			VALUES ($1, $2, $3, 'confirmed', 'EUR', 5000, 5000, '2026-10-20T10:00:00Z')`, []any{order, seller, buyer}},
		{`INSERT INTO order_items (id, order_id, product_id, sku, name, quantity, unit_price_minor, line_total_minor)
			VALUES ($1, $2, $3, 'TEA-1', 'Teapot', 2, 2500, 5000)`, []any{uuid.New(), order, product}},
	} {
		_, err := db.ExecContext(ctx, q.sql, q.args...)
		require.NoError(t, err)
	}

	env := map[string]string{
		"DATABASE_URL": dbURL, "REDIS_URL": redisURL.String(), "BAZAAR_HTTP_ADDR": "127.0.0.1:0",
		"BAZAAR_SMTP_HOST": smtpHost, "BAZAAR_SMTP_PORT": smtpPort, "BAZAAR_SMTP_TLS": workers.TLSNone,
		"BAZAAR_LOG_LEVEL": "warn", "BAZAAR_SHUTDOWN_TIMEOUT": "10s", "BAZAAR_ADMIN_TOKEN": testAdmin,
		"BAZAAR_PAYMENT_GATEWAY": "sandbox",
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- run(wctx, []string{"bazaar", "work"}, envOf(env), io.Discard, io.Discard) }()
	stopped := false
	shutdown := func() error {
		if stopped {
			return nil
		}
		stopped = true
		stop()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			return errors.New("bazaar work did not stop")
		}
	}
	t.Cleanup(func() { _ = shutdown() })
	// "bazaar relay" publishes what the API commits.
	relay, err := stream.NewRelay(stream.RelayConfig{
		DB: db, Redis: rdb, Names: stream.Names{Prefix: "bazaar:"}, Logger: testLog(), PollInterval: 20 * time.Millisecond,
	})
	require.NoError(t, err)
	require.NoError(t, relay.Start(ctx))
	t.Cleanup(func() { _ = relay.Stop(context.Background()) })

	// The consumer groups start from new events: wait until "bazaar work"
	// created the invoicing group before starting the run.
	require.Eventually(t, func() bool {
		groups, err := rdb.XInfoGroups(ctx, stream.Names{Prefix: "bazaar:"}.ForEvent(workers.EventInvoiceRunStarted, "")).Result()
		if err != nil {
			return false
		}
		for _, g := range groups {
			if g.Name == invoicing.InvoicingGroup {
				return true
			}
		}
		return false
	}, 15*time.Second, 20*time.Millisecond, "bazaar work did not create the invoicing group")

	period, err := invoicing.ParsePeriod("2026-10-15", "2026-10-31")
	require.NoError(t, err)
	var runID uuid.UUID
	require.NoError(t, store.WithTx(ctx, db, func(tx *sqlx.Tx) error {
		run, created, events, err := invoicing.CreateRun(ctx, tx, invoicing.RunRequest{Period: period, Trigger: invoicing.TriggerManual}, time.UTC, time.Now())
		if err != nil {
			return err
		}
		require.True(t, created)
		runID = run.ID
		return store.InsertEvents(ctx, tx, events...)
	}))
	relay.EventsCommitted()

	require.Eventually(t, func() bool {
		run, err := store.GetInvoiceRun(ctx, db, runID)
		return err == nil && run.Status == store.RunCompleted
	}, 20*time.Second, 20*time.Millisecond, "run started through the outbox did not complete")
	invs, _, err := store.ListInvoices(ctx, db, store.InvoiceFilter{RunID: &runID}, store.Page{Limit: 10})
	require.NoError(t, err)
	require.Len(t, invs, 1)
	inv := invs[0]
	require.Equal(t, billing, inv.BillingEmail)
	require.Eventually(t, func() bool { return sink.Count(billing, inv.Number) == 1 }, 20*time.Second, 20*time.Millisecond, "invoice mail")
	m := sink.Mails()[0]
	require.Contains(t, string(m.Raw), `filename="`+workers.InvoicePDFName(inv)+`"`)
	require.Contains(t, string(m.Raw), "Content-Type: application/pdf")

	require.NoError(t, shutdown(), "bazaar work stops cleanly")
}
