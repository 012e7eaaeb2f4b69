package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/bazaarhq/bazaar/sql/store"
)

// Operators are named people (or systems) with a role, viewer, operator or
// admin, and a bearer credential shown once. The credential works as
// Authorization: Bearer on the API and logs in to the console and the
// monitor, whose session cookie then stands for the operator. The static
// admin token keeps working and acts as admin, named "admin-token" in the
// audit log.

// Operator is the person behind a request: an operator, or the static
// admin token (ID zero, Name "admin-token", Role admin).
type Operator struct {
	ID   uuid.UUID
	Name string
	Role Role
}

// adminTokenActor names the static admin token in the audit log.
const adminTokenActor = "admin-token"

const (
	sessionCookie = "bazaar_session"
	sessionTTL    = 12 * time.Hour
	// consoleRoot is where the console lives; its login and logout are
	// here, its pages in api/console.
	consoleRoot = "/console"
	// loginFailKey prefixes the per-IP failure count shared by every
	// login form (console and monitor) and monitor tokens.
	loginFailKey = "monitorlogin:"
)

// crossOrigin refuses state-changing requests from other origins
// (Sec-Fetch-Site, else Origin against Host); safe methods pass.
var crossOrigin = http.NewCrossOriginProtection()

// operatorPrincipal is the principal of an operator's credential or session.
func operatorPrincipal(op store.Operator) Principal {
	return Principal{Role: Role(op.Role), OperatorID: op.ID, OperatorName: op.Name}
}

// operatorOf returns the operator a principal stands for: false for API
// keys.
func operatorOf(p Principal) (Operator, bool) {
	switch {
	case p.OperatorID != uuid.Nil:
		return Operator{ID: p.OperatorID, Name: p.OperatorName, Role: p.Role}, true
	case p.Role == RoleAdmin:
		return Operator{Name: adminTokenActor, Role: RoleAdmin}, true
	}
	return Operator{}, false
}

// sessionPrincipal resolves the session cookie: false without a cookie or
// for an unknown, expired or revoked session.
func (s *Server) sessionPrincipal(c *gin.Context) (Principal, bool, error) {
	ck, err := c.Request.Cookie(sessionCookie)
	if err != nil || ck.Value == "" {
		return Principal{}, false, nil
	}
	so, err := store.LiveOperatorSession(c.Request.Context(), s.cfg.DB, ck.Value)
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, false, nil
	}
	if err != nil {
		return Principal{}, false, err
	}
	if so.Operator != nil {
		return operatorPrincipal(*so.Operator), true, nil
	}
	// A session of the static admin token lasts while the token is the
	// one that logged in.
	admin := sha256.Sum256([]byte(s.cfg.AdminToken))
	if string(so.Session.AdminTokenHash) != string(admin[:]) {
		return Principal{}, false, nil
	}
	return Principal{Role: RoleAdmin}, true, nil
}

// authenticateSession authenticates a /v1/admin request by its session
// cookie: a state-changing one must come from this origin (as for the
// monitor), and the session must be live.
func (s *Server) authenticateSession(c *gin.Context) {
	if err := crossOrigin.Check(c.Request); err != nil {
		s.fail(c, withDetail(errForbidden, "Cross-origin requests with the console session are refused."))
		return
	}
	p, ok, err := s.sessionPrincipal(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	if !ok {
		s.fail(c, withDetail(errUnauthorized, "The session has expired or was ended; log in again at "+consoleRoot+"/login."))
		return
	}
	if s.limiter != nil && !s.allow(c, "cred:"+p.ID(), string(p.Role), s.limits.forRole(p.Role)) {
		return
	}
	c.Set(principalKey, p)
	c.Next()
}

// credentialPrincipal checks a credential offered to a login form or the
// monitor: the static admin token or an operator's. False for anything
// else, and for API keys, which never log in.
func (s *Server) credentialPrincipal(ctx context.Context, tok string) (Principal, bool, error) {
	if s.isAdminToken(tok) {
		return Principal{Role: RoleAdmin}, true, nil
	}
	if !strings.HasPrefix(tok, store.OperatorTokenPrefix) {
		return Principal{}, false, nil
	}
	op, err := store.ActiveOperatorByHash(ctx, s.cfg.DB, store.HashKey(tok))
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, false, nil
	}
	if err != nil {
		return Principal{}, false, err
	}
	return operatorPrincipal(op), true, nil
}

// loginCredential checks a credential under the per-IP login limit: past
// it the request has been answered 429 (c is aborted) before the
// credential is looked at, so a lockout also hides right guesses.
func (s *Server) loginCredential(c *gin.Context, tok string) (Principal, bool) {
	key := loginFailKey + c.ClientIP()
	if !s.failuresLeft(c, key, policyMonitorLogin, s.limits.MonitorLogin) {
		return Principal{}, false
	}
	p, ok, err := s.credentialPrincipal(c.Request.Context(), tok)
	if err != nil {
		s.fail(c, err)
		return Principal{}, false
	}
	if !ok {
		s.failed(c, key, s.limits.MonitorLogin)
		return Principal{}, false
	}
	return p, true
}

