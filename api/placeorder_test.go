package api

import (
	"net/http"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
)

func orderBody(user uuid.UUID, products ...any) map[string]any {
	items := make([]map[string]any, len(products))
	for i, p := range products {
		items[i] = map[string]any{"product_id": p, "quantity": 1}
	}
	return map[string]any{"user_id": user, "payment_method": "pm_x", "items": items}
}

// A repeated POST /v1/orders with the same Idempotency-Key answers the
// first response again and writes nothing more.
func TestOrderIdempotentReplay(t *testing.T) {
	t.Parallel()
	eachPool(t, func(t *testing.T, b *testBundle) {
		prod, user := b.product(b.keyA, nil), b.user()
		first := b.do(http.MethodPost, "/v1/orders", b.front, orderBody(user, prod), HeaderIdempotencyKey, "replay-1").status(http.StatusCreated)
		before := b.counts()
		again := b.do(http.MethodPost, "/v1/orders", b.front, orderBody(user, prod), HeaderIdempotencyKey, "replay-1").status(http.StatusCreated)
		require.Equal(t, "true", again.header.Get(HeaderIdempotencyReplayed))
		require.JSONEq(t, string(first.body), string(again.body))
		require.Equal(t, before, b.counts())
		require.Len(t, b.events(first.id()), 1, "one order.created event")

		// The same key with another body is refused.
		other := b.product(b.keyA, nil)
		before = b.counts()
		b.do(http.MethodPost, "/v1/orders", b.front, orderBody(user, other), HeaderIdempotencyKey, "replay-1").
			problem(http.StatusUnprocessableEntity, "idempotency-key-reused")
		require.Equal(t, before, b.counts())
	})
}

// Requests racing with one Idempotency-Key place one order, and every
// one of them answers with it.
func TestOrderConcurrentDuplicate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	prod, user := b.product(b.keyA, nil), b.user()
	raw := mustJSON(t, orderBody(user, prod))
	before := b.counts()
	const n = 6
	res := make([]response, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = b.serve(http.MethodPost, "/v1/orders", b.front, raw, HeaderIdempotencyKey, "race-1")
		}()
	}
	wg.Wait()
	for _, r := range res {
		require.Equal(t, http.StatusCreated, r.code, "body: %s", r.body)
		require.JSONEq(t, string(res[0].body), string(r.body))
	}
	after := b.counts()
	require.Equal(t, before["orders"].(float64)+1, after["orders"])
	require.Equal(t, before["events"].(float64)+1, after["events"])
	require.Equal(t, before["idempotency_keys"].(float64)+1, after["idempotency_keys"])
}

// An unknown product, or an unknown user, is a 422 naming the field, and
// nothing is written.
func TestOrderUnknownReferencesWriteNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	prod, user := b.product(b.keyA, nil), b.user()
	before := b.counts()
	p := b.do(http.MethodPost, "/v1/orders", b.front, orderBody(user, prod, uuid.New()), HeaderIdempotencyKey, "unknown-1").
		problem(http.StatusUnprocessableEntity, "validation")
	require.Contains(t, string(mustJSON(t, p)), "items[1].product_id")
	p = b.do(http.MethodPost, "/v1/orders", b.front, orderBody(uuid.New(), prod), HeaderIdempotencyKey, "unknown-2").
		problem(http.StatusUnprocessableEntity, "validation")
	require.Contains(t, string(mustJSON(t, p)), "user_id")
	require.Equal(t, before, b.counts())
	// The keys were not spent on the refusals.
	b.do(http.MethodPost, "/v1/orders", b.front, orderBody(user, prod), HeaderIdempotencyKey, "unknown-2").status(http.StatusCreated)
}

// A revoked key is refused at once, though it was just used and is held
// in the key cache.
func TestRevokedKeyRefusedAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do(http.MethodPost, "/v1/storefront-keys", b.admin, map[string]any{"name": "soon gone"}).status(http.StatusCreated)
	key, id := r.json()["key"].(string), r.json()["id"].(string)
	for range 2 { // the second is answered from the cache
		b.do(http.MethodGet, "/v1/orders", key, nil).status(http.StatusOK)
	}
	b.do(http.MethodDelete, "/v1/storefront-keys/"+id, b.admin, nil).status(http.StatusNoContent)
	b.do(http.MethodGet, "/v1/orders", key, nil).problem(http.StatusUnauthorized, "unauthorized")
}

// A revocation announced by another process clears this one's key cache.
func TestKeyCacheClearedByAnnouncement(t *testing.T) {
	t.Parallel()
	var k keyCache
	h := [32]byte{1}
	_, gen, ok := k.get(h)
	require.False(t, ok)
	k.put(h, store.APIKey{ID: uuid.New()}, gen)
	_, _, ok = k.get(h)
	require.True(t, ok)
	k.clear()
	_, _, ok = k.get(h)
	require.False(t, ok, "cleared")
	// A lookup that began before the clear does not put its key back.
	k.put(h, store.APIKey{ID: uuid.New()}, gen)
	_, _, ok = k.get(h)
	require.False(t, ok, "stale lookup kept out")
}
