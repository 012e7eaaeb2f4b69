package api

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/stream/redistest"
	"github.com/bazaarhq/bazaar/workers/webhooks"
)

func TestWebhookEndpointLifecycle(t *testing.T) {
	t.Parallel()
	b := setup(t)
	base := "/v1/sellers/" + b.sellerA.String() + "/webhooks"
	body := map[string]any{"url": "http://127.0.0.1:9/hook", "topics": []string{"order.#"}, "description": "ERP"}
	created := b.do(http.MethodPost, base, b.keyA, body, HeaderIdempotencyKey, "hook-once").status(http.StatusCreated).json()
	secret, _ := created["secret"].(string)
	require.True(t, strings.HasPrefix(secret, "whsec_"), secret)
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(raw), 24)
	require.LessOrEqual(t, len(raw), 32)
	id := created["id"].(string)

	// The secret rests nowhere but in the endpoint: not in the idempotency
	// record, not in a replay, not in reads.
	var stored []byte
	require.NoError(t, b.db.Get(&stored, `SELECT response FROM idempotency_keys WHERE key = $1`, "hook-once"))
	require.NotContains(t, string(stored), secret)
	replay := b.do(http.MethodPost, base, b.keyA, body, HeaderIdempotencyKey, "hook-once").status(http.StatusCreated)
	require.NotContains(t, string(replay.body), secret)
	got := b.do(http.MethodGet, base+"/"+id, b.keyA, nil).status(http.StatusOK)
	require.NotContains(t, string(got.body), "whsec_")
	list := b.do(http.MethodGet, base, b.keyA, nil).status(http.StatusOK).json()
	require.Len(t, list["items"], 1)

	// Another seller sees none of it.
	b.do(http.MethodGet, base+"/"+id, b.keyB, nil).status(http.StatusNotFound)
	b.do(http.MethodGet, "/v1/sellers/"+b.sellerB.String()+"/webhooks/"+id, b.keyB, nil).status(http.StatusNotFound)

	upd := b.do(http.MethodPatch, base+"/"+id, b.keyA, map[string]any{"topics": []string{"order.created", "return.#"}, "disabled": true}).status(http.StatusOK).json()
	require.Equal(t, []any{"order.created", "return.#"}, upd["topics"])
	require.Equal(t, true, upd["disabled"])

	rot := b.do(http.MethodPost, base+"/"+id+"/rotate-secret", b.keyA, nil).status(http.StatusOK).json()
	require.NotEqual(t, secret, rot["secret"])
	var prev string
	require.NoError(t, b.db.Get(&prev, `SELECT previous_secret FROM webhook_endpoints WHERE id = $1`, id))
	require.Equal(t, secret, prev, "the old secret keeps signing during the window")

	dl := b.do(http.MethodGet, base+"/"+id+"/deliveries", b.keyA, nil).status(http.StatusOK).json()
	require.Empty(t, dl["items"])

	b.do(http.MethodDelete, base+"/"+id, b.keyA, nil).status(http.StatusNoContent)
	b.do(http.MethodGet, base+"/"+id, b.keyA, nil).status(http.StatusNotFound)
}

func TestWebhookRegistrationRefusesBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t)
	base := "/v1/sellers/" + b.sellerA.String() + "/webhooks"
	for _, body := range []map[string]any{
		{"url": "ftp://127.0.0.1/hook", "topics": []string{"#"}},
		{"url": "http://169.254.169.254/latest", "topics": []string{"#"}},
		{"url": "http://127.0.0.1/hook", "topics": []string{}},
		{"url": "http://127.0.0.1/hook", "topics": []string{"Order.Created"}},
		{"topics": []string{"#"}},
	} {
		b.do(http.MethodPost, base, b.keyA, body).problem(http.StatusUnprocessableEntity, "validation")
	}
	var n int
	require.NoError(t, b.db.Get(&n, `SELECT count(*) FROM webhook_endpoints`))
	require.Zero(t, n)
}

