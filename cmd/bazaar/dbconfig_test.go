package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store/storetest"
)

func TestDatabaseConfig(t *testing.T) {
	t.Parallel()
	c, err := loadConfig(envOf(nil))
	require.NoError(t, err)
	require.Equal(t, 25, c.DBMaxConns)
	require.Equal(t, c.DatabaseURL, c.DatabaseDirectURL, "the direct URL defaults to DATABASE_URL")
	require.False(t, c.OutboxNotify, "NOTIFY after commit is opt-in")

	c, err = loadConfig(envOf(map[string]string{
		"DATABASE_URL":               "postgres://app@pgbouncer:6432/bazaar?sslmode=disable&binary_parameters=yes",
		"BAZAAR_DATABASE_DIRECT_URL": "postgres://app@db:5432/bazaar?sslmode=disable",
		"BAZAAR_DB_MAX_CONNS":        "8",
		"BAZAAR_OUTBOX_NOTIFY":       "true",
	}))
	require.NoError(t, err)
	require.Equal(t, 8, c.DBMaxConns)
	require.True(t, c.OutboxNotify)
	require.Equal(t, "postgres://app@db:5432/bazaar?sslmode=disable", c.DatabaseDirectURL)

	for _, tc := range []struct{ key, value string }{
		{"BAZAAR_DB_MAX_CONNS", "0"},
		{"BAZAAR_DB_MAX_CONNS", "many"},
		{"BAZAAR_DATABASE_DIRECT_URL", "mysql://db/bazaar"},
		{"BAZAAR_OUTBOX_NOTIFY", "sometimes"},
	} {
		_, err := loadConfig(envOf(map[string]string{tc.key: tc.value}))
		require.ErrorContains(t, err, tc.key, "%s=%s", tc.key, tc.value)
	}
}

// The pool is capped at BAZAAR_DB_MAX_CONNS, and migrations take the
// direct URL: with DATABASE_URL pointing nowhere, "migrate status" still
// answers from BAZAAR_DATABASE_DIRECT_URL.
func TestMigrateUsesTheDirectURL(t *testing.T) {
	t.Parallel()
	_, pooled, direct := storetest.NewDBVia(t, storetest.PgBouncer)
	c, err := loadConfig(envOf(map[string]string{"DATABASE_URL": pooled, "BAZAAR_DB_MAX_CONNS": "3"}))
	require.NoError(t, err)
	db, err := openDB(context.Background(), c)
	require.NoError(t, err)
	require.Equal(t, 3, db.Stats().MaxOpenConnections)
	require.NoError(t, db.Close())

	env := envOf(map[string]string{
		"DATABASE_URL":               "postgres://postgres@127.0.0.1:1/nowhere?sslmode=disable&connect_timeout=1",
		"BAZAAR_DATABASE_DIRECT_URL": direct,
	})
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"bazaar", "migrate", "status"}, env, &out, &out))
	require.Contains(t, out.String(), "up to date")
}
