package api

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/stream"
)

// StreamsOverview is the body of GET /v1/admin/streams.
type StreamsOverview struct {
	Streams []StreamStatusDTO `json:"streams"`
	Outbox  OutboxStatusDTO   `json:"outbox"`
}

// StreamStatusDTO describes one domain stream.
type StreamStatusDTO struct {
	Name    string           `json:"name"`
	Length  int64            `json:"length"`
	FirstID *string          `json:"first_id"`
	LastID  *string          `json:"last_id"`
	Groups  []GroupStatusDTO `json:"groups"`
}

// GroupStatusDTO describes one consumer group on one stream.
type GroupStatusDTO struct {
	Name                    string              `json:"name"`
	Lag                     *int64              `json:"lag"`
	Pending                 int64               `json:"pending"`
	OldestPendingAgeSeconds float64             `json:"oldest_pending_age_seconds"`
	Consumers               []ConsumerStatusDTO `json:"consumers"`
	DLQDepth                int64               `json:"dlq_depth"`
	RetryDepth              int64               `json:"retry_depth"`
}

// ConsumerStatusDTO describes one consumer of a group.
type ConsumerStatusDTO struct {
	Name        string  `json:"name"`
	Pending     int64   `json:"pending"`
	IdleSeconds float64 `json:"idle_seconds"`
}

// OutboxStatusDTO describes the events waiting for the relay.
type OutboxStatusDTO struct {
	Backlog          int64   `json:"backlog"`
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
}

// DeadLetterDTO is one dead-lettered event.
type DeadLetterDTO struct {
	ID          string           `json:"id"`
	Stream      string           `json:"stream"`
	EntryID     string           `json:"entry_id"`
	Error       string           `json:"error"`
	Deliveries  int64            `json:"deliveries"`
	FailedAt    *time.Time       `json:"failed_at"`
	Event       *stream.Envelope `json:"event"`
	DecodeError string           `json:"decode_error,omitempty"`
}

// DeadLetterList is the body of GET /v1/admin/dlq/{group}.
type DeadLetterList struct {
	Group string          `json:"group"`
	Total int64           `json:"total"`
	Items []DeadLetterDTO `json:"items"`
}

// DLQSelection picks dead letters for redrive or purge: exactly one of ids,
// count (redrive only: the oldest n) or all; reason, required, goes to
// the audit log.
type DLQSelection struct {
	IDs    []string `json:"ids"`
	Count  int      `json:"count"`
	All    bool     `json:"all"`
	Reason string   `json:"reason"`
}

func seconds(d time.Duration) float64 { return d.Seconds() }

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

var errStreamsUnconfigured = errors.New("stream administration is not configured")

func (s *Server) streamsAdmin(c *gin.Context) (*stream.Admin, bool) {
	if s.cfg.Streams == nil {
		s.fail(c, errStreamsUnconfigured)
		return nil, false
	}
	return s.cfg.Streams, true
}

// streamError gives stream errors a client-facing kind and detail.
func streamError(err error, group string) error {
	switch {
	case errors.Is(err, stream.ErrUnknownGroup):
		return withDetail(store.ErrNotFound, "No consumer group named "+strconv.Quote(group)+" exists on any stream.")
	case errors.Is(err, stream.ErrUnknownEntry):
		return withDetail(store.ErrNotFound, "The dead-letter stream of "+strconv.Quote(group)+" has no such entry.")
	case errors.Is(err, stream.ErrBadSelection):
		return invalid(FieldError{Field: "ids", Message: "send exactly one of ids (non-empty), count (above 0) or all (true)"})
	}
	return err
}

