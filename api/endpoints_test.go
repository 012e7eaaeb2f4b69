package api

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
)

const testTraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// lastEvent returns the newest event of a subject and checks the
// attributes every event carries.
func (b *testBundle) lastEvent(subject uuid.UUID, typ string) store.Event {
	b.t.Helper()
	evs := b.events(subject)
	require.NotEmpty(b.t, evs, "no events for %s", subject)
	ev := evs[len(evs)-1]
	require.Equal(b.t, typ, ev.Type)
	require.Equal(b.t, subject.String(), ev.Subject)
	require.Equal(b.t, "1.0", ev.SpecVersion)
	require.Equal(b.t, store.EventSource, ev.Source)
	require.Nil(b.t, ev.PublishedAt)
	return ev
}

func data(t *testing.T, ev store.Event) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(ev.Data, &m))
	return m
}

func TestSellersAndKeys(t *testing.T) {
	t.Parallel()
	b := setup(t)

	r := b.do(http.MethodPost, "/v1/sellers", b.admin, map[string]any{"name": "Corner Shop", "email": "corner@example.com"},
		HeaderRequestID, "req-seller-1", "traceparent", testTraceParent).status(http.StatusCreated)
	require.Equal(t, "req-seller-1", r.header.Get(HeaderRequestID))
	id := r.id()
	ev := b.lastEvent(id, "seller.created")
	require.Equal(t, "req-seller-1", ev.RequestID)
	require.Equal(t, testTraceParent, ev.TraceParent)
	require.Equal(t, id, *ev.SellerID)
	require.Equal(t, "Corner Shop", data(t, ev)["name"])

	got := b.do(http.MethodGet, "/v1/sellers/"+id.String(), b.front, nil).status(http.StatusOK).json()
	require.Equal(t, "corner@example.com", got["email"])
	list := b.do(http.MethodGet, "/v1/sellers?limit=10", b.admin, nil).status(http.StatusOK).json()
	require.Len(t, list["items"], 3)
	require.Nil(t, list["next_cursor"])

	// A seller key works at once, is shown once and is stored hashed.
	k := b.do(http.MethodPost, "/v1/sellers/"+id.String()+"/keys", b.admin, map[string]any{"name": "warehouse"}).status(http.StatusCreated).json()
	secret := k["key"].(string)
	require.Regexp(t, `^bzr_sk_[A-Za-z0-9_-]{43}$`, secret)
	var stored []byte
	require.NoError(t, b.db.Get(&stored, `SELECT key_hash FROM api_keys WHERE id = $1`, k["id"]))
	require.Equal(t, store.HashKey(secret), stored)
	require.NotContains(t, string(b.do(http.MethodGet, "/v1/sellers/"+id.String()+"/keys", secret, nil).status(http.StatusOK).body), secret)
	b.do(http.MethodGet, "/v1/sellers/"+id.String(), secret, nil).status(http.StatusOK)

	pr := b.do(http.MethodPost, "/v1/sellers/"+id.String()+"/printer-tokens", secret, nil).status(http.StatusCreated).json()
	require.Regexp(t, `^bzr_pr_`, pr["key"])
	require.Equal(t, "printer", pr["role"])
	keys := b.do(http.MethodGet, "/v1/sellers/"+id.String()+"/keys", b.admin, nil).status(http.StatusOK).json()
	require.Len(t, keys["items"], 2)

	// Revoked keys stop working; revoking twice is fine.
	b.do(http.MethodDelete, "/v1/sellers/"+id.String()+"/keys/"+pr["id"].(string), secret, nil).status(http.StatusNoContent)
	b.do(http.MethodDelete, "/v1/sellers/"+id.String()+"/keys/"+pr["id"].(string), b.admin, nil).status(http.StatusNoContent)
	b.do(http.MethodGet, "/v1/sellers/"+id.String(), pr["key"].(string), nil).problem(http.StatusUnauthorized, "unauthorized")

	sf := b.do(http.MethodPost, "/v1/storefront-keys", b.admin, nil).status(http.StatusCreated).json()
	require.Regexp(t, `^bzr_sf_`, sf["key"])
	require.Nil(t, sf["seller_id"])
	require.Len(t, b.do(http.MethodGet, "/v1/storefront-keys", b.admin, nil).status(http.StatusOK).json()["items"], 2)
	b.do(http.MethodDelete, "/v1/storefront-keys/"+sf["id"].(string), b.admin, nil).status(http.StatusNoContent)
	b.do(http.MethodGet, "/v1/sellers", sf["key"].(string), nil).problem(http.StatusUnauthorized, "unauthorized")
	// A seller key is not a storefront key.
	b.do(http.MethodDelete, "/v1/storefront-keys/"+k["id"].(string), b.admin, nil).problem(http.StatusNotFound, "not-found")
}

