package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
)

// AuditEntry is one row of the audit log: who did which mutating admin
// action to what, why, with which parameters, and how it ended.
type AuditEntry struct {
	ID uuid.UUID `db:"id"`
	At time.Time `db:"at"`
	// Actor is an operator's name, "admin-token" or "cli:<user>"; ActorID
	// the operator's id when there is one.
	Actor   string     `db:"actor"`
	ActorID *uuid.UUID `db:"actor_id"`
	Role    string     `db:"role"`
	// Action names what was done, such as "dlq.redrive" or
	// "operator.create".
	Action string `db:"action"`
	Target string `db:"target"`
	Reason string `db:"reason"`
	// Params is a JSON object of the action's parameters ("{}" for none).
	Params RawJSON `db:"params"`
	// Result is "ok", or "error: ..." for an action that failed.
	Result string `db:"result"`
	// Count is how many things the action touched, when it counts them.
	Count     *int64 `db:"count"`
	RequestID string `db:"request_id"`
}

const auditColumns = `id, at, actor, actor_id, role, action, target, reason, params, result, count, request_id`

const insertAuditQuery = `
INSERT INTO audit_log (id, actor, actor_id, role, action, target, reason, params, result, count, request_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
RETURNING ` + auditColumns

// InsertAuditEntry writes e (ID and At are set here) and returns the
// stored row. Pass the transaction of the action's effect, so the row
// commits with it or not at all.
func InsertAuditEntry(ctx context.Context, q sqlx.QueryerContext, e AuditEntry) (AuditEntry, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return AuditEntry{}, fmt.Errorf("audit id: %w", err)
	}
	params := e.Params
	if len(params) == 0 {
		params = RawJSON(`{}`)
	}
	var out AuditEntry
	err = sqlx.GetContext(ctx, q, &out, insertAuditQuery, id, e.Actor, e.ActorID, e.Role, e.Action, e.Target,
		e.Reason, string(params), e.Result, e.Count, e.RequestID)
	if err != nil {
		return AuditEntry{}, fmt.Errorf("insert audit entry %s: %w", e.Action, translate(err))
	}
	return out, nil
}

// AuditFilter narrows an audit listing; zero fields match everything.
// Since is inclusive, Until exclusive.
type AuditFilter struct {
	Actor  string
	Action string
	Target string
	Since  time.Time
	Until  time.Time
}

const listAuditQuery = `
SELECT ` + auditColumns + ` FROM audit_log
WHERE ($1 = '' OR actor = $1)
  AND ($2 = '' OR action = $2)
  AND ($3 = '' OR target = $3)
  AND ($4::timestamptz IS NULL OR at >= $4)
  AND ($5::timestamptz IS NULL OR at < $5)
  AND ($6::timestamptz IS NULL OR (at, id) < ($6, $7::uuid))
ORDER BY at DESC, id DESC LIMIT $8`

// ListAuditEntries returns one page of the entries matching f, newest
// first, and the cursor of the next page (nil on the last).
func ListAuditEntries(ctx context.Context, q sqlx.QueryerContext, f AuditFilter, p Page) ([]AuditEntry, *Cursor, error) {
	var since, until, at, id any
	if !f.Since.IsZero() {
		since = f.Since
	}
	if !f.Until.IsZero() {
		until = f.Until
	}
	if p.After != nil {
		at, id = p.After.CreatedAt, p.After.ID
	}
	out := []AuditEntry{}
	err := sqlx.SelectContext(ctx, q, &out, listAuditQuery, f.Actor, f.Action, f.Target, since, until, at, id, p.limit()+1)
	if err != nil {
		return nil, nil, fmt.Errorf("list audit entries: %w", translate(err))
	}
	rows, next := pageOf(out, p.limit(), func(e AuditEntry) Cursor { return Cursor{e.At, e.ID} })
	return rows, next, nil
}

// RawJSON is a JSON document read from a jsonb column; it copies what the
// driver hands it, which the driver may reuse.
type RawJSON []byte

// Scan implements sql.Scanner.
func (j *RawJSON) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*j = nil
	case []byte:
		*j = append(RawJSON(nil), v...)
	case string:
		*j = RawJSON(v)
	default:
		return fmt.Errorf("scan %T into RawJSON", src)
	}
	return nil
}
