package console

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/hibiken/asynq"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/stream"
)

func (c *Console) overview(g *gin.Context) {
	snap := c.snaps.get(g.Request.Context())
	firing := 0
	for _, a := range snap.Alerts {
		if a.Firing {
			firing++
		}
	}
	c.render(g, http.StatusOK, "overview", "Overview", map[string]any{"S": snap, "Firing": firing})
}

// replayView is the dry run of a replay shown before it is confirmed.
type replayView struct {
	Group, Since string
	Count        int64
	Error        string
}

// sinceLayout is how the replay form sends its time (UTC).
const sinceLayout = "2006-01-02T15:04"

func (c *Console) groups(g *gin.Context) {
	snap := c.snaps.get(g.Request.Context())
	names := map[string]bool{}
	for _, gr := range snap.Groups {
		names[gr.Name] = true
	}
	data := map[string]any{"S": snap, "Names": sortedKeys(names), "DefaultSince": c.cfg.Now().UTC().Add(-time.Hour).Format(sinceLayout)}
	if group := g.Query("replay"); group != "" && c.cfg.Streams != nil {
		rv := &replayView{Group: group, Since: g.Query("since")}
		since, err := time.Parse(sinceLayout, rv.Since)
		switch {
		case err != nil:
			rv.Error = "Give the time as YYYY-MM-DDTHH:MM (UTC)."
		default:
			rv.Count, err = c.cfg.Streams.ReplayCount(g.Request.Context(), group, since)
			if err != nil {
				rv.Error = replayProblem(err)
			}
		}
		data["Replay"] = rv
	}
	c.render(g, http.StatusOK, "groups", "Consumer groups", data)
}

func replayProblem(err error) string {
	switch {
	case errors.Is(err, stream.ErrUnknownGroup):
		return "No such group, or its consumers have not recorded their patterns yet."
	case errors.Is(err, stream.ErrReplayTooLarge):
		return "Too many events to replay at once (at most " + strconv.Itoa(stream.MaxReplay) + "): pick a later time."
	}
	return "The event log could not be read; try again."
}

func (c *Console) replayGroup(g *gin.Context) {
	a, err := c.streamAdmin()
	if err != nil {
		c.streamFail(g, err)
		return
	}
	reason, ok := c.reason(g)
	if !ok {
		return
	}
	group := g.Param("group")
	since, err := time.Parse(sinceLayout, g.PostForm("since"))
	if err != nil {
		c.fail(g, http.StatusBadRequest, "Give the time as YYYY-MM-DDTHH:MM (UTC).")
		return
	}
	n, err := a.Replay(g.Request.Context(), group, since)
	switch {
	case errors.Is(err, stream.ErrUnknownGroup):
		c.fail(g, http.StatusNotFound, replayProblem(err))
		return
	case errors.Is(err, stream.ErrReplayTooLarge):
		c.fail(g, http.StatusBadRequest, replayProblem(err))
		return
	case err != nil && n == 0:
		c.log.Error("console: replay", "group", group, "err", err)
		c.fail(g, http.StatusInternalServerError, replayProblem(err))
		return
	}
	c.audit(g, "group.replay", "group:"+group, reason, map[string]any{"since": since.Format(time.RFC3339), "replayed": n, "expected": g.PostForm("expect")})
	if err != nil {
		c.log.Error("console: replay stopped", "group", group, "replayed", n, "err", err)
		c.done(g, Root+"/groups", "Replay of "+group+" stopped after "+plural(int64(n), "event")+"; try again for the rest.")
		return
	}
	c.done(g, Root+"/groups", "Replaying "+plural(int64(n), "event")+" to "+group+".")
}

// streamFail answers a stream error: 404 for an unknown group or entry,
// 400 for a bad selection, 500 otherwise.
func (c *Console) streamFail(g *gin.Context, err error) {
	switch {
	case errors.Is(err, stream.ErrUnknownGroup):
		c.fail(g, http.StatusNotFound, "No consumer group named "+strconv.Quote(g.Param("group"))+" exists.")
	case errors.Is(err, stream.ErrUnknownEntry):
		c.fail(g, http.StatusNotFound, "The dead-letter stream has no such entry; someone may have redriven or purged it.")
	case errors.Is(err, stream.ErrBadSelection):
		c.fail(g, http.StatusBadRequest, "Select at least one dead letter.")
	case errors.Is(err, errNoStreams):
		c.fail(g, http.StatusServiceUnavailable, err.Error())
	default:
		c.log.Error("console: streams", "err", err)
		c.fail(g, http.StatusInternalServerError, "Redis could not be read or written; try again.")
	}
}