func TestWebhookRedeliverSince(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rdb := redis.NewClient(redistest.DB(t))
	t.Cleanup(func() { _ = rdb.Close() })
	client := asynq.NewClientFromRedisClient(rdb)
	t.Cleanup(func() { _ = client.Close() })
	svc, err := webhooks.New(webhooks.Config{DB: b.db, Enqueuer: webhooks.ClientEnqueuer{Client: client}, AllowPrivate: true})
	require.NoError(t, err)
	b.srv.cfg.Webhooks.Redeliverer = svc

	base := "/v1/sellers/" + b.sellerA.String() + "/webhooks"
	created := b.do(http.MethodPost, base, b.keyA, map[string]any{
		"url": "http://127.0.0.1:9/hook", "topics": []string{"order.#"}, "ordered": true,
	}).status(http.StatusCreated).json()
	require.Equal(t, true, created["ordered"])
	require.Nil(t, created["failing_since"])
	require.Nil(t, created["disabled_at"])
	wid := uuid.MustParse(created["id"].(string))

	// Two deliveries of the log, one recorded two hours ago.
	var ids []uuid.UUID
	for range 2 {
		d, err := store.EnsureWebhookDelivery(t.Context(), b.db, store.WebhookDelivery{
			ID: uuid.New(), EndpointID: wid, EventID: uuid.New(), EventType: "order.created", Payload: []byte(`{}`),
		})
		require.NoError(t, err)
		ids = append(ids, d.ID)
	}
	_, err = b.db.Exec(`UPDATE webhook_deliveries SET created_at = now() - interval '2 hours', status = 'delivered' WHERE id = $1`, ids[0])
	require.NoError(t, err)

	path := base + "/" + wid.String() + "/redeliver"
	for _, since := range []any{nil, "yesterday", "2026-12-01", 17, time.Now().Add(time.Hour).UTC().Format(time.RFC3339)} {
		body := map[string]any{}
		if since != nil {
			body["since"] = since
		}
		if _, ok := since.(int); ok {
			// Not a string at all: the body's shape is wrong, as anywhere.
			b.do(http.MethodPost, path, b.keyA, body).problem(http.StatusUnprocessableEntity, "validation")
			continue
		}
		b.do(http.MethodPost, path, b.keyA, body).problem(http.StatusBadRequest, "invalid-parameter")
	}
	b.do(http.MethodPost, "/v1/sellers/"+b.sellerB.String()+"/webhooks/"+wid.String()+"/redeliver", b.keyB,
		map[string]any{"since": "2026-01-01T00:00:00Z"}).problem(http.StatusNotFound, "not-found")

	since := time.Now().Add(-3 * time.Hour).UTC().Truncate(time.Second)
	got := b.do(http.MethodPost, path, b.keyA, map[string]any{"since": since.Format(time.RFC3339)}).status(http.StatusAccepted).json()
	require.InDelta(t, 2, got["count"], 0)
	require.Equal(t, since.Format(time.RFC3339), got["since"])
	got = b.do(http.MethodPost, path, b.keyA, map[string]any{"since": time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)}).status(http.StatusAccepted).json()
	require.InDelta(t, 1, got["count"], 0, "the older one is not since then")

	for _, id := range ids {
		d, err := store.GetWebhookDelivery(t.Context(), b.db, wid, id)
		require.NoError(t, err)
		require.Equal(t, store.DeliveryPending, d.Status)
	}
	// Ordered: only the first in line has a task.
	insp := asynq.NewInspectorFromRedisClient(rdb)
	t.Cleanup(func() { _ = insp.Close() })
	pending, err := insp.ListPendingTasks("default")
	require.NoError(t, err)
	require.Len(t, pending, 1)
	require.Contains(t, string(pending[0].Payload), ids[0].String())

	// Not ordered any more: the waiting one gets its task too.
	upd := b.do(http.MethodPatch, base+"/"+wid.String(), b.keyA, map[string]any{"ordered": false}).status(http.StatusOK).json()
	require.Equal(t, false, upd["ordered"])
	pending, err = insp.ListPendingTasks("default")
	require.NoError(t, err)
	require.Len(t, pending, 2)

	require.Empty(t, b.auditRows(store.AuditFilter{Action: ActionWebhookRedeliver}), "a seller's own redelivery is no admin action")

	// Staff redelivering is recorded in the audit log with the request.
	_, otto := b.operator("otto", RoleOperator)
	b.do(http.MethodPost, path, otto, map[string]any{"since": since.Format(time.RFC3339)}).problem(http.StatusForbidden, "forbidden")
	res := b.do(http.MethodPost, path, b.admin, map[string]any{"since": since.Format(time.RFC3339)}).status(http.StatusAccepted)
	rows := b.auditRows(store.AuditFilter{Action: ActionWebhookRedeliver})
	require.Len(t, rows, 1)
	require.Equal(t, adminTokenActor, rows[0].Actor)
	require.Equal(t, "webhook:"+wid.String(), rows[0].Target)
	require.Equal(t, res.header.Get(HeaderRequestID), rows[0].RequestID)
	require.NotNil(t, rows[0].Count)
	require.EqualValues(t, 2, *rows[0].Count)
	one := b.do(http.MethodPost, base+"/"+wid.String()+"/deliveries/"+ids[1].String()+"/redeliver", b.admin, nil).status(http.StatusAccepted)
	rows = b.auditRows(store.AuditFilter{Action: ActionWebhookRedeliver})
	require.Len(t, rows, 2)
	require.Equal(t, one.header.Get(HeaderRequestID), rows[0].RequestID)
	require.Contains(t, string(rows[0].Params), ids[1].String())
}