func TestUsers(t *testing.T) {
	t.Parallel()
	b := setup(t)

	r := b.do(http.MethodPost, "/v1/users", b.front, map[string]any{
		"email": "ada@example.com", "name": "Ada", "country": "GB", "marketing_opt_in": true,
		"corporate_account": map[string]any{"name": "Analytical Ltd", "billing_email": "billing@example.com", "vat_id": "GB123"},
	}, HeaderRequestID, "req-user").status(http.StatusCreated)
	u := r.json()
	id := r.id()
	acct := u["corporate_account"].(map[string]any)
	require.Equal(t, "Analytical Ltd", acct["name"])
	ev := b.lastEvent(id, "user.registered")
	require.Equal(t, "req-user", ev.RequestID)
	require.Nil(t, ev.SellerID)
	require.Equal(t, "ada@example.com", data(t, ev)["email"])
	require.Equal(t, acct["id"], data(t, ev)["corporate_account_id"])

	got := b.do(http.MethodGet, "/v1/users/"+id.String(), b.front, nil).status(http.StatusOK).json()
	require.Equal(t, u, got)

	upd := b.do(http.MethodPatch, "/v1/users/"+id.String(), b.front, map[string]any{"name": "Ada L.", "marketing_opt_in": false}).status(http.StatusOK).json()
	require.Equal(t, "Ada L.", upd["name"])
	require.Equal(t, false, upd["marketing_opt_in"])
	require.Equal(t, "GB", upd["country"])
	ev = b.lastEvent(id, "user.updated")
	require.Equal(t, []any{"name", "marketing_opt_in"}, data(t, ev)["changed"])

	// Login: last_login_at and user.logged_in in one transaction.
	s := b.do(http.MethodPost, "/v1/users/"+id.String()+"/sessions", b.front, nil).status(http.StatusCreated).json()
	ev = b.lastEvent(id, "user.logged_in")
	var last time.Time
	require.NoError(t, b.db.Get(&last, `SELECT last_login_at FROM users WHERE id = $1`, id))
	at, err := time.Parse(time.RFC3339Nano, s["logged_in_at"].(string))
	require.NoError(t, err)
	require.True(t, last.Equal(at))
	require.Equal(t, s["logged_in_at"], data(t, ev)["last_login_at"])

	// A plain user has no corporate account; emails are unique ignoring case.
	plain := b.do(http.MethodPost, "/v1/users", b.front, map[string]any{"email": "bob@example.com"}).status(http.StatusCreated).json()
	require.Nil(t, plain["corporate_account"])
	b.do(http.MethodPost, "/v1/users", b.front, map[string]any{"email": "ADA@example.com"}).problem(http.StatusConflict, "conflict")
}

