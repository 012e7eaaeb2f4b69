package store

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
)

// OperatorRole is what a named operator may do: a viewer reads, an
// operator also repairs (redrive, retry, run, pause, resume,
// announcements), an admin does everything.
type OperatorRole string

// The operator roles, from least to most allowed.
const (
	// OperatorViewer reads everything and changes nothing.
	OperatorViewer OperatorRole = "viewer"
	// OperatorOperator also redrives, retries, runs, pauses and resumes,
	// and posts announcements.
	OperatorOperator OperatorRole = "operator"
	// OperatorAdmin also manages keys and operators and purges.
	OperatorAdmin OperatorRole = "admin"
)

// Valid reports whether r is one of the operator roles.
func (r OperatorRole) Valid() bool {
	return r == OperatorViewer || r == OperatorOperator || r == OperatorAdmin
}

// Operator is a named person or system with a role and a bearer
// credential, stored as its SHA-256 (HashKey) like API keys.
type Operator struct {
	ID          uuid.UUID    `db:"id"`
	Name        string       `db:"name"`
	Role        OperatorRole `db:"role"`
	TokenHash   []byte       `db:"token_hash"`
	TokenPrefix string       `db:"token_prefix"`
	CreatedAt   time.Time    `db:"created_at"`
	UpdatedAt   time.Time    `db:"updated_at"`
	RevokedAt   *time.Time   `db:"revoked_at"`
}

const operatorColumns = `id, name, role, token_hash, token_prefix, created_at, updated_at, revoked_at`

const insertOperatorQuery = `
INSERT INTO operators (id, name, role, token_hash, token_prefix)
VALUES ($1, $2, $3, $4, $5)
RETURNING ` + operatorColumns

// CreateOperator stores an operator whose credential is secret (hashed).
// ErrConflict when an unrevoked operator has the name.
func CreateOperator(ctx context.Context, q sqlx.QueryerContext, name string, role OperatorRole, secret, prefix string) (Operator, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return Operator{}, fmt.Errorf("operator id: %w", err)
	}
	var o Operator
	if err := sqlx.GetContext(ctx, q, &o, insertOperatorQuery, id, name, role, HashKey(secret), prefix); err != nil {
		return Operator{}, fmt.Errorf("create operator %q: %w", name, translate(err))
	}
	return o, nil
}

const activeOperatorByHashQuery = `
SELECT ` + operatorColumns + ` FROM operators WHERE token_hash = $1 AND revoked_at IS NULL`

// ActiveOperatorByHash finds the unrevoked operator whose credential
// hashes to hash; ErrNotFound when there is none.
func ActiveOperatorByHash(ctx context.Context, q sqlx.QueryerContext, hash []byte) (Operator, error) {
	var o Operator
	if err := sqlx.GetContext(ctx, q, &o, activeOperatorByHashQuery, hash); err != nil {
		return Operator{}, fmt.Errorf("operator by hash: %w", translate(err))
	}
	return o, nil
}

const getOperatorQuery = `SELECT ` + operatorColumns + ` FROM operators WHERE id = $1`

// GetOperator returns one operator, revoked or not; ErrNotFound when none.
func GetOperator(ctx context.Context, q sqlx.QueryerContext, id uuid.UUID) (Operator, error) {
	var o Operator
	if err := sqlx.GetContext(ctx, q, &o, getOperatorQuery, id); err != nil {
		return Operator{}, fmt.Errorf("get operator %s: %w", id, translate(err))
	}
	return o, nil
}

const activeOperatorByNameQuery = `SELECT ` + operatorColumns + ` FROM operators WHERE name = $1 AND revoked_at IS NULL`

// ActiveOperatorByName returns the unrevoked operator of that name;
// ErrNotFound when none.
func ActiveOperatorByName(ctx context.Context, q sqlx.QueryerContext, name string) (Operator, error) {
	var o Operator
	if err := sqlx.GetContext(ctx, q, &o, activeOperatorByNameQuery, name); err != nil {
		return Operator{}, fmt.Errorf("operator %q: %w", name, translate(err))
	}
	return o, nil
}

const listOperatorsQuery = `
SELECT ` + operatorColumns + ` FROM operators
WHERE ($1 OR revoked_at IS NULL)
ORDER BY created_at, id`

// ListOperators returns the operators, oldest first; revoked ones only
// when withRevoked.
func ListOperators(ctx context.Context, q sqlx.QueryerContext, withRevoked bool) ([]Operator, error) {
	out := []Operator{}
	if err := sqlx.SelectContext(ctx, q, &out, listOperatorsQuery, withRevoked); err != nil {
		return nil, fmt.Errorf("list operators: %w", translate(err))
	}
	return out, nil
}

const setOperatorRoleQuery = `
UPDATE operators SET role = $2, updated_at = now()
WHERE id = $1 AND revoked_at IS NULL
RETURNING ` + operatorColumns

// SetOperatorRole changes an unrevoked operator's role; it applies to its
// credential and sessions from the next request on. ErrNotFound when the
// operator does not exist or is revoked.
func SetOperatorRole(ctx context.Context, q sqlx.QueryerContext, id uuid.UUID, role OperatorRole) (Operator, error) {
	var o Operator
	if err := sqlx.GetContext(ctx, q, &o, setOperatorRoleQuery, id, role); err != nil {
		return Operator{}, fmt.Errorf("set role of operator %s: %w", id, translate(err))
	}
	return o, nil
}