func (c *Console) pauseGroup(g *gin.Context)  { c.setGroupPaused(g, true) }
func (c *Console) resumeGroup(g *gin.Context) { c.setGroupPaused(g, false) }

func (c *Console) setGroupPaused(g *gin.Context, pause bool) {
	a, err := c.streamAdmin()
	if err != nil {
		c.streamFail(g, err)
		return
	}
	reason := strings.TrimSpace(g.PostForm("reason"))
	group := g.Param("group")
	action, verb := "group.resume", "Resumed"
	if pause {
		action, verb = "group.pause", "Paused"
		err = a.PauseGroup(g.Request.Context(), group, operatorOf(g).Name+": "+reason)
	} else {
		err = a.ResumeGroup(g.Request.Context(), group)
	}
	if err != nil {
		c.streamFail(g, err)
		return
	}
	c.audit(g, action, "group:"+group, reason, nil)
	c.done(g, Root+"/groups", verb+" group "+group+".")
}

// deadLetterRow is a dead letter as the page shows it.
type deadLetterRow struct {
	stream.DeadLetter
	Summary string
}

func (c *Console) deadLetters(g *gin.Context) {
	snap := c.snaps.get(g.Request.Context())
	byGroup := map[string]int64{}
	for _, gr := range snap.Groups {
		byGroup[gr.Name] = max(byGroup[gr.Name], gr.DeadLetters)
	}
	names := sortedKeys(byGroup)
	data := map[string]any{"Groups": names, "Depth": byGroup}
	group := g.Param("group")
	if group == "" {
		for _, n := range names {
			if byGroup[n] > 0 {
				group = n
				break
			}
		}
	}
	if group != "" && c.cfg.Streams != nil {
		dead, total, err := c.cfg.Streams.DeadLetters(g.Request.Context(), group, 100)
		if err != nil {
			c.streamFail(g, err)
			return
		}
		rows := make([]deadLetterRow, len(dead))
		for i, d := range dead {
			rows[i] = deadLetterRow{DeadLetter: d, Summary: eventSummary(d)}
		}
		data["Group"], data["Items"], data["Total"] = group, rows, total
		data["Redrive"] = c.jobs.state(group)
	}
	c.render(g, http.StatusOK, "dlq", "Dead letters", data)
}

// eventSummary says in words what a dead-lettered event was about.
func eventSummary(d stream.DeadLetter) string {
	if d.DecodeError != "" {
		return "unreadable entry: " + d.DecodeError
	}
	e := d.Envelope
	var data map[string]any
	_ = json.Unmarshal(e.Data, &data)
	parts := []string{e.Type}
	if v, ok := data["total_minor"].(float64); ok {
		cur, _ := data["currency"].(string)
		parts = append(parts, money(int64(v), cur))
	}
	if v, ok := data["status"].(string); ok {
		parts = append(parts, v)
	}
	return strings.Join(parts, " · ")
}

func (c *Console) redrive(g *gin.Context) {
	a, err := c.streamAdmin()
	if err != nil {
		c.streamFail(g, err)
		return
	}
	reason, ok := c.reason(g)
	if !ok {
		return
	}
	group := g.Param("group")
	ids := g.PostFormArray("id")
	n, err := a.Redrive(g.Request.Context(), group, stream.Selection{IDs: ids})
	if err != nil {
		c.streamFail(g, err)
		return
	}
	c.audit(g, "dlq.redrive", "group:"+group, reason, map[string]any{"ids": ids, "redriven": n})
	c.done(g, Root+"/dlq/"+group, "Redrove "+plural(int64(n), "dead letter")+" of "+group+".")
}

