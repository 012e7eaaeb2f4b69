package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream"
	"github.com/bazaarhq/bazaar/stream/redistest"
)

// auditRow is one console action as GET /v1/admin/audit shows it.
type auditRow struct {
	action, target, reason string
	params                 map[string]any
	actor, role, requestID string
	count                  *float64
}

// consoleActions are the audit actions the console writes; audited
// leaves out the API calls a test makes to set itself up.
var consoleActions = map[string]bool{
	"group.pause": true, "group.resume": true, "group.replay": true,
	"dlq.redrive": true, "dlq.redrive.cancel": true, "dlq.purge": true,
	"queue.pause": true, "queue.resume": true,
	ActionAnnouncement: true, ActionInvoiceRunRetry: true,
}

// consoleBundle is a real API server (PostgreSQL, its own Redis database,
// relay, hub, a consumer group whose handler fails until fixed, asynq
// queues) with the console, served over HTTP.
type consoleBundle struct {
	*testBundle
	http    *httptest.Server
	rdb     *redis.Client
	names   stream.Names
	streams *stream.Admin
	fixed   atomic.Bool
	billed  atomic.Int64
}

// audited returns the console's audit rows, oldest first, read from GET
// /v1/admin/audit.
func (b *consoleBundle) audited() []auditRow {
	b.t.Helper()
	var out []auditRow
	for _, it := range b.do(http.MethodGet, "/v1/admin/audit?limit=100", b.admin, nil).status(http.StatusOK).json()["items"].([]any) {
		m := it.(map[string]any)
		if !consoleActions[m["action"].(string)] {
			continue
		}
		r := auditRow{
			action: m["action"].(string), target: m["target"].(string), reason: m["reason"].(string),
			actor: m["actor"].(string), role: m["role"].(string), requestID: m["request_id"].(string),
		}
		r.params, _ = m["params"].(map[string]any)
		if n, ok := m["count"].(float64); ok {
			r.count = &n
		}
		out = append([]auditRow{r}, out...)
	}
	return out
}

// as adds an operator of role through the API, logs it in at the
// console's form and returns its session cookie ("name=value").
func (b *consoleBundle) as(name string, role Role) string {
	b.t.Helper()
	_, tok := b.operator(name, role)
	return b.loginCookie(tok)
}

// loginCookie logs in with a credential at /console/login and returns the
// session cookie.
func (b *consoleBundle) loginCookie(credential string) string {
	b.t.Helper()
	res := b.post("/console/login", "", url.Values{"credential": {credential}})
	require.Equal(b.t, http.StatusSeeOther, res.StatusCode, res.Body)
	for _, c := range res.Cookies() {
		if c.Name == sessionCookie {
			return c.Name + "=" + c.Value
		}
	}
	b.t.Fatal("no console session cookie")
	return ""
}

