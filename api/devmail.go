package api

import (
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/bazaarhq/bazaar/workers"
)

// Mailbox lists the mails the development mail sink received
// (*workers.MailSink).
type Mailbox interface {
	Mails() []workers.SinkMail
}

// devMailView is one mail as /dev/mail shows it.
type devMailView struct {
	ID         int       `json:"id"`
	ReceivedAt time.Time `json:"received_at"`
	From       string    `json:"from"`
	To         []string  `json:"to"`
	Subject    string    `json:"subject"`
	Text       string    `json:"text"`
}

// mountDevMail serves GET /dev/mail: the mails "bazaar dev" sent to its
// built-in mail sink, newest first, as a page (or JSON with
// Accept: application/json or ?format=json). It exists only in
// development (Config.DevMail set); elsewhere it answers 404.
func (s *Server) mountDevMail(r *gin.Engine) {
	r.GET("/dev/mail", func(c *gin.Context) {
		if s.cfg.DevMail == nil {
			s.fail(c, errRouteNotFound)
			return
		}
		mails := s.cfg.DevMail.Mails()
		views := make([]devMailView, len(mails))
		for i, m := range mails {
			views[i] = devMailView{ID: m.ID, ReceivedAt: m.ReceivedAt, From: m.From, To: m.To, Subject: m.Subject, Text: m.Text}
		}
		c.Header("Cache-Control", "no-store")
		if c.Query("format") == "json" || strings.Contains(c.GetHeader("Accept"), "application/json") {
			c.JSON(http.StatusOK, gin.H{"mails": views})
			return
		}
		c.Status(http.StatusOK)
		c.Header("Content-Type", "text/html; charset=utf-8")
		_ = devMailPage.Execute(c.Writer, views)
	})
}

var devMailPage = template.Must(template.New("mail").Funcs(template.FuncMap{
	"join": strings.Join,
	"when": func(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05") },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Bazaar dev mail</title>
<meta http-equiv="refresh" content="10">
<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
article{border:1px solid #ccc;border-radius:6px;margin:1rem 0;padding:.5rem 1rem}
h2{font-size:1.1rem;margin:.3rem 0}.meta{color:#555;font-size:.9rem}pre{white-space:pre-wrap}</style></head>
<body><h1>Mail sent by this Bazaar ({{len .}})</h1>
<p class="meta">Development mail sink: nothing here left the machine. The page refreshes every 10 s.</p>
{{range .}}<article class="mail">
<h2>{{.Subject}}</h2>
<p class="meta">#{{.ID}} · {{when .ReceivedAt}} · from {{.From}} · to {{join .To ", "}}</p>
<pre>{{.Text}}</pre>
</article>{{else}}<p>No mail yet.</p>{{end}}
</body></html>
`))
