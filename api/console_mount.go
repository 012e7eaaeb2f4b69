package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/bazaarhq/bazaar/api/console"
	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/workers"
	"github.com/bazaarhq/bazaar/workers/invoicing"
)

// mountConsole serves the operator console (api/console) at /console.
// The console owns every path under /console, its login and logout
// included: its login form posts to /console/login, which checks the
// credential (an operator's or the admin token) under the login limit and
// starts the operator session (operators.go); /console/logout ends it.
// Pages and actions authorize the operator session cookie or an
// Authorization: Bearer credential, with the operator's own role, and
// every console action is written to the audit log as that operator.
func (s *Server) mountConsole(r *gin.Engine) error {
	cfg := console.Config{
		DB: s.cfg.DB, Streams: s.cfg.Streams, Hub: s.cfg.Hub, Tasks: s.cfg.Tasks,
		Authorize: s.consoleAuthorize,
		Login:     s.consoleLogin,
		Logout:    s.endSession,
		Audit:     s.consoleAudit,
		Announce:  s.consoleAnnounce, RetryFailed: s.consoleRetryFailed,
		InvoicePDF:     s.consoleInvoicePDF,
		CreateOperator: s.consoleCreateOperator, SetOperatorRole: s.consoleSetOperatorRole, RevokeOperator: s.consoleRevokeOperator,
		PauseSeller: s.consolePauseSeller, ResumeSeller: s.consoleResumeSeller,
		Registry: s.cfg.Registry, Logger: s.log.With("component", "console"),
	}
	if s.cfg.Monitor != nil {
		cfg.MonitorPath = monitorRoot
	}
	// consoleRequest runs before the console's router, so its hooks,
	// which get the *http.Request or its context, find this request's gin
	// context: its principal, request id and client address.
	c, err := console.Mount(r.Group("", s.consoleRequest), cfg)
	if err != nil {
		return err
	}
	s.console = c
	return nil
}

type consoleGinKey struct{}

// consoleRequest makes the request's gin context reachable from its
// context (consoleGin).
func (s *Server) consoleRequest(c *gin.Context) {
	c.Request = c.Request.WithContext(context.WithValue(c.Request.Context(), consoleGinKey{}, c))
	c.Next()
}

// consoleGin returns the gin context consoleRequest stored.
func consoleGin(ctx context.Context) (*gin.Context, bool) {
	c, ok := ctx.Value(consoleGinKey{}).(*gin.Context)
	return c, ok
}

// consoleAuthorize tells the console who sends r: the operator of its
// Authorization: Bearer credential (under the API's authentication
// limits) or of its session cookie, with their role (viewer, operator,
// admin; the static admin token is admin). An API key's role is passed on
// and the console refuses it. False when nobody is logged in, or when the
// request has been answered (429, 401 for a wrong bearer, 5xx).
func (s *Server) consoleAuthorize(r *http.Request) (who, role string, ok bool) {
	c, found := consoleGin(r.Context())
	if !found {
		return "", "", false
	}
	var p Principal
	if r.Header.Get("Authorization") != "" {
		//nolint:contextcheck // r is c.Request with the console router's values added; c carries the limits' client address
		if p, ok = s.bearerPrincipal(c); !ok {
			return "", "", false
		}
	} else {
		var err error
		p, ok, err = s.sessionPrincipal(c) //nolint:contextcheck // as above
		if err != nil {
			s.fail(c, err)
			return "", "", false
		}
		if !ok {
			return "", "", false
		}
	}
	c.Set(principalKey, p)
	op, isOp := operatorOf(p)
	if !isOp {
		return p.ID(), string(p.Role), true
	}
	switch op.Role {
	case RoleViewer:
		return op.Name, console.RoleViewer, true
	case RoleOperator:
		return op.Name, console.RoleOperator, true
	case RoleAdmin:
		return op.Name, console.RoleAdmin, true
	}
	return op.Name, string(op.Role), true
}

