package api

import (
	"context"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/workers"
	"github.com/bazaarhq/bazaar/workers/invoicing"
)

// send makes a console request with a bearer token (or none) and extra
// header pairs, not following redirects.
func (b *consoleBundle) send(method, path, token string, form url.Values, headers ...string) answer {
	b.t.Helper()
	req, err := http.NewRequest(method, b.http.URL+path, strings.NewReader(form.Encode()))
	require.NoError(b.t, err)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	cl := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := cl.Do(req)
	require.NoError(b.t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(b.t, err)
	return answer{StatusCode: res.StatusCode, Header: res.Header, cookies: res.Cookies(), Body: string(body)}
}

// deadLettered places n orders whose events the billing group gives up.
func (b *consoleBundle) deadLettered(n int) {
	b.t.Helper()
	p, u := b.product(b.keyA, nil), b.user()
	before := b.deadLetters()
	for range n {
		b.order(p, u, store.OrderPending)
	}
	deadline := time.Now().Add(10 * time.Second)
	for b.deadLetters() < before+int64(n) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	require.EqualValues(b.t, before+int64(n), b.deadLetters())
}

// TestConsoleAccess: without a credential the console sends a browser to
// its login form; the form sets the session for the console and the
// monitor; a cross-origin change is refused.
func TestConsoleAccess(t *testing.T) {
	t.Parallel()
	b := consoleSetup(t)

	res := b.send(http.MethodGet, "/console/groups", "", nil)
	require.Equal(t, http.StatusSeeOther, res.StatusCode)
	require.Equal(t, "/console/login?next=%2Fconsole%2Fgroups", res.Header.Get("Location"))
	require.Equal(t, http.StatusUnauthorized, b.send(http.MethodPost, "/console/groups/billing/pause", "", url.Values{}).StatusCode)
	require.Equal(t, http.StatusOK, b.send(http.MethodGet, "/console/login", "", nil).StatusCode)

	res = b.send(http.MethodPost, "/console/login", "", url.Values{"credential": {"wrong"}, "next": {"/console/tasks"}})
	require.Equal(t, http.StatusUnauthorized, res.StatusCode)
	res = b.send(http.MethodPost, "/console/login", "", url.Values{"credential": {testAdminToken}, "next": {"//evil.example/console"}})
	require.Equal(t, http.StatusSeeOther, res.StatusCode)
	require.Equal(t, "/console", res.Header.Get("Location"), "the redirect stays in the console")
	var cookie string
	for _, c := range res.Cookies() {
		require.Equal(t, sessionCookie, c.Name)
		require.True(t, c.HttpOnly)
		require.Equal(t, http.SameSiteStrictMode, c.SameSite)
		require.Equal(t, "/", c.Path, "one session for the console, the monitor and /v1/admin")
		cookie = c.Name + "=" + c.Value
	}
	require.NotEmpty(t, cookie)
	page := b.send(http.MethodGet, "/console/groups", "", nil, "Cookie", cookie)
	require.Equal(t, http.StatusOK, page.StatusCode)
	require.Contains(t, page.Body, `action="/console/logout"`)

	// Logging out ends the session on the server, not just the cookie.
	res = b.send(http.MethodPost, "/console/logout", "", url.Values{}, "Cookie", cookie)
	require.Equal(t, http.StatusSeeOther, res.StatusCode)
	require.Equal(t, "/console/login", res.Header.Get("Location"))
	require.Equal(t, -1, res.Cookies()[0].MaxAge)
	require.Equal(t, http.StatusSeeOther, b.send(http.MethodGet, "/console/groups", "", nil, "Cookie", cookie).StatusCode)

	// An API key is no console credential.
	require.Equal(t, http.StatusForbidden, b.send(http.MethodGet, "/console/groups", b.keyA, nil).StatusCode)
	require.Equal(t, http.StatusUnauthorized, b.send(http.MethodPost, "/console/login", "", url.Values{"credential": {b.keyA}}).StatusCode)
	// A wrong bearer credential is the API's 401.
	require.Equal(t, http.StatusUnauthorized, b.send(http.MethodGet, "/console/groups", "bzr_op_wrong", nil).StatusCode)

	res = b.send(http.MethodPost, "/console/groups/billing/pause", testAdminToken, url.Values{"reason": {"x"}}, "Sec-Fetch-Site", "cross-site")
	require.Equal(t, http.StatusForbidden, res.StatusCode)
	require.Equal(t, http.StatusNotFound, b.send(http.MethodGet, "/console/nothing", testAdminToken, nil).StatusCode)
	require.Empty(t, b.audited())
}

// TestConsoleRolesAndReasons: a viewer may change nothing, an operator
// everything but a purge; redrive, purge and redrive-all need a reason;
// unknown groups and queues are 404.
func TestConsoleRolesAndReasons(t *testing.T) {
	t.Parallel()
	b := consoleSetup(t)
	b.deadLettered(1)
	viewer, oper, admin := b.as("vic", RoleViewer), b.as("olga", RoleOperator), b.as("ada", RoleAdmin)
	as := func(cookie, path string, form url.Values) answer {
		t.Helper()
		return b.send(http.MethodPost, path, "", form, "Cookie", cookie)
	}
	posts := []string{
		"/console/groups/billing/pause", "/console/groups/billing/resume", "/console/groups/billing/replay",
		"/console/dlq/billing/redrive", "/console/dlq/billing/redrive-all", "/console/dlq/billing/redrive-all/cancel",
		"/console/dlq/billing/purge", "/console/tasks/invoicing/pause", "/console/tasks/invoicing/resume",
		"/console/invoicing/00000000-0000-0000-0000-000000000000/retry-failed", "/console/announcements",
	}
	for _, p := range posts {
		require.Equal(t, http.StatusForbidden, as(viewer, p, url.Values{"reason": {"r"}, "all": {"true"}, "rate": {"5"}}).StatusCode, p)
	}
	require.EqualValues(t, 1, b.deadLetters())
	require.Empty(t, b.audited())

	require.Equal(t, http.StatusForbidden, as(oper, "/console/dlq/billing/purge", url.Values{"all": {"true"}, "reason": {"r"}}).StatusCode, "purge is for admins")
	for _, p := range []string{"/console/dlq/billing/redrive", "/console/dlq/billing/redrive-all"} {
		require.Equal(t, http.StatusBadRequest, as(oper, p, url.Values{"reason": {"  "}, "rate": {"5"}}).StatusCode, p)
	}
	require.Equal(t, http.StatusBadRequest, as(oper, "/console/dlq/billing/redrive", url.Values{"reason": {"r"}}).StatusCode, "nothing selected")
	require.Equal(t, http.StatusBadRequest, as(oper, "/console/dlq/billing/redrive-all", url.Values{"reason": {"r"}, "rate": {"0"}}).StatusCode)
	require.Equal(t, http.StatusNotFound, as(oper, "/console/dlq/nobody/redrive", url.Values{"reason": {"r"}, "id": {"1-0"}}).StatusCode)
	require.Equal(t, http.StatusNotFound, as(oper, "/console/dlq/billing/redrive", url.Values{"reason": {"r"}, "id": {"1-0"}}).StatusCode)
	require.Equal(t, http.StatusNotFound, as(oper, "/console/groups/nobody/pause", url.Values{}).StatusCode)
	require.Equal(t, http.StatusNotFound, as(oper, "/console/tasks/nowhere/pause", url.Values{}).StatusCode)
	require.Equal(t, http.StatusNotFound, as(oper, "/console/invoicing/00000000-0000-0000-0000-000000000000/retry-failed", url.Values{}).StatusCode)
	require.EqualValues(t, 1, b.deadLetters(), "nothing changed")
	require.Empty(t, b.audited())

	res := as(admin, "/console/dlq/billing/purge", url.Values{"all": {"true"}, "reason": {"test data"}})
	require.Equal(t, http.StatusSeeOther, res.StatusCode)
	require.Equal(t, "/console/dlq/billing?done=Purged+1+dead+letter+of+billing.", res.Header.Get("Location"))
	require.Zero(t, b.deadLetters())
	a := b.audited()
	require.Len(t, a, 1)
	require.Equal(t, "dlq.purge group:billing test data ada admin", a[0].action+" "+a[0].target+" "+a[0].reason+" "+a[0].actor+" "+a[0].role)
	require.Equal(t, true, a[0].params["all"])
	require.NotNil(t, a[0].count)
	require.EqualValues(t, 1, *a[0].count)
	require.NotEmpty(t, a[0].requestID)
}

// TestConsoleRepairs: pause and resume a group and a queue, redrive all
// at a rate and cancel it, announce; each is audited.
func TestConsoleRepairs(t *testing.T) {
	t.Parallel()
	b := consoleSetup(t)
	ctx := context.Background()
	paused := func() bool {
		ov, err := b.streams.Inspect(ctx)
		require.NoError(t, err)
		for _, st := range ov.Streams {
			for _, g := range st.Groups {
				if g.Name == "billing" {
					return g.Paused
				}
			}
		}
		t.Fatal("no billing group")
		return false
	}
	oper := b.as("otto", RoleOperator)
	do := func(path string, form url.Values) string {
		t.Helper()
		res := b.send(http.MethodPost, path, "", form, "Cookie", oper)
		require.Equal(t, http.StatusSeeOther, res.StatusCode, path)
		loc, err := url.Parse(res.Header.Get("Location"))
		require.NoError(t, err)
		return loc.Query().Get("done")
	}
	require.Equal(t, "Paused group billing.", do("/console/groups/billing/pause", url.Values{"reason": {"provider outage"}}))
	require.True(t, paused())
	require.Equal(t, "Resumed group billing.", do("/console/groups/billing/resume", url.Values{}))
	require.False(t, paused())

	require.Equal(t, "Paused queue invoicing.", do("/console/tasks/invoicing/pause", url.Values{"reason": {"month end"}}))
	qi, err := b.srv.cfg.Tasks.GetQueueInfo("invoicing")
	require.NoError(t, err)
	require.True(t, qi.Paused)
	require.Equal(t, "Resumed queue invoicing.", do("/console/tasks/invoicing/resume", url.Values{}))
	qi, err = b.srv.cfg.Tasks.GetQueueInfo("invoicing")
	require.NoError(t, err)
	require.False(t, qi.Paused)

	// Three dead letters at one a second: the first moves at once, the
	// cancel lands while the redrive waits for the next.
	b.deadLettered(3)
	b.fixed.Store(true)
	require.Equal(t, "Redriving every dead letter of billing at 1 a second.", do("/console/dlq/billing/redrive-all", url.Values{"reason": {"provider back"}, "rate": {"1"}}))
	require.Equal(t, http.StatusConflict, b.send(http.MethodPost, "/console/dlq/billing/redrive-all", "", url.Values{"reason": {"again"}, "rate": {"1"}}, "Cookie", oper).StatusCode)
	msg := do("/console/dlq/billing/redrive-all/cancel", url.Values{})
	require.Contains(t, msg, "Stopped the redrive of billing after ")
	require.Less(t, b.deadLetters(), int64(4))
	require.Greater(t, b.deadLetters(), int64(0), "cancelled before the end")

	// Replay: the dry run counts the three order.created events, the
	// replay needs a reason and sends them.
	since := time.Now().UTC().Add(-time.Hour).Format("2006-01-02T15:04")
	page := b.send(http.MethodGet, "/console/groups?replay=billing&since="+url.QueryEscape(since), "", nil, "Cookie", oper)
	require.Equal(t, http.StatusOK, page.StatusCode)
	require.Contains(t, page.Body, "<strong>3</strong> events since "+since+" UTC would be sent to billing again.")
	require.Equal(t, http.StatusBadRequest, b.send(http.MethodPost, "/console/groups/billing/replay", "", url.Values{"since": {since}}, "Cookie", oper).StatusCode)
	billed := b.billed.Load()
	require.Equal(t, "Replaying 3 events to billing.", do("/console/groups/billing/replay", url.Values{"since": {since}, "reason": {"rebuild billing"}, "expect": {"3"}}))
	deadline := time.Now().Add(10 * time.Second)
	for b.billed.Load() < billed+3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	require.EqualValues(t, billed+3, b.billed.Load(), "the replayed events were handled")

	require.Equal(t, "Announced.", do("/console/announcements", url.Values{"level": {"warning"}, "message": {"Checkout closes at 02:00"}, "minutes": {"30"}, "reason": {"planned upgrade"}}))
	res := b.send(http.MethodPost, "/console/announcements", "", url.Values{"level": {"loud"}, "message": {"x"}}, "Cookie", oper)
	require.Equal(t, http.StatusBadRequest, res.StatusCode)
	ev, err := store.LatestEventOfType(ctx, b.db, maintenanceType)
	require.NoError(t, err)
	require.Contains(t, string(ev.Data), "Checkout closes at 02:00")

	var actions []string
	for _, a := range b.audited() {
		require.Equal(t, "otto operator", a.actor+" "+a.role, a.action)
		require.NotEmpty(t, a.requestID, a.action)
		target := a.target
		if a.action == ActionAnnouncement {
			require.Equal(t, "announcement:"+ev.ID.String(), a.target, "the announcement's row names its event")
			require.Equal(t, "warning", a.params["level"])
			target = "announcement:ID"
		}
		actions = append(actions, a.action+" "+target+" "+a.reason)
	}
	require.Equal(t, []string{
		"group.pause group:billing provider outage", "group.resume group:billing ",
		"queue.pause queue:invoicing month end", "queue.resume queue:invoicing ",
		"dlq.redrive group:billing provider back", "dlq.redrive.cancel group:billing ",
		"group.replay group:billing rebuild billing",
		"announcement.create announcement:ID planned upgrade",
	}, actions)
}

// TestConsoleRetryFailedInvoicingAccounts: the Invoicing page shows a
// run's failed account with its error, and its retry button does what
// POST /v1/admin/invoicing/runs/{id}/retry-failed does, audited.
func TestConsoleRetryFailedInvoicingAccounts(t *testing.T) {
	t.Parallel()
	b := consoleSetup(t)
	ctx := context.Background()
	runID := b.failedInvoiceRun(t)

	oper := b.as("otto", RoleOperator)
	page := b.send(http.MethodGet, "/console/invoicing", "", nil, "Cookie", oper)
	require.Equal(t, http.StatusOK, page.StatusCode)
	require.Contains(t, page.Body, "1 of 2 accounts done, 0 pending, <span class=\"bad-text\">1 failed</span>")
	require.Contains(t, page.Body, "add up to")
	require.Contains(t, page.Body, "Retry 1 failed")

	res := b.send(http.MethodPost, "/console/invoicing/"+runID.String()+"/retry-failed", "", url.Values{"reason": {"totals fixed"}}, "Cookie", oper)
	require.Equal(t, http.StatusSeeOther, res.StatusCode)
	require.Equal(t, "/console/invoicing?done=Retrying+1+failed+account.", res.Header.Get("Location"))
	evs := b.events(runID)
	require.Equal(t, workers.EventInvoiceRetryRequested, evs[len(evs)-1].Type)
	p, err := store.InvoiceRunProgress(ctx, b.db, runID)
	require.NoError(t, err)
	require.Equal(t, 1, p.Pending)
	a := b.audited()
	require.Len(t, a, 1)
	require.Equal(t, ActionInvoiceRunRetry+" invoice_run:"+runID.String()+" totals fixed otto operator", a[0].action+" "+a[0].target+" "+a[0].reason+" "+a[0].actor+" "+a[0].role)
	require.NotNil(t, a[0].count)
	require.EqualValues(t, 1, *a[0].count)
	require.Equal(t, res.Header.Get(HeaderRequestID), a[0].requestID)
}

// TestConsoleInvoiceSearchAndPDF: the Invoicing page's search runs over
// every invoice, so it finds by number one older than the newest hundred,
// and its row links to the invoice's PDF, the same document GET
// /v1/invoices/{id}/pdf serves, for any signed-in role and nobody else.
func TestConsoleInvoiceSearchAndPDF(t *testing.T) {
	t.Parallel()
	b := consoleSetup(t)
	ctx := context.Background()
	acct, _ := b.corporateOrder("Oldest GmbH", time.Date(2025, 10, 20, 10, 0, 0, 0, time.UTC))
	runID := b.do(http.MethodPost, "/v1/admin/invoicing/runs", b.admin,
		map[string]any{"period_start": "2025-10-15", "period_end": "2025-10-31"}).status(http.StatusCreated).id()
	client := asynq.NewClient(asynq.RedisClientOpt{Addr: "127.0.0.1:1"}) // never dialled: billing does not enqueue
	defer client.Close()
	iv, err := invoicing.New(invoicing.Config{DB: b.db, Client: client})
	require.NoError(t, err)
	_, err = store.AddRunAccounts(ctx, b.db, runID, []uuid.UUID{acct}, uuid.Nil, true)
	require.NoError(t, err)
	payload := mustJSON(t, invoicing.InvoiceAccountPayload{Meta: workers.Meta{Version: workers.PayloadVersion}, RunID: runID, AccountID: acct, Attempt: 1})
	require.NoError(t, iv.HandleAccount(ctx, asynq.NewTask(workers.TypeInvoiceAccount, payload)))
	var old store.Invoice
	invs, _, err := store.ListInvoices(ctx, b.db, store.InvoiceFilter{AccountID: &acct}, store.Page{Limit: 1})
	require.NoError(t, err)
	require.Len(t, invs, 1)
	old = invs[0]
	require.NotEmpty(t, old.Number)
	// 120 newer invoices of another account push it out of the newest 100.
	other, _ := b.corporateOrder("Newer AG", time.Date(2025, 10, 22, 10, 0, 0, 0, time.UTC))
	_, err = b.db.Exec(`INSERT INTO invoices (id, number, run_id, account_id, account_name, billing_email, period_start, period_end,
  timezone, currency, orders_minor, credits_minor, subtotal_minor, tax_rate_bps, tax_minor, total_minor, issued_at, due_on, created_at)
SELECT gen_random_uuid(), 'NEW-' || n, run_id, $2, 'Newer AG', billing_email, period_start - n, period_end - n,
  timezone, currency, 0, 0, 0, 0, 0, 0, issued_at, due_on, created_at + n * interval '1 second'
FROM invoices, generate_series(1, 120) AS n WHERE id = $1`, old.ID, other)
	require.NoError(t, err)

	viewer := b.as("vera", RoleViewer)
	page := b.send(http.MethodGet, "/console/invoicing", "", nil, "Cookie", viewer)
	require.Equal(t, http.StatusOK, page.StatusCode)
	require.NotContains(t, page.Body, old.Number, "the newest page shows only newer invoices")
	require.Contains(t, page.Body, `id="invoices-next"`, "more invoices are a page away")

	q := url.Values{"q": {strings.ToLower(old.Number)}}
	page = b.send(http.MethodGet, "/console/invoicing?"+q.Encode(), "", nil, "Cookie", viewer)
	require.Equal(t, http.StatusOK, page.StatusCode)
	require.Contains(t, page.Body, ">"+old.Number+"<")
	require.Contains(t, page.Body, "Oldest GmbH")
	require.NotContains(t, page.Body, "NEW-")
	link := "/console/invoices/" + old.ID.String() + "/pdf"
	require.Contains(t, page.Body, `href="`+link+`"`)

	page = b.send(http.MethodGet, "/console/invoicing?"+url.Values{"q": {"newer ag"}}.Encode(), "", nil, "Cookie", viewer)
	require.Equal(t, http.StatusOK, page.StatusCode)
	require.Equal(t, 50, strings.Count(page.Body, ">NEW-"), "a page of the account's invoices")
	next := regexp.MustCompile(`href="([^"]+)" id="invoices-next"`).FindStringSubmatch(page.Body)
	require.Len(t, next, 2)
	page = b.send(http.MethodGet, html.UnescapeString(next[1]), "", nil, "Cookie", viewer)
	require.Equal(t, http.StatusOK, page.StatusCode)
	require.Equal(t, 50, strings.Count(page.Body, ">NEW-"), "the next page")
	require.Contains(t, page.Body, `id="invoices-first"`)

	pdf := b.send(http.MethodGet, link, "", nil, "Cookie", viewer)
	require.Equal(t, http.StatusOK, pdf.StatusCode)
	require.Equal(t, "application/pdf", pdf.Header.Get("Content-Type"))
	require.True(t, strings.HasPrefix(pdf.Body, "%PDF-"))
	api := b.send(http.MethodGet, "/v1/invoices/"+old.ID.String()+"/pdf", b.admin, nil)
	require.Equal(t, http.StatusOK, api.StatusCode)
	require.Equal(t, api.Body, pdf.Body, "the same document as the API's")

	anon := b.send(http.MethodGet, link, "", nil)
	require.Contains(t, []int{http.StatusUnauthorized, http.StatusSeeOther, http.StatusFound}, anon.StatusCode)
	require.NotContains(t, anon.Body, "%PDF-")
	missing := b.send(http.MethodGet, "/console/invoices/"+uuid.NewString()+"/pdf", "", nil, "Cookie", viewer)
	require.Equal(t, http.StatusNotFound, missing.StatusCode)
}

// TestConsoleOrderSteps: an order's row on the Orders live page shows its
// saga, created → reserved → paid → confirmed or cancelled with the reason,
// from its stock reservation and payment records and its status.
func TestConsoleOrderSteps(t *testing.T) {
	t.Parallel()
	b := consoleSetup(t)
	p, u := b.product(b.keyA, nil), b.user()
	order := b.order(p, u, store.OrderPending)
	viewer := b.as("vera", RoleViewer)
	steps := func() string {
		t.Helper()
		page := b.send(http.MethodGet, "/console/orders", "", nil, "Cookie", viewer)
		require.Equal(t, http.StatusOK, page.StatusCode)
		row := regexp.MustCompile(`(?s)<tr data-order="` + order.String() + `">.*?</tr>`).FindString(page.Body)
		require.NotEmpty(t, row)
		var out []string
		for _, m := range regexp.MustCompile(`<li class="step step-(\w+)">([^<]*)</li>`).FindAllStringSubmatch(row, -1) {
			out = append(out, html.UnescapeString(m[2])+"="+m[1])
		}
		return strings.Join(out, " ")
	}
	require.Equal(t, "created=done reserved=todo paid=todo confirmed=todo", steps())
	_, err := b.db.Exec(`INSERT INTO inventory_reservations (order_id, status) VALUES ($1, 'reserved')`, order)
	require.NoError(t, err)
	require.Equal(t, "created=done reserved=done paid=todo confirmed=todo", steps())
	_, err = b.db.Exec(`INSERT INTO payments (id, order_id, status, amount_minor, currency, gateway, idempotency_key)
SELECT gen_random_uuid(), id, 'failed', total_minor, currency, 'sandbox', 'pay:' || id FROM orders WHERE id = $1`, order)
	require.NoError(t, err)
	b.do(http.MethodPost, "/v1/orders/"+order.String()+"/cancellation", b.front, map[string]any{"reason": "payment declined"}).status(http.StatusOK)
	require.Equal(t, "created=done reserved=done paid=failed cancelled: payment declined=failed", steps())

	paid := b.order(p, u, store.OrderConfirmed)
	order = paid
	_, err = b.db.Exec(`INSERT INTO inventory_reservations (order_id, status) VALUES ($1, 'reserved')`, order)
	require.NoError(t, err)
	_, err = b.db.Exec(`INSERT INTO payments (id, order_id, status, amount_minor, currency, gateway, idempotency_key)
SELECT gen_random_uuid(), id, 'succeeded', total_minor, currency, 'sandbox', 'pay:' || id FROM orders WHERE id = $1`, order)
	require.NoError(t, err)
	require.Equal(t, "created=done reserved=done paid=done confirmed=done", steps())
}

// TestConsoleOperators: the Operators page lists the operators to every
// role and lets only an admin add one (its credential shown once, and
// working), change its role and revoke it, each with the audit row the
// API writes; a viewer's or an operator's forged POST is 403 and changes
// nothing. The Audit page shows those rows newest first, filtered and a
// page at a time.
func TestConsoleOperators(t *testing.T) {
	t.Parallel()
	b := consoleSetup(t)
	ctx := context.Background()
	viewer, oper, admin := b.as("vic", RoleViewer), b.as("olga", RoleOperator), b.as("ada", RoleAdmin)
	get := func(cookie, path string) answer {
		t.Helper()
		return b.send(http.MethodGet, path, "", nil, "Cookie", cookie, "Accept", "text/html")
	}
	operatorActions := func() []store.AuditEntry {
		t.Helper()
		out := b.auditRows(store.AuditFilter{Actor: "ada"})
		for _, who := range []string{"vic", "olga"} {
			require.Empty(t, b.auditRows(store.AuditFilter{Actor: who}), who)
		}
		return out
	}
	vicID := uuid.Nil
	ops, err := store.ListOperators(ctx, b.db, false)
	require.NoError(t, err)
	for _, o := range ops {
		if o.Name == "vic" {
			vicID = o.ID
		}
	}
	require.NotEqual(t, uuid.Nil, vicID)

	// Everyone reads the list; only an admin gets the controls.
	for _, cookie := range []string{viewer, oper} {
		page := get(cookie, "/console/operators")
		require.Equal(t, http.StatusOK, page.StatusCode)
		for _, name := range []string{"vic", "olga", "ada"} {
			require.Contains(t, page.Body, `data-operator="`+name+`"`)
		}
		require.NotContains(t, page.Body, `method="post" action="/console/operators`)
		require.Contains(t, page.Body, "Only an admin adds, changes or revokes operators.")
	}
	page := get(admin, "/console/operators")
	require.Equal(t, http.StatusOK, page.StatusCode)
	require.Contains(t, page.Body, `id="add-operator"`)
	require.Contains(t, page.Body, `action="/console/operators/`+vicID.String()+`/revoke"`)

	// Forged POSTs of a viewer and an operator change nothing.
	for _, cookie := range []string{viewer, oper} {
		for _, p := range []string{"/console/operators", "/console/operators/" + vicID.String() + "/role", "/console/operators/" + vicID.String() + "/revoke"} {
			res := b.post(p, cookie, url.Values{"name": {"mallory"}, "role": {"admin"}, "reason": {"forged"}})
			require.Equal(t, http.StatusForbidden, res.StatusCode, p)
		}
	}
	vic, err := store.GetOperator(ctx, b.db, vicID)
	require.NoError(t, err)
	require.Equal(t, store.OperatorViewer, vic.Role)
	require.Nil(t, vic.RevokedAt)
	_, err = store.ActiveOperatorByName(ctx, b.db, "mallory")
	require.ErrorIs(t, err, store.ErrNotFound)
	require.Empty(t, operatorActions())

	// Bad input is 400 and a taken name 409, with nothing written.
	require.Equal(t, http.StatusBadRequest, b.post("/console/operators", admin, url.Values{"name": {"nina"}, "role": {"root"}}).StatusCode)
	require.Equal(t, http.StatusBadRequest, b.post("/console/operators", admin, url.Values{"name": {"  "}, "role": {"viewer"}}).StatusCode)
	require.Equal(t, http.StatusConflict, b.post("/console/operators", admin, url.Values{"name": {"vic"}, "role": {"viewer"}}).StatusCode)
	require.Equal(t, http.StatusNotFound, b.post("/console/operators/"+uuid.NewString()+"/role", admin, url.Values{"role": {"viewer"}}).StatusCode)
	require.Empty(t, operatorActions())

	// An admin adds nina: the answer shows her credential, which logs in
	// with her role.
	res := b.post("/console/operators", admin, url.Values{"name": {"nina"}, "role": {"viewer"}, "reason": {"new on call"}})
	require.Equal(t, http.StatusCreated, res.StatusCode, res.Body)
	m := regexp.MustCompile(`id="credential">([^<]+)<`).FindStringSubmatch(res.Body)
	require.Len(t, m, 2, "the credential is shown")
	cred := html.UnescapeString(m[1])
	require.True(t, strings.HasPrefix(cred, store.OperatorTokenPrefix))
	nina := b.loginCookie(cred)
	require.Contains(t, get(nina, "/console").Body, `nina <span class="role role-viewer">viewer</span>`)
	require.NotContains(t, get(admin, "/console/operators").Body, cred, "shown once")
	ninaOp, err := store.ActiveOperatorByName(ctx, b.db, "nina")
	require.NoError(t, err)

	// ...makes her an operator, then revokes her: her session ends.
	res = b.post("/console/operators/"+ninaOp.ID.String()+"/role", admin, url.Values{"role": {"operator"}, "reason": {"trained"}})
	require.Equal(t, http.StatusSeeOther, res.StatusCode, res.Body)
	require.Equal(t, "/console/operators?done=nina+is+now+operator.", res.Header.Get("Location"))
	require.Contains(t, get(nina, "/console").Body, `nina <span class="role role-operator">operator</span>`)
	res = b.post("/console/operators/"+ninaOp.ID.String()+"/revoke", admin, url.Values{"reason": {"left the team"}})
	require.Equal(t, http.StatusSeeOther, res.StatusCode, res.Body)
	require.Equal(t, http.StatusSeeOther, get(nina, "/console").StatusCode, "a revoked operator's session no longer works")
	require.Equal(t, http.StatusUnauthorized, b.send(http.MethodGet, "/console", cred, nil).StatusCode)

	rows := operatorActions()
	var got []string
	for _, e := range rows {
		require.Equal(t, "admin", e.Role)
		require.NotEmpty(t, e.RequestID)
		got = append(got, e.Action+" "+e.Target+" "+e.Reason)
	}
	require.Equal(t, []string{
		"operator.revoke operator:nina left the team",
		"operator.set_role operator:nina trained",
		"operator.create operator:nina new on call",
	}, got, "newest first, as the API writes them")
	require.Contains(t, string(rows[1].Params), `"to": "operator"`)

	// The Audit page, for a viewer too: filtered by actor, one row a page,
	// newest first, following the Older link.
	var seen []string
	next := "/console/audit?actor=ada&limit=1"
	for next != "" && len(seen) < 5 {
		page := get(viewer, next)
		require.Equal(t, http.StatusOK, page.StatusCode, next)
		acts := regexp.MustCompile(`<tr data-action="([^"]+)" data-actor="ada">`).FindAllStringSubmatch(page.Body, -1)
		require.Len(t, acts, 1, next)
		seen = append(seen, acts[0][1])
		next = ""
		if m := regexp.MustCompile(`<a href="([^"]+)" id="audit-next">`).FindStringSubmatch(page.Body); m != nil {
			next = html.UnescapeString(m[1])
		}
	}
	require.Equal(t, []string{ActionOperatorRevoke, ActionOperatorSetRole, ActionOperatorCreate}, seen)
	page = get(viewer, "/console/audit?action=operator.create&target=operator:nina")
	require.Equal(t, http.StatusOK, page.StatusCode)
	require.Contains(t, page.Body, "new on call")
	require.NotContains(t, page.Body, "left the team")
	require.Contains(t, get(viewer, "/console/audit?actor=nobody").Body, "No audit row matches these filters.")
	require.Equal(t, http.StatusBadRequest, get(viewer, "/console/audit?after=garbage").StatusCode)
	require.Equal(t, http.StatusBadRequest, get(viewer, "/console/audit?limit=0").StatusCode)
}

// failedInvoiceRun bills two accounts through the invoicer, one of whose
// order totals no longer add up, so the run ends with one account done and
// one failed; it returns the run's id.
func (b *consoleBundle) failedInvoiceRun(t *testing.T) uuid.UUID {
	t.Helper()
	ctx := context.Background()
	good, _ := b.corporateOrder("Good GmbH", time.Date(2025, 10, 20, 10, 0, 0, 0, time.UTC))
	bad, badOrder := b.corporateOrder("Bad GmbH", time.Date(2025, 10, 21, 10, 0, 0, 0, time.UTC))
	_, err := b.db.Exec(`UPDATE orders SET subtotal_minor = subtotal_minor + 1 WHERE id = $1`, badOrder)
	require.NoError(t, err)
	runID := b.do(http.MethodPost, "/v1/admin/invoicing/runs", b.admin,
		map[string]any{"period_start": "2025-10-15", "period_end": "2025-10-31"}).status(http.StatusCreated).id()
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
	return runID
}
