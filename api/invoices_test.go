package api

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/workers"
	"github.com/bazaarhq/bazaar/workers/invoicing"
)

func init() {
	// Let the response validator read the invoice PDFs openapi.yaml describes.
	openapi3filter.RegisterBodyDecoder(contentTypePDF, openapi3filter.FileBodyDecoder)
}

func (b *testBundle) invoicingRows() [4]int {
	b.t.Helper()
	var n [4]int
	for i, table := range []string{"invoice_runs", "invoice_run_accounts", "invoices", "events"} {
		require.NoError(b.t, b.db.Get(&n[i], `SELECT count(*) FROM `+table))
	}
	return n
}

// corporateOrder places a confirmed order for a new buyer of a new
// corporate account, confirmed at confirmedAt.
func (b *testBundle) corporateOrder(name string, confirmedAt time.Time) (account, order uuid.UUID) {
	b.t.Helper()
	account = uuid.New()
	_, err := b.db.Exec(`INSERT INTO corporate_accounts (id, name, billing_email) VALUES ($1, $2, 'billing@corp.example')`, account, name)
	require.NoError(b.t, err)
	user := b.user()
	_, err = b.db.Exec(`UPDATE users SET corporate_account_id = $1 WHERE id = $2`, account, user)
	require.NoError(b.t, err)
	order = b.order(b.product(b.keyA, nil), user, store.OrderConfirmed)
	_, err = b.db.Exec(`UPDATE orders SET confirmed_at = $1 WHERE id = $2`, confirmedAt, order)
	require.NoError(b.t, err)
	return account, order
}