const revokeOperatorQuery = `
WITH o AS (
    UPDATE operators SET revoked_at = coalesce(revoked_at, now()), updated_at = now()
    WHERE id = $1
    RETURNING ` + operatorColumns + `
), s AS (
    DELETE FROM operator_sessions WHERE operator_id = $1
)
SELECT * FROM o`

// RevokeOperator revokes an operator: its credential stops working and
// its sessions are deleted. Revoking twice keeps the first time.
// ErrNotFound when the operator does not exist.
func RevokeOperator(ctx context.Context, q sqlx.QueryerContext, id uuid.UUID) (Operator, error) {
	var o Operator
	if err := sqlx.GetContext(ctx, q, &o, revokeOperatorQuery, id); err != nil {
		return Operator{}, fmt.Errorf("revoke operator %s: %w", id, translate(err))
	}
	return o, nil
}

// OperatorSession is a console session: of an operator, or (OperatorID
// nil) of the static admin token whose digest AdminTokenHash is.
type OperatorSession struct {
	IDHash         []byte     `db:"id_hash"`
	OperatorID     *uuid.UUID `db:"operator_id"`
	AdminTokenHash []byte     `db:"admin_token_hash"`
	CreatedAt      time.Time  `db:"created_at"`
	ExpiresAt      time.Time  `db:"expires_at"`
}

const insertSessionQuery = `
WITH expired AS (DELETE FROM operator_sessions WHERE expires_at <= now())
INSERT INTO operator_sessions (id_hash, operator_id, admin_token_hash, expires_at)
VALUES ($1, $2, $3, $4)`

// CreateOperatorSession stores a session whose cookie value is secret
// (hashed), and deletes the expired ones on the way. Set exactly one of
// operatorID and adminTokenHash.
func CreateOperatorSession(ctx context.Context, q sqlx.ExecerContext, secret string, operatorID *uuid.UUID, adminTokenHash []byte, expires time.Time) error {
	if _, err := q.ExecContext(ctx, insertSessionQuery, HashKey(secret), operatorID, adminTokenHash, expires); err != nil {
		return fmt.Errorf("create operator session: %w", translate(err))
	}
	return nil
}

// SessionOperator is a live session with its operator, nil for a session
// of the static admin token.
type SessionOperator struct {
	Session  OperatorSession
	Operator *Operator
}

const liveSessionQuery = `
SELECT s.id_hash, s.operator_id, s.admin_token_hash, s.created_at, s.expires_at,
       o.id AS o_id, o.name AS o_name, o.role AS o_role, o.token_hash AS o_token_hash,
       o.token_prefix AS o_token_prefix, o.created_at AS o_created_at,
       o.updated_at AS o_updated_at, o.revoked_at AS o_revoked_at
FROM operator_sessions s
LEFT JOIN operators o ON o.id = s.operator_id
WHERE s.id_hash = $1 AND s.expires_at > now()
  AND (s.operator_id IS NULL OR o.revoked_at IS NULL)`

type sessionRow struct {
	OperatorSession
	OID          *uuid.UUID    `db:"o_id"`
	OName        *string       `db:"o_name"`
	ORole        *OperatorRole `db:"o_role"`
	OTokenHash   []byte        `db:"o_token_hash"`
	OTokenPrefix *string       `db:"o_token_prefix"`
	OCreatedAt   *time.Time    `db:"o_created_at"`
	OUpdatedAt   *time.Time    `db:"o_updated_at"`
	ORevokedAt   *time.Time    `db:"o_revoked_at"`
}

// LiveOperatorSession finds the unexpired session whose cookie value is
// secret, with its unrevoked operator; ErrNotFound when there is none.
func LiveOperatorSession(ctx context.Context, q sqlx.QueryerContext, secret string) (SessionOperator, error) {
	var r sessionRow
	if err := sqlx.GetContext(ctx, q, &r, liveSessionQuery, HashKey(secret)); err != nil {
		return SessionOperator{}, fmt.Errorf("operator session: %w", translate(err))
	}
	out := SessionOperator{Session: r.OperatorSession}
	if r.OID != nil {
		out.Operator = &Operator{
			ID: *r.OID, Name: *r.OName, Role: *r.ORole, TokenHash: r.OTokenHash, TokenPrefix: *r.OTokenPrefix,
			CreatedAt: *r.OCreatedAt, UpdatedAt: *r.OUpdatedAt, RevokedAt: r.ORevokedAt,
		}
	}
	return out, nil
}

const deleteSessionQuery = `DELETE FROM operator_sessions WHERE id_hash = $1 OR expires_at <= now()`

// DeleteOperatorSession ends the session whose cookie value is secret
// (logout), and clears expired sessions on the way.
func DeleteOperatorSession(ctx context.Context, q sqlx.ExecerContext, secret string) error {
	if _, err := q.ExecContext(ctx, deleteSessionQuery, HashKey(secret)); err != nil {
		return fmt.Errorf("delete operator session: %w", translate(err))
	}
	return nil
}

// OperatorTokenPrefix starts every operator credential, so a leaked one is
// recognisable (and scannable) by kind.
const OperatorTokenPrefix = "bzr_op_"

// NewOperatorToken makes an operator credential (the prefix and 256 random
// bits) and the part of it kept in clear to recognise it in listings.
func NewOperatorToken() (secret, display string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("operator token: %w", err)
	}
	secret = OperatorTokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	return secret, secret[:len(OperatorTokenPrefix)+5], nil
}
