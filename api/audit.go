package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/bazaarhq/bazaar/sql/store"
)

// The audit log records every mutating admin action, from the API, the
// console, the CLI and asynqmon, as one row: who (actor, role), what
// (action, target, parameters), why (reason), how it ended (result,
// count), when and under which request id. An action with a PostgreSQL
// effect writes its row in the same transaction; an action on Redis
// (dead letters, asynqmon) writes it right after, with its outcome.

// The audit actions written by the API. asynqmon's calls are recorded as
// "monitor.<object>.<verb>" (monitorAction).
const (
	ActionDLQRedrive       = "dlq.redrive"
	ActionDLQPurge         = "dlq.purge"
	ActionAnnouncement     = "announcement.create"
	ActionInvoiceRunStart  = "invoicing.run.start"
	ActionInvoiceRunRetry  = "invoicing.run.retry_failed"
	ActionSellerCreate     = "seller.create"
	ActionSellerUpdate     = "seller.update"
	ActionKeyCreate        = "key.create"
	ActionKeyRevoke        = "key.revoke"
	ActionOperatorCreate   = "operator.create"
	ActionOperatorSetRole  = "operator.set_role"
	ActionOperatorRevoke   = "operator.revoke"
	ActionWebhookRedeliver = "webhook.redeliver"
	ActionSellerPause      = "seller.pause"
	ActionSellerResume     = "seller.resume"
	ActionSellerReplay     = "seller.replay"
	auditResultOK          = "ok"
	maxAuditReasonLen      = 500
	maxMonitorAuditBodyLen = 4096
)

// AuditEntry is one audit row being written; s.auditEntry fills who and
// the request id from the request.
type AuditEntry = store.AuditEntry

// auditEntry starts the audit row of an action by the request's caller.
func (s *Server) auditEntry(c *gin.Context, action, reason string) AuditEntry {
	p := principalOf(c)
	e := AuditEntry{Action: action, Reason: strings.TrimSpace(reason), Role: string(p.Role), RequestID: requestID(c), Result: auditResultOK}
	switch op, ok := operatorOf(p); {
	case ok && op.ID != uuid.Nil:
		id := op.ID
		e.Actor, e.ActorID = op.Name, &id
	case ok:
		e.Actor = op.Name
	default:
		e.Actor = p.ID() // an API key: "key:<id>"
	}
	return e
}

// audit writes e; pass the transaction of the action's effect (tx) so
// both commit or neither does, or the pool for an effect outside
// PostgreSQL.
func (s *Server) audit(ctx context.Context, tx sqlx.QueryerContext, e AuditEntry) error {
	_, err := store.InsertAuditEntry(ctx, tx, e)
	return err
}

// auditParams encodes an action's parameters as the JSON object of the
// row. The values are the handler's own, so encoding cannot fail in
// practice; if it does, the row says so rather than losing the action.
func auditParams(v any) store.RawJSON {
	b, err := json.Marshal(v)
	if err != nil {
		return store.RawJSON(`{"error":"parameters not encodable"}`)
	}
	return b
}

// auditCount is a count for an audit row.
func auditCount(n int) *int64 {
	v := int64(n)
	return &v
}

// requireReason answers 400 when an action that must say why (redrive,
// purge, replay) has no reason; false then.
func (s *Server) requireReason(c *gin.Context, reason string) bool {
	switch r := strings.TrimSpace(reason); {
	case r == "":
		s.fail(c, withDetail(errInvalidParameter, "Say why in reason: redrive, purge and replay are recorded in the audit log with it.",
			FieldError{Field: "reason", Message: "is required"}))
		return false
	case len(r) > maxAuditReasonLen:
		s.fail(c, withDetail(errInvalidParameter, "The reason is too long.",
			FieldError{Field: "reason", Message: "must be at most 500 bytes"}))
		return false
	}
	return true
}

// AuditEntryDTO is one audit row as GET /v1/admin/audit shows it.
type AuditEntryDTO struct {
	ID        uuid.UUID       `json:"id"`
	At        time.Time       `json:"at"`
	Actor     string          `json:"actor"`
	ActorID   *uuid.UUID      `json:"actor_id"`
	Role      string          `json:"role"`
	Action    string          `json:"action"`
	Target    string          `json:"target"`
	Reason    string          `json:"reason"`
	Params    json.RawMessage `json:"params"`
	Result    string          `json:"result"`
	Count     *int64          `json:"count"`
	RequestID string          `json:"request_id"`
}

func auditOut(e store.AuditEntry) AuditEntryDTO {
	params := json.RawMessage(e.Params)
	if len(params) == 0 {
		params = json.RawMessage(`{}`)
	}
	return AuditEntryDTO{
		ID: e.ID, At: e.At, Actor: e.Actor, ActorID: e.ActorID, Role: e.Role, Action: e.Action, Target: e.Target,
		Reason: e.Reason, Params: params, Result: e.Result, Count: e.Count, RequestID: e.RequestID,
	}
}

