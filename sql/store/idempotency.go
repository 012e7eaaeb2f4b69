package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// IdempotencyTTL is how long a stored response is replayed.
const IdempotencyTTL = 24 * time.Hour

// IdempotencyRecord is the stored outcome of a POST made with an
// Idempotency-Key: a repeat with the same key and request gets Response
// again; one with the same key and another request is refused.
type IdempotencyRecord struct {
	Principal   string    `db:"principal"`
	Key         string    `db:"key"`
	Method      string    `db:"method"`
	Path        string    `db:"path"`
	RequestHash []byte    `db:"request_hash"`
	Status      int       `db:"status"`
	ContentType string    `db:"content_type"`
	Response    []byte    `db:"response"`
	CreatedAt   time.Time `db:"created_at"`
	ExpiresAt   time.Time `db:"expires_at"`
}

const idempotencyColumns = `principal, key, method, path, request_hash, status, content_type, response, created_at, expires_at`

const getIdempotencyQuery = `
SELECT ` + idempotencyColumns + ` FROM idempotency_keys
WHERE principal = $1 AND key = $2 AND expires_at > now()`

// GetIdempotencyRecord reads the unexpired record of a key; ErrNotFound
// when there is none.
func GetIdempotencyRecord(ctx context.Context, q sqlx.QueryerContext, principal, key string) (IdempotencyRecord, error) {
	var r IdempotencyRecord
	if err := sqlx.GetContext(ctx, q, &r, getIdempotencyQuery, principal, key); err != nil {
		return IdempotencyRecord{}, fmt.Errorf("get idempotency record: %w", translate(err))
	}
	return r, nil
}

const lockIdempotencyQuery = `SELECT pg_try_advisory_xact_lock(hashtextextended($1 || ' ' || $2, 7272))`

// LockIdempotencyKey takes a transaction-scoped lock on a key without
// waiting. It reports false when another transaction holds it, that is
// when a request with the same key is still being processed.
func LockIdempotencyKey(ctx context.Context, q sqlx.QueryerContext, principal, key string) (bool, error) {
	var ok bool
	if err := sqlx.GetContext(ctx, q, &ok, lockIdempotencyQuery, principal, key); err != nil {
		return false, fmt.Errorf("lock idempotency key: %w", translate(err))
	}
	return ok, nil
}

const lockAndGetIdempotencyQuery = `
SELECT l.locked, r.principal IS NOT NULL AS found,
       coalesce(r.principal, '') AS principal, coalesce(r.key, '') AS key,
       coalesce(r.method, '') AS method, coalesce(r.path, '') AS path,
       coalesce(r.request_hash, ''::bytea) AS request_hash, coalesce(r.status, 0) AS status,
       coalesce(r.content_type, '') AS content_type, coalesce(r.response, ''::bytea) AS response,
       coalesce(r.created_at, now()) AS created_at, coalesce(r.expires_at, now()) AS expires_at
FROM (SELECT pg_try_advisory_xact_lock(hashtextextended($1 || ' ' || $2, 7272)) AS locked) l
LEFT JOIN LATERAL (
    SELECT ` + idempotencyColumns + ` FROM idempotency_keys
    WHERE principal = $1 AND key = $2 AND expires_at > now() AND l.locked
) r ON true`

// LockAndGetIdempotencyRecord is LockIdempotencyKey and, when the lock is
// taken, GetIdempotencyRecord, in one round trip. The read's snapshot is
// taken as the statement starts, before the lock: a request with the same
// key that commits in between is not seen here, and its record makes
// SaveIdempotencyRecord fail with ErrConflict instead, so the caller
// replays it after rolling back. found reports whether rec was read.
func LockAndGetIdempotencyRecord(ctx context.Context, q sqlx.QueryerContext, principal, key string) (locked, found bool, rec IdempotencyRecord, err error) {
	var row struct {
		Locked bool `db:"locked"`
		Found  bool `db:"found"`
		IdempotencyRecord
	}
	if err := sqlx.GetContext(ctx, q, &row, lockAndGetIdempotencyQuery, principal, key); err != nil {
		return false, false, IdempotencyRecord{}, fmt.Errorf("lock idempotency key: %w", translate(err))
	}
	return row.Locked, row.Found, row.IdempotencyRecord, nil
}

const saveIdempotencyQuery = `
INSERT INTO idempotency_keys (principal, key, method, path, request_hash, status, content_type, response, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + $9 * interval '1 second')
ON CONFLICT (principal, key) DO UPDATE SET
    method = excluded.method, path = excluded.path, request_hash = excluded.request_hash,
    status = excluded.status, content_type = excluded.content_type, response = excluded.response,
    created_at = now(), expires_at = excluded.expires_at
WHERE idempotency_keys.expires_at <= now()`

// SaveIdempotencyRecord stores the outcome of a request, replacing an
// expired record of the same key. Call it in the transaction that made the
// change, so the change and its record commit together. A live record of
// the key is ErrConflict.
func SaveIdempotencyRecord(ctx context.Context, q sqlx.ExecerContext, r IdempotencyRecord) error {
	res, err := q.ExecContext(ctx, saveIdempotencyQuery, r.Principal, r.Key, r.Method, r.Path, r.RequestHash,
		r.Status, r.ContentType, r.Response, int64(IdempotencyTTL/time.Second))
	if err != nil {
		return fmt.Errorf("save idempotency record: %w", translate(err))
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("save idempotency record: key in use: %w", ErrConflict)
	}
	return nil
}

const deleteExpiredIdempotencyQuery = `
DELETE FROM idempotency_keys WHERE ctid = ANY (ARRAY(
    SELECT ctid FROM idempotency_keys WHERE expires_at <= now() LIMIT $1))`

// DeleteExpiredIdempotencyRecords removes up to limit expired records and
// reports how many it removed; call it periodically until it returns 0.
func DeleteExpiredIdempotencyRecords(ctx context.Context, q sqlx.ExecerContext, limit int) (int64, error) {
	res, err := q.ExecContext(ctx, deleteExpiredIdempotencyQuery, limit)
	if err != nil {
		return 0, fmt.Errorf("delete expired idempotency records: %w", translate(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("delete expired idempotency records: %w", err)
	}
	return n, nil
}
