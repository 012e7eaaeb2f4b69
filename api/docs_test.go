package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// TestDocsPages: /docs is HTML that loads the embedded Redoc bundle (no
// other host) and lists every problem type of the kinds table; the bundle
// is served as JavaScript; /docs/events lists the AsyncAPI channels and
// their messages. The security headers apply to all three.
func TestDocsPages(t *testing.T) {
	t.Parallel()
	b := setup(t)

	page := b.serve(http.MethodGet, "/docs", "", nil).status(http.StatusOK)
	require.Equal(t, "text/html; charset=utf-8", page.header.Get("Content-Type"))
	require.Equal(t, "frame-ancestors 'none'", page.header.Get("Content-Security-Policy"))
	html := string(page.body)
	require.Contains(t, html, `<script type="module" src="/docs/redoc.standalone.js"></script>`)
	require.Contains(t, html, `<redoc spec-url="/openapi.yaml">`)
	require.NotContains(t, html, "https://cdn")
	for _, k := range append(kindsList(), internalKind) {
		require.Contains(t, html, "<code>"+ProblemBase+k.slug+"</code>", k.slug)
		require.Contains(t, html, k.title, k.slug)
	}
	require.Contains(t, html, `<tr id="problem-insufficient-stock"><td><code>https://bazaar.dev/problems/insufficient-stock</code></td><td>Not enough stock</td><td>409</td></tr>`)

	js := b.serve(http.MethodGet, "/docs/redoc.standalone.js", "", nil).status(http.StatusOK)
	require.Equal(t, "text/javascript; charset=utf-8", js.header.Get("Content-Type"))
	require.Contains(t, string(js.body[:200]), "Version: 3.0.1")
	require.Contains(t, string(js.body[len(js.body)-200:]), "export{RedocStandalone,hydrate,init}")

	ev := b.serve(http.MethodGet, "/docs/events", "", nil).status(http.StatusOK)
	require.Equal(t, "text/html; charset=utf-8", ev.header.Get("Content-Type"))
	require.Equal(t, "frame-ancestors 'none'", ev.header.Get("Content-Security-Policy"))
	events := string(ev.body)
	require.Contains(t, events, `<h3 id="orderStream-title">The order stream <code>bazaar:events:order</code></h3>`)
	require.Contains(t, events, "<dt><code>order.created</code></dt>")
	require.Contains(t, events, "<code>urn:bazaar:user.registered:1</code>")
}

// TestDocsPageInABrowser loads /docs in headless Chromium: Redoc renders
// the document's title and description from the embedded bundle. With
// BAZAAR_SCREENSHOTS set it writes docs-page.png and docs-events.png there.
func TestDocsPageInABrowser(t *testing.T) {
	const chromium = "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("CI must run the browser tests: install Chromium at /usr/bin/chromium (.ci/run does)")
		}
		t.Skip("needs Chromium at /usr/bin/chromium (apt-get install chromium)")
	}
	b := setup(t)
	hs := httptest.NewServer(b.srv.Handler())
	t.Cleanup(hs.Close)

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU, chromedp.WindowSize(1200, 800))...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	require.NoError(t, chromedp.Do(bctx))
	ctx, cancel := context.WithTimeout(bctx, 60*time.Second)
	defer cancel()

	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(hs.URL+"/docs"),
		// Only Redoc makes an h1: the document's title and version.
		chromedp.WaitVisible(`//h1[starts-with(normalize-space(.), "Bazaar API")]`),
	))
	title, err := chromedp.Run(ctx, chromedp.Text(`//h1`))
	require.NoError(t, err)
	require.Equal(t, "Bazaar API (1)", strings.TrimSpace(title))
	body, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`body`)))
	require.NoError(t, err)
	// The document's description, rendered from its Markdown.
	require.Contains(t, body, "Every POST accepts an Idempotency-Key header")
	shot(t, ctx, "docs-page.png")

	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(hs.URL+"/docs/events"),
		chromedp.WaitVisible(chromedp.CSS(`#orderStream`)),
	))
	shot(t, ctx, "docs-events.png")
}

func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("BAZAAR_SCREENSHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, name), png, 0o644))
}