func TestProductsAndStock(t *testing.T) {
	t.Parallel()
	b := setup(t)

	r := b.do(http.MethodPost, "/v1/products", b.keyA, map[string]any{
		"sku": "tee", "name": "T-shirt", "description": "Cotton", "category": "apparel",
		"price_minor": 1999, "currency": "EUR", "stock": 5,
	}, HeaderRequestID, "req-prod").status(http.StatusCreated)
	parent := r.id()
	ev := b.lastEvent(parent, "product.created")
	require.Equal(t, b.sellerA, *ev.SellerID)
	require.Equal(t, "req-prod", ev.RequestID)

	// The admin names the seller; a variant takes the parent's shared fields.
	child := b.do(http.MethodPost, "/v1/products", b.admin, map[string]any{
		"seller_id": b.sellerA, "parent_id": parent, "sku": "tee-red-m", "attributes": map[string]string{"colour": "red", "size": "M"},
		"price_minor": 2099,
	}).status(http.StatusCreated).json()
	require.Equal(t, "T-shirt", child["name"])
	require.Equal(t, "apparel", child["category"])
	require.Equal(t, "EUR", child["currency"])
	require.Equal(t, map[string]any{"colour": "red", "size": "M"}, child["attributes"])
	require.Equal(t, parent.String(), child["parent_id"])

	got := b.do(http.MethodGet, "/v1/products/"+parent.String(), b.printerA, nil).status(http.StatusOK).json()
	require.Equal(t, "tee", got["sku"])

	list := b.do(http.MethodGet, "/v1/sellers/"+b.sellerA.String()+"/products", b.front, nil).status(http.StatusOK).json()
	require.Len(t, list["items"], 2)

	// Stock: set and adjust record inventory.adjusted; never below zero.
	p := b.do(http.MethodPut, "/v1/products/"+parent.String()+"/stock", b.keyA, map[string]any{"stock": 7, "reason": "count"}).status(http.StatusOK).json()
	require.EqualValues(t, 7, p["stock"])
	ev = b.lastEvent(parent, "inventory.adjusted")
	d := data(t, ev)
	require.EqualValues(t, 5, d["previous_stock"])
	require.EqualValues(t, 7, d["stock"])
	require.EqualValues(t, 2, d["delta"])
	require.Equal(t, "count", d["reason"])

	p = b.do(http.MethodPost, "/v1/products/"+parent.String()+"/stock-adjustments", b.keyA, map[string]any{"delta": -3}).status(http.StatusOK).json()
	require.EqualValues(t, 4, p["stock"])
	require.EqualValues(t, -3, data(t, b.lastEvent(parent, "inventory.adjusted"))["delta"])

	before := b.counts()
	b.do(http.MethodPost, "/v1/products/"+parent.String()+"/stock-adjustments", b.keyA, map[string]any{"delta": -5}).problem(http.StatusConflict, "insufficient-stock")
	require.Equal(t, before, b.counts())
}

// Updating a parent copies its shared fields into every variant in the
// same transaction, with product.updated for the parent and each variant.
func TestParentUpdateSyncsVariants(t *testing.T) {
	t.Parallel()
	b := setup(t)
	parent := b.product(b.keyA, map[string]any{"name": "Mug", "category": "kitchen"})
	var children []uuid.UUID
	for _, colour := range []string{"red", "blue", "green"} {
		children = append(children, b.do(http.MethodPost, "/v1/products", b.keyA, map[string]any{
			"parent_id": parent, "sku": "mug-" + colour, "price_minor": 1300, "attributes": map[string]string{"colour": colour},
		}).status(http.StatusCreated).id())
	}
	other := b.product(b.keyA, map[string]any{"name": "Plate"})

	obs := b.observed.count()
	upd := b.do(http.MethodPatch, "/v1/products/"+parent.String(), b.keyA, map[string]any{
		"name": "Big mug", "description": "Holds a lot", "category": "drinkware", "currency": "GBP", "price_minor": 1500,
	}, HeaderRequestID, "req-sync").status(http.StatusOK).json()
	require.Equal(t, "Big mug", upd["name"])
	require.Equal(t, obs+1, b.observed.count(), "observer told once per commit")

	for _, c := range append([]uuid.UUID{parent}, children...) {
		got := b.do(http.MethodGet, "/v1/products/"+c.String(), b.keyA, nil).status(http.StatusOK).json()
		require.Equal(t, "Big mug", got["name"])
		require.Equal(t, "Holds a lot", got["description"])
		require.Equal(t, "drinkware", got["category"])
		require.Equal(t, "GBP", got["currency"])
		ev := b.lastEvent(c, "product.updated")
		require.Equal(t, "req-sync", ev.RequestID)
		require.Equal(t, "Big mug", data(t, ev)["name"])
	}
	// Variants keep their own price; unrelated products are untouched.
	child := b.do(http.MethodGet, "/v1/products/"+children[0].String(), b.keyA, nil).status(http.StatusOK).json()
	require.EqualValues(t, 1300, child["price_minor"])
	require.Equal(t, "Plate", b.do(http.MethodGet, "/v1/products/"+other.String(), b.keyA, nil).status(http.StatusOK).json()["name"])
	require.Len(t, b.events(other), 1)

	// A variant's own fields change alone; its shared fields may not.
	b.do(http.MethodPatch, "/v1/products/"+children[0].String(), b.keyA, map[string]any{"price_minor": 1400, "sku": "mug-red-2"}).status(http.StatusOK)
	require.Len(t, b.events(parent), 2, "a variant's change does not touch the parent")
	p := b.do(http.MethodPatch, "/v1/products/"+children[0].String(), b.keyA, map[string]any{"name": "Red mug"}).problem(http.StatusUnprocessableEntity, "validation")
	require.Equal(t, "name", p["errors"].([]any)[0].(map[string]any)["field"])
}

