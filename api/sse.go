package api

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/stream"
)

// SSEConfig tunes the live event routes. Zero fields get defaults.
type SSEConfig struct {
	// Heartbeat is how often an idle stream gets a ":" comment, so proxies
	// and clients see the connection alive (default 15s).
	Heartbeat time.Duration
	// Retry is the reconnection delay suggested to clients (default 3s).
	Retry time.Duration
	// WriteTimeout bounds each write; a client that does not take an event
	// within it is disconnected (default 10s).
	WriteTimeout time.Duration
	// CORSOrigins are the browser origins (such as the storefront's
	// "https://shop.example.com", or "*") allowed to open the live event
	// routes from their pages.
	CORSOrigins []string
}

func (c SSEConfig) withDefaults() SSEConfig {
	c.Heartbeat = cmp.Or(c.Heartbeat, 15*time.Second)
	c.Retry = cmp.Or(c.Retry, 3*time.Second)
	c.WriteTimeout = cmp.Or(c.WriteTimeout, 10*time.Second)
	return c
}

// publicScope is what GET /v1/events serves without a storefront or admin
// key: the maintenance announcements.
const publicScope = "system.#"

// maintenanceType is the event type of announcements.
const maintenanceType = "system.maintenance"

// sseAuth lets EventSource authenticate: browsers cannot set headers on it,
// so the live event routes also take the token as ?access_token=. The
// Authorization header wins when both are sent. The access log records the
// route, never the query, so the token does not end up in logs.
func (s *Server) sseAuth(optional bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		if c.GetHeader("Authorization") == "" {
			if tok := c.Query("access_token"); tok != "" {
				c.Request.Header.Set("Authorization", "Bearer "+tok)
			} else if optional {
				c.Next()
				return
			}
		}
		s.authenticate(c)
	}
}

// sseCORS answers cross-origin requests from the configured origins.
func (s *Server) sseCORS(c *gin.Context) {
	origin := c.GetHeader("Origin")
	c.Writer.Header().Add("Vary", "Origin")
	if origin != "" && (slices.Contains(s.cfg.SSE.CORSOrigins, "*") || slices.Contains(s.cfg.SSE.CORSOrigins, origin)) {
		c.Header("Access-Control-Allow-Origin", origin)
		c.Header("Access-Control-Expose-Headers", HeaderRequestID)
	}
	c.Next()
}

// ssePreflight answers a CORS preflight for the live event routes.
func (s *Server) ssePreflight(c *gin.Context) {
	if c.Writer.Header().Get("Access-Control-Allow-Origin") != "" {
		c.Header("Access-Control-Allow-Methods", "GET")
		c.Header("Access-Control-Allow-Headers", "Authorization, Last-Event-ID, Cache-Control")
		c.Header("Access-Control-Max-Age", "600")
	}
	c.Status(http.StatusNoContent)
	c.Writer.WriteHeaderNow()
}

