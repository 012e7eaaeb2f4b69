package main

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream"
	"github.com/bazaarhq/bazaar/stream/redistest"
)

func TestReplayCommand(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, dbURL := storetest.NewDB(t)
	prefix := redistest.Prefix(t)
	rdb := redistest.Client(t)
	names := stream.Names{Prefix: prefix}
	lost, err := store.CreateSeller(ctx, db, "Lost Data Ltd", "lost@example.test")
	require.NoError(t, err)
	other, err := store.CreateSeller(ctx, db, "Fine Shop", "fine@example.test")
	require.NoError(t, err)
	// Published events of both sellers, as the relay leaves them.
	for _, s := range []store.Seller{lost, other, lost} {
		e, err := store.NewEvent("order.updated", "ord-"+s.Name, &s.ID, 1, map[string]string{})
		require.NoError(t, err)
		require.NoError(t, store.InsertEvents(ctx, db, e))
	}
	_, err = db.Exec(`WITH d AS (DELETE FROM outbox RETURNING seq, time)
INSERT INTO event_positions (seq, time, stream, ms, n) SELECT seq, time, $1, 1, seq FROM d`, names.Stream("order", 0))
	require.NoError(t, err)
	require.NoError(t, rdb.XGroupCreateMkStream(ctx, names.Stream("order", 0), "hooks", "$").Err())
	require.NoError(t, rdb.XGroupCreateMkStream(ctx, names.Stream("order", 0), "books", "$").Err())

	getenv := func(k string) string {
		return map[string]string{"DATABASE_URL": dbURL, "REDIS_URL": redistest.URL(), "BAZAAR_REDIS_PREFIX": prefix, "USER": "rita"}[k]
	}
	cli := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(ctx, append([]string{"bazaar", "replay"}, args...), getenv, &out, &errOut)
		return out.String(), err
	}
	_, err = cli("--group", "hooks", "--seller", "nope", "--since", "1h", "--reason", "lost data")
	require.ErrorContains(t, err, `--seller "nope" is no seller id`)
	_, err = cli("--group", "hooks", "--seller", lost.ID.String(), "--since", "yesterday", "--reason", "lost data")
	require.ErrorContains(t, err, "is neither a time such as 2026-01-02T15:04:05Z nor a duration such as 6h")
	_, err = cli("--group", "nobody", "--seller", lost.ID.String(), "--since", "1h", "--reason", "lost data")
	require.ErrorContains(t, err, `unknown consumer group "nobody" (known groups: books, hooks)`)

	_, err = cli("--group", "hooks", "--seller", lost.ID.String(), "--since", "1h")
	require.ErrorContains(t, err, "--reason is required")
	out, err := cli("--group", "hooks", "--seller", lost.ID.String(), "--since", time.Now().Add(-time.Hour).Format(time.RFC3339), "--reason", "their ERP lost a day")
	require.NoError(t, err)
	require.Contains(t, out, "2 event(s) of seller "+lost.ID.String())
	msgs, err := rdb.XRange(ctx, names.Retry("hooks"), "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, msgs, 2)
	for _, m := range msgs {
		require.Equal(t, lost.ID.String(), m.Values[stream.FieldSeller])
	}
	n, err := rdb.XLen(ctx, names.Retry("books")).Result()
	require.True(t, err == nil || errors.Is(err, redis.Nil))
	require.Zero(t, n, "no other group gets them")
	rows, _, err := store.ListAuditEntries(ctx, db, store.AuditFilter{Actor: "cli:rita"}, store.Page{Limit: 10})
	require.NoError(t, err)
	require.Len(t, rows, 1, "one row for the replay; refused ones leave none")
	require.Equal(t, "seller.replay", rows[0].Action)
	require.Equal(t, "their ERP lost a day", rows[0].Reason)
	require.EqualValues(t, 2, *rows[0].Count)
}
