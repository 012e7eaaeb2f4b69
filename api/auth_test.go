package api

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
)

// matrixExempt lists /v1 routes that authenticate on their own terms
// (EventSource streams take ?access_token= and stay open); their tests
// cover their credentials.
var matrixExempt = map[string]bool{
	"GET /v1/events":                 true,
	"OPTIONS /v1/events":             true,
	"GET /v1/sellers/:id/events":     true,
	"OPTIONS /v1/sellers/:id/events": true,
	// Polling printers authenticate with HTTP Basic (printers_protocol_test.go).
	"POST /v1/printers/cloudprnt":   true,
	"GET /v1/printers/cloudprnt":    true,
	"DELETE /v1/printers/cloudprnt": true,
	"POST /v1/printers/epson":       true,
	"POST /v1/webhooks/stripe":      true,
}

// anyStatus marks matrix routes whose allowed callers may get any answer
// but 401 and 403.
const anyStatus = -1

// matrixRoute is one route of the auth matrix. prepare makes fresh records
// of seller A for one request and returns its path and body. Routes with
// scoped set reach seller A's data: other sellers' keys get 404 there.
type matrixRoute struct {
	method  string
	route   string
	allowed []Role
	scoped  bool
	ok      int
	prepare func(b *testBundle, role Role) (string, any)
}