func (c *Console) redriveAll(g *gin.Context) {
	a, err := c.streamAdmin()
	if err != nil {
		c.streamFail(g, err)
		return
	}
	reason, ok := c.reason(g)
	if !ok {
		return
	}
	group := g.Param("group")
	rate, err := strconv.Atoi(g.PostForm("rate"))
	if err != nil || rate < 1 || rate > 10000 {
		c.fail(g, http.StatusBadRequest, "Give a rate from 1 to 10000 dead letters a second.")
		return
	}
	if _, _, err := a.DeadLetters(g.Request.Context(), group, 1); err != nil {
		c.streamFail(g, err)
		return
	}
	op := operatorOf(g)
	log := c.log
	started := c.jobs.start(group, RedriveState{Group: group, Rate: rate, StartedBy: op.Name, StartedAt: c.cfg.Now()},
		func(ctx context.Context, progress func(int, int)) (int, error) {
			n, err := a.RedriveAtRate(ctx, group, rate, stream.RedriveProgress(progress))
			log.Info("console: redrive at a rate ended", "group", group, "redriven", n, "err", err)
			return n, err
		})
	if !started {
		c.fail(g, http.StatusConflict, "A redrive of "+group+" is already running; cancel it first.")
		return
	}
	c.audit(g, "dlq.redrive", "group:"+group, reason, map[string]any{"all": true, "rate_per_second": rate})
	c.done(g, Root+"/dlq/"+group, "Redriving every dead letter of "+group+" at "+strconv.Itoa(rate)+" a second.")
}

func (c *Console) cancelRedrive(g *gin.Context) {
	group := g.Param("group")
	st, ok := c.jobs.cancel(group)
	if !ok {
		c.fail(g, http.StatusNotFound, "No redrive of "+group+" runs in this process.")
		return
	}
	c.audit(g, "dlq.redrive.cancel", "group:"+group, strings.TrimSpace(g.PostForm("reason")), map[string]any{"redriven": st.Moved, "total": st.Total})
	c.done(g, Root+"/dlq/"+group, "Stopped the redrive of "+group+" after "+plural(int64(st.Moved), "dead letter")+".")
}

func (c *Console) purge(g *gin.Context) {
	a, err := c.streamAdmin()
	if err != nil {
		c.streamFail(g, err)
		return
	}
	reason, ok := c.reason(g)
	if !ok {
		return
	}
	group := g.Param("group")
	ids := g.PostFormArray("id")
	sel := stream.Selection{IDs: ids, All: len(ids) == 0 && g.PostForm("all") == "true"}
	n, err := a.Purge(g.Request.Context(), group, sel)
	if err != nil {
		c.streamFail(g, err)
		return
	}
	c.audit(g, "dlq.purge", "group:"+group, reason, map[string]any{"ids": ids, "all": sel.All, "purged": n})
	c.done(g, Root+"/dlq/"+group, "Purged "+plural(int64(n), "dead letter")+" of "+group+".")
}

// taskError is one archived or retrying task with its last error.
type taskError struct {
	Queue, Type, State, Error string
	At                        time.Time
}

func (c *Console) tasks(g *gin.Context) {
	data := map[string]any{"Configured": c.cfg.Tasks != nil}
	if c.cfg.Tasks != nil {
		qs, err := c.queues()
		if err != nil {
			c.log.Error("console: queues", "err", err)
			c.fail(g, http.StatusInternalServerError, "The task queues could not be read; try again.")
			return
		}
		// Archived and retrying tasks by type, and the latest errors.
		byType := map[string]map[string]int{}
		var errs []taskError
		for _, q := range qs {
			for state, list := range map[string]func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){
				"archived": c.cfg.Tasks.ListArchivedTasks, "retry": c.cfg.Tasks.ListRetryTasks,
			} {
				ts, err := list(q.Name, asynq.PageSize(100))
				if err != nil {
					continue
				}
				for _, t := range ts {
					k := q.Name + " · " + t.Type
					if byType[k] == nil {
						byType[k] = map[string]int{}
					}
					byType[k][state]++
					errs = append(errs, taskError{Queue: q.Name, Type: t.Type, State: state, Error: t.LastErr, At: t.LastFailedAt})
				}
			}
		}
		slices.SortFunc(errs, func(a, b taskError) int { return b.At.Compare(a.At) })
		data["Queues"], data["ByType"], data["Types"], data["Errors"] = qs, byType, sortedKeys(byType), errs[:min(len(errs), 20)]
	}
	c.render(g, http.StatusOK, "tasks", "Tasks", data)
}

