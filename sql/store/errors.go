package store

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"net"

	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"
)

// Sentinel errors. Callers test them with errors.Is; only the API maps them
// to HTTP statuses.
var (
	// ErrNotFound means the record does not exist or is not visible to the caller.
	ErrNotFound = errors.New("not found")
	// ErrConflict means a unique key is taken or the record changed under the caller.
	ErrConflict = errors.New("conflict")
	// ErrInvalidTransition means a state machine refused the change.
	ErrInvalidTransition = errors.New("invalid state transition")
	// ErrInsufficientStock means a stock change would make stock negative.
	ErrInsufficientStock = errors.New("insufficient stock")
	// ErrReferenced means a referenced record does not exist (a foreign key failed).
	ErrReferenced = errors.New("referenced record does not exist")
	// ErrUnavailable means PostgreSQL cannot serve right now: it is
	// shutting down or starting up, refuses connections or has none left.
	// The same request may succeed later; Unavailable recognises it.
	ErrUnavailable = errors.New("database unavailable")
	// ErrEventLogExpired means the events asked for are older than the
	// event log keeps (BAZAAR_EVENT_RETENTION): their partitions were
	// dropped or detached.
	ErrEventLogExpired = errors.New("older than the event log's retention")
)

// unavailableCodes are the SQLSTATEs of a server that cannot serve now,
// though a later attempt may succeed.
var unavailableCodes = map[pqerror.Code]bool{
	pqerror.AdminShutdown:      true, // a fast shutdown or pg_terminate_backend
	pqerror.CrashShutdown:      true, // another backend crashed
	pqerror.CannotConnectNow:   true, // starting up, shutting down or in recovery
	pqerror.TooManyConnections: true,
}

// Unavailable reports whether err means the database could not be reached
// or could not serve (ErrUnavailable, an unavailable SQLSTATE or any of
// class 08 connection exception, a connection the driver found broken, or
// a network error such as a refused connection), rather than that the
// request was wrong. Errors of queries that never passed through translate
// (a failed BEGIN, a ping) are recognised too.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrUnavailable) || errors.Is(err, driver.ErrBadConn) {
		return true
	}
	var pqErr *pq.Error
	if errors.As(err, &pqErr) {
		return unavailableCodes[pqErr.Code] || pqErr.Code.Class() == pqerror.ClassConnectionException
	}
	var opErr *net.OpError
	return errors.As(err, &opErr)
}

// translate maps driver errors onto the package's sentinels, keeping the
// original error in the chain for logs.
func translate(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	if Unavailable(err) {
		return errors.Join(ErrUnavailable, err)
	}
	var pqErr *pq.Error
	if errors.As(err, &pqErr) {
		switch pqErr.Code {
		case "23505": // unique_violation
			return errors.Join(ErrConflict, err)
		case "23503": // foreign_key_violation
			return errors.Join(ErrReferenced, err)
		case "23514": // check_violation
			if pqErr.Constraint == "products_stock_check" {
				return errors.Join(ErrInsufficientStock, err)
			}
		}
	}
	return err
}

// Translate is translate for packages that run their own queries on store
// tables (the relay, group handlers); it maps driver errors to sentinels.
func Translate(err error) error { return translate(err) }
