package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testAdminToken = "test-admin-token-0123456789"

var (
	specOnce   sync.Once
	specDoc    *openapi3.T
	specRouter routers.Router
	specErr    error
)

// spec loads and validates openapi.yaml once per test binary.
func spec(t testing.TB) (*openapi3.T, routers.Router) {
	t.Helper()
	specOnce.Do(func() {
		loader := openapi3.NewLoader()
		specDoc, specErr = loader.LoadFromData(OpenAPISpec)
		if specErr != nil {
			return
		}
		if specErr = specDoc.Validate(context.Background()); specErr != nil {
			return
		}
		specRouter, specErr = gorillamux.NewRouter(specDoc)
	})
	require.NoError(t, specErr, "openapi.yaml")
	return specDoc, specRouter
}

// testBundle is a server on a fresh database with two sellers and a key of
// every role.
type testBundle struct {
	t        *testing.T
	srv      *Server
	db       *sqlx.DB
	admin    string
	front    string
	sellerA  uuid.UUID
	sellerB  uuid.UUID
	keyA     string
	keyB     string
	printerA string
	printerB string
	observed *observer
}

type observer struct {
	mu sync.Mutex
	n  int
}

func (o *observer) EventsCommitted() {
	o.mu.Lock()
	o.n++
	o.mu.Unlock()
}

func (o *observer) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n
}

func setup(t *testing.T) *testBundle { t.Helper(); return setupVia(t, storetest.Direct) }

// eachPool runs test once per way of reaching PostgreSQL: directly and
// through PgBouncer in transaction pooling mode.
func eachPool(t *testing.T, test func(t *testing.T, b *testBundle)) {
	t.Helper()
	for _, p := range storetest.Pools {
		t.Run(p.String(), func(t *testing.T) {
			t.Parallel()
			test(t, setupVia(t, p))
		})
	}
}

// setupVia is setup with the database reached the way p says.
func setupVia(t *testing.T, p storetest.Pool) *testBundle {
	t.Helper()
	db, _, _ := storetest.NewDBVia(t, p)
	obs := &observer{}
	// PgBouncer 1.18 in transaction mode carries no named prepared
	// statements, so the server runs without them there, as
	// BAZAAR_DB_PREPARED=false does (docs/operations.md).
	srv, err := New(Config{
		DB: db, AdminToken: testAdminToken, MaxBodyBytes: 64 << 10, Observer: obs,
		Webhooks: WebhooksConfig{AllowPrivate: true}, DisablePrepared: p == storetest.PgBouncer,
	})
	require.NoError(t, err)
	b := &testBundle{t: t, srv: srv, db: db, admin: testAdminToken, observed: obs}
	b.front = b.key(b.admin, "/v1/storefront-keys")
	b.sellerA = b.seller("Seller A")
	b.sellerB = b.seller("Seller B")
	b.keyA = b.key(b.admin, "/v1/sellers/"+b.sellerA.String()+"/keys")
	b.keyB = b.key(b.admin, "/v1/sellers/"+b.sellerB.String()+"/keys")
	b.printerA = b.key(b.keyA, "/v1/sellers/"+b.sellerA.String()+"/printer-tokens")
	b.printerB = b.key(b.admin, "/v1/sellers/"+b.sellerB.String()+"/printer-tokens")
	return b
}

func (b *testBundle) seller(name string) uuid.UUID {
	r := b.do(http.MethodPost, "/v1/sellers", b.admin, map[string]any{"name": name, "email": "s@example.com"})
	r.status(http.StatusCreated)
	return r.id()
}

func (b *testBundle) key(token, path string) string {
	r := b.do(http.MethodPost, path, token, map[string]any{"name": "test"})
	r.status(http.StatusCreated)
	return r.json()["key"].(string)
}

// response is an answered request whose body was validated against openapi.yaml.
type response struct {
	t      *testing.T
	code   int
	header http.Header
	body   []byte
}

func (r response) status(want int) response {
	r.t.Helper()
	require.Equal(r.t, want, r.code, "body: %s", r.body)
	return r
}

func (r response) json() map[string]any {
	r.t.Helper()
	var m map[string]any
	require.NoError(r.t, json.Unmarshal(r.body, &m), "body: %s", r.body)
	return m
}

func (r response) id() uuid.UUID {
	r.t.Helper()
	id, err := uuid.Parse(r.json()["id"].(string))
	require.NoError(r.t, err)
	return id
}

// problem asserts a problem+json answer of the given status and type slug.
func (r response) problem(status int, slug string) map[string]any {
	r.t.Helper()
	require.Equal(r.t, status, r.code, "body: %s", r.body)
	require.Equal(r.t, "application/problem+json", r.header.Get("Content-Type"))
	p := r.json()
	require.Equal(r.t, ProblemBase+slug, p["type"], "body: %s", r.body)
	require.EqualValues(r.t, status, p["status"])
	require.NotEmpty(r.t, p["title"])
	return p
}

