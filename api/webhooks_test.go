package api

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
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
