package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream"
	"github.com/bazaarhq/bazaar/stream/redistest"
)

func TestAuditCommand(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, dbURL := storetest.NewDB(t)
	prefix := redistest.Prefix(t)
	rdb := redistest.Client(t)
	names := stream.Names{Prefix: prefix}
	var ids []string
	for _, subject := range []string{"ord-1", "ord-2", "ord-3"} {
		e, err := store.NewEvent("order.created", subject, nil, 1, map[string]string{"id": subject})
		require.NoError(t, err)
		require.NoError(t, store.InsertEvents(ctx, db, e))
		ids = append(ids, e.ID.String())
	}
	relay, err := stream.NewRelay(stream.RelayConfig{DB: db, Redis: rdb, Names: names})
	require.NoError(t, err)
	_, err = relay.PublishBatch(ctx)
	require.NoError(t, err)
	entries, err := rdb.XRange(ctx, names.Stream("order", 0), "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, entries, 3)
	require.NoError(t, rdb.XDel(ctx, names.Stream("order", 0), entries[1].ID).Err())

	getenv := func(k string) string {
		return map[string]string{"DATABASE_URL": dbURL, "REDIS_URL": redistest.URL(), "BAZAAR_REDIS_PREFIX": prefix}[k]
	}
	cli := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(ctx, append([]string{"bazaar", "audit"}, args...), getenv, &out, &errOut)
		return out.String(), err
	}

	out, err := cli("--since", "1h")
	require.EqualError(t, err, "audit: 1 missing (0 repaired), 0 orphan entries, 0 old dead letters")
	require.Contains(t, out, "audited 3 published events")
	require.Contains(t, out, "missing from their stream: 1 (published again: 0)")
	require.Contains(t, out, "event "+ids[1]+"  was "+entries[1].ID)

	out, err = cli("--repair")
	require.NoError(t, err)
	require.Contains(t, out, "missing from their stream: 1 (published again: 1)")
	out, err = cli("--since", time.Now().Add(-time.Hour).UTC().Format(time.RFC3339))
	require.NoError(t, err)
	require.Contains(t, out, "missing from their stream: 0\n")

	_, err = cli("--since", "yesterday")
	require.ErrorAs(t, err, new(usageError))
	require.NotContains(t, err.Error(), "\n")
}

func TestLoadAuditConfig(t *testing.T) {
	t.Parallel()
	c, err := loadAuditConfig(func(string) string { return "" })
	require.NoError(t, err)
	require.Equal(t, auditConfig{Interval: 5 * time.Minute, Window: 24 * time.Hour, DLQMaxAge: 24 * time.Hour}, c)
	env := map[string]string{"BAZAAR_AUDIT_INTERVAL": "0", "BAZAAR_AUDIT_REPAIR": "true", "BAZAAR_AUDIT_WINDOW": "2h"}
	c, err = loadAuditConfig(func(k string) string { return env[k] })
	require.NoError(t, err)
	require.Equal(t, auditConfig{Window: 2 * time.Hour, Repair: true, DLQMaxAge: 24 * time.Hour}, c)
	_, err = loadAuditConfig(func(k string) string { return map[string]string{"BAZAAR_AUDIT_REPAIR": "maybe"}[k] })
	require.EqualError(t, err, `config: BAZAAR_AUDIT_REPAIR: "maybe" is not true or false`)
}