func (c *Console) pauseQueue(g *gin.Context)  { c.setQueuePaused(g, true) }
func (c *Console) resumeQueue(g *gin.Context) { c.setQueuePaused(g, false) }

func (c *Console) setQueuePaused(g *gin.Context, pause bool) {
	if c.cfg.Tasks == nil {
		c.fail(g, http.StatusServiceUnavailable, "The task queues are not configured on this server.")
		return
	}
	q := g.Param("queue")
	names, err := c.cfg.Tasks.Queues()
	if err != nil {
		c.fail(g, http.StatusInternalServerError, "The task queues could not be read; try again.")
		return
	}
	if !slices.Contains(names, q) {
		c.fail(g, http.StatusNotFound, "No queue named "+strconv.Quote(q)+" exists.")
		return
	}
	action, verb := "queue.resume", "Resumed"
	if pause {
		action, verb = "queue.pause", "Paused"
		err = c.cfg.Tasks.PauseQueue(q)
	} else {
		err = c.cfg.Tasks.UnpauseQueue(q)
	}
	if err != nil {
		// Pausing a paused queue (or resuming a running one) is an error
		// to asynq and a no-op to the operator.
		c.log.Info("console: queue", "queue", q, "pause", pause, "err", err)
	}
	c.audit(g, action, "queue:"+q, strings.TrimSpace(g.PostForm("reason")), nil)
	c.done(g, Root+"/tasks", verb+" queue "+q+".")
}

// runRow is an invoice run with its progress and failed accounts.
type runRow struct {
	store.InvoiceRun
	Progress store.RunProgress
	Failures []store.RunAccount
}

func (c *Console) invoicing(g *gin.Context) {
	ctx := g.Request.Context()
	runs, _, err := store.ListInvoiceRuns(ctx, c.cfg.DB, store.Page{Limit: 10})
	if err != nil {
		c.log.Error("console: invoice runs", "err", err)
		c.fail(g, http.StatusInternalServerError, "The invoice runs could not be read; try again.")
		return
	}
	rows := make([]runRow, len(runs))
	for i, r := range runs {
		rows[i].InvoiceRun = r
		if rows[i].Progress, err = store.InvoiceRunProgress(ctx, c.cfg.DB, r.ID); err == nil && rows[i].Progress.Failed > 0 {
			rows[i].Failures, err = store.ListRunAccounts(ctx, c.cfg.DB, r.ID, "failed", uuid.Nil, 20)
		}
		if err != nil {
			c.fail(g, http.StatusInternalServerError, "The invoice runs could not be read; try again.")
			return
		}
	}
	// The search runs in SQL over every invoice, a page at a time.
	q := strings.TrimSpace(g.Query("q"))
	f := store.InvoiceFilter{Search: q}
	if id, err := uuid.Parse(q); err == nil {
		f = store.InvoiceFilter{AccountID: &id}
	}
	if p := g.Query("period"); p != "" {
		t, err := time.Parse("2006-01-02", p)
		if err != nil {
			c.fail(g, http.StatusBadRequest, "Give the period start as a date, like 2025-10-01.")
			return
		}
		f.PeriodStart = &t
	}
	page := store.Page{Limit: invoicePageSize}
	if after := g.Query("after"); after != "" {
		cur, ok := parseAuditCursor(after)
		if !ok {
			c.fail(g, http.StatusBadRequest, "That page of invoices does not exist; start from the first page.")
			return
		}
		page.After = cur
	}
	invoices, next, err := store.ListInvoices(ctx, c.cfg.DB, f, page)
	if err != nil {
		c.log.Error("console: invoices", "err", err)
		c.fail(g, http.StatusInternalServerError, "The invoices could not be read; try again.")
		return
	}
	var nextURL, firstURL string
	if next != nil {
		v := g.Request.URL.Query()
		v.Set("after", auditCursor(next))
		v.Del("done")
		nextURL = Root + "/invoicing?" + v.Encode() + "#invoices"
	}
	if page.After != nil {
		v := g.Request.URL.Query()
		v.Del("after")
		v.Del("done")
		firstURL = Root + "/invoicing?" + v.Encode() + "#invoices"
	}
	snap := c.snaps.get(ctx)
	c.render(g, http.StatusOK, "invoicing", "Invoicing", map[string]any{
		"Runs": rows, "Invoices": invoices, "Q": q, "Period": g.Query("period"), "Schedules": snap.Schedules, "CanRetry": c.cfg.RetryFailed != nil,
		"Next": nextURL, "First": firstURL, "CanPDF": c.cfg.InvoicePDF != nil,
	})
}

