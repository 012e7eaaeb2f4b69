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
)

// mountConsole serves the operator console (api/console) at /console.
// Until named operators exist, the admin token is the one credential: as
// a bearer token, or through the login form, which sets the monitor's
// session cookie for /console and /monitor. Either acts as role admin.
func (s *Server) mountConsole(r *gin.Engine) error {
	cfg := console.Config{
		DB: s.cfg.DB, Streams: s.cfg.Streams, Hub: s.cfg.Hub, Tasks: s.cfg.Tasks,
		Authorize: func(r *http.Request) (string, string, bool) { return s.authorizeConsole(r) },
		Login:     s.consoleLogin,
		Audit:     s.cfg.ConsoleAudit,
		Announce:  s.consoleAnnounce, RetryFailed: s.consoleRetryFailed,
		Registry: s.cfg.Registry, Logger: s.log.With("component", "console"),
	}
	if s.cfg.Monitor != nil {
		cfg.MonitorPath = monitorRoot
	}
	s.authorizeConsole = s.consoleAuthorize
	c, err := console.Mount(r, cfg)
	if err != nil {
		return err
	}
	s.console = c
	return nil
}

// consoleAuthorize accepts the admin token (bearer) or a monitor session
// cookie, as role admin.
func (s *Server) consoleAuthorize(r *http.Request) (who, role string, ok bool) {
	if tok, ok := bearer(r.Header.Get("Authorization")); ok {
		return "admin token", console.RoleAdmin, s.isAdminToken(tok)
	}
	if ck, err := r.Cookie(monitorCookie); err == nil && s.validMonitorSession(ck.Value, time.Now()) {
		return "admin token", console.RoleAdmin, true
	}
	return "", "", false
}

// consoleLogin checks the admin token under the monitor's login limit and
// sets the session cookie for the console and the monitor.
func (s *Server) consoleLogin(c *gin.Context, credential string) bool {
	if !s.monitorTokenAccepted(c, credential) {
		return false
	}
	exp := time.Now().Add(monitorSessionTTL)
	v := s.monitorSession(exp)
	for _, path := range []string{console.Root, monitorRoot} {
		http.SetCookie(c.Writer, &http.Cookie{ //nolint:gosec // Secure set whenever the request came over TLS
			Name: monitorCookie, Value: v, Path: path, Expires: exp,
			HttpOnly: true, Secure: s.requestIsHTTPS(c), SameSite: http.SameSiteStrictMode,
		})
	}
	return true
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
// /v1/admin/announcements does.
func (s *Server) consoleAnnounce(ctx context.Context, a console.Announcement) error {
	data, err := validAnnouncement(announcementRequest{Message: a.Message, Level: a.Level, StartsAt: a.StartsAt, ExpiresAt: a.ExpiresAt}, time.Now().UTC())
	if err != nil {
		var msgs []string
		var de *detailError
		if errors.As(err, &de) {
			for _, f := range de.fields {
				msgs = append(msgs, f.Field+" "+f.Message)
			}
		}
		return fmt.Errorf("%w: %s", console.ErrInvalid, strings.Join(msgs, "; "))
	}
	return s.commitEvents(ctx, func(*sqlx.Tx) ([]store.Event, error) {
		ev, err := store.NewEvent(maintenanceType, "announcements", nil, 1, data)
		return []store.Event{ev}, err
	})
}

// consoleRetryFailed moves a run's failed accounts back to pending the
// way POST /v1/admin/invoicing/runs/{id}/retry-failed does.
func (s *Server) consoleRetryFailed(ctx context.Context, run uuid.UUID) (int, error) {
	var n int
	err := s.commitEvents(ctx, func(tx *sqlx.Tx) ([]store.Event, error) {
		var events []store.Event
		var err error
		n, _, events, err = workers.ResetFailedAccounts(ctx, tx, run)
		return events, err
	})
	return n, err
}
