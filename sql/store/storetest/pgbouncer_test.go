package storetest

import (
	"context"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"
)

// The bouncer pools by transaction, and a pool made through it reaches
// the test's own database there.
func TestPgBouncerPoolsByTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, dsn, direct := NewDBVia(t, PgBouncer)
	require.NotEqual(t, direct, dsn)
	var name string
	require.NoError(t, db.GetContext(ctx, &name, `SELECT current_database()`))
	require.Contains(t, direct, "/"+name+"?")
	var one int
	require.NoError(t, db.GetContext(ctx, &one, `SELECT $1::int`, 1), "parameters go through (binary_parameters)")
	require.Equal(t, 1, one)

	admin, err := sqlx.Open("postgres", PgBouncerAdminURL(t))
	require.NoError(t, err)
	defer admin.Close()
	rows, err := admin.QueryxContext(ctx, `SHOW POOLS`)
	require.NoError(t, err)
	defer rows.Close()
	modes := map[string]string{}
	for rows.Next() {
		m := map[string]any{}
		require.NoError(t, rows.MapScan(m))
		modes[text(m["database"])] = text(m["pool_mode"])
	}
	require.NoError(t, rows.Err())
	require.Equal(t, "transaction", modes[name], "pools: %v", modes)
}

func text(v any) string {
	switch v := v.(type) {
	case []byte:
		return string(v)
	case string:
		return v
	}
	return ""
}