// invoicePageSize is how many invoices the Invoicing page lists at a time.
const invoicePageSize = 50

// invoicePDF serves an invoice's PDF, the same document as GET
// /v1/invoices/{id}/pdf, to any signed-in role.
func (c *Console) invoicePDF(g *gin.Context) {
	if c.cfg.InvoicePDF == nil {
		c.fail(g, http.StatusServiceUnavailable, "Invoice PDFs are not configured on this server.")
		return
	}
	id, err := uuid.Parse(g.Param("id"))
	if err != nil {
		c.fail(g, http.StatusNotFound, "No such invoice.")
		return
	}
	pdf, name, err := c.cfg.InvoicePDF(g.Request.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		c.fail(g, http.StatusNotFound, "No such invoice.")
		return
	}
	if err != nil {
		c.log.Error("console: invoice pdf", "invoice", id, "err", err)
		c.fail(g, http.StatusInternalServerError, "The invoice PDF could not be made; try again.")
		return
	}
	g.Header("Content-Disposition", `inline; filename="`+name+`"`)
	g.Header("Cache-Control", "private, max-age=3600")
	g.Data(http.StatusOK, "application/pdf", pdf)
}

func (c *Console) retryFailed(g *gin.Context) {
	if c.cfg.RetryFailed == nil {
		c.fail(g, http.StatusServiceUnavailable, "Retrying invoicing accounts is not configured on this server.")
		return
	}
	id, err := uuid.Parse(g.Param("run"))
	if err != nil {
		c.fail(g, http.StatusNotFound, "No such invoice run.")
		return
	}
	n, err := c.cfg.RetryFailed(g.Request.Context(), id, strings.TrimSpace(g.PostForm("reason")))
	if errors.Is(err, store.ErrNotFound) {
		c.fail(g, http.StatusNotFound, "No such invoice run.")
		return
	}
	if err != nil {
		c.log.Error("console: retry failed accounts", "run", id, "err", err)
		c.fail(g, http.StatusInternalServerError, "The failed accounts could not be retried; try again.")
		return
	}
	// RetryFailed recorded it in the audit log with its effect.
	c.log.Info("console: repair", "action", "invoicing.run.retry_failed", "run", id, "retried", n, "actor", operatorOf(g).Name)
	c.done(g, Root+"/invoicing", "Retrying "+plural(int64(n), "failed account")+".")
}

// orderStatuses are the states the Orders live filter offers.
var orderStatuses = []store.OrderStatus{store.OrderPending, store.OrderConfirmed, store.OrderShipped, store.OrderDelivered, store.OrderCancelled}

func (c *Console) orders(g *gin.Context) {
	ctx := g.Request.Context()
	var seller *uuid.UUID
	if id, err := uuid.Parse(g.Query("seller")); err == nil {
		seller = &id
	}
	status := store.OrderStatus(g.Query("status"))
	if !status.Valid() {
		status = ""
	}
	rows, err := store.RecentOrderLines(ctx, c.cfg.DB, seller, status, nil, 50)
	if err != nil {
		c.log.Error("console: orders", "err", err)
		c.fail(g, http.StatusInternalServerError, "The orders could not be read; try again.")
		return
	}
	sellers, _, err := store.ListSellers(ctx, c.cfg.DB, store.Page{Limit: 200})
	if err != nil {
		c.fail(g, http.StatusInternalServerError, "The sellers could not be read; try again.")
		return
	}
	ann, _ := c.currentAnnouncement(g)
	c.render(g, http.StatusOK, "orders", "Orders live", map[string]any{
		"Orders": orderRows(rows), "Sellers": sellers, "Seller": g.Query("seller"), "Status": string(status), "Statuses": orderStatuses,
		"Announcement": ann, "Live": c.cfg.Hub != nil,
	})
}

