package console

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/stream"
)

// Root is where the console is mounted.
const Root = "/console"

// The roles the console knows. A viewer reads every page and changes
// nothing; an operator also repairs (redrive, pause and resume, retry,
// announcements); an admin also purges.
const (
	RoleViewer   = "viewer"
	RoleOperator = "operator"
	RoleAdmin    = "admin"
)

// Announcement is a maintenance banner to publish.
type Announcement struct {
	Level     string // info, warning or critical
	Message   string
	Reason    string     // why, for the audit log (optional)
	StartsAt  *time.Time // nil: now
	ExpiresAt *time.Time // nil: in an hour
}

// Config holds what the console reads and the functions it calls.
type Config struct {
	// DB is required: orders, events, invoicing, schedules and printers.
	DB *sqlx.DB
	// Streams inspects streams and groups and manages dead letters; without
	// it those parts of the console are empty.
	Streams *stream.Admin
	// Hub feeds the Orders live page and counts live SSE clients.
	Hub *stream.Hub
	// Tasks is the asynq inspector of the workers' queues; without it the
	// Tasks page says so.
	Tasks *asynq.Inspector
	// MonitorPath, when set, is where asynqmon is served (linked from Tasks).
	MonitorPath string
	// Authorize tells who sends a request and with which role (RoleViewer,
	// RoleOperator or RoleAdmin); ok false sends the browser to the login
	// form. Required.
	Authorize func(r *http.Request) (who, role string, ok bool)
	// Login checks the credential typed into the login form and, when it
	// is good, sets the session cookie on c and returns true. It may answer
	// c itself (a lockout) and abort it. nil shows no login form.
	Login func(c *gin.Context, credential string) bool
	// Logout ends the session of c's request and clears its cookie; the
	// console then sends the browser to the login form. nil hides the
	// logout button.
	Logout func(c *gin.Context) error
	// Audit is told of every repair whose effect is outside PostgreSQL
	// (dead letters, groups, queues) before the console answers: the action
	// ("dlq.redrive"), its target, the operator's reason and the parameters
	// and counts. ctx is the request's. nil records nothing. An error is
	// logged, not shown: the repair has happened.
	Audit func(ctx context.Context, action, target, reason string, params map[string]any) error
	// Announce publishes a maintenance announcement the way POST
	// /v1/admin/announcements does, and records it in the audit log in the
	// same transaction; an error wrapping ErrInvalid is shown to the
	// operator. nil makes the Announcements page read-only.
	Announce func(ctx context.Context, a Announcement) error
	// RetryFailed moves a run's failed invoicing accounts back to pending
	// the way POST /v1/admin/invoicing/runs/{id}/retry-failed does, records
	// it in the audit log with reason in the same transaction, and returns
	// how many. nil hides the button.
	RetryFailed func(ctx context.Context, run uuid.UUID, reason string) (int, error)
	// InvoicePDF renders an invoice's PDF the way GET
	// /v1/invoices/{id}/pdf does and returns it with its file name;
	// store.ErrNotFound for an unknown invoice. nil hides the PDF links.
	InvoicePDF func(ctx context.Context, id uuid.UUID) (pdf []byte, name string, err error)
	// CreateOperator adds a named operator with a role the way POST
	// /v1/admin/operators does, records it in the audit log with reason in
	// the same transaction, and returns the operator and its credential
	// (shown once). An error wrapping ErrInvalid is shown to the admin,
	// store.ErrConflict means an active operator has the name. nil (with
	// SetOperatorRole and RevokeOperator) makes the Operators page
	// read-only.
	CreateOperator func(ctx context.Context, name, role, reason string) (op store.Operator, credential string, err error)
	// SetOperatorRole changes an operator's role the way PATCH
	// /v1/admin/operators/{id} does, with its audit row in the same
	// transaction.
	SetOperatorRole func(ctx context.Context, id uuid.UUID, role, reason string) (store.Operator, error)
	// RevokeOperator revokes an operator's credential and sessions the
	// way DELETE /v1/admin/operators/{id} does, with its audit row in the
	// same transaction.
	RevokeOperator func(ctx context.Context, id uuid.UUID, reason string) (store.Operator, error)
	// PauseSeller and ResumeSeller pause and resume a seller the way POST
	// /v1/admin/sellers/{id}/pause and .../resume do (the same checks and
	// code), with the audit row in the same transaction. An error wrapping
	// ErrInvalid is shown to the operator; store.ErrNotFound for an unknown
	// seller. nil hides the Sellers page's controls.
	PauseSeller  func(ctx context.Context, id uuid.UUID, reason string) (store.Seller, error)
	ResumeSeller func(ctx context.Context, id uuid.UUID, reason string) (store.Seller, error)
	// Registry receives the business figures as Prometheus series; nil
	// leaves them unexported.
	Registry prometheus.Registerer
	Logger   *slog.Logger
	// Window is the span the business figures cover (default 15 minutes).
	Window time.Duration
	// Refresh is how often the live pages get new values (default 2 s).
	Refresh time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// ErrInvalid marks an Announce or CreateOperator error caused by the
// operator's input.
var ErrInvalid = errors.New("invalid input")

// Console serves the console's pages.
type Console struct {
	cfg    Config
	log    *slog.Logger
	pages  map[string]*template.Template
	cop    *http.CrossOriginProtection
	snaps  snapshotter
	jobs   jobs
	engine *gin.Engine
}

//go:embed assets templates
var files embed.FS

// New validates cfg and parses the pages.
func New(cfg Config) (*Console, error) {
	if cfg.DB == nil {
		return nil, errors.New("console: DB is required")
	}
	if cfg.Authorize == nil {
		return nil, errors.New("console: Authorize is required")
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	cfg.Window = cmp.Or(cfg.Window, 15*time.Minute)
	cfg.Refresh = cmp.Or(cfg.Refresh, 2*time.Second)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Audit == nil {
		cfg.Audit = func(context.Context, string, string, string, map[string]any) error { return nil }
	}
	c := &Console{cfg: cfg, log: cfg.Logger, cop: http.NewCrossOriginProtection(), pages: map[string]*template.Template{}}
	c.snaps.c = c
	c.jobs.byGroup = map[string]*redriveJob{}
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(files, "templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("console: parse layout: %w", err)
	}
	names, err := fs.Glob(files, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(files, n)
		if err != nil {
			return nil, fmt.Errorf("console: parse %s: %w", n, err)
		}
		c.pages[base] = t
	}
	c.engine = c.routes()
	if cfg.Registry != nil {
		if err := cfg.Registry.Register(&figuresCollector{c: c}); err != nil {
			return nil, fmt.Errorf("console: register business figures: %w", err)
		}
	}
	return c, nil
}

// Close cancels the redrives still running and waits for them to stop.
func (c *Console) Close() { c.jobs.stopAll() }

// Mount serves the console on r at Root and everything under it.
func (c *Console) Mount(r gin.IRouter) {
	h := func(g *gin.Context) {
		// The console's own router sees the request; Login is handed the
		// outer context, whose client address and trusted proxies count.
		ctx := context.WithValue(g.Request.Context(), outerKey{}, g)
		c.engine.ServeHTTP(g.Writer, g.Request.WithContext(ctx))
	}
	r.GET(Root, h)
	r.GET(Root+"/*any", h)
	r.POST(Root+"/*any", h)
}

type outerKey struct{}

// routes builds the console's own router.
func (c *Console) routes() *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.RedirectTrailingSlash, e.RedirectFixedPath, e.HandleMethodNotAllowed = false, false, true
	e.Use(gin.CustomRecovery(func(g *gin.Context, err any) {
		c.log.Error("console: panic", "err", err)
		c.fail(g, http.StatusInternalServerError, "The console failed; try again.")
	}))
	e.NoRoute(c.guard, func(g *gin.Context) { c.fail(g, http.StatusNotFound, "No such console page.") })
	e.NoMethod(c.guard, func(g *gin.Context) { c.fail(g, http.StatusMethodNotAllowed, "Method not allowed.") })
	static, _ := fs.Sub(files, "assets")
	e.GET(Root+"/assets/*file", func(g *gin.Context) {
		g.Header("Cache-Control", "no-cache")
		g.Header("X-Content-Type-Options", "nosniff")
		g.FileFromFS(g.Param("file"), http.FS(static))
	})
	e.GET(Root+"/login", c.guard, c.loginForm)
	e.POST(Root+"/login", c.guard, c.login)
	e.POST(Root+"/logout", c.guard, c.logout)

	v := e.Group(Root, c.guard, c.authorize)
	v.GET("", c.overview)
	v.GET("/live", c.live)
	v.GET("/groups", c.groups)
	v.POST("/groups/:group/pause", c.mutating(RoleOperator), c.pauseGroup)
	v.POST("/groups/:group/resume", c.mutating(RoleOperator), c.resumeGroup)
	v.POST("/groups/:group/replay", c.mutating(RoleOperator), c.replayGroup)
	v.GET("/dlq", c.deadLetters)
	v.GET("/dlq/:group", c.deadLetters)
	v.POST("/dlq/:group/redrive", c.mutating(RoleOperator), c.redrive)
	v.POST("/dlq/:group/redrive-all", c.mutating(RoleOperator), c.redriveAll)
	v.POST("/dlq/:group/redrive-all/cancel", c.mutating(RoleOperator), c.cancelRedrive)
	v.POST("/dlq/:group/purge", c.mutating(RoleAdmin), c.purge)
	v.GET("/tasks", c.tasks)
	v.POST("/tasks/:queue/pause", c.mutating(RoleOperator), c.pauseQueue)
	v.POST("/tasks/:queue/resume", c.mutating(RoleOperator), c.resumeQueue)
	v.GET("/invoicing", c.invoicing)
	v.POST("/invoicing/:run/retry-failed", c.mutating(RoleOperator), c.retryFailed)
	v.GET("/invoices/:id/pdf", c.invoicePDF)
	v.GET("/orders", c.orders)
	v.GET("/live/orders", c.liveOrders)
	v.GET("/printers", c.printers)
	v.GET("/announcements", c.announcements)
	v.POST("/announcements", c.mutating(RoleOperator), c.announce)
	v.GET("/audit", c.auditLog)
	v.GET("/sellers", c.sellers)
	v.POST("/sellers/pause", c.mutating(RoleOperator), c.pauseSeller)
	v.POST("/sellers/resume", c.mutating(RoleOperator), c.resumeSeller)
	v.GET("/operators", c.operators)
	v.POST("/operators", c.mutating(RoleAdmin), c.createOperator)
	v.POST("/operators/:id/role", c.mutating(RoleAdmin), c.setOperatorRole)
	v.POST("/operators/:id/revoke", c.mutating(RoleAdmin), c.revokeOperator)
	return e
}

// Mount builds a console from cfg and serves it on r.
func Mount(r gin.IRouter, cfg Config) (*Console, error) {
	c, err := New(cfg)
	if err != nil {
		return nil, err
	}
	c.Mount(r)
	return c, nil
}

// operator is who sends a request, as Authorize told.
type operator struct {
	Name string
	Role string
}

const operatorKey = "console.operator"

func operatorOf(g *gin.Context) operator {
	op, _ := g.Get(operatorKey)
	o, _ := op.(operator)
	return o
}

// CanRepair tells whether the operator may redrive, pause, retry and
// announce.
func (o operator) CanRepair() bool { return o.Role == RoleOperator || o.Role == RoleAdmin }

// CanPurge tells whether the operator may purge dead letters.
func (o operator) CanPurge() bool { return o.Role == RoleAdmin }

// CanManage tells whether the operator may add, change and revoke
// operators.
func (o operator) CanManage() bool { return o.Role == RoleAdmin }

// guard refuses cross-origin state changes (the session cookie is
// SameSite=Strict besides) and marks every answer uncacheable.
func (c *Console) guard(g *gin.Context) {
	g.Header("Cache-Control", "no-store")
	g.Header("Content-Security-Policy", "default-src 'none'; connect-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	if err := c.cop.Check(g.Request); err != nil {
		c.fail(g, http.StatusForbidden, "Cross-origin requests to the console are refused.")
		return
	}
}

func (c *Console) authorize(g *gin.Context) {
	who, role, ok := c.cfg.Authorize(g.Request)
	if !ok {
		if outer, _ := g.Request.Context().Value(outerKey{}).(*gin.Context); outer != nil && outer.IsAborted() {
			g.Abort() // Authorize answered (a lockout, a wrong credential)
			return
		}
		if g.Request.Method == http.MethodGet {
			g.Redirect(http.StatusSeeOther, Root+"/login?next="+url.QueryEscape(g.Request.URL.RequestURI()))
			g.Abort()
			return
		}
		c.fail(g, http.StatusUnauthorized, "Log in to the console first.")
		return
	}
	switch role {
	case RoleViewer, RoleOperator, RoleAdmin:
	default:
		c.fail(g, http.StatusForbidden, "Your role has no access to the console.")
		return
	}
	g.Set(operatorKey, operator{Name: who, Role: role})
}

// mutating refuses a change to an operator below the role it needs.
func (c *Console) mutating(need string) gin.HandlerFunc {
	return func(g *gin.Context) {
		op := operatorOf(g)
		if (need == RoleOperator && !op.CanRepair()) || (need == RoleAdmin && !op.CanPurge()) {
			c.fail(g, http.StatusForbidden, "Your role ("+op.Role+") may not do this; it needs "+need+".")
			return
		}
		g.Request.Body = http.MaxBytesReader(g.Writer, g.Request.Body, 64<<10)
	}
}

// page is what every page template gets.
type page struct {
	Title    string
	Nav      string
	Operator operator
	Flash    string
	Error    string
	Monitor  string
	Logout   bool
	Data     any
}

func (c *Console) render(g *gin.Context, status int, name, title string, data any) {
	t, ok := c.pages[name]
	if !ok {
		c.fail(g, http.StatusInternalServerError, "No page "+name)
		return
	}
	p := page{Title: title, Nav: name, Operator: operatorOf(g), Flash: g.Query("done"), Error: g.GetString("console.error"), Monitor: c.cfg.MonitorPath, Logout: c.cfg.Logout != nil, Data: data}
	g.Header("Content-Type", "text/html; charset=utf-8")
	g.Status(status)
	if err := t.ExecuteTemplate(g.Writer, "layout.html", p); err != nil {
		c.log.Error("console: render", "page", name, "err", err)
	}
}

// fail answers an error page (or, for a client that does not take HTML,
// the message in plain text) and aborts.
func (c *Console) fail(g *gin.Context, status int, msg string) {
	g.Abort()
	if !strings.Contains(g.GetHeader("Accept"), "text/html") {
		g.String(status, "%s\n", msg)
		return
	}
	g.Set("console.error", msg)
	c.render(g, status, "error", http.StatusText(status), nil)
}

// done redirects back to a page with a message, after a change.
func (c *Console) done(g *gin.Context, to, msg string) {
	g.Redirect(http.StatusSeeOther, to+"?done="+url.QueryEscape(msg))
}

// audit records a repair in the audit log (Audit); its failure is logged.
func (c *Console) audit(g *gin.Context, action, target, reason string, params map[string]any) {
	op := operatorOf(g)
	if params == nil {
		params = map[string]any{}
	}
	if err := c.cfg.Audit(g.Request.Context(), action, target, reason, params); err != nil {
		c.log.Error("console: audit", "action", action, "target", target, "err", err)
	}
	c.log.Info("console: repair", "action", action, "target", target, "reason", reason, "actor", op.Name, "role", op.Role)
}

// reason returns the form's reason, answering 400 when it is required and
// missing.
func (c *Console) reason(g *gin.Context) (string, bool) {
	r := strings.TrimSpace(g.PostForm("reason"))
	if r == "" {
		c.fail(g, http.StatusBadRequest, "Give a reason: it is kept in the audit log with the change.")
		return "", false
	}
	if len(r) > 500 {
		c.fail(g, http.StatusBadRequest, "Keep the reason under 500 characters.")
		return "", false
	}
	return r, true
}

func (c *Console) loginForm(g *gin.Context) {
	if c.cfg.Login == nil {
		c.fail(g, http.StatusNotFound, "This server has no console login; send credentials with each request.")
		return
	}
	g.Header("Cache-Control", "no-store")
	c.render(g, http.StatusOK, "login", "Log in", map[string]any{"Next": safeNext(g.Query("next"))})
}

func (c *Console) login(g *gin.Context) {
	if c.cfg.Login == nil {
		c.fail(g, http.StatusNotFound, "This server has no console login.")
		return
	}
	g.Request.Body = http.MaxBytesReader(g.Writer, g.Request.Body, 4096)
	next := safeNext(g.PostForm("next"))
	outer, _ := g.Request.Context().Value(outerKey{}).(*gin.Context)
	if outer == nil {
		outer = g
	}
	if !c.cfg.Login(outer, g.PostForm("credential")) {
		if outer.IsAborted() || g.IsAborted() {
			return
		}
		c.render(g, http.StatusUnauthorized, "login", "Log in", map[string]any{"Next": next, "Failed": true})
		return
	}
	g.Redirect(http.StatusSeeOther, next)
}

// logout ends the session (Logout) and sends the browser to the login
// form.
func (c *Console) logout(g *gin.Context) {
	if c.cfg.Logout == nil {
		c.fail(g, http.StatusNotFound, "This server has no console login.")
		return
	}
	outer, _ := g.Request.Context().Value(outerKey{}).(*gin.Context)
	if outer == nil {
		outer = g
	}
	if err := c.cfg.Logout(outer); err != nil {
		c.log.Error("console: logout", "err", err)
		c.fail(g, http.StatusInternalServerError, "The session could not be ended; try again.")
		return
	}
	g.Redirect(http.StatusSeeOther, Root+"/login")
}

// safeNext keeps a post-login redirect inside the console.
func safeNext(next string) string {
	if next == Root || strings.HasPrefix(next, Root+"/") || strings.HasPrefix(next, Root+"?") {
		if !strings.HasPrefix(next, Root+"/login") && !strings.Contains(next, "//") {
			return next
		}
	}
	return Root
}
