package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

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

const (
	monitorRoot       = "/monitor"
	monitorCookie     = "bazaar_monitor"
	monitorSessionTTL = 12 * time.Hour
)

// mountMonitor serves asynqmon at /monitor. asynqmon has no
// authentication of its own and no CSRF protection, so every request
// passes two gates first:
//   - admin credentials: Authorization: Bearer <admin token>, HTTP Basic
//     with the admin token as password, or the session cookie set by the
//     login form at /monitor/login (what a browser uses);
//   - cross-origin protection: a state-changing request (POST, DELETE)
//     must come from this origin (Sec-Fetch-Site / Origin), and the cookie
//     is SameSite=Strict besides.
//
// Without Config.Monitor the routes answer 404.
func (s *Server) mountMonitor(r *gin.Engine) {
	cop := http.NewCrossOriginProtection()
	h := func(c *gin.Context) {
		if s.cfg.Monitor == nil {
			s.fail(c, errRouteNotFound)
			return
		}
		if err := cop.Check(c.Request); err != nil {
			s.fail(c, withDetail(errForbidden, "Cross-origin requests to the monitor are refused."))
			return
		}
		if c.Request.URL.Path == monitorRoot+"/login" {
			s.monitorLogin(c)
			return
		}
		if !s.monitorAuthorized(c) {
			if !c.IsAborted() {
				s.monitorChallenge(c)
			}
			return
		}
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
		s.cfg.Monitor.ServeHTTP(c.Writer, c.Request)
	}
	r.GET(monitorRoot, h)
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
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

// monitorAuthorized checks the admin credential of a monitor request. A
// token (bearer or basic) counts as a login attempt: past the
// MonitorLogin limit the request has been answered 429 (c is aborted).
func (s *Server) monitorAuthorized(c *gin.Context) bool {
	r := c.Request
	tok, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		_, tok, ok = r.BasicAuth()
	}
	if ok {
		return s.monitorTokenAccepted(c, tok)
	}
	if ck, err := r.Cookie(monitorCookie); err == nil {
		// Sessions are MACs nobody can guess; they need no limit.
		return s.validMonitorSession(ck.Value, time.Now())
	}
	return false
}

// monitorTokenAccepted checks a token offered to the monitor under the
// per-IP MonitorLogin limit: a client that failed too often is answered
// 429 before its token is looked at, so a lockout also hides right guesses.
func (s *Server) monitorTokenAccepted(c *gin.Context, tok string) bool {
	key := "monitorlogin:" + c.ClientIP()
	if !s.failuresLeft(c, key, policyMonitorLogin, s.limits.MonitorLogin) {
		return false
	}
	if !s.isAdminToken(tok) {
		s.failed(c, key, s.limits.MonitorLogin)
		return false
	}
	return true
}

func (s *Server) isAdminToken(tok string) bool {
	given, admin := sha256.Sum256([]byte(tok)), sha256.Sum256([]byte(s.cfg.AdminToken))
	return subtle.ConstantTimeCompare(given[:], admin[:]) == 1
}

// monitorSession is "<unix expiry>.<hex HMAC of it keyed by the admin
// token>": changing the admin token ends every session.
func (s *Server) monitorSession(expires time.Time) string {
	exp := strconv.FormatInt(expires.Unix(), 10)
	return exp + "." + s.monitorMAC(exp)
}

func (s *Server) monitorMAC(exp string) string {
	mac := hmac.New(sha256.New, []byte(s.cfg.AdminToken))
	mac.Write([]byte("bazaar-monitor-session:" + exp))
	return hex.EncodeToString(mac.Sum(nil))
}

func (s *Server) validMonitorSession(v string, now time.Time) bool {
	exp, sig, ok := strings.Cut(v, ".")
	if !ok {
		return false
	}
	unix, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || now.Unix() > unix {
		return false
	}
	return hmac.Equal([]byte(sig), []byte(s.monitorMAC(exp)))
}

// monitorChallenge answers 401: the login form for a browser, a problem
// for anything else.
func (s *Server) monitorChallenge(c *gin.Context) {
	if c.Request.Method == http.MethodGet && strings.Contains(c.GetHeader("Accept"), "text/html") {
		c.Header("WWW-Authenticate", `Bearer realm="bazaar monitor"`)
		c.Header("Cache-Control", "no-store")
		c.Status(http.StatusUnauthorized)
		_ = monitorLoginPage.Execute(c.Writer, map[string]any{"Action": monitorRoot + "/login"})
		return
	}
	s.fail(c, withDetail(errUnauthorized, "The monitor needs the admin token: Authorization: Bearer <token>, or log in at "+monitorRoot+"/login."))
}

// monitorLogin shows the login form (GET) or checks the token and sets the
// session cookie (POST).
func (s *Server) monitorLogin(c *gin.Context) {
	switch c.Request.Method {
	case http.MethodGet:
		c.Header("Cache-Control", "no-store")
		c.Status(http.StatusOK)
		_ = monitorLoginPage.Execute(c.Writer, map[string]any{"Action": monitorRoot + "/login"})
	case http.MethodPost:
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, 4096)
		if !s.monitorTokenAccepted(c, c.PostForm("token")) {
			if c.IsAborted() {
				return // locked out: answered 429
			}
			c.Status(http.StatusUnauthorized)
			_ = monitorLoginPage.Execute(c.Writer, map[string]any{"Action": monitorRoot + "/login", "Failed": true})
			return
		}
		exp := time.Now().Add(monitorSessionTTL)
		// Secure follows the request: development serves plain HTTP on
		// localhost, where a Secure cookie would never come back. Behind a
		// TLS-terminating proxy, its X-Forwarded-Proto tells (when trusted).
		http.SetCookie(c.Writer, &http.Cookie{ //nolint:gosec // Secure set whenever the request came over TLS
			Name: monitorCookie, Value: s.monitorSession(exp), Path: monitorRoot, Expires: exp,
			HttpOnly: true, Secure: s.requestIsHTTPS(c), SameSite: http.SameSiteStrictMode,
		})
		c.Redirect(http.StatusSeeOther, monitorRoot+"/")
	default:
		s.fail(c, errMethodNotAllowed)
	}
}

var monitorLoginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Bazaar monitor: log in</title>
<style>body{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem}
input,button{font-size:1rem;padding:.4rem;width:100%;box-sizing:border-box;margin:.3rem 0}.err{color:#b00}</style></head>
<body><h1>Bazaar task monitor</h1>
{{if .Failed}}<p class="err" id="failed">That is not the admin token.</p>{{end}}
<form method="post" action="{{.Action}}">
<label for="token">Admin token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button id="login" type="submit">Log in</button>
</form></body></html>
`))