func matrixRoutes() []matrixRoute {
	all := []Role{RoleAdmin, RoleStorefront, RoleSeller, RolePrinter}
	a := func(b *testBundle) string { return b.sellerA.String() }
	fixed := func(path string, body any) func(*testBundle, Role) (string, any) {
		return func(b *testBundle, _ Role) (string, any) { return strings.ReplaceAll(path, "{A}", a(b)), body }
	}
	newKey := func(b *testBundle, path string) string {
		r := b.do(http.MethodPost, path, b.admin, nil).status(http.StatusCreated)
		return r.json()["id"].(string)
	}
	newOperator := func(b *testBundle) string {
		r := b.do(http.MethodPost, "/v1/admin/operators", b.admin, map[string]any{"name": "op-" + uuid.NewString()[:8], "role": "viewer"})
		return r.status(http.StatusCreated).id().String()
	}
	item := func(b *testBundle, order uuid.UUID) string {
		o := b.do(http.MethodGet, "/v1/orders/"+order.String(), b.admin, nil).status(http.StatusOK).json()
		return o["items"].([]any)[0].(map[string]any)["id"].(string)
	}
	openReturn := func(b *testBundle) string {
		o := b.order(b.product(b.keyA, nil), b.user(), store.OrderDelivered)
		r := b.do(http.MethodPost, "/v1/orders/"+o.String()+"/returns", b.front, map[string]any{"order_item_id": item(b, o), "quantity": 1, "reason": "x"})
		return r.status(http.StatusCreated).id().String()
	}
	webhook := func(suffix string, body any) func(*testBundle, Role) (string, any) {
		return func(b *testBundle, _ Role) (string, any) {
			id := b.do(http.MethodPost, "/v1/sellers/"+a(b)+"/webhooks", b.admin, map[string]any{"url": "http://127.0.0.1:9/hook", "topics": []string{"order.#"}}).status(http.StatusCreated).id()
			return "/v1/sellers/" + a(b) + "/webhooks/" + id.String() + suffix, body
		}
	}
	return []matrixRoute{
		{"POST", "/v1/sellers", []Role{RoleAdmin}, false, 201, fixed("/v1/sellers", map[string]any{"name": "N", "email": "n@example.com"})},
		{"GET", "/v1/sellers", []Role{RoleAdmin, RoleStorefront}, false, 200, fixed("/v1/sellers", nil)},
		{"GET", "/v1/sellers/:id", all, true, 200, fixed("/v1/sellers/{A}", nil)},
		{"PATCH", "/v1/sellers/:id", []Role{RoleAdmin}, false, 200, fixed("/v1/sellers/{A}", map[string]any{"fee_bps": 800})},
		{"POST", "/v1/sellers/:id/keys", []Role{RoleAdmin, RoleSeller}, true, 201, fixed("/v1/sellers/{A}/keys", nil)},
		{"GET", "/v1/sellers/:id/keys", []Role{RoleAdmin, RoleSeller}, true, 200, fixed("/v1/sellers/{A}/keys", nil)},
		{"DELETE", "/v1/sellers/:id/keys/:key_id", []Role{RoleAdmin, RoleSeller}, true, 204, func(b *testBundle, _ Role) (string, any) {
			return "/v1/sellers/" + a(b) + "/keys/" + newKey(b, "/v1/sellers/"+a(b)+"/keys"), nil
		}},
		{"POST", "/v1/sellers/:id/printer-tokens", []Role{RoleAdmin, RoleSeller}, true, 201, fixed("/v1/sellers/{A}/printer-tokens", map[string]any{"name": "p"})},
		{"POST", "/v1/sellers/:id/webhooks", []Role{RoleAdmin, RoleSeller}, true, 201, fixed("/v1/sellers/{A}/webhooks", map[string]any{"url": "http://127.0.0.1:9/hook", "topics": []string{"order.#"}})},
		{"GET", "/v1/sellers/:id/webhooks", []Role{RoleAdmin, RoleSeller}, true, 200, fixed("/v1/sellers/{A}/webhooks", nil)},
		{"GET", "/v1/sellers/:id/webhooks/:wid", []Role{RoleAdmin, RoleSeller}, true, 200, webhook("", nil)},
		{"PATCH", "/v1/sellers/:id/webhooks/:wid", []Role{RoleAdmin, RoleSeller}, true, 200, webhook("", map[string]any{"disabled": true})},
		{"DELETE", "/v1/sellers/:id/webhooks/:wid", []Role{RoleAdmin, RoleSeller}, true, 204, webhook("", nil)},
		{"POST", "/v1/sellers/:id/webhooks/:wid/rotate-secret", []Role{RoleAdmin, RoleSeller}, true, 200, webhook("/rotate-secret", nil)},
		{"GET", "/v1/sellers/:id/webhooks/:wid/deliveries", []Role{RoleAdmin, RoleSeller}, true, 200, webhook("/deliveries", nil)},
		{"POST", "/v1/sellers/:id/webhooks/:wid/deliveries/:did/redeliver", []Role{RoleAdmin, RoleSeller}, false, anyStatus, webhook("/deliveries/"+uuid.NewString()+"/redeliver", nil)},
		{"POST", "/v1/sellers/:id/webhooks/:wid/redeliver", []Role{RoleAdmin, RoleSeller}, false, anyStatus, webhook("/redeliver", map[string]any{"since": "2026-01-01T00:00:00Z"})},
		{"GET", "/v1/sellers/:id/products", all, true, 200, fixed("/v1/sellers/{A}/products", nil)},
		{"POST", "/v1/storefront-keys", []Role{RoleAdmin}, false, 201, fixed("/v1/storefront-keys", nil)},
		{"GET", "/v1/storefront-keys", []Role{RoleAdmin}, false, 200, fixed("/v1/storefront-keys", nil)},
		{"DELETE", "/v1/storefront-keys/:key_id", []Role{RoleAdmin}, false, 204, func(b *testBundle, _ Role) (string, any) {
			return "/v1/storefront-keys/" + newKey(b, "/v1/storefront-keys"), nil
		}},
		{"POST", "/v1/users", []Role{RoleAdmin, RoleStorefront}, false, 201, func(*testBundle, Role) (string, any) {
			return "/v1/users", map[string]any{"email": uuid.NewString() + "@example.com"}
		}},
		{"GET", "/v1/users/:id", []Role{RoleAdmin, RoleStorefront}, false, 200, func(b *testBundle, _ Role) (string, any) {
			return "/v1/users/" + b.user().String(), nil
		}},
		{"PATCH", "/v1/users/:id", []Role{RoleAdmin, RoleStorefront}, false, 200, func(b *testBundle, _ Role) (string, any) {
			return "/v1/users/" + b.user().String(), map[string]any{"name": "New"}
		}},
		{"POST", "/v1/users/:id/sessions", []Role{RoleAdmin, RoleStorefront}, false, 201, func(b *testBundle, _ Role) (string, any) {
			return "/v1/users/" + b.user().String() + "/sessions", nil
		}},
		{"POST", "/v1/products", []Role{RoleAdmin, RoleSeller}, false, 201, func(b *testBundle, role Role) (string, any) {
			body := map[string]any{"sku": uuid.NewString(), "name": "P", "price_minor": 1, "currency": "EUR"}
			if role == RoleAdmin {
				body["seller_id"] = b.sellerA
			}
			return "/v1/products", body
		}},
		{"GET", "/v1/products/:id", all, true, 200, func(b *testBundle, _ Role) (string, any) {
			return "/v1/products/" + b.product(b.keyA, nil).String(), nil
		}},
		{"PATCH", "/v1/products/:id", []Role{RoleAdmin, RoleSeller}, true, 200, func(b *testBundle, _ Role) (string, any) {
			return "/v1/products/" + b.product(b.keyA, nil).String(), map[string]any{"name": "Renamed"}
		}},
		{"PUT", "/v1/products/:id/stock", []Role{RoleAdmin, RoleSeller}, true, 200, func(b *testBundle, _ Role) (string, any) {
			return "/v1/products/" + b.product(b.keyA, nil).String() + "/stock", map[string]any{"stock": 3}
		}},
		{"POST", "/v1/products/:id/stock-adjustments", []Role{RoleAdmin, RoleSeller}, true, 200, func(b *testBundle, _ Role) (string, any) {
			return "/v1/products/" + b.product(b.keyA, nil).String() + "/stock-adjustments", map[string]any{"delta": 1}
		}},
		{"POST", "/v1/orders", []Role{RoleAdmin, RoleStorefront}, false, 201, func(b *testBundle, _ Role) (string, any) {
			return "/v1/orders", map[string]any{
				"user_id": b.user(), "payment_method": "pm_x",
				"items": []map[string]any{{"product_id": b.product(b.keyA, nil), "quantity": 1}},
			}
		}},
		{"GET", "/v1/orders", all, true, 200, fixed("/v1/orders?seller_id={A}", nil)},
		{"GET", "/v1/orders/:id", all, true, 200, func(b *testBundle, _ Role) (string, any) {
			return "/v1/orders/" + b.order(b.product(b.keyA, nil), b.user(), store.OrderPending).String(), nil
		}},
		{"POST", "/v1/orders/:id/cancellation", []Role{RoleAdmin, RoleStorefront, RoleSeller}, true, 200, func(b *testBundle, _ Role) (string, any) {
			return "/v1/orders/" + b.order(b.product(b.keyA, nil), b.user(), store.OrderPending).String() + "/cancellation", nil
		}},
		{"POST", "/v1/orders/:id/shipment", []Role{RoleAdmin, RoleSeller}, true, 200, func(b *testBundle, _ Role) (string, any) {
			return "/v1/orders/" + b.order(b.product(b.keyA, nil), b.user(), store.OrderConfirmed).String() + "/shipment", nil
		}},
		{"POST", "/v1/orders/:id/delivery", []Role{RoleAdmin, RoleSeller}, true, 200, func(b *testBundle, _ Role) (string, any) {
			return "/v1/orders/" + b.order(b.product(b.keyA, nil), b.user(), store.OrderShipped).String() + "/delivery", nil
		}},
		{"POST", "/v1/orders/:id/returns", []Role{RoleAdmin, RoleStorefront}, true, 201, func(b *testBundle, _ Role) (string, any) {
			o := b.order(b.product(b.keyA, nil), b.user(), store.OrderDelivered)
			return "/v1/orders/" + o.String() + "/returns", map[string]any{"order_item_id": item(b, o), "quantity": 1, "reason": "x"}
		}},
		{"GET", "/v1/returns", all, true, 200, fixed("/v1/returns?seller_id={A}", nil)},
		{"GET", "/v1/returns/:id", all, true, 200, func(b *testBundle, _ Role) (string, any) {
			return "/v1/returns/" + openReturn(b), nil
		}},
		{"POST", "/v1/returns/:id/resolution", []Role{RoleAdmin, RoleSeller}, true, 200, func(b *testBundle, _ Role) (string, any) {
			return "/v1/returns/" + openReturn(b) + "/resolution", map[string]any{"decision": "reject"}
		}},
		// The stream admin routes need Config.Streams, which this bundle
		// has not (admin_streams_test.go covers them working); here they
		// only have to let the admin alone through.
		{"GET", "/v1/admin/streams", []Role{RoleAdmin}, false, anyStatus, fixed("/v1/admin/streams", nil)},
		{"GET", "/v1/admin/dlq/:group", []Role{RoleAdmin}, false, anyStatus, fixed("/v1/admin/dlq/notifications", nil)},
		{"POST", "/v1/admin/dlq/:group/redrive", []Role{RoleAdmin}, false, anyStatus, fixed("/v1/admin/dlq/notifications/redrive", map[string]any{"all": true})},
		{"POST", "/v1/admin/dlq/:group/purge", []Role{RoleAdmin}, false, anyStatus, fixed("/v1/admin/dlq/notifications/purge", map[string]any{"all": true})},
		{"POST", "/v1/admin/sellers/:id/pause", []Role{RoleAdmin}, false, 200, fixed("/v1/admin/sellers/{A}/pause", map[string]any{"reason": "review"})},
		{"POST", "/v1/admin/sellers/:id/resume", []Role{RoleAdmin}, false, 200, fixed("/v1/admin/sellers/{A}/resume", nil)},
		{"POST", "/v1/admin/sellers/:id/replay", []Role{RoleAdmin}, false, anyStatus, fixed("/v1/admin/sellers/{A}/replay", map[string]any{"group": "notifications", "since": "2026-01-01T00:00:00Z", "reason": "lost webhook data"})},
		{"POST", "/v1/admin/announcements", []Role{RoleAdmin}, false, anyStatus, fixed("/v1/admin/announcements", map[string]any{})},
		{"GET", "/v1/admin/schedules", []Role{RoleAdmin}, false, anyStatus, fixed("/v1/admin/schedules", nil)},
		{"POST", "/v1/admin/invoicing/runs", []Role{RoleAdmin}, false, anyStatus, fixed("/v1/admin/invoicing/runs", map[string]any{})},
		{"GET", "/v1/admin/invoicing/runs", []Role{RoleAdmin}, false, anyStatus, fixed("/v1/admin/invoicing/runs", nil)},
		{"GET", "/v1/admin/invoicing/runs/:id", []Role{RoleAdmin}, false, anyStatus, fixed("/v1/admin/invoicing/runs/"+uuid.NewString(), nil)},
		{"POST", "/v1/admin/invoicing/runs/:id/retry-failed", []Role{RoleAdmin}, false, anyStatus, fixed("/v1/admin/invoicing/runs/"+uuid.NewString()+"/retry-failed", map[string]any{})},
		{"GET", "/v1/invoices", []Role{RoleAdmin}, false, anyStatus, fixed("/v1/invoices", nil)},
		{"GET", "/v1/invoices/:id", []Role{RoleAdmin}, false, anyStatus, fixed("/v1/invoices/"+uuid.NewString(), nil)},
		{"GET", "/v1/invoices/:id/pdf", []Role{RoleAdmin}, false, anyStatus, fixed("/v1/invoices/"+uuid.NewString()+"/pdf", nil)},
		{"GET", "/v1/sellers/:id/unprinted-orders", []Role{RoleAdmin, RoleSeller, RolePrinter}, false, anyStatus, fixed("/v1/sellers/{A}/unprinted-orders", nil)},
		{"POST", "/v1/printers/:id/acks", []Role{RolePrinter}, false, anyStatus, fixed("/v1/printers/"+uuid.NewString()+"/acks", map[string]any{})},
		{"GET", "/v1/sellers/:id/printers", []Role{RoleAdmin, RoleSeller}, true, 200, fixed("/v1/sellers/{A}/printers", nil)},
		{"GET", "/v1/sellers/:id/print-jobs", []Role{RoleAdmin, RoleSeller}, true, 200, fixed("/v1/sellers/{A}/print-jobs", nil)},
		{"POST", "/v1/sellers/:id/print-jobs/:order_id/resend", []Role{RoleAdmin, RoleSeller}, true, anyStatus, fixed("/v1/sellers/{A}/print-jobs/"+uuid.NewString()+"/resend", map[string]any{})},
		// Operators and the audit log (operators_test.go has the operator roles' matrix).
		{"POST", "/v1/admin/operators", []Role{RoleAdmin}, false, 201, func(*testBundle, Role) (string, any) {
			return "/v1/admin/operators", map[string]any{"name": "op-" + uuid.NewString()[:8], "role": "viewer"}
		}},
		{"GET", "/v1/admin/operators", []Role{RoleAdmin}, false, 200, fixed("/v1/admin/operators", nil)},
		{"GET", "/v1/admin/operators/:id", []Role{RoleAdmin}, false, 200, func(b *testBundle, _ Role) (string, any) {
			return "/v1/admin/operators/" + newOperator(b), nil
		}},
		{"PATCH", "/v1/admin/operators/:id", []Role{RoleAdmin}, false, 200, func(b *testBundle, _ Role) (string, any) {
			return "/v1/admin/operators/" + newOperator(b), map[string]any{"role": "operator"}
		}},
		{"DELETE", "/v1/admin/operators/:id", []Role{RoleAdmin}, false, 204, func(b *testBundle, _ Role) (string, any) {
			return "/v1/admin/operators/" + newOperator(b), nil
		}},
		{"GET", "/v1/admin/audit", []Role{RoleAdmin}, false, 200, fixed("/v1/admin/audit", nil)},
	}
}

