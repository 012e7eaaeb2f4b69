package store_test

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
)

// closedPort returns a local TCP address nothing listens on: connecting
// to it is refused.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// The errors PostgreSQL and the driver give when the database cannot
// serve are recognised as unavailable, taken from a real server where it
// can produce them; errors of a bad request are not.
func TestUnavailableErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, dsn := storetest.NewDB(t)

	t.Run("backend terminated (57P01)", func(t *testing.T) {
		conn, err := db.Connx(ctx)
		require.NoError(t, err)
		defer conn.Close()
		_, err = conn.ExecContext(ctx, `SELECT pg_terminate_backend(pg_backend_pid())`)
		require.Error(t, err)
		require.True(t, store.Unavailable(err), "%v (%T)", err, err)
	})

	t.Run("too many connections (53300)", func(t *testing.T) {
		role := fmt.Sprintf("bazaar_t_full_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9)
		_, err := db.ExecContext(ctx, `CREATE ROLE `+role+` LOGIN CONNECTION LIMIT 0`)
		require.NoError(t, err)
		t.Cleanup(func() { _, _ = db.ExecContext(ctx, `DROP ROLE IF EXISTS `+role) })
		u, err := url.Parse(dsn)
		require.NoError(t, err)
		u.User = url.User(role)
		full, err := sql.Open("postgres", u.String())
		require.NoError(t, err)
		defer full.Close()
		err = full.PingContext(ctx)
		require.Error(t, err)
		require.NotNil(t, pq.As(err, pqerror.TooManyConnections), "%v", err)
		require.True(t, store.Unavailable(err), "%v", err)
	})

	t.Run("connection refused", func(t *testing.T) {
		down, err := sqlx.Open("postgres", "postgres://postgres@"+closedPort(t)+"/bazaar?sslmode=disable")
		require.NoError(t, err)
		defer down.Close()
		_, err = store.GetSeller(ctx, down, [16]byte{1})
		require.ErrorIs(t, err, store.ErrUnavailable)
		require.NotErrorIs(t, err, store.ErrNotFound)
		require.True(t, store.Unavailable(down.PingContext(ctx)))
	})

	t.Run("codes the server sends only while starting or crashing", func(t *testing.T) {
		for _, code := range []pqerror.Code{pqerror.CannotConnectNow, pqerror.CrashShutdown, "08006"} {
			require.True(t, store.Unavailable(fmt.Errorf("query: %w", &pq.Error{Code: code})), code)
		}
	})

	t.Run("bad requests are not", func(t *testing.T) {
		_, err := db.ExecContext(ctx, `SELECT no_such_column FROM sellers`)
		require.Error(t, err)
		require.False(t, store.Unavailable(err), "%v", err)
		_, err = store.GetSeller(ctx, db, [16]byte{1})
		require.ErrorIs(t, err, store.ErrNotFound)
		require.False(t, store.Unavailable(err))
		require.False(t, store.Unavailable(nil))
	})
}
