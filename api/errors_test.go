package api

import (
	"context"
	"net"
	"net/http"
	"slices"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/stream"
)

// The problem types the code can emit (the kinds table and the fallback)
// are exactly the ones openapi.yaml lists, so clients that switch on the
// enum meet no surprise and the spec promises no type that never comes.
func TestProblemTypesMatchSpec(t *testing.T) {
	t.Parallel()
	doc, _ := spec(t)
	var specTypes []string
	for _, v := range doc.Components.Schemas["Problem"].Value.Properties["type"].Value.Enum {
		specTypes = append(specTypes, v.(string))
	}
	code := []string{ProblemBase + internalKind.slug}
	for _, k := range kinds {
		code = append(code, ProblemBase+k.kind.slug)
	}
	slices.Sort(specTypes)
	slices.Sort(code)
	require.Equal(t, slices.Compact(specTypes), slices.Compact(code))
}

// refusedAddr returns a local address whose connections are refused: a
// listener that was opened and closed.
func refusedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func requireUnavailable(t *testing.T, r response) {
	t.Helper()
	r.problem(http.StatusServiceUnavailable, "unavailable")
	require.Equal(t, retryAfterUnavailable, r.header.Get("Retry-After"))
}

// With PostgreSQL unreachable, reads and writes answer 503 unavailable
// with Retry-After, not 500.
func TestDatabaseDownIsUnavailable(t *testing.T) {
	t.Parallel()
	db, err := sqlx.Open("postgres", "postgres://postgres@"+refusedAddr(t)+"/bazaar?sslmode=disable")
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	srv, err := New(Config{DB: db, AdminToken: testAdminToken})
	require.NoError(t, err)
	b := &testBundle{t: t, srv: srv, db: db, admin: testAdminToken}
	requireUnavailable(t, b.do(http.MethodGet, "/v1/sellers", b.admin, nil))
	requireUnavailable(t, b.do(http.MethodPost, "/v1/sellers", b.admin, map[string]any{"name": "S", "email": "s@example.com"}))
	requireUnavailable(t, b.do(http.MethodPost, "/v1/sellers", b.admin, map[string]any{"name": "S", "email": "s@example.com"}, HeaderIdempotencyKey, "k-1"))
}

// A write whose connection PostgreSQL terminates (57P01, as in a fast
// shutdown) answers 503 and stores nothing.
func TestDatabaseShutdownIsUnavailable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	before := b.counts()
	b.srv.beforeCommit = func(ctx context.Context, tx *sqlx.Tx) error {
		_, err := tx.ExecContext(ctx, `SELECT pg_terminate_backend(pg_backend_pid())`)
		return err
	}
	requireUnavailable(t, b.do(http.MethodPost, "/v1/sellers", b.admin, map[string]any{"name": "S", "email": "s@example.com"}))
	b.srv.beforeCommit = nil
	require.Equal(t, before, b.counts())
}

// With Redis unreachable, a route that needs it answers 503.
func TestRedisDownIsUnavailable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rdb := redis.NewClient(&redis.Options{Addr: refusedAddr(t), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	admin, err := stream.NewAdmin(stream.AdminConfig{Redis: rdb, Names: stream.Names{Prefix: "bazaar-down-test"}})
	require.NoError(t, err)
	srv, err := New(Config{DB: b.db, AdminToken: testAdminToken, Streams: admin})
	require.NoError(t, err)
	down := &testBundle{t: t, srv: srv, db: b.db, admin: testAdminToken}
	requireUnavailable(t, down.do(http.MethodGet, "/v1/admin/streams", down.admin, nil))
}
