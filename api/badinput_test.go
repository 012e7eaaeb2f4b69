package api

import (
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
)

// Nulls where openapi.yaml allows them, surrogate pairs and escaped
// backslashes are taken as sent.
func TestNullableFieldsAndEscapesAccepted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	user := b.user().String()
	got := b.do(http.MethodPatch, "/v1/users/"+user, b.front, `{"name":null,"country":"DE"}`).status(http.StatusOK).json()
	require.Equal(t, "DE", got["country"])
	prod := b.product(b.keyA, nil).String()
	b.do(http.MethodPatch, "/v1/products/"+prod, b.keyA, `{"description":null,"price_minor":7}`).status(http.StatusOK)
	s := b.do(http.MethodPost, "/v1/sellers", b.admin, `{"name":"\ud83d\ude00 shop \\ud800","email":"a@example.com"}`).status(http.StatusCreated).json()
	require.Equal(t, "\U0001F600 shop \\ud800", s["name"])
}

// Every bad input gets its documented problem type, names the bad field,
// and writes nothing: no record, no event, no idempotency record.
func TestBadInputsWriteNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	prodA := b.product(b.keyA, nil).String()
	prodB := b.product(b.keyB, nil).String()
	user := b.user().String()
	pending := b.order(uuid.MustParse(prodA), uuid.MustParse(user), store.OrderPending).String()
	delivered := b.order(uuid.MustParse(prodA), uuid.MustParse(user), store.OrderDelivered).String()
	item := b.do(http.MethodGet, "/v1/orders/"+delivered, b.admin, nil).json()["items"].([]any)[0].(map[string]any)["id"].(string)
	big := `{"name":"` + strings.Repeat("x", 70<<10) + `","email":"a@example.com"}`
	order := func(mod func(map[string]any)) map[string]any {
		o := map[string]any{"user_id": user, "payment_method": "pm_x", "items": []map[string]any{{"product_id": prodA, "quantity": 1}}}
		mod(o)
		return o
	}
	product := func(mod func(map[string]any)) map[string]any {
		p := map[string]any{"sku": "new", "name": "New", "price_minor": 100, "currency": "EUR"}
		mod(p)
		return p
	}

	cases := []struct {
		name    string
		method  string
		path    string
		token   string
		body    any
		headers []string
		status  int
		slug    string
		field   string
	}{
		{"truncated json", "POST", "/v1/sellers", b.admin, `{"name":`, nil, 400, "malformed-json", ""},
		{"not json", "POST", "/v1/sellers", b.admin, `name=x`, nil, 400, "malformed-json", ""},
		{"trailing data", "POST", "/v1/sellers", b.admin, `{"name":"a","email":"a@example.com"} {}`, nil, 400, "malformed-json", ""},
		{"empty body", "POST", "/v1/sellers", b.admin, nil, nil, 400, "malformed-json", ""},
		{"unknown field", "POST", "/v1/sellers", b.admin, `{"name":"a","email":"a@example.com","admin":true}`, nil, 422, "validation", "admin"},
		{"wrong type", "POST", "/v1/sellers", b.admin, `{"name":5,"email":"a@example.com"}`, nil, 422, "validation", "name"},
		{"array body", "POST", "/v1/sellers", b.admin, `[]`, nil, 422, "validation", ""},
		{"bad email", "POST", "/v1/sellers", b.admin, map[string]any{"name": "a", "email": "nope"}, nil, 422, "validation", "email"},
		{"blank name", "POST", "/v1/sellers", b.admin, map[string]any{"name": "  ", "email": "a@example.com"}, nil, 422, "validation", "name"},
		{"control characters", "POST", "/v1/sellers", b.admin, map[string]any{"name": "a\x00b", "email": "a@example.com"}, nil, 422, "validation", "name"},
		{"text content type", "POST", "/v1/sellers", b.admin, `{"name":"a","email":"a@example.com"}`, []string{"Content-Type", "text/plain"}, 415, "unsupported-media-type", ""},
		{"body too large", "POST", "/v1/sellers", b.admin, big, nil, 413, "payload-too-large", ""},
		{"body too large with key", "POST", "/v1/sellers", b.admin, big, []string{HeaderIdempotencyKey, "big"}, 413, "payload-too-large", ""},
		{"unknown currency", "POST", "/v1/products", b.keyA, product(func(p map[string]any) { p["currency"] = "XYZ" }), nil, 422, "validation", "currency"},
		{"lower-case currency", "POST", "/v1/products", b.keyA, product(func(p map[string]any) { p["currency"] = "eur" }), nil, 422, "validation", "currency"},
		{"negative price", "POST", "/v1/products", b.keyA, product(func(p map[string]any) { p["price_minor"] = -1 }), nil, 422, "validation", "price_minor"},
		{"fractional price", "POST", "/v1/products", b.keyA, product(func(p map[string]any) { p["price_minor"] = 1.5 }), nil, 422, "validation", "price_minor"},
		{"negative stock", "POST", "/v1/products", b.keyA, product(func(p map[string]any) { p["stock"] = -3 }), nil, 422, "validation", "stock"},
		{"missing sku", "POST", "/v1/products", b.keyA, product(func(p map[string]any) { delete(p, "sku") }), nil, 422, "validation", "sku"},
		{"taken sku", "POST", "/v1/products", b.keyA, product(func(p map[string]any) { p["sku"] = "dup" }), nil, 409, "conflict", "sku"},
		{"variant sets name", "POST", "/v1/products", b.keyA, product(func(p map[string]any) { p["parent_id"] = prodA }), nil, 422, "validation", "name"},
		{"unknown parent", "POST", "/v1/products", b.keyA, map[string]any{"parent_id": uuid.NewString(), "sku": "v", "price_minor": 1}, nil, 422, "validation", "parent_id"},
		{"other seller's parent", "POST", "/v1/products", b.keyA, map[string]any{"parent_id": prodB, "sku": "v", "price_minor": 1}, nil, 422, "validation", "parent_id"},
		{"other seller_id", "POST", "/v1/products", b.keyA, product(func(p map[string]any) { p["seller_id"] = b.sellerB }), nil, 422, "validation", "seller_id"},
		{"admin without seller", "POST", "/v1/products", b.admin, product(func(map[string]any) {}), nil, 422, "validation", "seller_id"},
		{"admin bad seller uuid", "POST", "/v1/products", b.admin, product(func(p map[string]any) { p["seller_id"] = "abc" }), nil, 422, "validation", "seller_id"},
		{"admin unknown seller", "POST", "/v1/products", b.admin, product(func(p map[string]any) { p["seller_id"] = uuid.NewString() }), nil, 422, "validation", "seller_id"},
		{"negative quantity", "POST", "/v1/orders", b.front, order(func(o map[string]any) { o["items"] = []map[string]any{{"product_id": prodA, "quantity": -1}} }), nil, 422, "validation", "items[0].quantity"},
		{"zero quantity", "POST", "/v1/orders", b.front, order(func(o map[string]any) { o["items"] = []map[string]any{{"product_id": prodA, "quantity": 0}} }), nil, 422, "validation", "items[0].quantity"},
		{"string quantity", "POST", "/v1/orders", b.front, order(func(o map[string]any) { o["items"] = []map[string]any{{"product_id": prodA, "quantity": "2"}} }), nil, 422, "validation", "items.quantity"},
		{"no items", "POST", "/v1/orders", b.front, order(func(o map[string]any) { o["items"] = []any{} }), nil, 422, "validation", "items"},
		{"duplicate items", "POST", "/v1/orders", b.front, order(func(o map[string]any) {
			o["items"] = []map[string]any{{"product_id": prodA, "quantity": 1}, {"product_id": prodA, "quantity": 1}}
		}), nil, 422, "validation", "items[1].product_id"},
		{"bad user uuid", "POST", "/v1/orders", b.front, order(func(o map[string]any) { o["user_id"] = "u-1" }), nil, 422, "validation", "user_id"},
		{"unknown user", "POST", "/v1/orders", b.front, order(func(o map[string]any) { o["user_id"] = uuid.NewString() }), nil, 422, "validation", "user_id"},
		{"unknown product", "POST", "/v1/orders", b.front, order(func(o map[string]any) { o["items"] = []map[string]any{{"product_id": uuid.NewString(), "quantity": 1}} }), nil, 422, "validation", "items[0].product_id"},
		{"two sellers", "POST", "/v1/orders", b.front, order(func(o map[string]any) {
			o["items"] = []map[string]any{{"product_id": prodA, "quantity": 1}, {"product_id": prodB, "quantity": 1}}
		}), nil, 422, "validation", "items[1].product_id"},
		{"no payment method", "POST", "/v1/orders", b.front, order(func(o map[string]any) { delete(o, "payment_method") }), nil, 422, "validation", "payment_method"},
		{"past schedule", "POST", "/v1/orders", b.front, order(func(o map[string]any) { o["scheduled_at"] = time.Now().Add(-time.Hour).Format(time.RFC3339) }), nil, 422, "validation", "scheduled_at"},
		{"garbage schedule", "POST", "/v1/orders", b.front, order(func(o map[string]any) { o["scheduled_at"] = "tomorrow" }), nil, 422, "validation", "scheduled_at"},
		{"zero delta", "POST", "/v1/products/" + prodA + "/stock-adjustments", b.keyA, map[string]any{"delta": 0}, nil, 422, "validation", "delta"},
		{"stock below zero", "POST", "/v1/products/" + prodA + "/stock-adjustments", b.keyA, map[string]any{"delta": -1000}, nil, 409, "insufficient-stock", ""},
		{"negative stock set", "PUT", "/v1/products/" + prodA + "/stock", b.keyA, map[string]any{"stock": -1}, nil, 422, "validation", "stock"},
		{"variant renamed", "PATCH", "/v1/products/" + prodA, b.keyA, map[string]any{}, nil, 422, "validation", "(body)"},
		{"bad country", "POST", "/v1/users", b.front, map[string]any{"email": "c@example.com", "country": "XX"}, nil, 422, "validation", "country"},
		{"lower-case country", "POST", "/v1/users", b.front, map[string]any{"email": "c@example.com", "country": "gb"}, nil, 422, "validation", "country"},
		{"corporate without billing email", "POST", "/v1/users", b.front, map[string]any{"email": "c@example.com", "corporate_account": map[string]any{"name": "Co"}}, nil, 422, "validation", "corporate_account.billing_email"},
		{"empty profile update", "PATCH", "/v1/users/" + user, b.front, map[string]any{}, nil, 422, "validation", "(body)"},
		{"unknown user update", "PATCH", "/v1/users/" + uuid.NewString(), b.front, map[string]any{"name": "x"}, nil, 404, "not-found", ""},
		{"bad decision", "POST", "/v1/returns/" + uuid.NewString() + "/resolution", b.keyA, map[string]any{"decision": "maybe"}, nil, 422, "validation", "decision"},
		{"return on pending order", "POST", "/v1/orders/" + pending + "/returns", b.front, map[string]any{"order_item_id": item, "quantity": 1, "reason": "x"}, nil, 409, "invalid-transition", ""},
		{"return too many", "POST", "/v1/orders/" + delivered + "/returns", b.front, map[string]any{"order_item_id": item, "quantity": 3, "reason": "x"}, nil, 422, "validation", "quantity"},
		{"return without reason", "POST", "/v1/orders/" + delivered + "/returns", b.front, map[string]any{"order_item_id": item, "quantity": 1}, nil, 422, "validation", "reason"},
		{"ship pending order", "POST", "/v1/orders/" + pending + "/shipment", b.keyA, nil, nil, 409, "invalid-transition", ""},
		{"body on shipment", "POST", "/v1/orders/" + pending + "/shipment", b.keyA, map[string]any{"carrier": "x"}, nil, 422, "validation", "carrier"},
		{"malformed cursor", "GET", "/v1/orders?cursor=!!!", b.front, nil, nil, 400, "invalid-parameter", "cursor"},
		{"short cursor", "GET", "/v1/sellers?cursor=AAAA", b.admin, nil, nil, 400, "invalid-parameter", "cursor"},
		{"zero limit", "GET", "/v1/orders?limit=0", b.front, nil, nil, 400, "invalid-parameter", "limit"},
		{"huge limit", "GET", "/v1/returns?limit=1000", b.front, nil, nil, 400, "invalid-parameter", "limit"},
		{"bad status filter", "GET", "/v1/orders?status=lost", b.front, nil, nil, 400, "invalid-parameter", "status"},
		{"bad user filter", "GET", "/v1/orders?user_id=7", b.front, nil, nil, 400, "invalid-parameter", "user_id"},
		{"bad path uuid", "GET", "/v1/orders/not-a-uuid", b.front, nil, nil, 400, "invalid-parameter", "id"},
		{"bad path uuid on write", "PATCH", "/v1/products/123", b.keyA, map[string]any{"name": "x"}, nil, 400, "invalid-parameter", "id"},
		{"unknown order", "GET", "/v1/orders/" + uuid.NewString(), b.front, nil, nil, 404, "not-found", ""},
		{"unknown route", "GET", "/v1/nothing", b.admin, nil, nil, 404, "not-found", ""},
		{"wrong method", "DELETE", "/v1/sellers", b.admin, nil, nil, 405, "method-not-allowed", ""},
		{"null name", "POST", "/v1/sellers", b.admin, `{"name":null,"email":"a@example.com"}`, nil, 422, "validation", "name"},
		{"null name, other case", "POST", "/v1/sellers", b.admin, `{"NAME":null,"email":"a@example.com"}`, nil, 422, "validation", "NAME"},
		{"null body", "POST", "/v1/sellers", b.admin, `null`, nil, 422, "validation", "(body)"},
		{"null stock", "POST", "/v1/products", b.keyA, product(func(p map[string]any) { p["stock"] = nil }), nil, 422, "validation", "stock"},
		{"null item", "POST", "/v1/orders", b.front, order(func(o map[string]any) { o["items"] = []any{nil} }), nil, 422, "validation", "items[0]"},
		{"null quantity", "POST", "/v1/orders", b.front, order(func(o map[string]any) { o["items"] = []map[string]any{{"product_id": prodA, "quantity": nil}} }), nil, 422, "validation", "items[0].quantity"},
		{"null attributes", "PATCH", "/v1/products/" + prodA, b.keyA, `{"attributes":null}`, nil, 422, "validation", "attributes"},
		{"null attribute", "PATCH", "/v1/products/" + prodA, b.keyA, `{"attributes":{"size":null}}`, nil, 422, "validation", "attributes.size"},
		{"null reason", "PUT", "/v1/products/" + prodA + "/stock", b.keyA, `{"stock":3,"reason":null}`, nil, 422, "validation", "reason"},
		{"invalid utf-8", "POST", "/v1/sellers", b.admin, "{\"name\":\"a\xffb\",\"email\":\"a@example.com\"}", nil, 400, "malformed-json", ""},
		{"lone high surrogate", "POST", "/v1/sellers", b.admin, `{"name":"a\ud800b","email":"a@example.com"}`, nil, 400, "malformed-json", ""},
		{"lone low surrogate", "POST", "/v1/sellers", b.admin, `{"name":"\udc00\ud800","email":"a@example.com"}`, nil, 400, "malformed-json", ""},
		{"surrogate at the end", "PATCH", "/v1/users/" + user, b.front, `{"name":"x\ud83d"}`, nil, 400, "malformed-json", ""},
	}
	b.product(b.keyA, map[string]any{"sku": "dup"})
	for _, tc := range cases {
		before := b.counts()
		var raw []byte
		switch v := tc.body.(type) {
		case nil:
		case string:
			raw = []byte(v)
		default:
			raw = mustJSON(t, v)
		}
		res := b.serve(tc.method, tc.path, tc.token, raw, tc.headers...)
		validateResponse(t, tc.method, tc.path, res)
		p := res.problem(tc.status, tc.slug)
		if tc.field != "" {
			fields := []string{}
			for _, e := range p["errors"].([]any) {
				fields = append(fields, e.(map[string]any)["field"].(string))
			}
			require.Contains(t, fields, tc.field, tc.name)
		}
		require.Equal(t, before, b.counts(), "%s wrote something", tc.name)
		require.NotContains(t, string(res.body), "pq:", tc.name)
		require.NotContains(t, string(res.body), "goroutine", tc.name)
	}
}

