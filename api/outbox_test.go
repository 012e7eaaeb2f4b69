package api

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"
)

// A failure after the records and the event are inserted rolls back both:
// no record without its event, no event without its record.
func TestOutboxRollsBackWithRecord(t *testing.T) {
	t.Parallel()
	eachPool(t, func(t *testing.T, b *testBundle) {
		prod := b.product(b.keyA, nil)
		user := b.user()

		b.srv.beforeCommit = func(ctx context.Context, tx *sqlx.Tx) error {
			var n int
			if err := tx.GetContext(ctx, &n, `SELECT count(*) FROM events WHERE request_id = 'req-doomed'`); err != nil {
				return err
			}
			if n == 0 {
				return errors.New("expected the event to be inserted before commit")
			}
			return errors.New("disk on fire")
		}
		before := b.counts()
		obs := b.observed.count()
		p := b.do(http.MethodPost, "/v1/orders", b.front, map[string]any{
			"user_id": user, "payment_method": "pm_x", "items": []map[string]any{{"product_id": prod, "quantity": 1}},
		}, HeaderRequestID, "req-doomed", HeaderIdempotencyKey, "doomed").problem(http.StatusInternalServerError, "internal")
		require.NotContains(t, string(mustJSON(t, p)), "disk on fire", "internal errors are not shown")
		require.Equal(t, before, b.counts())
		require.Equal(t, obs, b.observed.count(), "no commit, no wake-up")
		b.srv.beforeCommit = nil

		// The same key works once the failure is gone: nothing was recorded.
		b.do(http.MethodPost, "/v1/orders", b.front, map[string]any{
			"user_id": user, "payment_method": "pm_x", "items": []map[string]any{{"product_id": prod, "quantity": 1}},
		}, HeaderIdempotencyKey, "doomed").status(http.StatusCreated)
		after := b.counts()
		require.Equal(t, before["orders"].(float64)+1, after["orders"])
		require.Equal(t, before["events"].(float64)+1, after["events"])
		require.Equal(t, before["idempotency_keys"].(float64)+1, after["idempotency_keys"])
	})
}

// A database constraint that fails on the event insert, after the order
// rows went in, leaves no order behind.
func TestOutboxConstraintFailureRollsBackOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	prod := b.product(b.keyA, nil)
	user := b.user()
	_, err := b.db.Exec(`ALTER TABLE events ADD CONSTRAINT no_orders_today CHECK (type <> 'order.created')`)
	require.NoError(t, err)

	before := b.counts()
	p := b.do(http.MethodPost, "/v1/orders", b.front, map[string]any{
		"user_id": user, "payment_method": "pm_x", "items": []map[string]any{{"product_id": prod, "quantity": 1}},
	}).problem(http.StatusInternalServerError, "internal")
	require.NotContains(t, string(mustJSON(t, p)), "no_orders_today", "no SQL text reaches the client")
	require.Equal(t, before, b.counts())
}

// Committed writes wake the observer once; reads and failed writes do not.
func TestObserverToldAfterCommit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	n := b.observed.count()
	b.do(http.MethodGet, "/v1/sellers", b.admin, nil).status(http.StatusOK)
	b.do(http.MethodPost, "/v1/sellers", b.admin, map[string]any{"name": ""}).problem(http.StatusUnprocessableEntity, "validation")
	require.Equal(t, n, b.observed.count())
	b.seller("Observed")
	require.Equal(t, n+1, b.observed.count())
	// Key creation records no event, so no wake-up.
	b.key(b.admin, "/v1/storefront-keys")
	require.Equal(t, n+1, b.observed.count())
}