func TestInvoicingRoutes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	good, _ := b.corporateOrder("Good GmbH", time.Date(2025, 10, 20, 10, 0, 0, 0, time.UTC))
	bad, badOrder := b.corporateOrder("Bad GmbH", time.Date(2025, 10, 21, 10, 0, 0, 0, time.UTC))
	_, err := b.db.Exec(`UPDATE orders SET subtotal_minor = subtotal_minor + 1 WHERE id = $1`, badOrder)
	require.NoError(t, err)

	// Bad input writes nothing.
	before := b.invoicingRows()
	today := time.Now().UTC().Format(store.DateLayout)
	for _, tc := range []struct {
		body   any
		status int
		slug   string
		field  string
	}{
		{map[string]any{"period_start": "15.10.2025", "period_end": "2025-10-31"}, 422, "validation", "period_start"},
		{map[string]any{"period_start": "2025-10-15"}, 422, "validation", "period_end"},
		{map[string]any{"period_start": "2025-10-31", "period_end": "2025-10-15"}, 422, "validation", "period_end"},
		{map[string]any{"period_start": "2025-01-01", "period_end": "2025-12-31"}, 422, "validation", "period_end"},
		{map[string]any{"period_start": today, "period_end": today}, 422, "validation", "period_end"},
		{map[string]any{"period_start": "2025-10-15", "period_end": "2025-10-31", "tax": 1}, 422, "validation", "tax"},
		{"", 400, "malformed-json", ""},
	} {
		p := b.do(http.MethodPost, "/v1/admin/invoicing/runs", b.admin, tc.body).problem(tc.status, tc.slug)
		if tc.field != "" {
			require.Equal(t, tc.field, p["errors"].([]any)[0].(map[string]any)["field"], "%v", tc.body)
		}
	}
	require.Equal(t, before, b.invoicingRows())

	created := b.do(http.MethodPost, "/v1/admin/invoicing/runs", b.admin,
		map[string]any{"period_start": "2025-10-15", "period_end": "2025-10-31"}).status(http.StatusCreated)
	run := created.json()
	runID := created.id()
	require.Equal(t, []any{"2025-10-15", "2025-10-31", "UTC", "manual", "discovering"},
		[]any{run["period_start"], run["period_end"], run["timezone"], run["trigger"], run["status"]})
	evs := b.events(runID)
	require.Len(t, evs, 1)
	require.Equal(t, workers.EventInvoiceRunStarted, evs[0].Type)
	require.NotEmpty(t, evs[0].RequestID)

	again := b.do(http.MethodPost, "/v1/admin/invoicing/runs", b.admin,
		map[string]any{"period_start": "2025-10-15", "period_end": "2025-10-31"}).status(http.StatusOK)
	require.Equal(t, runID, again.id())
	b.do(http.MethodPost, "/v1/admin/invoicing/runs", b.admin,
		map[string]any{"period_start": "2025-10-20", "period_end": "2025-11-05"}).problem(http.StatusConflict, "conflict")
	require.Len(t, b.events(runID), 1)

	list := b.do(http.MethodGet, "/v1/admin/invoicing/runs", b.admin, nil).status(http.StatusOK).json()
	require.Len(t, list["items"], 1)

	// What the workers do on invoicing.run_started, done here in process:
	// discover the accounts and bill each.
	client := asynq.NewClient(asynq.RedisClientOpt{Addr: "127.0.0.1:1"}) // never dialled: billing does not enqueue
	defer client.Close()
	iv, err := invoicing.New(invoicing.Config{DB: b.db, Client: client})
	require.NoError(t, err)
	_, err = store.AddRunAccounts(ctx, b.db, runID, []uuid.UUID{good, bad}, uuid.Nil, true)
	require.NoError(t, err)
	for _, acct := range []uuid.UUID{good, bad} {
		payload := mustJSON(t, invoicing.InvoiceAccountPayload{Meta: workers.Meta{Version: workers.PayloadVersion}, RunID: runID, AccountID: acct, Attempt: 1})
		_ = iv.HandleAccount(ctx, asynq.NewTask(workers.TypeInvoiceAccount, payload))
	}

	got := b.do(http.MethodGet, "/v1/admin/invoicing/runs/"+runID.String(), b.admin, nil).status(http.StatusOK).json()
	require.Equal(t, "completed", got["status"])
	require.Equal(t, map[string]any{"accounts": 2.0, "pending": 0.0, "done": 1.0, "failed": 1.0, "invoices": 1.0, "percent": 100.0}, got["progress"])
	failures := got["failed_accounts"].([]any)
	require.Len(t, failures, 1)
	require.Equal(t, bad.String(), failures[0].(map[string]any)["account_id"])
	require.Contains(t, failures[0].(map[string]any)["error"], "add up to")

	retried := b.do(http.MethodPost, "/v1/admin/invoicing/runs/"+runID.String()+"/retry-failed", b.admin, nil).status(http.StatusOK).json()
	require.EqualValues(t, 1, retried["retried"])
	require.Equal(t, "running", retried["run"].(map[string]any)["status"])
	evs = b.events(runID)
	require.Equal(t, workers.EventInvoiceRetryRequested, evs[len(evs)-1].Type)
	retried = b.do(http.MethodPost, "/v1/admin/invoicing/runs/"+runID.String()+"/retry-failed", b.admin, nil).status(http.StatusOK).json()
	require.EqualValues(t, 0, retried["retried"])
	b.do(http.MethodPost, "/v1/admin/invoicing/runs/"+uuid.NewString()+"/retry-failed", b.admin, nil).problem(http.StatusNotFound, "not-found")
	b.do(http.MethodGet, "/v1/admin/invoicing/runs/nope", b.admin, nil).problem(http.StatusBadRequest, "invalid-parameter")

	// Invoices.
	invs := b.do(http.MethodGet, "/v1/invoices", b.admin, nil).status(http.StatusOK).json()["items"].([]any)
	require.Len(t, invs, 1)
	inv := invs[0].(map[string]any)
	invID := inv["id"].(string)
	require.Equal(t, good.String(), inv["account_id"])
	require.Equal(t, "2025-10-31", inv["period_end"])
	require.Regexp(t, `^INV-\d{4}-000001$`, inv["number"])
	for query, n := range map[string]int{
		"account_id=" + good.String(): 1, "account_id=" + bad.String(): 0, "currency=EUR": 1, "currency=USD": 0,
		"period_start=2025-10-15": 1, "period_start=2025-11-01": 0, "run_id=" + runID.String(): 1, "limit=1": 1,
	} {
		items := b.do(http.MethodGet, "/v1/invoices?"+query, b.admin, nil).status(http.StatusOK).json()["items"]
		require.Len(t, items, n, query)
	}
	for _, query := range []string{"account_id=x", "period_start=2025-13-01", "currency=eur", "limit=0", "cursor=zz"} {
		b.do(http.MethodGet, "/v1/invoices?"+query, b.admin, nil).problem(http.StatusBadRequest, "invalid-parameter")
	}
	one := b.do(http.MethodGet, "/v1/invoices/"+invID, b.admin, nil).status(http.StatusOK).json()
	require.Len(t, one["lines"], 1)
	require.Equal(t, "/v1/invoices/"+invID+"/pdf", one["pdf"])
	require.Equal(t, one["total_minor"], inv["total_minor"])

	pdf := b.do(http.MethodGet, "/v1/invoices/"+invID+"/pdf", b.admin, nil).status(http.StatusOK)
	require.Equal(t, contentTypePDF, pdf.header.Get("Content-Type"))
	require.Equal(t, `inline; filename="`+inv["number"].(string)+`.pdf"`, pdf.header.Get("Content-Disposition"))
	require.True(t, bytes.HasPrefix(pdf.body, []byte("%PDF-")))
	negotiated := b.do(http.MethodGet, "/v1/invoices/"+invID, b.admin, nil, "Accept", "application/pdf").status(http.StatusOK)
	require.Equal(t, contentTypePDF, negotiated.header.Get("Content-Type"))
	require.Equal(t, pdf.body, negotiated.body)
	b.do(http.MethodGet, "/v1/invoices/"+uuid.NewString(), b.admin, nil).problem(http.StatusNotFound, "not-found")
	b.do(http.MethodGet, "/v1/invoices/"+uuid.NewString()+"/pdf", b.admin, nil).problem(http.StatusNotFound, "not-found")
}

