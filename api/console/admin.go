package console

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/bazaarhq/bazaar/sql/store"
)

// auditPageSize is how many audit rows the Audit page shows at once
// unless ?limit= (1 to maxAuditPageSize) says otherwise.
const (
	auditPageSize    = 50
	maxAuditPageSize = 200
)

// auditCursor is the Audit page's "after" parameter: the time and id of
// the last row shown, as "<RFC 3339 time>_<id>".
func auditCursor(c *store.Cursor) string {
	if c == nil {
		return ""
	}
	return c.CreatedAt.UTC().Format(time.RFC3339Nano) + "_" + c.ID.String()
}

func parseAuditCursor(s string) (*store.Cursor, bool) {
	at, id, ok := strings.Cut(s, "_")
	if !ok {
		return nil, false
	}
	t, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		return nil, false
	}
	u, err := uuid.Parse(id)
	if err != nil {
		return nil, false
	}
	return &store.Cursor{CreatedAt: t, ID: u}, true
}

// auditLog is the Audit page: the audit rows newest first, filtered by
// actor, action and target (exact), a page at a time.
func (c *Console) auditLog(g *gin.Context) {
	f := store.AuditFilter{
		Actor:  strings.TrimSpace(g.Query("actor")),
		Action: strings.TrimSpace(g.Query("action")),
		Target: strings.TrimSpace(g.Query("target")),
	}
	p := store.Page{Limit: auditPageSize}
	if v := g.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxAuditPageSize {
			c.fail(g, http.StatusBadRequest, "Give a limit from 1 to "+strconv.Itoa(maxAuditPageSize)+" rows.")
			return
		}
		p.Limit = n
	}
	if after := g.Query("after"); after != "" {
		cur, ok := parseAuditCursor(after)
		if !ok {
			c.fail(g, http.StatusBadRequest, "That page of the audit log does not exist; start from the first page.")
			return
		}
		p.After = cur
	}
	rows, next, err := store.ListAuditEntries(g.Request.Context(), c.cfg.DB, f, p)
	if err != nil {
		c.log.Error("console: audit log", "err", err)
		c.fail(g, http.StatusInternalServerError, "The audit log could not be read; try again.")
		return
	}
	data := map[string]any{"Rows": rows, "Actor": f.Actor, "Action": f.Action, "Target": f.Target, "Paged": p.After != nil}
	if next != nil {
		q := g.Request.URL.Query()
		q.Set("after", auditCursor(next))
		data["Next"] = Root + "/audit?" + q.Encode()
	}
	if p.After != nil {
		q := g.Request.URL.Query()
		q.Del("after")
		data["First"] = Root + "/audit?" + q.Encode()
	}
	c.render(g, http.StatusOK, "audit", "Audit log", data)
}

// operatorRoles are the roles the Operators page offers.
var operatorRoles = []string{RoleViewer, RoleOperator, RoleAdmin}

// operatorsView is what the Operators page shows.
type operatorsView struct {
	Operators []store.Operator
	Roles     []string
	CanChange bool // the server can change operators
	// Created and Credential are the operator just added and its
	// credential, shown this once.
	Created    *store.Operator
	Credential string
}

func (c *Console) operatorsConfigured() bool {
	return c.cfg.CreateOperator != nil && c.cfg.SetOperatorRole != nil && c.cfg.RevokeOperator != nil
}

// operators is the Operators page: every operator, revoked ones last
// with their revocation time; an admin also adds, changes and revokes.
func (c *Console) operators(g *gin.Context) { c.renderOperators(g, http.StatusOK, operatorsView{}) }

func (c *Console) renderOperators(g *gin.Context, status int, v operatorsView) {
	ops, err := store.ListOperators(g.Request.Context(), c.cfg.DB, true)
	if err != nil {
		c.log.Error("console: operators", "err", err)
		c.fail(g, http.StatusInternalServerError, "The operators could not be read; try again.")
		return
	}
	active := make([]store.Operator, 0, len(ops))
	var revoked []store.Operator
	for _, o := range ops {
		if o.RevokedAt == nil {
			active = append(active, o)
		} else {
			revoked = append(revoked, o)
		}
	}
	v.Operators, v.Roles, v.CanChange = append(active, revoked...), operatorRoles, c.operatorsConfigured()
	c.render(g, status, "operators", "Operators", v)
}

// operatorFail answers an error of the operator hooks.
func (c *Console) operatorFail(g *gin.Context, what string, err error) {
	switch {
	case errors.Is(err, ErrInvalid):
		c.fail(g, http.StatusBadRequest, strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": "))
	case errors.Is(err, store.ErrConflict):
		c.fail(g, http.StatusConflict, "An active operator already has that name; revoke it first or pick another name.")
	case errors.Is(err, store.ErrNotFound):
		c.fail(g, http.StatusNotFound, "No such operator.")
	default:
		c.log.Error("console: "+what, "err", err)
		c.fail(g, http.StatusInternalServerError, "The operator could not be changed; try again.")
	}
}

func (c *Console) createOperator(g *gin.Context) {
	if !c.operatorsConfigured() {
		c.fail(g, http.StatusServiceUnavailable, "Changing operators is not configured on this server.")
		return
	}
	name, role := strings.TrimSpace(g.PostForm("name")), g.PostForm("role")
	op, cred, err := c.cfg.CreateOperator(g.Request.Context(), name, role, strings.TrimSpace(g.PostForm("reason")))
	if err != nil {
		c.operatorFail(g, "create operator", err)
		return
	}
	// CreateOperator recorded it in the audit log with its effect.
	c.log.Info("console: operator added", "name", op.Name, "role", op.Role, "actor", operatorOf(g).Name)
	// The credential is on this answer only: no redirect, nothing cached.
	c.renderOperators(g, http.StatusCreated, operatorsView{Created: &op, Credential: cred})
}

func (c *Console) operatorID(g *gin.Context) (uuid.UUID, bool) {
	if !c.operatorsConfigured() {
		c.fail(g, http.StatusServiceUnavailable, "Changing operators is not configured on this server.")
		return uuid.Nil, false
	}
	id, err := uuid.Parse(g.Param("id"))
	if err != nil {
		c.fail(g, http.StatusNotFound, "No such operator.")
		return uuid.Nil, false
	}
	return id, true
}

func (c *Console) setOperatorRole(g *gin.Context) {
	id, ok := c.operatorID(g)
	if !ok {
		return
	}
	op, err := c.cfg.SetOperatorRole(g.Request.Context(), id, g.PostForm("role"), strings.TrimSpace(g.PostForm("reason")))
	if err != nil {
		c.operatorFail(g, "set operator role", err)
		return
	}
	c.log.Info("console: operator role changed", "name", op.Name, "role", op.Role, "actor", operatorOf(g).Name)
	c.done(g, Root+"/operators", op.Name+" is now "+string(op.Role)+".")
}

func (c *Console) revokeOperator(g *gin.Context) {
	id, ok := c.operatorID(g)
	if !ok {
		return
	}
	op, err := c.cfg.RevokeOperator(g.Request.Context(), id, strings.TrimSpace(g.PostForm("reason")))
	if err != nil {
		c.operatorFail(g, "revoke operator", err)
		return
	}
	c.log.Info("console: operator revoked", "name", op.Name, "actor", operatorOf(g).Name)
	c.done(g, Root+"/operators", "Revoked "+op.Name+": their credential and sessions no longer work.")
}
