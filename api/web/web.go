// Package web holds the demo page "bazaar dev" serves at /: one embedded
// HTML file, no build step, that shows the live event feed and the
// maintenance banner using the browser's own EventSource.
package web

import (
	_ "embed"
	"net/http"
)

//go:embed index.html
var page []byte

// Page returns the demo page's HTML.
func Page() []byte { return page }

// Handler serves the demo page for GET and HEAD. Mount it at "/" (in gin:
// engine.GET("/", gin.WrapH(web.Handler()))).
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", "default-src 'none'; connect-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(page)
	})
}