// The binder lets null through exactly where openapi.yaml's request
// schemas type a field with null: the nullable tags of the request types
// match the spec.
func TestNullableTagsMatchSpec(t *testing.T) {
	t.Parallel()
	doc, _ := spec(t)
	requests := map[string]any{
		"AnnouncementCreate": announcementRequest{}, "Cancellation": cancelOrderRequest{},
		"DLQSelection": DLQSelection{}, "InvoiceRunCreate": runCreate{}, "KeyCreate": createKeyRequest{},
		"OrderCreate": createOrderRequest{}, "PrinterAckCreate": printerAckRequest{},
		"ProductCreate": createProductRequest{}, "ProductUpdate": updateProductRequest{},
		"ReturnCreate": openReturnRequest{}, "ReturnResolution": resolveReturnRequest{},
		"SellerCreate": createSellerRequest{}, "StockAdjustment": adjustStockRequest{}, "StockSet": setStockRequest{},
		"UserCreate": registerUserRequest{}, "UserUpdate": updateUserRequest{},
	}
	for name, req := range requests {
		schema := doc.Components.Schemas[name]
		require.NotNil(t, schema, name)
		var inSpec, inCode []string
		for prop, ps := range schema.Value.Properties {
			if ps.Value.Type != nil && ps.Value.Type.Includes("null") {
				inSpec = append(inSpec, prop)
			}
		}
		for f := range reflect.TypeOf(req).Fields() {
			if f.Tag.Get("nullable") == "true" {
				tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
				inCode = append(inCode, tag)
			}
		}
		slices.Sort(inSpec)
		slices.Sort(inCode)
		require.Equal(t, inSpec, inCode, name)
	}
}