// startSession stores a session for p and sets its cookie: HttpOnly,
// SameSite=Strict, on every path (console, monitor, /v1/admin), Secure
// whenever the request came over TLS.
func (s *Server) startSession(c *gin.Context, p Principal) error {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	secret := base64.RawURLEncoding.EncodeToString(b)
	exp := time.Now().Add(sessionTTL)
	var opID *uuid.UUID
	var adminHash []byte
	if p.OperatorID != uuid.Nil {
		opID = &p.OperatorID
	} else {
		h := sha256.Sum256([]byte(s.cfg.AdminToken))
		adminHash = h[:]
	}
	if err := store.CreateOperatorSession(c.Request.Context(), s.cfg.DB, secret, opID, adminHash, exp); err != nil {
		return err
	}
	// Secure follows the request: development serves plain HTTP on
	// localhost, where a Secure cookie would never come back. Behind a
	// TLS-terminating proxy, its X-Forwarded-Proto tells (when trusted).
	http.SetCookie(c.Writer, &http.Cookie{ //nolint:gosec // Secure set whenever the request came over TLS
		Name: sessionCookie, Value: secret, Path: "/", Expires: exp,
		HttpOnly: true, Secure: s.requestIsHTTPS(c), SameSite: http.SameSiteStrictMode,
	})
	return nil
}

