package store

import (
	"database/sql"
	"errors"

	"github.com/lib/pq"
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
)

// translate maps driver errors onto the package's sentinels, keeping the
// original error in the chain for logs.
func translate(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
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
