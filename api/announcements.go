package api

import (
	"context"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jmoiron/sqlx"

	"github.com/bazaarhq/bazaar/sql/store"
)

// Announcement limits: how long one may run by default and at most.
const (
	defaultAnnouncementTTL = time.Hour
	maxAnnouncementTTL     = 30 * 24 * time.Hour
)

type announcementRequest struct {
	Message   string     `json:"message"`
	Level     string     `json:"level"`
	StartsAt  *time.Time `json:"starts_at"`
	ExpiresAt *time.Time `json:"expires_at"`
	Reason    string     `json:"reason"`
}

type announcementDTO struct {
	ID        string    `json:"id"`
	Message   string    `json:"message"`
	Level     string    `json:"level"`
	StartsAt  time.Time `json:"starts_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// validAnnouncement checks an announcement request at now and fills in
// its defaults; the console's announcements go through it too.
func validAnnouncement(req announcementRequest, now time.Time) (announcementData, error) {
	var k checker
	k.text("message", req.Message, true, 500)
	switch req.Level {
	case "":
		req.Level = "info"
	case "info", "warning", "critical":
	default:
		k.add("level", "must be one of info, warning, critical")
	}
	a := announcementData{Message: req.Message, Level: req.Level, StartsAt: now, ExpiresAt: now.Add(defaultAnnouncementTTL)}
	if req.StartsAt != nil {
		a.StartsAt = req.StartsAt.UTC()
	}
	if req.ExpiresAt != nil {
		a.ExpiresAt = req.ExpiresAt.UTC()
	}
	switch {
	case !a.ExpiresAt.After(now):
		k.add("expires_at", "must be in the future")
	case !a.ExpiresAt.After(a.StartsAt):
		k.add("expires_at", "must be after starts_at")
	case a.ExpiresAt.Sub(now) > maxAnnouncementTTL:
		k.add("expires_at", "must be within 30 days")
	}
	k.text("reason", req.Reason, false, maxAuditReasonLen)
	return a, k.err()
}

// createAnnouncement: POST /v1/admin/announcements (operator). It records a
// system.maintenance event in the outbox; frontends connected to
// /v1/events see it live, and those connecting later get the latest one
// until it expires. A newer announcement replaces an older one.
func (s *Server) createAnnouncement(c *gin.Context) {
	var req announcementRequest
	if err := bind(c, &req, false); err != nil {
		s.fail(c, err)
		return
	}
	a, err := validAnnouncement(req, time.Now().UTC())
	if err != nil {
		s.fail(c, err)
		return
	}
	e := s.auditEntry(c, ActionAnnouncement, req.Reason)
	s.write(c, func(ctx context.Context, tx *sqlx.Tx) (change, error) {
		// One subject keeps announcements in order on the stream.
		ev, err := store.NewEvent(maintenanceType, "announcements", nil, 1, a)
		if err != nil {
			return change{}, err
		}
		out := announcementDTO{ID: ev.ID.String(), Message: a.Message, Level: a.Level, StartsAt: a.StartsAt, ExpiresAt: a.ExpiresAt}
		e.Target, e.Params = "announcement:"+out.ID, auditParams(out)
		if err := s.audit(ctx, tx, e); err != nil {
			return change{}, err
		}
		return change{status: http.StatusCreated, body: out, events: []store.Event{ev}}, nil
	})
}
