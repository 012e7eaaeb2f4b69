package storetest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"testing"
	"time"

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

// The bouncer ends with the test binary that started it, also when the
// tests run as root and it runs as another user: a child test binary
// starts one, prints its address and exits, and nothing may answer there
// afterwards.
func TestPgBouncerEndsWithTheTestBinary(t *testing.T) {
	t.Parallel()
	if os.Getenv("STORETEST_BOUNCER_CHILD") != "" {
		u, err := url.Parse(PgBouncerAdminURL(t))
		require.NoError(t, err)
		fmt.Println("bouncer at", u.Host)
		return
	}
	cmd := exec.CommandContext(context.Background(), os.Args[0], "-test.run=^TestPgBouncerEndsWithTheTestBinary$", "-test.count=1") //nolint:gosec // this test binary
	cmd.Env = append(os.Environ(), "STORETEST_BOUNCER_CHILD=1")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	m := regexp.MustCompile(`bouncer at (\S+)`).FindSubmatch(out)
	require.NotNil(t, m, "%s", out)
	addr := string(m[1])
	require.Eventually(t, func() bool {
		var d net.Dialer
		c, err := d.DialContext(context.Background(), "tcp", addr)
		if err == nil {
			_ = c.Close()
		}
		return err != nil
	}, 10*time.Second, 50*time.Millisecond, "the bouncer at %s still answers after its test binary exited", addr)
}