func (s *Server) adminStreams(c *gin.Context) {
	a, ok := s.streamsAdmin(c)
	if !ok {
		return
	}
	ov, err := a.Inspect(c.Request.Context())
	if err != nil {
		s.fail(c, err)
		return
	}
	out := StreamsOverview{Streams: make([]StreamStatusDTO, 0, len(ov.Streams))}
	for _, st := range ov.Streams {
		dto := StreamStatusDTO{Name: st.Name, Length: st.Length, FirstID: optional(st.FirstID), LastID: optional(st.LastID), Groups: []GroupStatusDTO{}}
		for _, g := range st.Groups {
			gd := GroupStatusDTO{
				Name: g.Name, Lag: g.Lag, Pending: g.Pending, OldestPendingAgeSeconds: seconds(g.OldestPendingAge),
				DLQDepth: g.DLQDepth, RetryDepth: g.RetryDepth, Consumers: []ConsumerStatusDTO{},
			}
			for _, cs := range g.Consumers {
				gd.Consumers = append(gd.Consumers, ConsumerStatusDTO{Name: cs.Name, Pending: cs.Pending, IdleSeconds: seconds(cs.Idle)})
			}
			dto.Groups = append(dto.Groups, gd)
		}
		out.Streams = append(out.Streams, dto)
	}
	if ov.Outbox != nil {
		out.Outbox = OutboxStatusDTO{Backlog: ov.Outbox.Backlog, OldestAgeSeconds: seconds(ov.Outbox.OldestAge)}
	}
	c.JSON(http.StatusOK, out)
}

func (s *Server) adminListDLQ(c *gin.Context) {
	a, ok := s.streamsAdmin(c)
	if !ok {
		return
	}
	limit := 50
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			s.fail(c, badParam("limit", "a whole number from 1 to 1000"))
			return
		}
		limit = n
	}
	group := c.Param("group")
	dead, total, err := a.DeadLetters(c.Request.Context(), group, limit)
	if err != nil {
		s.fail(c, streamError(err, group))
		return
	}
	out := DeadLetterList{Group: group, Total: total, Items: make([]DeadLetterDTO, 0, len(dead))}
	for _, d := range dead {
		dto := DeadLetterDTO{ID: d.ID, Stream: d.Stream, EntryID: d.EntryID, Error: d.Error, Deliveries: d.Deliveries, DecodeError: d.DecodeError}
		if !d.FailedAt.IsZero() {
			at := d.FailedAt
			dto.FailedAt = &at
		}
		if d.DecodeError == "" {
			env := d.Envelope
			dto.Event = &env
		}
		out.Items = append(out.Items, dto)
	}
	c.JSON(http.StatusOK, out)
}

func (s *Server) adminRedriveDLQ(c *gin.Context) { s.adminDLQAction(c, "redriven") }

func (s *Server) adminPurgeDLQ(c *gin.Context) { s.adminDLQAction(c, "purged") }

func (s *Server) adminDLQAction(c *gin.Context, verb string) {
	a, ok := s.streamsAdmin(c)
	if !ok {
		return
	}
	var req DLQSelection
	if err := bind(c, &req, false); err != nil {
		s.fail(c, err)
		return
	}
	if req.Count < 0 {
		s.fail(c, invalid(FieldError{Field: "count", Message: "must be above 0"}))
		return
	}
	if verb == "purged" && req.Count > 0 {
		s.fail(c, invalid(FieldError{Field: "count", Message: "purge takes ids or all, not a count"}))
		return
	}
	if !s.requireReason(c, req.Reason) {
		return
	}
	group := c.Param("group")
	sel := stream.Selection{IDs: req.IDs, Count: req.Count, All: req.All}
	action := ActionDLQPurge
	if verb == "redriven" {
		action = ActionDLQRedrive
	}
	e := s.auditEntry(c, action, req.Reason)
	e.Target = "group:" + group
	e.Params = auditParams(map[string]any{"ids": req.IDs, "count": req.Count, "all": req.All})
	var n int
	var err error
	if verb == "redriven" {
		n, err = a.Redrive(c.Request.Context(), group, sel)
	} else {
		n, err = a.Purge(c.Request.Context(), group, sel)
	}
	// The dead letters live in Redis: the row records the outcome after
	// the fact, failures of Redis too, so a partial effect is never
	// unrecorded; a refused request (unknown group or entry, bad
	// selection) changed nothing and leaves none.
	refused := errors.Is(err, stream.ErrUnknownGroup) || errors.Is(err, stream.ErrUnknownEntry) || errors.Is(err, stream.ErrBadSelection)
	if !refused {
		e.Count = auditCount(n)
		if err != nil {
			e.Result = "error: " + err.Error()
		}
		if aerr := s.audit(c.Request.Context(), s.cfg.DB, e); aerr != nil {
			s.fail(c, errors.Join(err, aerr))
			return
		}
	}
	if err != nil {
		s.fail(c, streamError(err, group))
		return
	}
	c.JSON(http.StatusOK, gin.H{"group": group, verb: n})
}
