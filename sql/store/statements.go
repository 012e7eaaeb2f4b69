package store

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
)

// maxStatements caps how many distinct queries Statements keeps prepared;
// queries past it run unprepared, so a query built at run time cannot
// grow the cache without bound.
const maxStatements = 256

// prepareTimeout bounds the wait for a pool connection to prepare a query
// on for the first time; past it the query runs unprepared once.
const prepareTimeout = time.Second

// Statements runs the queries of hot paths as named prepared statements:
// each query is parsed and planned once per pool connection instead of on
// every call, and an execution is one round trip (lib/pq sends an unnamed
// statement as parse-describe, then bind-execute: two). Pass what Tx or DB
// returns to the store's functions in place of the transaction or the pool.
//
// Turn it off (prepared false) behind a pooler that cannot carry named
// statements across transactions, such as PgBouncer in transaction mode
// before 1.21: then Tx and DB return their argument unchanged.
type Statements struct {
	db       *sqlx.DB
	prepared bool

	mu    sync.RWMutex
	stmts map[string]*sqlx.Stmt
}

// NewStatements returns the prepared statements of db; with prepared false
// every query runs as it would without them.
func NewStatements(db *sqlx.DB, prepared bool) *Statements {
	return &Statements{db: db, prepared: prepared, stmts: map[string]*sqlx.Stmt{}}
}

// Prepared reports whether queries run as prepared statements.
func (s *Statements) Prepared() bool { return s != nil && s.prepared }

// Tx returns tx running its queries as prepared statements.
func (s *Statements) Tx(tx *sqlx.Tx) sqlx.ExtContext {
	if !s.Prepared() {
		return tx
	}
	return &preparedExt{s: s, ext: tx, tx: tx}
}

// DB returns the pool running its queries as prepared statements.
func (s *Statements) DB() sqlx.ExtContext {
	if !s.Prepared() {
		return s.db
	}
	return &preparedExt{s: s, ext: s.db}
}

// Close closes the prepared statements; later queries prepare anew.
func (s *Statements) Close() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var first error
	for q, st := range s.stmts {
		if err := st.Close(); err != nil && first == nil {
			first = fmt.Errorf("close statement: %w", err)
		}
		delete(s.stmts, q)
	}
	return first
}

// stmt returns the prepared statement of query, preparing it on first
// use, or nil when the query is to run unprepared this time. It prepares
// only when the pool has an idle connection, so a transaction holding the
// last connection never waits for another one to free.
func (s *Statements) stmt(ctx context.Context, query string) *sqlx.Stmt {
	s.mu.RLock()
	st, ok := s.stmts[query]
	n := len(s.stmts)
	s.mu.RUnlock()
	if ok {
		return st
	}
	if n >= maxStatements || s.db.Stats().Idle == 0 {
		return nil
	}
	pctx, cancel := context.WithTimeout(ctx, prepareTimeout)
	defer cancel()
	st, err := s.db.PreparexContext(pctx, query)
	if err != nil {
		// A bad query fails again unprepared, with its error where the
		// caller expects it.
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if prev, ok := s.stmts[query]; ok {
		_ = st.Close() //nolint:sqlclosecheck // another caller prepared it meanwhile
		return prev
	}
	s.stmts[query] = st
	return st
}

// preparedExt is a transaction or the pool whose queries run as prepared
// statements. The statements stay open: the pool's until Statements.Close
// or the pool closes, a transaction's copy until the transaction ends
// (database/sql closes it then), hence the sqlclosecheck exceptions.
type preparedExt struct {
	s   *Statements
	ext sqlx.ExtContext
	// tx is set when ext is a transaction.
	tx *sqlx.Tx
}

// on returns query's statement bound to the transaction (database/sql
// reuses the statement prepared on the transaction's connection), or nil.
func (p *preparedExt) on(ctx context.Context, query string) *sqlx.Stmt {
	st := p.s.stmt(ctx, query)
	if st == nil || p.tx == nil {
		return st
	}
	return p.tx.StmtxContext(ctx, st)
}

func (p *preparedExt) DriverName() string         { return p.ext.DriverName() }
func (p *preparedExt) Rebind(query string) string { return p.ext.Rebind(query) }
func (p *preparedExt) BindNamed(query string, arg any) (string, []any, error) {
	return p.ext.BindNamed(query, arg)
}

func (p *preparedExt) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := p.on(ctx, query); st != nil { //nolint:sqlclosecheck // see preparedExt
		return st.QueryContext(ctx, args...)
	}
	return p.ext.QueryContext(ctx, query, args...)
}

func (p *preparedExt) QueryxContext(ctx context.Context, query string, args ...any) (*sqlx.Rows, error) {
	if st := p.on(ctx, query); st != nil { //nolint:sqlclosecheck // see preparedExt
		return st.QueryxContext(ctx, args...)
	}
	return p.ext.QueryxContext(ctx, query, args...)
}

func (p *preparedExt) QueryRowxContext(ctx context.Context, query string, args ...any) *sqlx.Row {
	if st := p.on(ctx, query); st != nil { //nolint:sqlclosecheck // see preparedExt
		return st.QueryRowxContext(ctx, args...)
	}
	return p.ext.QueryRowxContext(ctx, query, args...)
}

func (p *preparedExt) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := p.on(ctx, query); st != nil { //nolint:sqlclosecheck // see preparedExt
		return st.ExecContext(ctx, args...)
	}
	return p.ext.ExecContext(ctx, query, args...)
}