// do sends a request (body: nil, a string sent raw, or a value sent as
// JSON) with a bearer token and extra header pairs, and validates the
// response against the spec.
func (b *testBundle) do(method, path, token string, body any, headers ...string) response {
	b.t.Helper()
	var raw []byte
	switch v := body.(type) {
	case nil:
	case string:
		raw = []byte(v)
	case []byte:
		raw = v
	default:
		var err error
		raw, err = json.Marshal(v)
		require.NoError(b.t, err)
	}
	res := b.serve(method, path, token, raw, headers...)
	validateResponse(b.t, method, path, res)
	return res
}

// serve sends a request with a raw body and returns the response without
// checking it, so it may run on any goroutine.
func (b *testBundle) serve(method, path, token string, raw []byte, headers ...string) response {
	req := httptest.NewRequest(method, path, bytes.NewReader(raw))
	if raw != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	b.srv.Handler().ServeHTTP(rec, req)
	return response{t: b.t, code: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

// validateResponse checks a response against openapi.yaml; paths the spec
// does not know (404 tests) are skipped.
func validateResponse(t *testing.T, method, path string, res response) {
	t.Helper()
	_, router := spec(t)
	vreq := httptest.NewRequest(method, "http://localhost:8080"+path, nil)
	route, params, err := router.FindRoute(vreq)
	if err != nil {
		return
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route},
		Status:                 res.code,
		Header:                 res.header,
		Body:                   io.NopCloser(bytes.NewReader(res.body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true},
	}
	err = openapi3filter.ValidateResponse(context.Background(), in)
	require.NoError(t, err, "%s %s -> %d %s", method, path, res.code, res.body)
}

// counts returns the number of rows of every table the API writes, the
// total stock and the order states, in one query.
func (b *testBundle) counts() map[string]any {
	b.t.Helper()
	var parts []string
	for _, table := range []string{"sellers", "api_keys", "corporate_accounts", "users", "products", "orders", "order_items", "returns", "idempotency_keys", "events"} {
		parts = append(parts, fmt.Sprintf("'%s', (SELECT count(*) FROM %s)", table, table))
	}
	parts = append(parts,
		"'stock', (SELECT coalesce(sum(stock), 0) FROM products)",
		"'order_statuses', (SELECT coalesce(string_agg(status, ',' ORDER BY id), '') FROM orders)",
		"'return_statuses', (SELECT coalesce(string_agg(status, ',' ORDER BY id), '') FROM returns)",
		"'revoked_keys', (SELECT count(*) FROM api_keys WHERE revoked_at IS NOT NULL)",
		"'products_updated_at', (SELECT coalesce(max(updated_at)::text, '') FROM products)",
		"'users_updated_at', (SELECT coalesce(max(updated_at)::text, '') FROM users)",
		"'last_login_at', (SELECT coalesce(max(last_login_at)::text, '') FROM users)",
	)
	var raw []byte
	require.NoError(b.t, b.db.Get(&raw, `SELECT json_build_object(`+strings.Join(parts, ", ")+`)`))
	out := map[string]any{}
	require.NoError(b.t, json.Unmarshal(raw, &out))
	return out
}

func (b *testBundle) events(subject uuid.UUID) []store.Event {
	b.t.Helper()
	evs, err := store.EventsBySubject(context.Background(), b.db, subject.String())
	require.NoError(b.t, err)
	return evs
}

// product creates a product of the seller of token.
func (b *testBundle) product(token string, fields map[string]any) uuid.UUID {
	b.t.Helper()
	body := map[string]any{"sku": "sku-" + uuid.NewString()[:8], "name": "Mug", "price_minor": 1250, "currency": "EUR", "stock": 10}
	for k, v := range fields {
		body[k] = v
	}
	return b.do(http.MethodPost, "/v1/products", token, body).status(http.StatusCreated).id()
}

func (b *testBundle) user() uuid.UUID {
	b.t.Helper()
	email := "buyer-" + strings.ReplaceAll(uuid.NewString()[:8], "-", "") + "@example.com"
	return b.do(http.MethodPost, "/v1/users", b.front, map[string]any{"email": email, "name": "Buyer"}).status(http.StatusCreated).id()
}

// order places an order of one product, pushed on to the given status.
func (b *testBundle) order(product, user uuid.UUID, status store.OrderStatus) uuid.UUID {
	b.t.Helper()
	id := b.do(http.MethodPost, "/v1/orders", b.front, map[string]any{
		"user_id": user, "payment_method": "pm_card_visa",
		"items": []map[string]any{{"product_id": product, "quantity": 2}},
	}).status(http.StatusCreated).id()
	path := map[store.OrderStatus][]store.OrderStatus{
		store.OrderConfirmed: {store.OrderConfirmed},
		store.OrderCancelled: {store.OrderCancelled},
		store.OrderShipped:   {store.OrderConfirmed, store.OrderShipped},
		store.OrderDelivered: {store.OrderConfirmed, store.OrderShipped, store.OrderDelivered},
	}
	for _, to := range path[status] {
		_, err := store.TransitionOrder(context.Background(), b.db, id, to, "")
		require.NoError(b.t, err)
	}
	return id
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}