func TestSchedulesRoute(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	empty := b.do(http.MethodGet, "/v1/admin/schedules", b.admin, nil).status(http.StatusOK).json()
	require.Empty(t, empty["items"])

	next := time.Date(2026, 11, 15, 1, 0, 0, 0, time.UTC)
	require.NoError(t, store.UpsertSchedule(ctx, b.db, "invoicing", "0 2 1,15 * *", "Europe/Berlin", &next, "host-1"))
	list := b.do(http.MethodGet, "/v1/admin/schedules", b.admin, nil).status(http.StatusOK).json()["items"].([]any)
	require.Len(t, list, 1)
	require.Nil(t, list[0].(map[string]any)["last_run"])

	_, ok, err := store.InsertFiring(ctx, b.db, store.Firing{
		Schedule: "invoicing", Period: "2026-10-15", DueAt: time.Date(2026, 11, 1, 1, 0, 0, 0, time.UTC),
		TaskID: "invoice:run:2026-10-15", FiredBy: "host-1",
	})
	require.NoError(t, err)
	require.True(t, ok)
	sc := b.do(http.MethodGet, "/v1/admin/schedules", b.admin, nil).status(http.StatusOK).json()["items"].([]any)[0].(map[string]any)
	require.Equal(t, "2026-11-15T01:00:00Z", sc["next_run_at"])
	require.Equal(t, "Europe/Berlin", sc["timezone"])
	last := sc["last_run"].(map[string]any)
	require.Equal(t, "2026-10-15", last["period"])
	require.Equal(t, "invoice:run:2026-10-15", last["task_id"])
	require.Equal(t, "2026-11-01T01:00:00Z", last["due_at"])
}

// Only the admin reaches invoicing; other keys get 403, none 401, and
// nothing changes.
func TestInvoicingRoutesAreAdminOnly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := uuid.NewString()
	routes := []struct{ method, path string }{
		{http.MethodGet, "/v1/admin/schedules"},
		{http.MethodPost, "/v1/admin/invoicing/runs"},
		{http.MethodGet, "/v1/admin/invoicing/runs"},
		{http.MethodGet, "/v1/admin/invoicing/runs/" + id},
		{http.MethodPost, "/v1/admin/invoicing/runs/" + id + "/retry-failed"},
		{http.MethodGet, "/v1/invoices"},
		{http.MethodGet, "/v1/invoices/" + id},
		{http.MethodGet, "/v1/invoices/" + id + "/pdf"},
	}
	before := b.invoicingRows()
	for _, r := range routes {
		var body any
		if r.method == http.MethodPost {
			body = map[string]any{"period_start": "2025-10-15", "period_end": "2025-10-31"}
		}
		b.do(r.method, r.path, "", body).problem(http.StatusUnauthorized, "unauthorized")
		for _, token := range []string{b.front, b.keyA, b.printerA} {
			b.do(r.method, r.path, token, body).problem(http.StatusForbidden, "forbidden")
		}
	}
	require.Equal(t, before, b.invoicingRows())
}
