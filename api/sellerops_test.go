package api

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream"
	"github.com/bazaarhq/bazaar/stream/redistest"
)

// placeOrder places one order of product for user with the storefront key.
func (b *testBundle) placeOrder(product, user uuid.UUID) response {
	b.t.Helper()
	return b.do(http.MethodPost, "/v1/orders", b.front, map[string]any{
		"user_id": user, "payment_method": "pm_card_visa",
		"items": []map[string]any{{"product_id": product, "quantity": 1}},
	})
}

func TestPauseAndResumeSeller(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.sellerA.String()
	b.do(http.MethodPost, "/v1/admin/sellers/"+a+"/pause", b.admin, map[string]any{}).status(http.StatusUnprocessableEntity)
	b.do(http.MethodPost, "/v1/admin/sellers/"+a+"/pause", b.admin, map[string]any{"reason": ""}).status(http.StatusUnprocessableEntity)
	b.do(http.MethodPost, "/v1/admin/sellers/"+uuid.NewString()+"/pause", b.admin, map[string]any{"reason": "x"}).status(http.StatusNotFound)

	got := b.do(http.MethodPost, "/v1/admin/sellers/"+a+"/pause", b.admin, map[string]any{"reason": "chargeback review"}).status(http.StatusOK).json()
	require.NotNil(t, got["paused_at"])
	require.Equal(t, "chargeback review", got["pause_reason"])
	again := b.do(http.MethodPost, "/v1/admin/sellers/"+a+"/pause", b.admin, map[string]any{"reason": "still reviewing"}).status(http.StatusOK).json()
	require.Equal(t, got["paused_at"], again["paused_at"], "a second pause keeps the time")
	require.Equal(t, "still reviewing", again["pause_reason"])
	seen := b.do(http.MethodGet, "/v1/sellers/"+a, b.keyA, nil).status(http.StatusOK).json()
	require.Equal(t, got["paused_at"], seen["paused_at"])

	// By default a paused seller's orders are accepted (their events wait).
	b.placeOrder(b.product(b.keyA, nil), b.user()).status(http.StatusCreated)

	res := b.do(http.MethodPost, "/v1/admin/sellers/"+a+"/resume", b.admin, nil).status(http.StatusOK).json()
	require.Nil(t, res["paused_at"])
	require.Empty(t, res["pause_reason"])
	var version int
	require.NoError(t, b.db.Get(&version, `SELECT pause_version FROM sellers WHERE id = $1`, b.sellerA))
	require.Equal(t, 2, version, "one pause and one resume counted")
	b.do(http.MethodPost, "/v1/admin/sellers/"+a+"/resume", b.admin, nil).status(http.StatusOK)
	require.NoError(t, b.db.Get(&version, `SELECT pause_version FROM sellers WHERE id = $1`, b.sellerA))
	require.Equal(t, 2, version, "resuming a running seller changes nothing")
}

func TestPausedSellerOrdersRefusedWhenConfigured(t *testing.T) {
	t.Parallel()
	b := limitedSetup(t, Config{PausedSellerOrders: PausedOrdersRefuse})
	pa, pb := b.product(b.keyA, nil), b.product(b.keyB, nil)
	user := b.user()
	b.do(http.MethodPost, "/v1/admin/sellers/"+b.sellerA.String()+"/pause", b.admin, map[string]any{"reason": "fraud check"}).status(http.StatusOK)
	before := b.counts()["orders"]
	p := b.placeOrder(pa, user).problem(http.StatusLocked, "seller-paused")
	require.Contains(t, p["detail"], b.sellerA.String())
	require.Equal(t, before, b.counts()["orders"], "nothing recorded")
	b.placeOrder(pb, user).status(http.StatusCreated)
	b.do(http.MethodPost, "/v1/admin/sellers/"+b.sellerA.String()+"/resume", b.admin, nil).status(http.StatusOK)
	b.placeOrder(pa, user).status(http.StatusCreated)

	_, err := New(Config{DB: b.db, AdminToken: testAdminToken, PausedSellerOrders: "maybe"})
	require.ErrorContains(t, err, "PausedSellerOrders")
}