// The same key and body replays the first response; another body is a
// 422; a duplicate while the first runs is a 409; keys are per caller and
// expire after 24 h.
func TestIdempotency(t *testing.T) {
	t.Parallel()
	eachPool(t, func(t *testing.T, b *testBundle) {
		body := map[string]any{"name": "Once", "email": "once@example.com"}

		first := b.do(http.MethodPost, "/v1/sellers", b.admin, body, HeaderIdempotencyKey, "k-1").status(http.StatusCreated)
		require.Empty(t, first.header.Get(HeaderIdempotencyReplayed))
		before := b.counts()
		again := b.do(http.MethodPost, "/v1/sellers", b.admin, body, HeaderIdempotencyKey, "k-1").status(http.StatusCreated)
		require.Equal(t, "true", again.header.Get(HeaderIdempotencyReplayed))
		require.JSONEq(t, string(first.body), string(again.body))
		require.Equal(t, before, b.counts(), "a replay writes nothing")

		other := map[string]any{"name": "Twice", "email": "once@example.com"}
		b.do(http.MethodPost, "/v1/sellers", b.admin, other, HeaderIdempotencyKey, "k-1").problem(http.StatusUnprocessableEntity, "idempotency-key-reused")
		b.do(http.MethodPost, "/v1/sellers/"+first.id().String()+"/keys", b.admin, body, HeaderIdempotencyKey, "k-1").
			problem(http.StatusUnprocessableEntity, "idempotency-key-reused")
		require.Equal(t, before, b.counts())

		// Another caller's key space is its own.
		prod := b.do(http.MethodPost, "/v1/products", b.keyA, map[string]any{"sku": "a", "name": "A", "price_minor": 1, "currency": "EUR"},
			HeaderIdempotencyKey, "k-1").status(http.StatusCreated)
		require.Empty(t, prod.header.Get(HeaderIdempotencyReplayed))

		// Expired records are not replayed: the request runs again.
		_, err := b.db.Exec(`UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE principal = 'admin'`)
		require.NoError(t, err)
		fresh := b.do(http.MethodPost, "/v1/sellers", b.admin, body, HeaderIdempotencyKey, "k-1").status(http.StatusCreated)
		require.Empty(t, fresh.header.Get(HeaderIdempotencyReplayed))
		require.NotEqual(t, first.id(), fresh.id())

		// Non-2xx answers are not stored: fixing the body under the same key works.
		b.do(http.MethodPost, "/v1/sellers", b.admin, map[string]any{"name": ""}, HeaderIdempotencyKey, "k-2").problem(http.StatusUnprocessableEntity, "validation")
		b.do(http.MethodPost, "/v1/sellers", b.admin, map[string]any{"name": "", "email": "x@example.com"}, HeaderIdempotencyKey, "k-2").
			problem(http.StatusUnprocessableEntity, "validation")
		b.do(http.MethodPost, "/v1/sellers", b.admin, map[string]any{"name": "Fixed", "email": "x@example.com"}, HeaderIdempotencyKey, "k-2").status(http.StatusCreated)

		// A bad key is a 400 and writes nothing.
		before = b.counts()
		b.do(http.MethodPost, "/v1/sellers", b.admin, body, HeaderIdempotencyKey, "has space").problem(http.StatusBadRequest, "invalid-parameter")
		require.Equal(t, before, b.counts())
	})
}

func TestIdempotencyInFlight(t *testing.T) {
	t.Parallel()
	eachPool(t, func(t *testing.T, b *testBundle) {
		entered := make(chan struct{})
		release := make(chan struct{})
		var once sync.Once
		b.srv.beforeCommit = func(context.Context, *sqlx.Tx) error {
			once.Do(func() {
				close(entered)
				<-release
			})
			return nil
		}
		body := map[string]any{"name": "Slow", "email": "slow@example.com"}
		done := make(chan response)
		raw := mustJSON(t, body)
		go func() {
			done <- b.serve(http.MethodPost, "/v1/sellers", b.admin, raw, HeaderIdempotencyKey, "slow")
		}()
		select {
		case <-entered:
		case <-time.After(10 * time.Second):
			t.Fatal("first request never reached its commit")
		}
		b.do(http.MethodPost, "/v1/sellers", b.admin, body, HeaderIdempotencyKey, "slow").problem(http.StatusConflict, "idempotency-in-flight")
		close(release)
		first := <-done
		validateResponse(t, http.MethodPost, "/v1/sellers", first)
		first.status(http.StatusCreated)
		again := b.do(http.MethodPost, "/v1/sellers", b.admin, body, HeaderIdempotencyKey, "slow").status(http.StatusCreated)
		require.Equal(t, "true", again.header.Get(HeaderIdempotencyReplayed))
		require.Equal(t, first.id(), again.id())
		var n int
		require.NoError(t, b.db.Get(&n, `SELECT count(*) FROM sellers WHERE name = 'Slow'`))
		require.Equal(t, 1, n)
	})
}