// orderRows are the Orders live page's rows, as the live feed sends them.
func orderRows(lines []store.OrderLine) []OrderRow {
	out := make([]OrderRow, len(lines))
	for i, o := range lines {
		out[i] = orderRow(o)
	}
	return out
}

// printerRow is one printer of a seller.
type printerRow struct {
	Seller string
	store.PrinterSummary
	Online *bool
}

func (c *Console) printers(g *gin.Context) {
	ctx := g.Request.Context()
	now := c.cfg.Now()
	sellers, _, err := store.ListSellers(ctx, c.cfg.DB, store.Page{Limit: 200})
	if err != nil {
		c.fail(g, http.StatusInternalServerError, "The sellers could not be read; try again.")
		return
	}
	var rows []printerRow
	for _, s := range sellers {
		ps, err := store.ListPrinters(ctx, c.cfg.DB, s.ID, now, 30*time.Second)
		if err != nil {
			c.fail(g, http.StatusInternalServerError, "The printers could not be read; try again.")
			return
		}
		for _, p := range ps {
			if p.RevokedAt != nil {
				continue
			}
			r := printerRow{Seller: s.Name, PrinterSummary: p}
			if p.Protocol != store.ProtocolSSE {
				on := p.LastSeenAt != nil && now.Sub(*p.LastSeenAt) <= 2*time.Duration(p.PollIntervalSeconds)*time.Second+5*time.Second
				r.Online = &on
			}
			rows = append(rows, r)
		}
	}
	c.render(g, http.StatusOK, "printers", "Printers", map[string]any{"Printers": rows})
}

// announcementView is the current announcement.
type announcementView struct {
	Message, Level      string
	StartsAt, ExpiresAt time.Time
	Active              bool
}

func (c *Console) currentAnnouncement(g *gin.Context) (*announcementView, error) {
	ev, err := store.LatestEventOfType(g.Request.Context(), c.cfg.DB, "system.maintenance")
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var a announcementView
	if err := json.Unmarshal(ev.Data, &struct {
		Message   *string    `json:"message"`
		Level     *string    `json:"level"`
		StartsAt  *time.Time `json:"starts_at"`
		ExpiresAt *time.Time `json:"expires_at"`
	}{&a.Message, &a.Level, &a.StartsAt, &a.ExpiresAt}); err != nil {
		return nil, err
	}
	now := c.cfg.Now()
	a.Active = !now.Before(a.StartsAt) && now.Before(a.ExpiresAt)
	return &a, nil
}

func (c *Console) announcements(g *gin.Context) {
	ann, err := c.currentAnnouncement(g)
	if err != nil {
		c.fail(g, http.StatusInternalServerError, "The announcement could not be read; try again.")
		return
	}
	c.render(g, http.StatusOK, "announcements", "Announcements", map[string]any{"Current": ann, "CanAnnounce": c.cfg.Announce != nil})
}

func (c *Console) announce(g *gin.Context) {
	if c.cfg.Announce == nil {
		c.fail(g, http.StatusServiceUnavailable, "Announcements are not configured on this server.")
		return
	}
	a := Announcement{Level: g.PostForm("level"), Message: strings.TrimSpace(g.PostForm("message")), Reason: strings.TrimSpace(g.PostForm("reason"))}
	if m, err := strconv.Atoi(g.PostForm("minutes")); err == nil && m > 0 {
		at := c.cfg.Now().Add(time.Duration(m) * time.Minute)
		a.ExpiresAt = &at
	}
	if err := c.cfg.Announce(g.Request.Context(), a); err != nil {
		if errors.Is(err, ErrInvalid) {
			c.fail(g, http.StatusBadRequest, strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": "))
			return
		}
		c.log.Error("console: announce", "err", err)
		c.fail(g, http.StatusInternalServerError, "The announcement could not be published; try again.")
		return
	}
	// Announce recorded it in the audit log with its effect.
	c.log.Info("console: repair", "action", "announcement.create", "level", a.Level, "actor", operatorOf(g).Name)
	c.done(g, Root+"/announcements", "Announced.")
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