// consoleLogin checks the credential of the console's login form under
// the login limit and starts the operator session.
func (s *Server) consoleLogin(c *gin.Context, credential string) bool {
	p, ok := s.loginCredential(c, credential)
	if !ok {
		return false
	}
	if err := s.startSession(c, p); err != nil {
		s.fail(c, err)
		return false
	}
	return true
}

// consoleAudit writes the audit row of a console action whose effect is
// in Redis (dead letters, groups, queues), as the request's operator.
func (s *Server) consoleAudit(ctx context.Context, action, target, reason string, params map[string]any) error {
	c, ok := consoleGin(ctx)
	if !ok {
		return errors.New("console audit outside a console request")
	}
	e := s.auditEntry(c, action, reason)
	e.Target = target
	for _, k := range []string{"redriven", "purged", "replayed"} {
		if n, ok := params[k].(int); ok {
			e.Count = auditCount(n)
		} else if n, ok := params[k].(int64); ok {
			e.Count = auditCount(int(n))
		}
	}
	e.Params = auditParams(params)
	// The request may be ending with the response; the row must land.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return s.audit(wctx, s.cfg.DB, e)
}

// commitEvents runs fn in a transaction, records the events it returns in
// the outbox and tells the observer, as write does for a request.
func (s *Server) commitEvents(ctx context.Context, fn func(tx *sqlx.Tx) ([]store.Event, error)) error {
	var events []store.Event
	err := store.WithTx(ctx, s.cfg.DB, func(tx *sqlx.Tx) error {
		var err error
		if events, err = fn(tx); err != nil {
			return err
		}
		return store.InsertEvents(ctx, tx, events...)
	})
	if err == nil && len(events) > 0 && s.cfg.Observer != nil {
		s.cfg.Observer.EventsCommitted()
	}
	return err
}

// consoleAnnounce publishes an announcement the way POST
// /v1/admin/announcements does, with its audit row in the same
// transaction.
func (s *Server) consoleAnnounce(ctx context.Context, a console.Announcement) error {
	c, ok := consoleGin(ctx)
	if !ok {
		return errors.New("console announcement outside a console request")
	}
	data, err := validAnnouncement(announcementRequest{Message: a.Message, Level: a.Level, StartsAt: a.StartsAt, ExpiresAt: a.ExpiresAt, Reason: a.Reason}, time.Now().UTC())
	if err != nil {
		return consoleInvalid(err)
	}
	e := s.auditEntry(c, ActionAnnouncement, a.Reason)
	return s.commitEvents(ctx, func(tx *sqlx.Tx) ([]store.Event, error) {
		ev, err := store.NewEvent(maintenanceType, "announcements", nil, 1, data)
		if err != nil {
			return nil, err
		}
		out := announcementDTO{ID: ev.ID.String(), Message: data.Message, Level: data.Level, StartsAt: data.StartsAt, ExpiresAt: data.ExpiresAt}
		e.Target, e.Params = "announcement:"+out.ID, auditParams(out)
		return []store.Event{ev}, s.audit(ctx, tx, e)
	})
}

// consoleRetryFailed moves a run's failed accounts back to pending the
// way POST /v1/admin/invoicing/runs/{id}/retry-failed does, with its audit
// row in the same transaction.
func (s *Server) consoleRetryFailed(ctx context.Context, run uuid.UUID, reason string) (int, error) {
	c, ok := consoleGin(ctx)
	if !ok {
		return 0, errors.New("console retry-failed outside a console request")
	}
	e := s.auditEntry(c, ActionInvoiceRunRetry, reason)
	var n int
	err := s.commitEvents(ctx, func(tx *sqlx.Tx) ([]store.Event, error) {
		var events []store.Event
		var err error
		if n, _, events, err = invoicing.ResetFailedAccounts(ctx, tx, run); err != nil {
			return nil, err
		}
		e.Target, e.Count = "invoice_run:"+run.String(), auditCount(n)
		return events, s.audit(ctx, tx, e)
	})
	return n, err
}