// loginAndRedirect checks tok, starts the session and sends the browser to
// next; a wrong credential gets the login form posting to action.
func (s *Server) loginAndRedirect(c *gin.Context, tok, next, action string) {
	p, ok := s.loginCredential(c, tok)
	if !ok {
		if c.IsAborted() {
			return // locked out (429) or the store failed
		}
		c.Header("Cache-Control", "no-store")
		c.Status(http.StatusUnauthorized)
		_ = monitorLoginPage.Execute(c.Writer, map[string]any{"Action": action, "Next": next, "Failed": true})
		return
	}
	if err := s.startSession(c, p); err != nil {
		s.fail(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, next)
}

// endSession ends the session of c's request (POST /console/logout, in
// the console) and clears its cookie.
func (s *Server) endSession(c *gin.Context) error {
	if ck, err := c.Request.Cookie(sessionCookie); err == nil && ck.Value != "" {
		if err := store.DeleteOperatorSession(c.Request.Context(), s.cfg.DB, ck.Value); err != nil {
			return err
		}
	}
	http.SetCookie(c.Writer, &http.Cookie{ //nolint:gosec // clears the cookie
		Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.requestIsHTTPS(c), SameSite: http.SameSiteStrictMode,
	})
	return nil
}

// OperatorDTO is an operator as the API shows it; Token only in the answer
// that created the operator.
type OperatorDTO struct {
	ID        uuid.UUID  `json:"id"`
	Name      string     `json:"name"`
	Role      string     `json:"role"`
	Prefix    string     `json:"prefix"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	RevokedAt *time.Time `json:"revoked_at"`
	Token     string     `json:"token,omitempty"`
}

func (o OperatorDTO) withoutSecret() any { o.Token = ""; return o }

func operatorOut(o store.Operator) OperatorDTO {
	return OperatorDTO{ID: o.ID, Name: o.Name, Role: string(o.Role), Prefix: o.TokenPrefix, CreatedAt: o.CreatedAt, UpdatedAt: o.UpdatedAt, RevokedAt: o.RevokedAt}
}

type operatorRequest struct {
	Name   string `json:"name"`
	Role   string `json:"role"`
	Reason string `json:"reason"`
}

func checkOperatorRole(k *checker, role string) {
	if !store.OperatorRole(role).Valid() {
		k.add("role", "must be one of viewer, operator, admin")
	}
}

// createOperator: POST /v1/admin/operators (admin). 201 with the operator
// and its credential, shown this once; 409 when an active operator has
// the name.
func (s *Server) createOperator(c *gin.Context) {
	var req operatorRequest
	if err := bind(c, &req, false); err != nil {
		s.fail(c, err)
		return
	}
	if err := checkNewOperator(req); err != nil {
		s.fail(c, err)
		return
	}
	e := s.auditEntry(c, ActionOperatorCreate, req.Reason)
	s.write(c, func(ctx context.Context, tx *sqlx.Tx) (change, error) {
		op, secret, err := s.addOperator(ctx, tx, e, req.Name, req.Role)
		if err != nil {
			return change{}, err
		}
		out := operatorOut(op)
		out.Token = secret
		return change{status: http.StatusCreated, body: out}, nil
	})
}

// checkNewOperator checks the fields of a new operator.
func checkNewOperator(req operatorRequest) error {
	var k checker
	k.text("name", req.Name, true, 100)
	checkOperatorRole(&k, req.Role)
	k.text("reason", req.Reason, false, 500)
	return k.err()
}

// addOperator creates an operator and its credential in tx with its audit
// row e (POST /v1/admin/operators and the console's Operators page).
func (s *Server) addOperator(ctx context.Context, tx *sqlx.Tx, e AuditEntry, name, role string) (store.Operator, string, error) {
	secret, display, err := store.NewOperatorToken()
	if err != nil {
		return store.Operator{}, "", err
	}
	op, err := store.CreateOperator(ctx, tx, name, store.OperatorRole(role), secret, display)
	if errors.Is(err, store.ErrConflict) {
		return store.Operator{}, "", withDetail(err, "An active operator is named "+name+"; revoke it first or pick another name.")
	}
	if err != nil {
		return store.Operator{}, "", err
	}
	e.Target, e.Params = "operator:"+op.Name, auditParams(map[string]any{"id": op.ID, "name": op.Name, "role": op.Role})
	if err := s.audit(ctx, tx, e); err != nil {
		return store.Operator{}, "", err
	}
	return op, secret, nil
}

// listOperators: GET /v1/admin/operators, oldest first; ?revoked=true adds
// the revoked ones.
func (s *Server) listOperators(c *gin.Context) {
	withRevoked := false
	switch c.Query("revoked") {
	case "", "false":
	case "true":
		withRevoked = true
	default:
		s.fail(c, badParam("revoked", "must be true or false"))
		return
	}
	s.read(c, func(ctx context.Context, q sqlx.QueryerContext) (any, error) {
		ops, err := store.ListOperators(ctx, q, withRevoked)
		return listOf(ops, nil, operatorOut), err
	})
}

// getOperator: GET /v1/admin/operators/{id}.
func (s *Server) getOperator(c *gin.Context) {
	readOwned(s, c, store.GetOperator, func(store.Operator) uuid.UUID { return uuid.Nil }, operatorOut)
}

// updateOperator: PATCH /v1/admin/operators/{id} (admin) with {"role"}:
// the new role applies to the operator's credential and sessions from
// their next request.
func (s *Server) updateOperator(c *gin.Context) {
	id, err := pathID(c, "id")
	if err != nil {
		s.fail(c, err)
		return
	}
	var req operatorRequest
	if err := bind(c, &req, false); err != nil {
		s.fail(c, err)
		return
	}
	if err := checkRoleChange(req); err != nil {
		s.fail(c, err)
		return
	}
	e := s.auditEntry(c, ActionOperatorSetRole, req.Reason)
	s.write(c, func(ctx context.Context, tx *sqlx.Tx) (change, error) {
		op, err := s.changeOperatorRole(ctx, tx, e, id, req.Role)
		if err != nil {
			return change{}, err
		}
		return change{status: http.StatusOK, body: operatorOut(op)}, nil
	})
}

// checkRoleChange checks the fields of a role change.
func checkRoleChange(req operatorRequest) error {
	var k checker
	if req.Name != "" {
		k.add("name", "cannot be changed; add an operator with the new name")
	}
	checkOperatorRole(&k, req.Role)
	k.text("reason", req.Reason, false, 500)
	return k.err()
}

// changeOperatorRole sets an operator's role in tx with its audit row e.
func (s *Server) changeOperatorRole(ctx context.Context, tx *sqlx.Tx, e AuditEntry, id uuid.UUID, role string) (store.Operator, error) {
	before, err := store.GetOperator(ctx, tx, id)
	if err != nil {
		return store.Operator{}, err
	}
	op, err := store.SetOperatorRole(ctx, tx, id, store.OperatorRole(role))
	if err != nil {
		return store.Operator{}, err
	}
	e.Target, e.Params = "operator:"+op.Name, auditParams(map[string]any{"id": op.ID, "from": before.Role, "to": op.Role})
	if err := s.audit(ctx, tx, e); err != nil {
		return store.Operator{}, err
	}
	return op, nil
}

// revokeOperator: DELETE /v1/admin/operators/{id} (admin). The credential
// stops working and every session of the operator ends at once. Revoking
// twice is no error.
func (s *Server) revokeOperator(c *gin.Context) {
	id, err := pathID(c, "id")
	if err != nil {
		s.fail(c, err)
		return
	}
	e := s.auditEntry(c, ActionOperatorRevoke, c.Query("reason"))
	s.write(c, func(ctx context.Context, tx *sqlx.Tx) (change, error) {
		if _, err := s.revokeOperatorTx(ctx, tx, e, id); err != nil {
			return change{}, err
		}
		return change{status: http.StatusNoContent}, nil
	})
	if !c.IsAborted() && c.Writer.Status() == http.StatusNoContent {
		// Committed: end the operator's live streams on every API process.
		s.announceRevocation(c.Request.Context(), id)
	}
}

// revokeOperatorTx revokes an operator in tx with its audit row e; the
// caller announces the revocation once tx has committed.
func (s *Server) revokeOperatorTx(ctx context.Context, tx *sqlx.Tx, e AuditEntry, id uuid.UUID) (store.Operator, error) {
	op, err := store.RevokeOperator(ctx, tx, id)
	if err != nil {
		return store.Operator{}, err
	}
	e.Target, e.Params = "operator:"+op.Name, auditParams(map[string]any{"id": op.ID})
	if err := s.audit(ctx, tx, e); err != nil {
		return store.Operator{}, err
	}
	return op, nil
}