// listAudit: GET /v1/admin/audit, newest first, filtered by actor,
// action, target (exact) and since (inclusive) / until (exclusive)
// RFC 3339 times, with cursor paging.
func (s *Server) listAudit(c *gin.Context) {
	p, err := page(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	f := store.AuditFilter{Actor: c.Query("actor"), Action: c.Query("action"), Target: c.Query("target")}
	for name, dst := range map[string]*time.Time{"since": &f.Since, "until": &f.Until} {
		if v := c.Query(name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				s.fail(c, badParam(name, "must be an RFC 3339 time such as 2026-10-15T08:00:00Z"))
				return
			}
			*dst = t
		}
	}
	s.read(c, func(ctx context.Context, q sqlx.QueryerContext) (any, error) {
		rows, next, err := store.ListAuditEntries(ctx, q, f, p)
		return listOf(rows, next, auditOut), err
	})
}

// auditMonitor records one of asynqmon's state-changing API calls after
// it ran (queue pause and resume, task run, delete, archive, batches),
// with its outcome. Its effect is in Redis, so the row follows it rather
// than sharing a transaction.
func (s *Server) auditMonitor(c *gin.Context, p Principal, body []byte, serve func()) {
	serve()
	e := AuditEntry{Role: string(p.Role), RequestID: requestID(c)}
	if op, ok := operatorOf(p); ok {
		e.Actor = op.Name
		if op.ID != uuid.Nil {
			id := op.ID
			e.ActorID = &id
		}
	}
	path := strings.TrimPrefix(c.Request.URL.Path, monitorRoot)
	e.Action, e.Target = monitorAction(c.Request.Method, path)
	params := map[string]any{"method": c.Request.Method, "path": path}
	if len(body) > 0 && json.Valid(body) {
		params["body"] = json.RawMessage(body)
	}
	e.Params = auditParams(params)
	if st := c.Writer.Status(); st < 400 {
		e.Result = auditResultOK
	} else {
		e.Result = "error: " + http.StatusText(st)
	}
	// The request's context may be ending with the response; the row
	// must still land.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.Request.Context()), 5*time.Second)
	defer cancel()
	if err := s.audit(ctx, s.cfg.DB, e); err != nil {
		s.log.ErrorContext(ctx, "audit monitor action", "action", e.Action, "request_id", e.RequestID, "error", err)
	}
}

// readMonitorBody reads (up to a bound) and restores the body of a
// monitor API call so it can be recorded.
func readMonitorBody(c *gin.Context) []byte {
	if c.Request.Body == nil {
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(c.Request.Body, maxMonitorAuditBodyLen+1))
	if err != nil {
		return nil
	}
	c.Request.Body = io.NopCloser(io.MultiReader(bytes.NewReader(b), c.Request.Body))
	if len(b) > maxMonitorAuditBodyLen {
		return nil
	}
	return b
}

// monitorAction names an asynqmon API call for the audit log, from its
// path below /monitor: "/api/queues/default:pause" is
// monitor.queue.pause on queue:default, "/api/queues/default/archived_tasks/ID:run"
// monitor.task.run on queue:default/archived_tasks/ID, and a DELETE of a
// task monitor.task.delete.
func monitorAction(method, path string) (action, target string) {
	rest := strings.TrimPrefix(path, "/api/")
	verb := strings.ToLower(method)
	if i := strings.LastIndex(rest, ":"); i >= 0 && !strings.Contains(rest[i:], "/") {
		rest, verb = rest[:i], rest[i+1:]
	}
	object := "api"
	parts := strings.Split(strings.TrimPrefix(rest, "queues/"), "/")
	switch {
	case !strings.HasPrefix(rest, "queues/"):
		object = strings.SplitN(rest, "/", 2)[0]
	case len(parts) == 1:
		object = "queue"
	case len(parts) == 2 && strings.HasSuffix(parts[1], "_tasks"):
		object = "tasks"
	case len(parts) >= 3:
		object = "task"
	}
	target = rest
	if after, ok := strings.CutPrefix(rest, "queues/"); ok {
		target = "queue:" + after
	}
	return "monitor." + object + "." + verb, target
}

// auditKey records a key change (create, revoke) in the transaction of
// its effect; the secret is never part of it.
func (s *Server) auditKey(ctx context.Context, tx sqlx.QueryerContext, c *gin.Context, action string, k store.APIKey) error {
	e := s.auditEntry(c, action, "")
	e.Target = "key:" + k.ID.String()
	e.Params = auditParams(map[string]any{"role": k.Role, "seller_id": k.SellerID, "name": k.Name, "prefix": k.KeyPrefix})
	return s.audit(ctx, tx, e)
}

// auditSeller records a seller change with the request's fields.
func (s *Server) auditSeller(ctx context.Context, tx sqlx.QueryerContext, c *gin.Context, action string, id uuid.UUID, req any) error {
	e := s.auditEntry(c, action, "")
	e.Target, e.Params = "seller:"+id.String(), auditParams(req)
	return s.audit(ctx, tx, e)
}

// auditRedelivery records a webhook redelivery asked for by staff (an
// operator or the admin token) in the transaction of the request; a
// seller redelivering its own webhooks is not an admin action.
func (s *Server) auditRedelivery(ctx context.Context, tx sqlx.QueryerContext, c *gin.Context, seller, webhook uuid.UUID, params map[string]any, n int) error {
	if _, staff := operatorOf(principalOf(c)); !staff {
		return nil
	}
	e := s.auditEntry(c, ActionWebhookRedeliver, "")
	params["seller_id"] = seller
	e.Target, e.Params, e.Count = "webhook:"+webhook.String(), auditParams(params), auditCount(n)
	return s.audit(ctx, tx, e)
}