// consoleInvalid turns the field errors of a request check into the
// console's ErrInvalid with the fields in words.
func consoleInvalid(err error) error {
	var msgs []string
	var de *detailError
	if errors.As(err, &de) {
		for _, f := range de.fields {
			msgs = append(msgs, f.Field+" "+f.Message)
		}
	}
	return fmt.Errorf("%w: %s", console.ErrInvalid, strings.Join(msgs, "; "))
}

// consoleCreateOperator adds an operator the way POST /v1/admin/operators
// does (the same checks and code), with its audit row in the same
// transaction, and returns its credential.
func (s *Server) consoleCreateOperator(ctx context.Context, name, role, reason string) (store.Operator, string, error) {
	c, ok := consoleGin(ctx)
	if !ok {
		return store.Operator{}, "", errors.New("console operator change outside a console request")
	}
	req := operatorRequest{Name: name, Role: role, Reason: reason}
	if err := checkNewOperator(req); err != nil {
		return store.Operator{}, "", consoleInvalid(err)
	}
	e := s.auditEntry(c, ActionOperatorCreate, reason)
	var (
		op     store.Operator
		secret string
	)
	err := store.WithTx(ctx, s.cfg.DB, func(tx *sqlx.Tx) error {
		var err error
		op, secret, err = s.addOperator(ctx, tx, e, name, role)
		return err
	})
	return op, secret, err
}

// consoleSetOperatorRole changes an operator's role the way PATCH
// /v1/admin/operators/{id} does, with its audit row in the same
// transaction.
func (s *Server) consoleSetOperatorRole(ctx context.Context, id uuid.UUID, role, reason string) (store.Operator, error) {
	c, ok := consoleGin(ctx)
	if !ok {
		return store.Operator{}, errors.New("console operator change outside a console request")
	}
	if err := checkRoleChange(operatorRequest{Role: role, Reason: reason}); err != nil {
		return store.Operator{}, consoleInvalid(err)
	}
	e := s.auditEntry(c, ActionOperatorSetRole, reason)
	var op store.Operator
	err := store.WithTx(ctx, s.cfg.DB, func(tx *sqlx.Tx) error {
		var err error
		op, err = s.changeOperatorRole(ctx, tx, e, id, role)
		return err
	})
	return op, err
}

// consoleRevokeOperator revokes an operator the way DELETE
// /v1/admin/operators/{id} does, with its audit row in the same
// transaction, and then ends the operator's live streams.
func (s *Server) consoleRevokeOperator(ctx context.Context, id uuid.UUID, reason string) (store.Operator, error) {
	c, ok := consoleGin(ctx)
	if !ok {
		return store.Operator{}, errors.New("console operator change outside a console request")
	}
	if len(reason) > maxAuditReasonLen {
		return store.Operator{}, fmt.Errorf("%w: reason must be at most 500 bytes", console.ErrInvalid)
	}
	e := s.auditEntry(c, ActionOperatorRevoke, reason)
	var op store.Operator
	err := store.WithTx(ctx, s.cfg.DB, func(tx *sqlx.Tx) error {
		var err error
		op, err = s.revokeOperatorTx(ctx, tx, e, id)
		return err
	})
	if err == nil {
		s.announceRevocation(ctx, id)
	}
	return op, err
}

// consoleInvoicePDF renders an invoice's PDF with the renderer GET
// /v1/invoices/{id}/pdf uses, and names it the same way.
func (s *Server) consoleInvoicePDF(ctx context.Context, id uuid.UUID) ([]byte, string, error) {
	inv, err := store.GetInvoice(ctx, s.cfg.DB, id)
	if err != nil {
		return nil, "", err
	}
	pdf, err := workers.RenderInvoicePDF(ctx, s.cfg.DB, id)
	if err != nil {
		return nil, "", err
	}
	return pdf, workers.InvoicePDFName(inv), nil
}