func TestOrdersLifecycle(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p1 := b.product(b.keyA, map[string]any{"price_minor": 1250, "currency": "EUR"})
	p2 := b.product(b.keyA, map[string]any{"price_minor": 399, "currency": "EUR"})
	user := b.user()
	when := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second)

	obs := b.observed.count()
	r := b.do(http.MethodPost, "/v1/orders", b.front, map[string]any{
		"user_id": user, "payment_method": "pm_card_visa", "scheduled_at": when.Format(time.RFC3339),
		"items": []map[string]any{{"product_id": p1, "quantity": 2}, {"product_id": p2, "quantity": 3}},
	}, HeaderRequestID, "req-order", "traceparent", testTraceParent).status(http.StatusCreated)
	require.Equal(t, obs+1, b.observed.count())
	o := r.json()
	id := r.id()
	require.Equal(t, "pending", o["status"])
	require.EqualValues(t, 2*1250+3*399, o["total_minor"])
	require.Equal(t, b.sellerA.String(), o["seller_id"])
	require.Len(t, o["items"], 2)

	ev := b.lastEvent(id, "order.created")
	require.Equal(t, "req-order", ev.RequestID)
	require.Equal(t, testTraceParent, ev.TraceParent)
	require.Equal(t, b.sellerA, *ev.SellerID)
	d := data(t, ev)
	require.Equal(t, user.String(), d["user_id"])
	require.Equal(t, b.sellerA.String(), d["seller_id"])
	require.Equal(t, "EUR", d["currency"])
	require.Equal(t, "pm_card_visa", d["payment_method"])
	require.EqualValues(t, 3697, d["total_minor"])
	require.EqualValues(t, 3697, d["subtotal_minor"])
	require.Equal(t, when.Format(time.RFC3339), d["scheduled_at"])
	items := d["items"].([]any)
	require.Len(t, items, 2)
	first := items[0].(map[string]any)
	require.Equal(t, p1.String(), first["product_id"])
	require.EqualValues(t, 2, first["quantity"])
	require.EqualValues(t, 1250, first["unit_price_minor"])

	got := b.do(http.MethodGet, "/v1/orders/"+id.String(), b.printerA, nil).status(http.StatusOK).json()
	require.Equal(t, o, got)

	for _, q := range []string{"?user_id=" + user.String(), "?seller_id=" + b.sellerA.String(), "?status=pending", ""} {
		l := b.do(http.MethodGet, "/v1/orders"+q, b.front, nil).status(http.StatusOK).json()
		require.Len(t, l["items"], 1, q)
	}
	require.Empty(t, b.do(http.MethodGet, "/v1/orders?status=shipped", b.front, nil).status(http.StatusOK).json()["items"])

	// pending -> shipped is illegal; the saga confirms, the seller ships and delivers.
	b.do(http.MethodPost, "/v1/orders/"+id.String()+"/shipment", b.keyA, nil).problem(http.StatusConflict, "invalid-transition")
	_, err := store.TransitionOrder(t.Context(), b.db, id, store.OrderConfirmed, "")
	require.NoError(t, err)
	s := b.do(http.MethodPost, "/v1/orders/"+id.String()+"/shipment", b.keyA, nil).status(http.StatusOK).json()
	require.Equal(t, "shipped", s["status"])
	require.NotNil(t, s["shipped_at"])
	b.lastEvent(id, "order.shipped")
	b.do(http.MethodPost, "/v1/orders/"+id.String()+"/cancellation", b.front, map[string]any{"reason": "late"}).problem(http.StatusConflict, "invalid-transition")
	dl := b.do(http.MethodPost, "/v1/orders/"+id.String()+"/delivery", b.keyA, map[string]any{}).status(http.StatusOK).json()
	require.Equal(t, "delivered", dl["status"])
	ev = b.lastEvent(id, "order.delivered")
	require.Equal(t, "delivered", data(t, ev)["status"])

	// Cancel a pending order with a reason.
	id2 := b.order(p1, user, store.OrderPending)
	c := b.do(http.MethodPost, "/v1/orders/"+id2.String()+"/cancellation", b.front, map[string]any{"reason": "changed mind"}).status(http.StatusOK).json()
	require.Equal(t, "cancelled", c["status"])
	require.Equal(t, "changed mind", c["cancel_reason"])
	require.Equal(t, "changed mind", data(t, b.lastEvent(id2, "order.cancelled"))["cancel_reason"])
	// The seller may cancel a confirmed order too.
	id3 := b.order(p1, user, store.OrderConfirmed)
	b.do(http.MethodPost, "/v1/orders/"+id3.String()+"/cancellation", b.keyA, nil).status(http.StatusOK)
}