// events: GET /v1/events?topics=... Without a key (or with a seller or
// printer key) only the public topics; with a storefront or admin key any.
func (s *Server) events(c *gin.Context) {
	patterns, err := topics(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	p, authed := c.Get(principalKey)
	role := Role("")
	if authed {
		role = p.(Principal).Role
	}
	full := role == RoleAdmin || role == RoleStorefront || staffRank(role) > 0
	if len(patterns) == 0 {
		patterns = []string{publicScope}
		if full {
			patterns = []string{"#"}
		}
	}
	if !full && !stream.PatternsWithin(patterns, publicScope) {
		if !authed {
			s.fail(c, withDetail(errUnauthorized, "Topics beyond "+publicScope+" need a storefront or admin key."))
			return
		}
		s.fail(c, withDetail(errForbidden, "A "+string(role)+" key reads its seller's events at /v1/sellers/{id}/events."))
		return
	}
	s.serveEvents(c, stream.SubscribeOptions{Patterns: patterns})
}

// sellerEvents: GET /v1/sellers/{id}/events?topics=... for the seller's
// dashboards and printers: that seller's events and the public ones.
func (s *Server) sellerEvents(c *gin.Context) {
	id, err := s.visibleSeller(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	patterns, err := topics(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	if _, err := store.GetSeller(c.Request.Context(), s.cfg.DB, id); err != nil {
		s.fail(c, err)
		return
	}
	s.serveEvents(c, stream.SubscribeOptions{Patterns: patterns, Seller: id.String()})
}

// topics reads the topic patterns: comma-separated, the parameter may repeat.
func topics(c *gin.Context) ([]string, error) {
	var out []string
	for _, v := range c.QueryArray("topics") {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	if len(out) > 32 {
		return nil, badParam("topics", "at most 32 patterns")
	}
	for _, p := range out {
		for w := range strings.SplitSeq(p, ".") {
			if !topicWord.MatchString(w) {
				return nil, badParam("topics", topicGrammar+" ("+strconv.Quote(p)+" has the word "+strconv.Quote(w)+")")
			}
		}
	}
	if err := stream.ValidatePatterns(out); err != nil {
		return nil, badParam("topics", topicGrammar+" ("+err.Error()+")")
	}
	return out, nil
}

// topicWord is one word of a topic pattern as openapi.yaml documents it
// (parameter Topics): event types are dotted words of a-z, 0-9 and _, so a
// pattern of other words could never match and is a client's mistake.
var topicWord = regexp.MustCompile(`^(?:[a-z0-9_]+|\*|#)$`)

const topicGrammar = "comma-separated topic patterns: dotted words of a-z, 0-9 and _, with * for one word and # for any number"

// serveEvents streams a subscription as Server-Sent Events until the
// client leaves, falls behind (it reconnects and resumes), or the server
// stops.
func (s *Server) serveEvents(c *gin.Context, opts stream.SubscribeOptions) {
	if s.cfg.Hub == nil {
		s.fail(c, withDetail(errUnavailable, "Live events are not enabled on this server."))
		return
	}
	slot, ok := s.acquireStream(c, uuid.NewString())
	if !ok {
		return
	}
	opts.Cursor = c.GetHeader("Last-Event-ID")
	cursorName := "Last-Event-ID"
	if opts.Cursor == "" {
		opts.Cursor, cursorName = c.Query("last_event_id"), "last_event_id"
	}
	// A hijacked stream outlives the request, whose context net/http ends
	// when the handler returns; the stream's own cancel ends it instead.
	// Revoking the stream's key cancels ctx too (revoke.go).
	ctx, untrack := s.revocations.track(context.WithoutCancel(c.Request.Context()), principalOf(c).credentialID())
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	stop := context.AfterFunc(c.Request.Context(), cancel) // a client gone before the subscription
	sub, err := s.cfg.Hub.Subscribe(sctx, opts)
	stop()
	cancel()
	if err != nil {
		untrack()
		slot.release(ctx)
	}
	switch {
	case errors.Is(err, stream.ErrBadCursor):
		s.fail(c, badParam(cursorName, "must be the id of an event this API sent"))
		return
	case errors.Is(err, stream.ErrBadTopic):
		s.fail(c, badParam("topics", err.Error()))
		return
	case err != nil:
		s.fail(c, withDetail(errUnavailable, "Live events are unavailable right now; retry shortly.", FieldError{Field: "cause", Message: "event hub not ready"}))
		return
	}
	s.streamStarted(c)
	s.tel.sseClients.Inc()
	end := func() {
		sub.Close()
		untrack()
		s.tel.sseClients.Dec()
		slot.release(ctx)
	}

	h := c.Writer.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	if c.Request.ProtoMajor == 1 {
		h.Set("Connection", "keep-alive")
	}
	c.Status(http.StatusOK)
	conf := s.cfg.SSE.withDefaults()
	log := s.logFor(c)

	conn, hijacked, err := hijack(c)
	if hijacked {
		if err != nil {
			end()
			return
		}
		sctx, cancel := context.WithCancel(ctx)
		st := &rawStream{conn: conn, cancel: cancel, slot: slot}
		st.last.Store(time.Now().UnixNano())
		w := &sseWriter{w: connWriter{st: st, timeout: conf.WriteTimeout}}
		go func() {
			defer end()
			defer conn.Close()
			defer cancel()
			s.wheel.add(st) //nolint:contextcheck // the wheel is shared by every stream and outlives this request; its slot renewals carry their own deadline
			defer s.wheel.remove(st)
			s.pump(sctx, w, sub, opts, conf, slot, log, nil)
		}()
		return
	}
	defer end()
	w := &sseWriter{w: c.Writer, rc: http.NewResponseController(c.Writer), timeout: conf.WriteTimeout}
	s.pump(ctx, w, sub, opts, conf, slot, log, &conf.Heartbeat)
}

// pump writes the stream until ctx ends, the client leaves or falls
// behind, or the hub stops. With heartbeat set it sends the heartbeats
// itself; a raw stream leaves them to the wheel.
func (s *Server) pump(ctx context.Context, w *sseWriter, sub *stream.Subscriber, opts stream.SubscribeOptions, conf SSEConfig, slot *streamSlot, log *slog.Logger, heartbeat *time.Duration) {
	// The first message carries the retry hint and an id, so a client that
	// disconnects before any event still resumes from here.
	w.buffer().WriteString("retry: " + strconv.FormatInt(conf.Retry.Milliseconds(), 10) + "\n")
	if err := w.event(sub.Cursor(), "ready", []byte("{}")); err != nil {
		return
	}
	if opts.Cursor == "" {
		if err := s.sendAnnouncement(ctx, w, sub, opts); err != nil {
			log.Debug("sse: write announcement", "err", err)
			return
		}
	}
	// now is a done context: Next with it never waits.
	now, cancelNow := context.WithCancel(ctx)
	cancelNow()
	var pushes []ssePush
	for {
		slot.refresh(ctx)
		var ev stream.LiveEvent
		var err error
		if heartbeat != nil {
			hctx, cancel := context.WithTimeout(ctx, *heartbeat)
			ev, err = sub.Next(hctx)
			cancel()
		} else {
			ev, err = sub.Next(ctx)
		}
		switch {
		case err == nil:
			// Events already queued go out in the same write: under load
			// one write and flush carries many events.
			pushes = pushes[:0]
			for {
				if err := w.add(ev.ID, ev.Type, ev.Data); err != nil {
					log.Warn("sse: event skipped", "err", err, "event_id", ev.EventID)
				} else {
					pushes = append(pushes, s.tel.startPush(ctx, ev))
				}
				if len(pushes) >= maxBatch || w.buffer().Len() > maxBatchBytes || !sub.Buffered() {
					break
				}
				if ev, err = sub.Next(now); err != nil {
					break
				}
			}
			err := w.flush()
			for _, p := range pushes {
				p.end(err)
			}
			clear(pushes)
			if err != nil {
				s.tel.sseWriteFailed(err)
				return
			}
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			w.buffer().WriteString(": heartbeat\n\n")
			if err := w.flush(); err != nil {
				s.tel.sseWriteFailed(err)
				return
			}
		case errors.Is(err, stream.ErrSlowConsumer):
			s.tel.sseSlow.Inc()
			log.Info("sse: slow client disconnected; it resumes from its last event id")
			return
		default:
			return // the client left or the hub stopped
		}
	}
}

// sendAnnouncement gives a newly connected client the current maintenance
// announcement at once, unless it will arrive live anyway.
func (s *Server) sendAnnouncement(ctx context.Context, w *sseWriter, sub *stream.Subscriber, opts stream.SubscribeOptions) error {
	wants := len(opts.Patterns) == 0
	for _, p := range opts.Patterns {
		wants = wants || stream.MatchTopic(p, maintenanceType)
	}
	if !wants {
		return nil
	}
	ev, err := store.LatestEventOfType(ctx, s.cfg.DB, maintenanceType)
	if err != nil {
		return nil // none, or an error that must not end the stream
	}
	if later, err := sub.WillReceive(ctx, ev); err != nil || later {
		return nil
	}
	var a announcementData
	if json.Unmarshal(ev.Data, &a) != nil || !a.ExpiresAt.After(time.Now()) {
		return nil
	}
	data, err := json.Marshal(stream.EnvelopeOf(ev))
	if err != nil {
		return nil
	}
	return w.event(sub.Cursor(), ev.Type, data)
}

// errUnsafeField means an id or event name would break the SSE framing.
var errUnsafeField = errors.New("CR or LF in an SSE id or event field")

// sseWriter frames and writes events, each write under a deadline.
type sseWriter struct {
	w io.Writer
	// rc flushes w and sets its deadline; nil on a raw stream, whose
	// writer does both.
	rc      *http.ResponseController
	timeout time.Duration
	// buf is taken from ssePool while a write is being framed and given
	// back after it, so an idle stream holds no buffer.
	buf *bytes.Buffer
}

// ssePool holds the framing buffers shared by every stream.
var ssePool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// Write batching limits: events and bytes per write.
const (
	maxBatch      = 64
	maxBatchBytes = 64 << 10
)

func (w *sseWriter) buffer() *bytes.Buffer {
	if w.buf == nil {
		w.buf = ssePool.Get().(*bytes.Buffer)
	}
	return w.buf
}

// event writes one event and flushes it.
func (w *sseWriter) event(id, typ string, data []byte) error {
	if err := w.add(id, typ, data); err != nil {
		return err
	}
	return w.flush()
}

// add frames one event into the buffer; it refuses values that would
// break the framing.
func (w *sseWriter) add(id, typ string, data []byte) error {
	if strings.ContainsAny(id, "\r\n") || strings.ContainsAny(typ, "\r\n") {
		return fmt.Errorf("%w: id %q, event %q", errUnsafeField, id, typ)
	}
	b := w.buffer()
	b.WriteString("id: ")
	b.WriteString(id)
	b.WriteString("\nevent: ")
	b.WriteString(typ)
	b.WriteByte('\n')
	// JSON from json.Marshal has no raw newlines; split anyway so no data
	// can end the event early.
	for line := range bytes.Lines(data) {
		b.WriteString("data: ")
		b.Write(bytes.TrimRight(line, "\r\n"))
		b.WriteByte('\n')
	}
	if len(data) == 0 {
		b.WriteString("data:\n")
	}
	b.WriteByte('\n')
	return nil
}

func (w *sseWriter) flush() error {
	b := w.buffer()
	defer func() {
		w.buf = nil
		// A buffer grown by a large backlog is left to the collector.
		if b.Cap() <= 2*maxBatchBytes {
			b.Reset()
			ssePool.Put(b)
		}
	}()
	if w.rc == nil {
		_, err := w.w.Write(b.Bytes())
		return err
	}
	if err := w.rc.SetWriteDeadline(time.Now().Add(w.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	if _, err := w.w.Write(b.Bytes()); err != nil {
		return err
	}
	if err := w.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

// announcementData is the data of a system.maintenance event.
type announcementData struct {
	Message   string    `json:"message"`
	Level     string    `json:"level"`
	StartsAt  time.Time `json:"starts_at"`
	ExpiresAt time.Time `json:"expires_at"`
}
