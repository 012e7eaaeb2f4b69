package api

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream"
	"github.com/bazaarhq/bazaar/stream/redistest"
)

// TestAdminStreamsAndDLQ drives the stream admin routes against real
// PostgreSQL and Redis: an event that always fails is dead-lettered, shows
// in the overview and the DLQ list, and is redriven and purged by id.
func TestAdminStreamsAndDLQ(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := storetest.NewDB(t)
	rdb := redistest.Client(t)
	names := stream.Names{Prefix: redistest.Prefix(t)}
	admin, err := stream.NewAdmin(stream.AdminConfig{Redis: rdb, DB: db, Names: names})
	require.NoError(t, err)
	srv, err := New(Config{DB: db, AdminToken: testAdminToken, Streams: admin})
	require.NoError(t, err)
	b := &testBundle{t: t, srv: srv, db: db, admin: testAdminToken}

	groups, err := stream.NewGroups(stream.GroupsConfig{Redis: rdb, DB: db, Names: names, Consumer: "c1", Block: 50 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, groups.Add(stream.Subscription{
		Group: "payments", Patterns: []string{"order.created"}, MaxDeliveries: 1,
		Handler: func(context.Context, stream.Message) error { return errors.New("gateway said no") },
	}))
	require.NoError(t, groups.Start(ctx))
	t.Cleanup(func() { require.NoError(t, groups.Stop(ctx)) })

	for _, subject := range []string{"ord-1", "ord-2", "ord-3"} {
		e, err := store.NewEvent("order.created", subject, nil, 1, map[string]string{"id": subject})
		require.NoError(t, err)
		require.NoError(t, store.InsertEvents(ctx, db, e))
	}
	waiting := b.do(http.MethodGet, "/v1/admin/streams", b.admin, nil).status(http.StatusOK).json()
	require.EqualValues(t, 3, waiting["outbox"].(map[string]any)["backlog"])

	relay, err := stream.NewRelay(stream.RelayConfig{DB: db, Redis: rdb, Names: names})
	require.NoError(t, err)
	_, err = relay.PublishBatch(ctx)
	require.NoError(t, err)

	var list map[string]any
	require.Eventually(t, func() bool {
		list = b.do(http.MethodGet, "/v1/admin/dlq/payments", b.admin, nil).status(http.StatusOK).json()
		return list["total"] == float64(3)
	}, 10*time.Second, 20*time.Millisecond)
	items := list["items"].([]any)
	first := items[0].(map[string]any)
	require.Equal(t, "gateway said no", first["error"])
	require.Equal(t, "order.created", first["event"].(map[string]any)["type"])

	ov := b.do(http.MethodGet, "/v1/admin/streams", b.admin, nil).status(http.StatusOK).json()
	require.EqualValues(t, 0, ov["outbox"].(map[string]any)["backlog"])
	var orders map[string]any
	for _, s := range ov["streams"].([]any) {
		if s.(map[string]any)["name"] == names.Stream("order", 0) {
			orders = s.(map[string]any)
		}
	}
	require.NotNil(t, orders)
	require.EqualValues(t, 3, orders["length"])
	g := orders["groups"].([]any)[0].(map[string]any)
	require.Equal(t, "payments", g["name"])
	require.EqualValues(t, 3, g["dlq_depth"])
	require.EqualValues(t, 0, g["pending"])

	// Bad input changes nothing.
	b.do(http.MethodGet, "/v1/admin/dlq/nobody", b.admin, nil).problem(http.StatusNotFound, "not-found")
	b.do(http.MethodPost, "/v1/admin/dlq/payments/redrive", b.admin, map[string]any{"ids": []string{"1-1"}, "reason": "r"}).problem(http.StatusNotFound, "not-found")
	b.do(http.MethodPost, "/v1/admin/dlq/payments/redrive", b.admin, map[string]any{"reason": "r"}).problem(http.StatusUnprocessableEntity, "validation")
	b.do(http.MethodPost, "/v1/admin/dlq/payments/redrive", b.admin, map[string]any{"count": 1, "all": true, "reason": "r"}).problem(http.StatusUnprocessableEntity, "validation")
	b.do(http.MethodPost, "/v1/admin/dlq/payments/purge", b.admin, map[string]any{"count": 1, "reason": "r"}).problem(http.StatusUnprocessableEntity, "validation")
	b.do(http.MethodGet, "/v1/admin/dlq/payments?limit=0", b.admin, nil).problem(http.StatusBadRequest, "invalid-parameter")
	n, err := rdb.XLen(ctx, names.DLQ("payments")).Result()
	require.NoError(t, err)
	require.EqualValues(t, 3, n)

	// Redrive and purge must say why.
	b.do(http.MethodPost, "/v1/admin/dlq/payments/purge", b.admin, map[string]any{"all": true}).problem(http.StatusBadRequest, "invalid-parameter")
	b.do(http.MethodPost, "/v1/admin/dlq/payments/redrive", b.admin, map[string]any{"all": true, "reason": "  "}).problem(http.StatusBadRequest, "invalid-parameter")
	n, err = rdb.XLen(ctx, names.DLQ("payments")).Result()
	require.NoError(t, err)
	require.EqualValues(t, 3, n)

	purged := b.do(http.MethodPost, "/v1/admin/dlq/payments/purge", b.admin, map[string]any{"ids": []string{first["id"].(string)}, "reason": "duplicate"}).status(http.StatusOK).json()
	require.EqualValues(t, 1, purged["purged"])
	redriven := b.do(http.MethodPost, "/v1/admin/dlq/payments/redrive", b.admin, map[string]any{"count": 1, "reason": "gateway fixed"}).status(http.StatusOK).json()
	require.EqualValues(t, 1, redriven["redriven"])
	// The redriven event fails again (MaxDeliveries 1) and comes back.
	require.Eventually(t, func() bool {
		l := b.do(http.MethodGet, "/v1/admin/dlq/payments?limit=10", b.admin, nil).status(http.StatusOK).json()
		return l["total"] == float64(2)
	}, 10*time.Second, 20*time.Millisecond)
	all := b.do(http.MethodPost, "/v1/admin/dlq/payments/purge", b.admin, map[string]any{"all": true, "reason": "test data"}).status(http.StatusOK).json()
	require.EqualValues(t, 2, all["purged"])

	// Each action left one row with its reason and count; refused ones
	// (no reason, bad selection, unknown entry) changed nothing and left
	// none.
	rows, _, err := store.ListAuditEntries(ctx, b.db, store.AuditFilter{Target: "group:payments"}, store.Page{Limit: 10})
	require.NoError(t, err)
	type row struct {
		Action, Actor, Reason, Result string
		Count                         int64
	}
	var got []row
	for _, r := range rows {
		got = append(got, row{r.Action, r.Actor, r.Reason, r.Result, *r.Count})
	}
	require.Equal(t, []row{
		{"dlq.purge", "admin-token", "test data", "ok", 2},
		{"dlq.redrive", "admin-token", "gateway fixed", "ok", 1},
		{"dlq.purge", "admin-token", "duplicate", "ok", 1},
	}, got)
}

// TestOrdersWhileRedisDown: with Redis stopped the API keeps answering 201,
// the outbox grows, and once Redis is back the relay publishes every event
// once, each order's events in the order they were recorded.
func TestOrdersWhileRedisDown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	prod := b.product(b.keyA, map[string]any{"stock": 1000})
	user := b.user()

	srv := redistest.StartServer(t, redistest.ServerOptions{})
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	require.Eventually(t, func() bool { return rdb.Ping(ctx).Err() == nil }, 10*time.Second, 20*time.Millisecond)

	names := stream.Names{Prefix: "bazaar:"}
	relay, err := stream.NewRelay(stream.RelayConfig{DB: b.db, Redis: rdb, Names: names, PollInterval: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, relay.Start(ctx))
	t.Cleanup(func() { require.NoError(t, relay.Stop(ctx)) })
	backlog := func() int64 {
		bl, err := store.OutboxBacklog(ctx, b.db)
		require.NoError(t, err)
		return bl.Count
	}
	require.Eventually(t, func() bool { return backlog() == 0 }, 10*time.Second, 20*time.Millisecond)

	srv.Stop()
	var orders []string
	for range 5 {
		id := b.do(http.MethodPost, "/v1/orders", b.front, map[string]any{
			"user_id": user, "payment_method": "pm_x", "items": []map[string]any{{"product_id": prod, "quantity": 1}},
		}).status(http.StatusCreated).id().String()
		orders = append(orders, id)
		b.do(http.MethodPost, "/v1/orders/"+id+"/cancellation", b.front, map[string]any{"reason": "changed mind"}).status(http.StatusOK)
	}
	time.Sleep(200 * time.Millisecond)
	require.EqualValues(t, 10, backlog(), "the events wait while Redis is down")

	require.NoError(t, srv.Start())
	require.Eventually(t, func() bool { return backlog() == 0 }, 20*time.Second, 20*time.Millisecond)
	msgs, err := rdb.XRange(ctx, names.Stream("order", 0), "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, msgs, 10, "every waiting event published once")
	seen := map[string][]string{}
	for _, m := range msgs {
		seen[m.Values[stream.FieldSubject].(string)] = append(seen[m.Values[stream.FieldSubject].(string)], m.Values[stream.FieldType].(string))
	}
	for _, id := range orders {
		require.Equal(t, []string{"order.created", "order.cancelled"}, seen[id], "order %s", id)
	}
}