func consoleSetup(t *testing.T) *consoleBundle {
	t.Helper()
	db, _ := storetest.NewDB(t)
	opt := redistest.DB(t)
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	names := stream.Names{Prefix: redistest.Prefix(t)}
	b := &consoleBundle{rdb: rdb, names: names}
	relay, err := stream.NewRelay(stream.RelayConfig{DB: db, Redis: rdb, Names: names, PollInterval: 20 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, relay.Start(context.Background()))
	t.Cleanup(func() { require.NoError(t, relay.Stop(context.Background())) })
	groups, err := stream.NewGroups(stream.GroupsConfig{Redis: rdb, DB: db, Names: names, Consumer: "c1", Block: 50 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, groups.Add(stream.Subscription{
		Group: "billing", Patterns: []string{"order.created"}, MaxDeliveries: 1, VisibilityTimeout: 100 * time.Millisecond,
		Handler: func(context.Context, stream.Message) error {
			if !b.fixed.Load() {
				return errors.New("billing provider unreachable")
			}
			b.billed.Add(1)
			return nil
		},
	}))
	require.NoError(t, groups.Start(context.Background()))
	t.Cleanup(func() { require.NoError(t, groups.Stop(context.Background())) })
	b.streams, err = stream.NewAdmin(stream.AdminConfig{Redis: rdb, DB: db, Names: names})
	require.NoError(t, err)
	// The hub reads on a client of its own, as each API process has.
	hubRedis := redis.NewClient(opt)
	t.Cleanup(func() { _ = hubRedis.Close() })
	hub, err := stream.NewHub(stream.HubConfig{Redis: hubRedis, DB: db, Names: names, Block: 100 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, hub.Start(context.Background()))
	t.Cleanup(func() { require.NoError(t, hub.Stop(context.Background())) })
	insp := asynq.NewInspectorFromRedisClient(rdb)
	cl := asynq.NewClientFromRedisClient(rdb)
	_, err = cl.Enqueue(asynq.NewTask("invoice:account", []byte(`{}`)), asynq.Queue("invoicing"), asynq.ProcessIn(time.Hour))
	require.NoError(t, err)
	srv, err := New(Config{
		DB: db, AdminToken: testAdminToken, MaxBodyBytes: 64 << 10, Observer: relay, Hub: hub, Streams: b.streams, Tasks: insp,
	})
	require.NoError(t, err)
	b.testBundle = &testBundle{t: t, srv: srv, db: db, admin: testAdminToken, observed: &observer{}}
	b.front = b.key(b.admin, "/v1/storefront-keys")
	b.sellerA = b.seller("Lisbon Ceramics")
	b.keyA = b.key(b.admin, "/v1/sellers/"+b.sellerA.String()+"/keys")
	b.http = httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		_ = hub.Stop(context.Background())
		b.http.Close()
		require.NoError(t, srv.Stop(context.Background()))
	})
	return b
}

// post sends a console form as a same-origin browser would not need to:
// a plain client with no Origin or Sec-Fetch-Site header.
func (b *consoleBundle) post(path, cookie string, form url.Values) answer {
	b.t.Helper()
	var headers []string
	if cookie != "" {
		headers = []string{"Cookie", cookie}
	}
	return b.send(http.MethodPost, path, "", form, headers...)
}

// answer is a console response, its body read and closed.
type answer struct {
	StatusCode int
	Header     http.Header
	cookies    []*http.Cookie
	Body       string
}

// Cookies returns the cookies the answer sets.
func (a answer) Cookies() []*http.Cookie { return a.cookies }

func (b *consoleBundle) deadLetters() int64 {
	b.t.Helper()
	n, err := b.rdb.XLen(context.Background(), b.names.DLQ("billing")).Result()
	require.NoError(b.t, err)
	return n
}

// layoutProblems lists what overflows at the current width: the document
// and every key element must not scroll sideways, and no text may be cut.
const layoutProblems = `(() => {
  const out = [];
  const d = document.documentElement;
  if (d.scrollWidth > d.clientWidth) out.push("document " + d.scrollWidth + ">" + d.clientWidth);
  document.querySelectorAll("header, nav, main, h1, h2, table, tr, td, th, .tile, .card, form, p, li, .alerts li").forEach(el => {
    if (el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX !== "visible") out.push(el.tagName + "." + el.className + " scrolls");
    const r = el.getBoundingClientRect();
    if (r.right > d.clientWidth + 1) out.push(el.tagName + "." + el.className + " ends at " + Math.round(r.right) + " past " + d.clientWidth);
  });
  return out;
})()`

// TestConsoleInABrowser drives the console in headless Chromium on a real
// server: log in as an operator, watch the overview update live as an
// event is dead-lettered, redrive it with a reason from the Dead letters
// page (its audit row names the operator and the reason; the event is
// handled, the Audit page shows it), retry a failed invoicing run's account
// from the Invoicing page (also on the Audit page), check the layout at
// 1280 and 390 px on every page, then log
// out, log in as a viewer and see no mutating control while a forged POST
// gets 403; then log in as an admin, add an operator on the Operators
// page and find that action on the Audit page.
func TestConsoleInABrowser(t *testing.T) {
	const chromium = "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("CI must run the browser tests: install Chromium at /usr/bin/chromium (.ci/run does)")
		}
		t.Skip("needs Chromium at /usr/bin/chromium (apt-get install chromium)")
	}
	b := consoleSetup(t)
	product := b.product(b.keyA, nil)
	buyer := b.user()

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU, chromedp.WindowSize(1280, 900))...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	// The first run starts the browser and ties it to its context.
	require.NoError(t, chromedp.Do(bctx))
	run := func(timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, timeout)
		defer cancel()
		require.NoError(t, chromedp.Do(ctx, steps...))
	}
	text := func(sel string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 5*time.Second)
		defer cancel()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		require.NoError(t, err, sel)
		return strings.TrimSpace(s)
	}
	eval := func(expr string) any {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 5*time.Second)
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[any](expr))
		require.NoError(t, err, expr)
		return v
	}
	count := func(sel string) int {
		t.Helper()
		return int(eval(fmt.Sprintf(`document.querySelectorAll(%q).length`, sel)).(float64))
	}

	// Log in as an operator: the console sends a visitor without a
	// session to the form.
	_, otto := b.operator("otto", RoleOperator)
	_, vera := b.operator("vera", RoleViewer)
	_, ada := b.operator("ada", RoleAdmin)
	run(20*time.Second,
		chromedp.Navigate(b.http.URL+"/console/dlq"),
		chromedp.WaitVisible(chromedp.CSS(`#credential`)),
		chromedp.SendKeys(chromedp.CSS(`#credential`), otto),
		chromedp.Click(chromedp.CSS(`#login`)),
		chromedp.WaitVisible(`//h1[text()="Dead letters"]`),
	)
	require.Contains(t, text(`#who`), "otto operator")

	// The overview goes live, and shows the dead letter once the failing
	// group gives the new order's event up, without a reload.
	run(10*time.Second,
		chromedp.Navigate(b.http.URL+"/console"),
		chromedp.WaitVisible(`//span[@id="live" and text()="live"]`),
	)
	stream0 := b.names.Stream("order", 0)
	dlqCell := fmt.Sprintf(`[data-k="g/billing/%s/dlq"]`, stream0)
	require.Equal(t, "0", text(dlqCell))
	order := b.order(product, buyer, store.OrderPending)
	run(15*time.Second, chromedp.WaitVisible(fmt.Sprintf(`//a[@data-k="g/billing/%s/dlq" and text()="1"]`, stream0)))
	run(10*time.Second, chromedp.WaitVisible(`//ul[@id="alerts"]/li[contains(., "BazaarDLQNotEmpty")]`))
	require.Contains(t, text(`#alerts`), "billing")
	run(10*time.Second, chromedp.WaitVisible(`//ul[@id="biz-orders"]/li[contains(., "created: ") and contains(., "(1)")]`))
	require.Contains(t, text(`#biz-sellers`), "Lisbon Ceramics: 1")

	// Screenshots and layout at both widths, on every page.
	shots := os.Getenv("BAZAAR_SCREENSHOTS")
	pages := []string{"/console", "/console/groups", "/console/dlq/billing", "/console/tasks", "/console/invoicing", "/console/orders", "/console/printers", "/console/announcements", "/console/sellers", "/console/audit", "/console/operators"}
	layout := func(suffix string, pages ...string) {
		t.Helper()
		for _, w := range []int64{1280, 390} {
			for _, p := range pages {
				run(15*time.Second,
					chromedp.EmulateViewport(w, 900),
					chromedp.Navigate(b.http.URL+p),
					chromedp.WaitVisible(chromedp.CSS(`h1`)),
				)
				require.Empty(t, eval(layoutProblems), "%s at %d px%s", p, w, suffix)
				ctx, cancel := context.WithTimeout(bctx, 10*time.Second)
				png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
				cancel()
				require.NoError(t, err)
				if shots != "" {
					name := strings.ReplaceAll(strings.Trim(p, "/"), "/", "-")
					require.NoError(t, os.WriteFile(filepath.Join(shots, fmt.Sprintf("%s%s-%d.png", name, suffix, w)), png, 0o644))
				}
			}
		}
	}
	layout("", pages...)
	run(5*time.Second, chromedp.EmulateViewport(1280, 900))

	// Orders live: one row per order with the seller's name and amount.
	run(10*time.Second, chromedp.Navigate(b.http.URL+"/console/orders"), chromedp.WaitVisible(`//span[@id="live" and text()="live"]`))
	row := text(`tr[data-order="` + order.String() + `"]`)
	require.Contains(t, row, "Lisbon Ceramics")
	require.Contains(t, row, "EUR 25.00")
	require.Contains(t, row, "Buyer")
	require.Contains(t, row, "pending")
	second := b.order(product, buyer, store.OrderPending)
	run(10*time.Second, chromedp.WaitVisible(chromedp.CSS(`tr[data-order="`+second.String()+`"]`)))
	// The row moves to its new state, with the reason, in place.
	b.do(http.MethodPost, "/v1/orders/"+second.String()+"/cancellation", b.front, map[string]any{"reason": "changed mind"}).status(http.StatusOK)
	run(10*time.Second, chromedp.WaitVisible(`//tr[@data-order="`+second.String()+`"]//span[contains(@class, "st-cancelled") and text()="cancelled"]`))
	require.Contains(t, text(`tr[data-order="`+second.String()+`"]`), "(changed mind)")
	// The live row carries its saga steps, ending in the cancellation.
	run(10*time.Second, chromedp.WaitVisible(`//tr[@data-order="`+second.String()+`"]//li[contains(@class, "step-failed") and text()="cancelled: changed mind"]`))
	run(5*time.Second, chromedp.WaitVisible(`//tr[@data-order="`+second.String()+`"]//li[contains(@class, "step-done") and text()="created"]`))
	require.Equal(t, 1, count(`tr[data-order="`+second.String()+`"]`), "one row per order")

	// Redrive the dead letter with a reason, once the cause is fixed.
	run(15*time.Second,
		chromedp.EmulateViewport(1280, 900),
		chromedp.Navigate(b.http.URL+"/console/dlq/billing"),
		chromedp.WaitVisible(chromedp.CSS(`#dead-letters`)),
	)
	eventuallyDead := time.Now().Add(10 * time.Second)
	for b.deadLetters() < 2 && time.Now().Before(eventuallyDead) {
		time.Sleep(50 * time.Millisecond)
	}
	require.EqualValues(t, 2, b.deadLetters(), "both orders' events dead-lettered")
	run(10*time.Second, chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`#dead-letters`)))
	require.Equal(t, 2, count(`#dead-letters tbody tr[data-id]`))
	require.Contains(t, text(`#dead-letters`), "billing provider unreachable")
	require.Contains(t, text(`#dead-letters`), "order.created · EUR 25.00 · pending")
	b.fixed.Store(true)
	run(15*time.Second,
		chromedp.Click(chromedp.CSS(`#dead-letters tbody tr[data-id] input[type=checkbox]`)),
		chromedp.SendKeys(chromedp.CSS(`#redrive-reason`), "billing provider back"),
		chromedp.Click(chromedp.CSS(`#redrive-selected`)),
		chromedp.WaitVisible(chromedp.CSS(`#flash`)),
	)
	require.Equal(t, "Redrove 1 dead letter of billing.", text(`#flash`))
	require.EqualValues(t, 1, b.deadLetters())
	audits := b.audited()
	require.Len(t, audits, 1)
	require.Equal(t, "dlq.redrive", audits[0].action)
	require.Equal(t, "group:billing", audits[0].target)
	require.Equal(t, "billing provider back", audits[0].reason)
	require.EqualValues(t, 1, audits[0].params["redriven"])
	require.Equal(t, "otto", audits[0].actor)
	require.Equal(t, "operator", audits[0].role)
	require.NotEmpty(t, audits[0].requestID)
	deadline := time.Now().Add(10 * time.Second)
	for b.billed.Load() < 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	require.EqualValues(t, 1, b.billed.Load(), "the redriven event was handled")

	// The Audit page shows that redrive: who did it, to what, and why.
	run(15*time.Second,
		chromedp.Navigate(b.http.URL+"/console/audit"),
		chromedp.WaitVisible(`//table[@id="audit"]//tr[@data-action="dlq.redrive" and @data-actor="otto"]`),
	)
	require.Equal(t, 1, count(`#audit tbody tr[data-action="dlq.redrive"]`), "one row for the one redrive")
	redrive := text(`#audit tbody tr[data-action="dlq.redrive"]`)
	for _, want := range []string{"otto", "operator", "group:billing", "billing provider back", "ok"} {
		require.Contains(t, redrive, want)
	}

	// A failed invoicing run: the operator retries its failed account from
	// the Invoicing page with a reason, and the Audit page shows it.
	runID := b.failedInvoiceRun(t)
	run(20*time.Second,
		chromedp.Navigate(b.http.URL+"/console/invoicing"),
		chromedp.WaitVisible(chromedp.CSS(`#rf-`+runID.String())),
		chromedp.SendKeys(chromedp.CSS(`#rf-`+runID.String()), "totals fixed"),
		chromedp.Click(chromedp.CSS(`form[action="/console/invoicing/`+runID.String()+`/retry-failed"] button.retry-failed`)),
		chromedp.WaitVisible(`//p[@id="flash" and contains(., "Retrying 1 failed account.")]`),
	)
	p, err := store.InvoiceRunProgress(context.Background(), b.db, runID)
	require.NoError(t, err)
	require.Equal(t, 1, p.Pending, "the failed account waits to be billed again")
	run(15*time.Second,
		chromedp.Navigate(b.http.URL+"/console/audit"),
		chromedp.WaitVisible(`//table[@id="audit"]//tr[@data-action="invoicing.run.retry_failed" and @data-actor="otto"]`),
	)
	retry := text(`#audit tbody tr[data-action="invoicing.run.retry_failed"]`)
	for _, want := range []string{"otto", "operator", "invoice_run:" + runID.String(), "totals fixed"} {
		require.Contains(t, retry, want)
	}

	// A redrive without a reason is refused and changes nothing.
	res := b.post("/console/dlq/billing/redrive", b.loginCookie(otto), url.Values{"id": {"0-1"}})
	require.Equal(t, http.StatusBadRequest, res.StatusCode)

	// Log out, log in as a viewer: every page without a mutating control
	// (the logout button aside), and a forged POST refused.
	run(20*time.Second,
		chromedp.Click(chromedp.CSS(`#logout`)),
		chromedp.WaitVisible(chromedp.CSS(`#credential`)),
		chromedp.SendKeys(chromedp.CSS(`#credential`), vera),
		chromedp.Click(chromedp.CSS(`#login`)),
		chromedp.WaitVisible(`//h1[text()="Overview"]`),
	)
	for _, p := range pages {
		run(10*time.Second, chromedp.Navigate(b.http.URL+p), chromedp.WaitVisible(chromedp.CSS(`h1`)))
		require.Zero(t, count(`form.mutate, form[method=post]:not(.logout), input[type=checkbox]`), "%s shows a viewer a control that changes something", p)
	}
	require.Contains(t, text(`#who`), "vera viewer")
	viewer := b.loginCookie(vera)
	res = b.post("/console/dlq/billing/redrive", viewer, url.Values{"id": {"0-1"}, "reason": {"forged"}})
	require.Equal(t, http.StatusForbidden, res.StatusCode)
	res = b.post("/console/dlq/billing/purge", viewer, url.Values{"all": {"true"}, "reason": {"forged"}})
	require.Equal(t, http.StatusForbidden, res.StatusCode)
	res = b.post("/console/groups/billing/pause", viewer, url.Values{"reason": {"forged"}})
	require.Equal(t, http.StatusForbidden, res.StatusCode)
	require.EqualValues(t, 1, b.deadLetters(), "nothing changed")
	require.Len(t, b.audited(), 2, "nothing audited beyond the redrive and the retry")
	require.Equal(t, http.StatusForbidden, b.post("/console/operators", viewer, url.Values{"name": {"mallory"}, "role": {"admin"}}).StatusCode)

	// Log in as an admin operator: add an operator on the Operators page,
	// see its credential once and its row, then its action on the Audit
	// page; the admin's controls fit at both widths too.
	run(20*time.Second,
		chromedp.EmulateViewport(1280, 900),
		chromedp.Navigate(b.http.URL+"/console"),
		chromedp.Click(chromedp.CSS(`#logout`)),
		chromedp.WaitVisible(chromedp.CSS(`#credential`)),
		chromedp.SendKeys(chromedp.CSS(`#credential`), ada),
		chromedp.Click(chromedp.CSS(`#login`)),
		chromedp.WaitVisible(`//h1[text()="Overview"]`),
	)
	require.Contains(t, text(`#who`), "ada admin")
	run(20*time.Second,
		chromedp.Navigate(b.http.URL+"/console/operators"),
		chromedp.WaitVisible(chromedp.CSS(`#add-operator`)),
		chromedp.SendKeys(chromedp.CSS(`#op-name`), "nina"),
		chromedp.SetValue(chromedp.CSS(`#op-role`), "operator"),
		chromedp.SendKeys(chromedp.CSS(`#op-reason`), "joins the on-call rota"),
		chromedp.Click(chromedp.CSS(`#add`)),
		chromedp.WaitVisible(chromedp.CSS(`#created`)),
	)
	cred := text(`code#credential`)
	require.True(t, strings.HasPrefix(cred, store.OperatorTokenPrefix), cred)
	require.Contains(t, text(`tr[data-operator="nina"]`), "operator")
	require.Contains(t, text(`tr[data-operator="nina"]`), "active")
	require.Equal(t, "nina", text(`#created strong`))
	layout("-admin", "/console/operators", "/console/audit")
	run(5*time.Second, chromedp.EmulateViewport(1280, 900))
	run(10*time.Second,
		chromedp.Navigate(b.http.URL+"/console/operators"),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-operator="nina"]`)),
	)
	require.Zero(t, count(`#created`), "the credential is shown once")
	run(10*time.Second,
		chromedp.Navigate(b.http.URL+"/console/audit"),
		chromedp.WaitVisible(chromedp.CSS(`#audit`)),
	)
	require.Greater(t, count(`#audit tbody tr[data-action="operator.create"]`), 1, "unfiltered: the setup's operators too")
	run(10*time.Second,
		chromedp.SendKeys(chromedp.CSS(`#f-actor`), "ada"),
		chromedp.SendKeys(chromedp.CSS(`#f-action`), ActionOperatorCreate),
		chromedp.Click(chromedp.CSS(`#audit-filter button[type=submit]`)),
		// The Clear link shows once the filtered page has loaded.
		chromedp.WaitVisible(chromedp.CSS(`#audit-filter a[href="/console/audit"]`)),
	)
	require.Equal(t, 1, count(`#audit tbody tr[data-action]`), "only ada's operator.create matches")
	row = text(`#audit tr[data-actor="ada"]`)
	for _, want := range []string{ActionOperatorCreate, "operator:nina", "joins the on-call rota", "admin", "ok"} {
		require.Contains(t, row, want)
	}
	// The credential works: nina logs in with her role.
	require.Contains(t, b.send(http.MethodGet, "/console", "", nil, "Cookie", b.loginCookie(cred)).Body, `nina <span class="role role-operator">operator</span>`)
}