func TestReturns(t *testing.T) {
	t.Parallel()
	b := setup(t)
	prod := b.product(b.keyA, map[string]any{"price_minor": 1000})
	user := b.user()
	pending := b.order(prod, user, store.OrderPending)
	delivered := b.order(prod, user, store.OrderDelivered)
	o := b.do(http.MethodGet, "/v1/orders/"+delivered.String(), b.front, nil).status(http.StatusOK).json()
	item := o["items"].([]any)[0].(map[string]any)["id"].(string)
	pitem := b.do(http.MethodGet, "/v1/orders/"+pending.String(), b.front, nil).status(http.StatusOK).json()["items"].([]any)[0].(map[string]any)["id"].(string)

	b.do(http.MethodPost, "/v1/orders/"+pending.String()+"/returns", b.front, map[string]any{"order_item_id": pitem, "quantity": 1, "reason": "broken"}).
		problem(http.StatusConflict, "invalid-transition")

	r := b.do(http.MethodPost, "/v1/orders/"+delivered.String()+"/returns", b.front, map[string]any{"order_item_id": item, "quantity": 1, "reason": "broken"}).status(http.StatusCreated)
	ret := r.json()
	rid := r.id()
	require.Equal(t, "open", ret["status"])
	require.Equal(t, b.sellerA.String(), ret["seller_id"])
	ev := b.lastEvent(rid, "return.opened")
	require.Equal(t, b.sellerA, *ev.SellerID)

	// 2 bought, 1 in an open return: one more may come back, not two.
	p := b.do(http.MethodPost, "/v1/orders/"+delivered.String()+"/returns", b.front, map[string]any{"order_item_id": item, "quantity": 2, "reason": "x"}).
		problem(http.StatusUnprocessableEntity, "validation")
	require.Equal(t, "quantity", p["errors"].([]any)[0].(map[string]any)["field"])
	b.do(http.MethodPost, "/v1/orders/"+delivered.String()+"/returns", b.front, map[string]any{"order_item_id": pitem, "quantity": 1, "reason": "x"}).
		problem(http.StatusUnprocessableEntity, "validation")

	require.Equal(t, ret, b.do(http.MethodGet, "/v1/returns/"+rid.String(), b.keyA, nil).status(http.StatusOK).json())
	for _, q := range []string{"", "?order_id=" + delivered.String(), "?status=open", "?user_id=" + user.String(), "?seller_id=" + b.sellerA.String()} {
		require.Len(t, b.do(http.MethodGet, "/v1/returns"+q, b.front, nil).status(http.StatusOK).json()["items"], 1, q)
	}
	require.Len(t, b.do(http.MethodGet, "/v1/returns", b.keyA, nil).status(http.StatusOK).json()["items"], 1)
	require.Empty(t, b.do(http.MethodGet, "/v1/returns", b.keyB, nil).status(http.StatusOK).json()["items"])

	b.do(http.MethodPost, "/v1/returns/"+rid.String()+"/resolution", b.keyA, map[string]any{"decision": "accept", "refund_minor": 1001}).
		problem(http.StatusUnprocessableEntity, "validation")
	res := b.do(http.MethodPost, "/v1/returns/"+rid.String()+"/resolution", b.keyA, map[string]any{"decision": "accept", "refund_minor": 1000, "note": "sorry"}).
		status(http.StatusOK).json()
	require.Equal(t, "accepted", res["status"])
	require.EqualValues(t, 1000, res["refund_minor"])
	d := data(t, b.lastEvent(rid, "return.resolved"))
	require.Equal(t, "accepted", d["status"])
	require.EqualValues(t, 1000, d["refund_minor"])
	b.do(http.MethodPost, "/v1/returns/"+rid.String()+"/resolution", b.keyA, map[string]any{"decision": "reject"}).
		problem(http.StatusConflict, "invalid-transition")
}
