package api

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
)

// TestDemoPageInABrowser loads the demo page in headless Chromium: an
// admin announcement appears as a banner within a second, and a new order
// appears in the feed.
func TestDemoPageInABrowser(t *testing.T) {
	const chromium = "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("CI must run the browser tests: install Chromium at /usr/bin/chromium (.ci/run does)")
		}
		t.Skip("needs Chromium at /usr/bin/chromium (apt-get install chromium)")
	}
	b := sseSetup(t, sseOptions{demo: true})
	product := b.product(b.keyA, nil)

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU, chromedp.WindowSize(1200, 800))...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	// The first run starts the browser and ties it to its context, so it
	// gets bctx itself; later steps may have deadlines of their own.
	require.NoError(t, chromedp.Do(bctx))
	do := func(timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) error {
		ctx, cancel := context.WithTimeout(bctx, timeout)
		defer cancel()
		return chromedp.Do(ctx, steps...)
	}
	text := func(sel string) string {
		ctx, cancel := context.WithTimeout(bctx, 5*time.Second)
		defer cancel()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		require.NoError(t, err)
		return s
	}

	// The fragment keeps the key out of the page request; the page passes
	// it to EventSource as access_token.
	require.NoError(t, do(30*time.Second,
		chromedp.Navigate(b.http.URL+"/#token="+b.admin),
		chromedp.WaitVisible(`//span[@id="status" and text()="live"]`),
	))

	msg := "Checkout closes at 02:00 for maintenance"
	b.do(http.MethodPost, "/v1/admin/announcements", b.admin, map[string]any{"message": msg, "level": "warning"}).status(http.StatusCreated)
	start := time.Now()
	require.NoError(t, do(time.Second, chromedp.WaitVisible(chromedp.CSS(`#banner`))), "banner within a second")
	t.Logf("banner shown %s after the announcement", time.Since(start).Round(time.Millisecond))
	require.Equal(t, msg, strings.TrimSpace(text(`#banner`)))

	order := b.order(product, b.user(), store.OrderPending)
	sel := `li[data-type="order.created"][data-subject="` + order.String() + `"]`
	require.NoError(t, do(5*time.Second, chromedp.WaitVisible(chromedp.CSS(sel))), "the new order in the feed")
	row := text(sel)
	require.Contains(t, row, "order.created")
	require.Contains(t, row, b.sellerA.String())

	if dir := os.Getenv("BAZAAR_SCREENSHOTS"); dir != "" {
		png, err := chromedp.Run(bctx, chromedp.CaptureScreenshot())
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(dir+"/demo-page.png", png, 0o644))
	}

	// A visitor without a key sees the current announcement at once, and
	// no order events.
	fresh, cancelFresh := chromedp.NewContext(bctx)
	defer cancelFresh()
	require.NoError(t, chromedp.Do(fresh))
	ctx, cancel := context.WithTimeout(fresh, 20*time.Second)
	defer cancel()
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(b.http.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#banner`)),
	))
	anon, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#banner`)))
	require.NoError(t, err)
	items, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('li[data-type^="order."]').length`))
	require.NoError(t, err)
	require.Equal(t, msg, strings.TrimSpace(anon))
	require.Zero(t, items)
}