// TestAuthMatrix sends every /v1 route with every kind of credential:
// none or a wrong one is 401, a role the route is not open to is 403, and
// seller B's keys reaching for seller A's data get 404 and change nothing.
func TestAuthMatrix(t *testing.T) {
	t.Parallel()
	b := setup(t)
	routes := matrixRoutes()

	listed := map[string]bool{}
	for _, r := range routes {
		listed[r.method+" "+r.route] = true
	}
	registered := map[string]bool{}
	for _, r := range b.srv.Engine().Routes() {
		registered[r.Method+" "+r.Path] = true
		if strings.HasPrefix(r.Path, "/v1/") && !matrixExempt[r.Method+" "+r.Path] {
			require.True(t, listed[r.Method+" "+r.Path], "route %s %s is missing from the auth matrix: add it to matrixRoutes", r.Method, r.Path)
		}
	}

	type caller struct {
		name  string
		token string
		role  Role
		other bool // a key of seller B
	}
	callers := []caller{
		{"none", "", "", false},
		{"wrong", "bzr_sk_not-a-key", "", false},
		{"almost-admin", b.admin + "x", "", false},
		{"admin", b.admin, RoleAdmin, false},
		{"storefront", b.front, RoleStorefront, false},
		{"seller A", b.keyA, RoleSeller, false},
		{"printer A", b.printerA, RolePrinter, false},
		{"seller B", b.keyB, RoleSeller, true},
		{"printer B", b.printerB, RolePrinter, true},
	}
	for _, r := range routes {
		if !registered[r.method+" "+r.route] {
			continue // listed ahead of its handler
		}
		for _, c := range callers {
			path, body := r.prepare(b, c.role)
			before := b.counts()
			res := b.do(r.method, path, c.token, body)
			allowed := false
			for _, role := range r.allowed {
				allowed = allowed || role == c.role
			}
			cell := r.method + " " + r.route + " as " + c.name
			switch {
			case c.role == "":
				res.problem(http.StatusUnauthorized, "unauthorized")
				require.Equal(t, `Bearer realm="bazaar"`, res.header.Get("WWW-Authenticate"), cell)
			case !allowed:
				res.problem(http.StatusForbidden, "forbidden")
			case r.scoped && c.other:
				res.problem(http.StatusNotFound, "not-found")
			case r.ok == anyStatus:
				require.NotContains(t, []int{http.StatusUnauthorized, http.StatusForbidden}, res.code, "%s: %s", cell, res.body)
				continue
			default:
				require.Equal(t, r.ok, res.code, "%s: %s", cell, res.body)
				continue
			}
			require.Equal(t, before, b.counts(), "%s changed something", cell)
		}
	}
}

// A seller key never lists another seller's orders, even unfiltered.
func TestSellerListsAreScoped(t *testing.T) {
	t.Parallel()
	b := setup(t)
	user := b.user()
	oa := b.order(b.product(b.keyA, nil), user, store.OrderPending)
	ob := b.order(b.product(b.keyB, nil), user, store.OrderPending)
	for token, want := range map[string]uuid.UUID{b.keyA: oa, b.printerA: oa, b.keyB: ob, b.printerB: ob} {
		items := b.do(http.MethodGet, "/v1/orders?user_id="+user.String(), token, nil).status(http.StatusOK).json()["items"].([]any)
		require.Len(t, items, 1)
		require.Equal(t, want.String(), items[0].(map[string]any)["id"])
	}
	require.Len(t, b.do(http.MethodGet, "/v1/orders?user_id="+user.String(), b.front, nil).status(http.StatusOK).json()["items"], 2)
}