func TestSellerOrderLimit(t *testing.T) {
	t.Parallel()
	b := limitedSetup(t, Config{})
	a := "/v1/sellers/" + b.sellerA.String()
	b.do(http.MethodPatch, a, b.admin, map[string]any{"order_limit": map[string]any{"rate": 0}}).status(http.StatusUnprocessableEntity)
	b.do(http.MethodPatch, a, b.admin, map[string]any{"order_limit": map[string]any{"rate": 1, "per": "s"}}).status(http.StatusBadRequest)
	b.do(http.MethodPatch, a, b.keyA, map[string]any{"order_limit": map[string]any{"rate": 100}}).status(http.StatusForbidden)
	got := b.do(http.MethodPatch, a, b.admin, map[string]any{"order_limit": map[string]any{"rate": 1, "burst": 2}}).status(http.StatusOK).json()
	require.Equal(t, map[string]any{"rate": float64(1), "burst": float64(2)}, got["order_limit"])

	pa, pb := b.product(b.keyA, map[string]any{"stock": 100}), b.product(b.keyB, map[string]any{"stock": 100})
	user := b.user()
	b.placeOrder(pa, user).status(http.StatusCreated)
	b.placeOrder(pa, user).status(http.StatusCreated)
	r := b.placeOrder(pa, user)
	p := r.problem(http.StatusTooManyRequests, "rate-limited")
	require.Contains(t, p["detail"], "Seller "+b.sellerA.String()+" takes at most 1 orders per second (bursts of 2)")
	require.NotEmpty(t, r.header.Get("Retry-After"))
	require.True(t, strings.HasPrefix(r.header.Get("RateLimit-Policy"), `"seller-orders";q=2`), r.header.Get("RateLimit-Policy"))
	// Other sellers keep their orders: the limit is the seller's own.
	for range 3 {
		b.placeOrder(pb, user).status(http.StatusCreated)
	}
	// null removes the limit.
	cleared := b.do(http.MethodPatch, a, b.admin, map[string]any{"order_limit": nil}).status(http.StatusOK).json()
	require.Nil(t, cleared["order_limit"])
	b.placeOrder(pa, user).status(http.StatusCreated)
}

// TestReplaySellerRoute queues one seller's published events for one
// group through the API; only that group's retry stream gets them.
func TestReplaySellerRoute(t *testing.T) {
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
	lost, other := b.seller("Lost Data Ltd"), b.seller("Fine Shop")
	// seller.* events go to the system stream.
	require.NoError(t, rdb.XGroupCreateMkStream(ctx, names.Stream("system", 0), "hooks", "$").Err())
	require.NoError(t, rdb.XGroupCreateMkStream(ctx, names.Stream("system", 0), "books", "$").Err())
	relay, err := stream.NewRelay(stream.RelayConfig{DB: db, Redis: rdb, Names: names})
	require.NoError(t, err)
	_, err = relay.PublishBatch(ctx) // the seller.created events
	require.NoError(t, err)

	path := "/v1/admin/sellers/" + lost.String() + "/replay"
	since := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	b.do(http.MethodPost, path, b.admin, map[string]any{"group": "hooks"}).problem(http.StatusUnprocessableEntity, "validation")
	b.do(http.MethodPost, path, b.admin, map[string]any{"group": "hooks", "since": "2999-01-01T00:00:00Z"}).problem(http.StatusUnprocessableEntity, "validation")
	b.do(http.MethodPost, path, b.admin, map[string]any{"group": "nobody", "since": since, "reason": "x"}).problem(http.StatusNotFound, "not-found")
	b.do(http.MethodPost, "/v1/admin/sellers/"+uuid.NewString()+"/replay", b.admin, map[string]any{"group": "hooks", "since": since, "reason": "their ERP lost a day"}).problem(http.StatusNotFound, "not-found")

	b.do(http.MethodPost, path, b.admin, map[string]any{"group": "hooks", "since": since}).problem(http.StatusBadRequest, "invalid-parameter")
	require.Empty(t, b.auditRows(store.AuditFilter{Action: ActionSellerReplay}), "a refused replay leaves no audit row")

	got := b.do(http.MethodPost, path, b.admin, map[string]any{"group": "hooks", "since": since, "reason": "their ERP lost a day"}).status(http.StatusAccepted).json()
	rows := b.auditRows(store.AuditFilter{Action: ActionSellerReplay})
	require.Len(t, rows, 1)
	require.Equal(t, "seller:"+lost.String(), rows[0].Target)
	require.Equal(t, "their ERP lost a day", rows[0].Reason)
	require.EqualValues(t, 1, *rows[0].Count)
	require.EqualValues(t, 1, got["replayed"], "the seller's seller.created")
	msgs, err := rdb.XRange(ctx, names.Retry("hooks"), "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	require.Equal(t, lost.String(), msgs[0].Values[stream.FieldSeller])
	require.NotEqual(t, other.String(), msgs[0].Values[stream.FieldSeller])
	n, err := rdb.Exists(ctx, names.Retry("books")).Result()
	require.NoError(t, err)
	require.Zero(t, n, "no other group gets them")
}
