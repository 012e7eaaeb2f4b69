package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"html/template"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/bazaarhq/bazaar/sql/store"
)

// MonitorHandler is the asynqmon UI and API (workers.NewMonitor), mounted
// at its RootPath, "/monitor". HasQueue tells whether a queue exists, so
// an action on an unknown queue is a 404 problem rather than asynqmon's
// 500 in plain text.
type MonitorHandler interface {
	http.Handler
	RootPath() string
	HasQueue(name string) (bool, error)
}

const monitorRoot = "/monitor"

// mountMonitor serves asynqmon at /monitor. asynqmon has no
// authentication of its own and no CSRF protection, so every request
// passes three gates first:
//   - cross-origin protection: a state-changing request (POST, DELETE,
//     PATCH) must come from this origin (Sec-Fetch-Site / Origin), and the
//     session cookie is SameSite=Strict besides;
//   - credentials: Authorization: Bearer <admin token or operator token>,
//     HTTP Basic with one of them as password, or the operator session
//     cookie set by the login forms at /monitor/login and /console/login
//     (what a browser uses);
//   - the role: a viewer only reads (GET); changing anything (pause,
//     resume, run, delete, archive) needs operator or admin.
//
// Every state-changing call that passes is recorded in the audit log with
// its outcome (auditMonitor). Without Config.Monitor the routes answer 404.
func (s *Server) mountMonitor(r *gin.Engine) {
	h := func(c *gin.Context) {
		if s.cfg.Monitor == nil {
			s.fail(c, errRouteNotFound)
			return
		}
		if err := crossOrigin.Check(c.Request); err != nil {
			s.fail(c, withDetail(errForbidden, "Cross-origin requests to the monitor are refused."))
			return
		}
		if c.Request.URL.Path == monitorRoot+"/login" {
			s.monitorLogin(c)
			return
		}
		p, ok := s.monitorPrincipal(c)
		if !ok {
			if !c.IsAborted() {
				s.monitorChallenge(c)
			}
			return
		}
		mutating := c.Request.Method != http.MethodGet && c.Request.Method != http.MethodHead
		if mutating && staffRank(p.Role) < staffRank(RoleOperator) {
			s.fail(c, withDetail(errForbidden, "A viewer reads the monitor and changes nothing; this needs the operator role."))
			return
		}
		c.Set(principalKey, p)
		if c.Request.URL.Path == monitorRoot {
			// asynqmon's router wants the trailing slash for its index.
			c.Redirect(http.StatusFound, monitorRoot+"/")
			return
		}
		if q, ok := monitorQueue(c.Request.URL.Path); ok {
			known, err := s.cfg.Monitor.HasQueue(q)
			if err != nil {
				s.fail(c, err)
				return
			}
			if !known {
				s.fail(c, withDetail(store.ErrNotFound, "No queue named "+strconv.Quote(q)+" exists."))
				return
			}
		}
		c.Header("Cache-Control", "no-store")
		serve := func() { s.cfg.Monitor.ServeHTTP(c.Writer, c.Request) }
		if mutating && strings.HasPrefix(c.Request.URL.Path, monitorRoot+"/api/") {
			s.auditMonitor(c, p, readMonitorBody(c), serve)
			return
		}
		serve()
	}
	r.GET(monitorRoot, h)
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodDelete, http.MethodPatch} {
		r.Handle(m, monitorRoot+"/*any", h)
	}
}

// monitorQueue returns the queue name of an asynqmon API path about one
// queue (/monitor/api/queues/{qname}, then an action after ":" or a
// sub-path after "/").
func monitorQueue(path string) (string, bool) {
	rest, ok := strings.CutPrefix(path, monitorRoot+"/api/queues/")
	if !ok {
		return "", false
	}
	if i := strings.IndexAny(rest, "/:"); i >= 0 {
		rest = rest[:i]
	}
	return rest, rest != ""
}

// monitorPrincipal finds the operator of a monitor request. A token
// (bearer or basic) counts as a login attempt: past the MonitorLogin
// limit the request has been answered 429 (c is aborted).
func (s *Server) monitorPrincipal(c *gin.Context) (Principal, bool) {
	r := c.Request
	tok, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		_, tok, ok = r.BasicAuth()
	}
	if ok {
		return s.loginCredential(c, tok)
	}
	p, ok, err := s.sessionPrincipal(c)
	if err != nil {
		s.fail(c, err)
		return Principal{}, false
	}
	return p, ok
}

func (s *Server) isAdminToken(tok string) bool {
	given, admin := sha256.Sum256([]byte(tok)), sha256.Sum256([]byte(s.cfg.AdminToken))
	return subtle.ConstantTimeCompare(given[:], admin[:]) == 1
}

// monitorChallenge answers 401: the login form for a browser, a problem
// for anything else.
func (s *Server) monitorChallenge(c *gin.Context) {
	if c.Request.Method == http.MethodGet && strings.Contains(c.GetHeader("Accept"), "text/html") {
		c.Header("WWW-Authenticate", `Bearer realm="bazaar monitor"`)
		c.Header("Cache-Control", "no-store")
		c.Status(http.StatusUnauthorized)
		_ = monitorLoginPage.Execute(c.Writer, map[string]any{"Action": monitorRoot + "/login", "Next": monitorRoot + "/"})
		return
	}
	s.fail(c, withDetail(errUnauthorized, "The monitor needs an operator token or the admin token: Authorization: Bearer <token>, or log in at "+monitorRoot+"/login."))
}

// monitorLogin shows the login form (GET) or checks the credential and
// sets the operator session cookie (POST); the form posts credential
// (token is accepted too, as before).
func (s *Server) monitorLogin(c *gin.Context) {
	switch c.Request.Method {
	case http.MethodGet:
		c.Header("Cache-Control", "no-store")
		c.Status(http.StatusOK)
		_ = monitorLoginPage.Execute(c.Writer, map[string]any{"Action": monitorRoot + "/login", "Next": monitorRoot + "/"})
	case http.MethodPost:
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, 4096)
		tok := c.PostForm("credential")
		if tok == "" {
			tok = c.PostForm("token")
		}
		s.loginAndRedirect(c, tok, monitorRoot+"/", monitorRoot+"/login")
	default:
		s.fail(c, errMethodNotAllowed)
	}
}

var monitorLoginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Bazaar: log in</title>
<style>body{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem}
input,button{font-size:1rem;padding:.4rem;width:100%;box-sizing:border-box;margin:.3rem 0}.err{color:#b00}</style></head>
<body><h1>Bazaar: log in</h1>
{{if .Failed}}<p class="err" id="failed">That is not an operator credential or the admin token.</p>{{end}}
<form method="post" action="{{.Action}}">
<input type="hidden" name="next" value="{{.Next}}">
<label for="token">Operator credential or admin token</label>
<input id="token" name="credential" type="password" autocomplete="current-password" required autofocus>
<button id="login" type="submit">Log in</button>
</form></body></html>
`))
