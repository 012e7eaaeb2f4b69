package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream"
	"github.com/bazaarhq/bazaar/stream/redistest"
)

func TestDLQCommand(t *testing.T) {
	t.Parallel()
	prefix := redistest.Prefix(t)
	testDLQCommand(t, redistest.Client(t), prefix, map[string]string{"REDIS_URL": redistest.URL(), "BAZAAR_REDIS_PREFIX": prefix})
}

// TestDLQCommandOnCluster: "bazaar dlq" with BAZAAR_REDIS_CLUSTER_ADDRS.
func TestDLQCommandOnCluster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t)
	testDLQCommand(t, c.Client(t), "bazaar:", map[string]string{"BAZAAR_REDIS_CLUSTER_ADDRS": strings.Join(c.Addrs(), ",")})
}

func testDLQCommand(t *testing.T, rdb redis.UniversalClient, prefix string, redisEnv map[string]string) {
	ctx := context.Background()
	db, dbURL := storetest.NewDB(t)
	names := stream.Names{Prefix: prefix}
	// A group with two dead letters.
	require.NoError(t, rdb.XGroupCreateMkStream(ctx, names.Stream("order", 0), "payments", "$").Err())
	env := stream.Envelope{ID: "0191e0a8-0000-7000-8000-000000000001", Type: "order.created", Subject: "ord-1", Data: []byte(`{}`)}
	values, err := env.Values()
	require.NoError(t, err)
	values[stream.FieldDLQError] = "gateway said no"
	values[stream.FieldDLQDeliveries] = "5"
	var ids []string
	for range 2 {
		id, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: names.DLQ("payments"), Values: values}).Result()
		require.NoError(t, err)
		ids = append(ids, id)
	}
	getenv := func(k string) string {
		switch k {
		case "DATABASE_URL":
			return dbURL
		case "USER":
			return "dora"
		}
		return redisEnv[k]
	}
	cli := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(ctx, append([]string{"bazaar", "dlq"}, args...), getenv, &out, &errOut)
		return out.String(), err
	}

	out, err := cli("list")
	require.NoError(t, err)
	require.Regexp(t, `payments\s+2\s+0\s+0`, out)
	out, err = cli("list", "payments")
	require.NoError(t, err)
	require.Contains(t, out, ids[0])
	require.Contains(t, out, "gateway said no")
	out, err = cli("show", "payments", ids[1])
	require.NoError(t, err)
	require.Contains(t, out, `"type": "order.created"`)

	_, err = cli("list", "nobody")
	require.EqualError(t, err, `unknown consumer group "nobody" (known groups: payments)`)
	_, err = cli("show", "payments", "1-1")
	require.ErrorIs(t, err, stream.ErrUnknownEntry)
	require.NotContains(t, err.Error(), "\n")
	_, err = cli("redrive", "payments", "-reason", "r")
	require.ErrorContains(t, err, "exactly one")
	_, err = cli("redrive", "payments", ids[0])
	require.EqualError(t, err, "dlq redrive: -reason is required (it goes to the audit log)")
	_, err = cli("purge", "payments", "-all", "-reason", " ")
	require.ErrorContains(t, err, "-reason is required")
	_, err = cli("frobnicate")
	require.ErrorContains(t, err, `unknown dlq action "frobnicate"`)

	out, err = cli("redrive", "payments", ids[0], "-reason", "gateway fixed")
	require.NoError(t, err)
	require.Equal(t, "1 dead letter(s) redriven to the retry stream of payments\n", out)
	n, err := rdb.XLen(ctx, names.Retry("payments")).Result()
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	out, err = cli("purge", "payments", "-all", "-reason", "test data")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(out, "1 dead letter(s) purged"), out)

	// Each action wrote one audit row naming the person; refused ones none.
	rows, _, err := store.ListAuditEntries(ctx, db, store.AuditFilter{Actor: "cli:dora"}, store.Page{Limit: 10})
	require.NoError(t, err)
	require.Len(t, rows, 2)
	require.Equal(t, []string{"dlq.purge", "test data", "group:payments", "cli"}, []string{rows[0].Action, rows[0].Reason, rows[0].Target, rows[0].Role})
	require.Equal(t, []string{"dlq.redrive", "gateway fixed"}, []string{rows[1].Action, rows[1].Reason})
	require.EqualValues(t, 1, *rows[0].Count)
	require.EqualValues(t, 1, *rows[1].Count)
}
