package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
)

// TestConsolePausesASellerInABrowser drives the Sellers page in headless
// Chromium: an operator pauses a seller with a reason, the page shows the
// pause applied and, once the consumer group has parked it, the seller's
// new order's event held in that group; resuming it with a reason lets the
// group handle the event; both actions are in the audit log as the
// operator's, and a viewer can do neither. The page is reloaded until it
// shows each state (with a deadline): the groups copy a pause from
// PostgreSQL about once a second, and park an event when they read it.
func TestConsolePausesASellerInABrowser(t *testing.T) {
	const chromium = "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("CI must run the browser tests: install Chromium at /usr/bin/chromium (.ci/run does)")
		}
		t.Skip("needs Chromium at /usr/bin/chromium (apt-get install chromium)")
	}
	b := consoleSetup(t)
	b.fixed.Store(true)
	product := b.product(b.keyA, nil)
	buyer := b.user()

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU, chromedp.WindowSize(1280, 900))...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	require.NoError(t, chromedp.Do(bctx))
	run := func(timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, timeout)
		defer cancel()
		require.NoError(t, chromedp.Do(ctx, steps...))
	}
	eval := func(expr string) any {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 5*time.Second)
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[any](expr))
		require.NoError(t, err, expr)
		return v
	}
	text := func(sel string) string {
		t.Helper()
		return strings.TrimSpace(eval(fmt.Sprintf(`(document.querySelector(%q) || {innerText: ""}).innerText`, sel)).(string))
	}
	// reloadUntil reloads the Sellers page until sel shows, failing after
	// within.
	reloadUntil := func(within time.Duration, sel, what string) {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			run(10*time.Second, chromedp.Navigate(b.http.URL+"/console/sellers"), chromedp.WaitVisible(chromedp.CSS(`h1`)))
			if eval(fmt.Sprintf(`document.querySelector(%q) !== null`, sel)).(bool) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the Sellers page did not show %s within %s", what, within)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	_, otto := b.operator("otto", RoleOperator)
	_, vera := b.operator("vera", RoleViewer)
	run(20*time.Second,
		chromedp.Navigate(b.http.URL+"/console/sellers"),
		chromedp.WaitVisible(chromedp.CSS(`#credential`)),
		chromedp.SendKeys(chromedp.CSS(`#credential`), otto),
		chromedp.Click(chromedp.CSS(`#login`)),
		chromedp.WaitVisible(`//h1[text()="Sellers"]`),
		chromedp.WaitVisible(chromedp.CSS(`#no-paused`)),
	)

	// Pause Lisbon Ceramics with a reason.
	seller := b.sellerA.String()
	row := `tr[data-seller="Lisbon Ceramics"]`
	run(15*time.Second,
		chromedp.SetValue(chromedp.CSS(`#ps-seller`), seller),
		chromedp.SendKeys(chromedp.CSS(`#ps-reason`), "chargeback review"),
		chromedp.Click(chromedp.CSS(`#pause`)),
		chromedp.WaitVisible(chromedp.CSS(`#flash`)),
	)
	require.Contains(t, text(`#flash`), "Paused Lisbon Ceramics")
	require.Contains(t, text(row), "chargeback review")
	reloadUntil(20*time.Second, row+` .hold-applied`, "the pause applied by the groups")

	// The seller's new order is taken; its event waits in the billing
	// group's parked stream instead of being handled.
	b.order(product, buyer, store.OrderPending)
	reloadUntil(20*time.Second, row+` li[data-group="billing"]`, "the event held in billing")
	require.Equal(t, "1", text(row+` li[data-group="billing"] .n`))
	require.Zero(t, b.billed.Load(), "a paused seller's event is not handled")
	for _, w := range []int64{390, 1280} {
		run(10*time.Second, chromedp.EmulateViewport(w, 900), chromedp.Navigate(b.http.URL+"/console/sellers"), chromedp.WaitVisible(chromedp.CSS(row)))
		require.Empty(t, eval(layoutProblems), "/console/sellers at %d px", w)
	}

	// A viewer sees no control and cannot resume it.
	viewer := b.loginCookie(vera)
	page := b.send(http.MethodGet, "/console/sellers", "", nil, "Cookie", viewer, "Accept", "text/html")
	require.Equal(t, http.StatusOK, page.StatusCode)
	require.NotContains(t, page.Body, `action="/console/sellers/resume"`)
	require.Equal(t, http.StatusForbidden, b.post("/console/sellers/resume", viewer, url.Values{"seller": {seller}}).StatusCode)
	require.Equal(t, http.StatusForbidden, b.post("/console/sellers/pause", viewer, url.Values{"seller": {seller}, "reason": {"forged"}}).StatusCode)
	// A pause without a reason is refused.
	require.Equal(t, http.StatusBadRequest, b.post("/console/sellers/pause", b.loginCookie(otto), url.Values{"seller": {seller}}).StatusCode)

	// Resume: the held event is handled and the seller leaves the list.
	run(15*time.Second,
		chromedp.Navigate(b.http.URL+"/console/sellers"),
		chromedp.WaitVisible(chromedp.CSS(`#rs-`+seller)),
		chromedp.SendKeys(chromedp.CSS(`#rs-`+seller), "review done"),
		chromedp.Click(chromedp.CSS(row+` button.resume`)),
		chromedp.WaitVisible(chromedp.CSS(`#flash`)),
	)
	require.Contains(t, text(`#flash`), "Resumed Lisbon Ceramics")
	require.Equal(t, "", text(row))
	deadline := time.Now().Add(20 * time.Second)
	for b.billed.Load() < 1 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	require.EqualValues(t, 1, b.billed.Load(), "the held event was handled after the resume")

	// Both actions are in the audit log as otto's, with their reasons.
	var got []string
	for _, it := range b.do(http.MethodGet, "/v1/admin/audit?limit=100", b.admin, nil).status(http.StatusOK).json()["items"].([]any) {
		m := it.(map[string]any)
		if a := m["action"].(string); a == ActionSellerPause || a == ActionSellerResume {
			got = append([]string{fmt.Sprintf("%s %s %s %s", a, m["target"], m["actor"], m["reason"])}, got...)
		}
	}
	require.Equal(t, []string{
		ActionSellerPause + " seller:" + seller + " otto chargeback review",
		ActionSellerResume + " seller:" + seller + " otto review done",
	}, got)
}
