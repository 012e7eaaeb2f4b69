package api

import (
	"context"
	"net/http"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
)

// An order placed with prepared statements or without them (behind
// PgBouncer, BAZAAR_DB_PREPARED=false) is the same order: its items as
// priced, one order.created event in its transaction, an idempotent
// replay of the same answer, and an unknown user a 422 on user_id that
// writes nothing.
func TestOrderWritePathPreparedOrNot(t *testing.T) {
	t.Parallel()
	for _, disable := range []bool{false, true} {
		t.Run(map[bool]string{false: "prepared", true: "unprepared"}[disable], func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			srv, err := New(Config{DB: b.db, AdminToken: testAdminToken, MaxBodyBytes: 64 << 10, Observer: b.observed, DisablePrepared: disable})
			require.NoError(t, err)
			require.Equal(t, !disable, srv.stmts.Prepared())
			b.srv = srv
			mug := b.product(b.keyA, map[string]any{"price_minor": 1250})
			cup := b.product(b.keyA, map[string]any{"price_minor": 300})
			buyer := b.user()

			before := b.counts()
			b.do(http.MethodPost, "/v1/orders", b.front, map[string]any{
				"user_id": uuid.New(), "items": []map[string]any{{"product_id": mug, "quantity": 1}},
			}).problem(http.StatusUnprocessableEntity, "validation")
			require.Equal(t, before, b.counts(), "a refused order writes nothing")

			for i := range 3 { // again and again, so the statements are reused
				body := map[string]any{"user_id": buyer, "payment_method": "card", "items": []map[string]any{
					{"product_id": mug, "quantity": 2}, {"product_id": cup, "quantity": 1 + i},
				}}
				key := uuid.NewString()
				first := b.do(http.MethodPost, "/v1/orders", b.front, body, HeaderIdempotencyKey, key).status(http.StatusCreated)
				o := first.json()
				require.EqualValues(t, 2500+300*(1+i), o["total_minor"])
				items := o["items"].([]any)
				require.Len(t, items, 2)
				require.Equal(t, mug.String(), items[0].(map[string]any)["product_id"])
				require.EqualValues(t, 1+i, items[1].(map[string]any)["quantity"])

				got := b.do(http.MethodGet, "/v1/orders/"+first.id().String(), b.front, nil).status(http.StatusOK)
				require.JSONEq(t, string(first.body), string(got.body), "what was answered is what was stored")
				evs := b.events(first.id())
				require.Len(t, evs, 1)
				require.Equal(t, "order.created", evs[0].Type)

				again := b.do(http.MethodPost, "/v1/orders", b.front, body, HeaderIdempotencyKey, key).status(http.StatusCreated)
				require.Equal(t, "true", again.header.Get(HeaderIdempotencyReplayed))
				require.JSONEq(t, string(first.body), string(again.body))
			}
			var orders int
			require.NoError(t, b.db.Get(&orders, `SELECT count(*) FROM orders`))
			require.Equal(t, 3, orders)
		})
	}
}

// When the first request with a key commits after the second one's lock
// statement took its snapshot (so the second one saw no record and ran),
// the second one's record cannot be saved; it rolls its change back and
// replays the first one's answer.
func TestIdempotencyRecordCommittedMeanwhile(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := b.srv
	const key = "raced-1"
	s.engine.POST("/v1/test-raced", s.authenticate, s.idempotency, func(c *gin.Context) {
		req := idempotentRequest(c)
		s.write(c, func(ctx context.Context, tx *sqlx.Tx) (change, error) {
			// The first request commits its record on another connection
			// while this one runs.
			err := store.SaveIdempotencyRecord(ctx, b.db, store.IdempotencyRecord{
				Principal: req.principal, Key: req.key, Method: req.method, Path: req.path, RequestHash: req.hash,
				Status: http.StatusCreated, ContentType: contentTypeJSON, Response: []byte(`{"first":true}`),
			})
			if err != nil {
				return change{}, err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO sellers (id, name, email) VALUES (gen_random_uuid(), 'second', 's@example.com')`); err != nil {
				return change{}, err
			}
			return change{status: http.StatusCreated, body: map[string]any{"first": false}}, nil
		})
	})
	before := b.counts()
	res := b.serve(http.MethodPost, "/v1/test-raced", b.admin, []byte(`{}`), HeaderIdempotencyKey, key)
	require.Equal(t, http.StatusCreated, res.code, "body: %s", res.body)
	require.Equal(t, "true", res.header.Get(HeaderIdempotencyReplayed))
	require.JSONEq(t, `{"first":true}`, string(res.body))
	after := b.counts()
	require.Equal(t, before["sellers"], after["sellers"], "the second request's change is rolled back")
}
