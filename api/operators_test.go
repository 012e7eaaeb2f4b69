package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/ratelimit"
	"github.com/bazaarhq/bazaar/sql/store"
)

// staffMatrix is the least operator role each /v1 route admits ("" when
// no operator role may use it: the routes of printers alone). Viewers
// read what admins read; operators also repair; admins do everything.
// Every route TestAuthMatrix lists must be here.
var staffMatrix = map[string]Role{
	"POST /v1/sellers":                                             RoleAdmin,
	"GET /v1/sellers":                                              RoleViewer,
	"GET /v1/sellers/:id":                                          RoleViewer,
	"PATCH /v1/sellers/:id":                                        RoleAdmin,
	"POST /v1/sellers/:id/keys":                                    RoleAdmin,
	"GET /v1/sellers/:id/keys":                                     RoleViewer,
	"DELETE /v1/sellers/:id/keys/:key_id":                          RoleAdmin,
	"POST /v1/sellers/:id/printer-tokens":                          RoleAdmin,
	"POST /v1/sellers/:id/webhooks":                                RoleAdmin,
	"GET /v1/sellers/:id/webhooks":                                 RoleViewer,
	"GET /v1/sellers/:id/webhooks/:wid":                            RoleViewer,
	"PATCH /v1/sellers/:id/webhooks/:wid":                          RoleAdmin,
	"DELETE /v1/sellers/:id/webhooks/:wid":                         RoleAdmin,
	"POST /v1/sellers/:id/webhooks/:wid/rotate-secret":             RoleAdmin,
	"GET /v1/sellers/:id/webhooks/:wid/deliveries":                 RoleViewer,
	"POST /v1/sellers/:id/webhooks/:wid/deliveries/:did/redeliver": RoleAdmin,
	"POST /v1/sellers/:id/webhooks/:wid/redeliver":                 RoleAdmin,
	"GET /v1/sellers/:id/products":                                 RoleViewer,
	"POST /v1/storefront-keys":                                     RoleAdmin,
	"GET /v1/storefront-keys":                                      RoleViewer,
	"DELETE /v1/storefront-keys/:key_id":                           RoleAdmin,
	"POST /v1/users":                                               RoleAdmin,
	"GET /v1/users/:id":                                            RoleViewer,
	"PATCH /v1/users/:id":                                          RoleAdmin,
	"POST /v1/users/:id/sessions":                                  RoleAdmin,
	"POST /v1/products":                                            RoleAdmin,
	"GET /v1/products/:id":                                         RoleViewer,
	"PATCH /v1/products/:id":                                       RoleAdmin,
	"PUT /v1/products/:id/stock":                                   RoleAdmin,
	"POST /v1/products/:id/stock-adjustments":                      RoleAdmin,
	"POST /v1/orders":                                              RoleAdmin,
	"GET /v1/orders":                                               RoleViewer,
	"GET /v1/orders/:id":                                           RoleViewer,
	"POST /v1/orders/:id/cancellation":                             RoleAdmin,
	"POST /v1/orders/:id/shipment":                                 RoleAdmin,
	"POST /v1/orders/:id/delivery":                                 RoleAdmin,
	"POST /v1/orders/:id/returns":                                  RoleAdmin,
	"GET /v1/returns":                                              RoleViewer,
	"GET /v1/returns/:id":                                          RoleViewer,
	"POST /v1/returns/:id/resolution":                              RoleAdmin,
	"GET /v1/admin/streams":                                        RoleViewer,
	"GET /v1/admin/dlq/:group":                                     RoleViewer,
	"POST /v1/admin/dlq/:group/redrive":                            RoleOperator,
	"POST /v1/admin/dlq/:group/purge":                              RoleAdmin,
	"POST /v1/admin/sellers/:id/pause":                             RoleOperator,
	"POST /v1/admin/sellers/:id/resume":                            RoleOperator,
	"POST /v1/admin/sellers/:id/replay":                            RoleOperator,
	"POST /v1/admin/announcements":                                 RoleOperator,
	"GET /v1/admin/schedules":                                      RoleViewer,
	"POST /v1/admin/invoicing/runs":                                RoleOperator,
	"GET /v1/admin/invoicing/runs":                                 RoleViewer,
	"GET /v1/admin/invoicing/runs/:id":                             RoleViewer,
	"POST /v1/admin/invoicing/runs/:id/retry-failed":               RoleOperator,
	"GET /v1/invoices":                                             RoleViewer,
	"GET /v1/invoices/:id":                                         RoleViewer,
	"GET /v1/invoices/:id/pdf":                                     RoleViewer,
	"GET /v1/sellers/:id/unprinted-orders":                         RoleViewer,
	"POST /v1/printers/:id/acks":                                   "",
	"GET /v1/sellers/:id/printers":                                 RoleViewer,
	"GET /v1/sellers/:id/print-jobs":                               RoleViewer,
	"POST /v1/sellers/:id/print-jobs/:order_id/resend":             RoleAdmin,
	"POST /v1/admin/operators":                                     RoleAdmin,
	"GET /v1/admin/operators":                                      RoleViewer,
	"GET /v1/admin/operators/:id":                                  RoleViewer,
	"PATCH /v1/admin/operators/:id":                                RoleAdmin,
	"DELETE /v1/admin/operators/:id":                               RoleAdmin,
	"GET /v1/admin/audit":                                          RoleViewer,
}

// auditedRoutes are the mutating admin routes and the audit action each
// success writes, with the target's prefix.
var auditedRoutes = map[string][2]string{
	"POST /v1/sellers":                                             {ActionSellerCreate, "seller:"},
	"PATCH /v1/sellers/:id":                                        {ActionSellerUpdate, "seller:"},
	"POST /v1/sellers/:id/keys":                                    {ActionKeyCreate, "key:"},
	"DELETE /v1/sellers/:id/keys/:key_id":                          {ActionKeyRevoke, "key:"},
	"POST /v1/sellers/:id/printer-tokens":                          {ActionKeyCreate, "key:"},
	"POST /v1/storefront-keys":                                     {ActionKeyCreate, "key:"},
	"DELETE /v1/storefront-keys/:key_id":                           {ActionKeyRevoke, "key:"},
	"POST /v1/admin/dlq/:group/redrive":                            {ActionDLQRedrive, "group:"},
	"POST /v1/admin/dlq/:group/purge":                              {ActionDLQPurge, "group:"},
	"POST /v1/admin/sellers/:id/pause":                             {ActionSellerPause, "seller:"},
	"POST /v1/admin/sellers/:id/resume":                            {ActionSellerResume, "seller:"},
	"POST /v1/admin/sellers/:id/replay":                            {ActionSellerReplay, "seller:"},
	"POST /v1/admin/announcements":                                 {ActionAnnouncement, "announcement:"},
	"POST /v1/admin/invoicing/runs":                                {ActionInvoiceRunStart, "invoice_run:"},
	"POST /v1/admin/invoicing/runs/:id/retry-failed":               {ActionInvoiceRunRetry, "invoice_run:"},
	"POST /v1/admin/operators":                                     {ActionOperatorCreate, "operator:"},
	"PATCH /v1/admin/operators/:id":                                {ActionOperatorSetRole, "operator:"},
	"DELETE /v1/admin/operators/:id":                               {ActionOperatorRevoke, "operator:"},
	"POST /v1/sellers/:id/webhooks/:wid/deliveries/:did/redeliver": {ActionWebhookRedeliver, "webhook:"},
	"POST /v1/sellers/:id/webhooks/:wid/redeliver":                 {ActionWebhookRedeliver, "webhook:"},
}

// operator adds an operator through the API and returns its id and
// credential.
func (b *testBundle) operator(name string, role Role) (uuid.UUID, string) {
	b.t.Helper()
	r := b.do(http.MethodPost, "/v1/admin/operators", b.admin, map[string]any{"name": name, "role": role}).status(http.StatusCreated)
	tok := r.json()["token"].(string)
	require.True(b.t, strings.HasPrefix(tok, store.OperatorTokenPrefix))
	return r.id(), tok
}

func (b *testBundle) auditRows(f store.AuditFilter) []store.AuditEntry {
	b.t.Helper()
	rows, _, err := store.ListAuditEntries(context.Background(), b.db, f, store.Page{Limit: 100})
	require.NoError(b.t, err)
	return rows
}

func (b *testBundle) auditCount() int {
	b.t.Helper()
	var n int
	require.NoError(b.t, b.db.Get(&n, `SELECT count(*) FROM audit_log`))
	return n
}

// staffOverrides give routes whose matrixRoutes request cannot succeed in
// this bundle one that does, so the audit row of a success is checked.
func staffOverrides() map[string]func(b *testBundle) (string, any, int) {
	run := func(b *testBundle) string {
		r := b.do(http.MethodPost, "/v1/admin/invoicing/runs", b.admin, map[string]any{"period_start": "2025-01-01", "period_end": "2025-01-31"})
		require.Contains(b.t, []int{200, 201}, r.code, "body: %s", r.body)
		return r.id().String()
	}
	return map[string]func(b *testBundle) (string, any, int){
		"POST /v1/admin/announcements": func(*testBundle) (string, any, int) {
			return "/v1/admin/announcements", map[string]any{"message": "Maintenance at noon", "reason": "db upgrade"}, 201
		},
		"POST /v1/admin/invoicing/runs": func(*testBundle) (string, any, int) {
			return "/v1/admin/invoicing/runs", map[string]any{"period_start": "2025-03-01", "period_end": "2025-03-31"}, anyStatus
		},
		"POST /v1/admin/invoicing/runs/:id/retry-failed": func(b *testBundle) (string, any, int) {
			return "/v1/admin/invoicing/runs/" + run(b) + "/retry-failed", map[string]any{"reason": "provider back"}, 200
		},
	}
}

// TestOperatorRoleMatrix sends every /v1 route as a viewer, an operator,
// an admin operator, the static admin token and no credential: below a
// route's role is 403 problem+json changing nothing (no audit row
// either), at or above it is what the admin gets, and every mutating
// admin action that succeeds leaves its audit row naming the caller.
func TestOperatorRoleMatrix(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, r := range b.srv.Engine().Routes() {
		k := r.Method + " " + r.Path
		if strings.HasPrefix(r.Path, "/v1/") && !matrixExempt[k] {
			_, ok := staffMatrix[k]
			require.True(t, ok, "route %s is missing from staffMatrix", k)
		}
	}
	_, viewer := b.operator("vera", RoleViewer)
	_, oper := b.operator("otto", RoleOperator)
	_, adm := b.operator("ada", RoleAdmin)
	callers := []struct {
		name, token string
		role        Role
	}{
		{"", "", ""},
		{"vera", viewer, RoleViewer},
		{"otto", oper, RoleOperator},
		{"ada", adm, RoleAdmin},
		{adminTokenActor, b.admin, RoleAdmin},
	}
	overrides := staffOverrides()
	for _, r := range matrixRoutes() {
		k := r.method + " " + r.route
		need := staffMatrix[k]
		for _, c := range callers {
			path, body := r.prepare(b, RoleAdmin)
			want := r.ok
			if o := overrides[k]; o != nil {
				path, body, want = o(b)
			}
			before, audits := b.counts(), b.auditCount()
			res := b.do(r.method, path, c.token, body)
			cell := k + " as " + c.name
			switch {
			case c.role == "":
				res.problem(http.StatusUnauthorized, "unauthorized")
			case need == "" || staffRank(c.role) < staffRank(need):
				res.problem(http.StatusForbidden, "forbidden")
				require.Equal(t, before, b.counts(), "%s changed something", cell)
				require.Equal(t, audits, b.auditCount(), "%s wrote an audit row", cell)
			case want == anyStatus:
				require.NotContains(t, []int{http.StatusUnauthorized, http.StatusForbidden}, res.code, "%s: %s", cell, res.body)
			default:
				require.Equal(t, want, res.code, "%s: %s", cell, res.body)
			}
			act, audited := auditedRoutes[k]
			if !audited || c.role == "" || res.code >= 300 {
				continue
			}
			rows := b.auditRows(store.AuditFilter{Actor: c.name, Action: act[0]})
			require.NotEmpty(t, rows, "%s: no audit row", cell)
			got := rows[0]
			require.Equal(t, res.header.Get(HeaderRequestID), got.RequestID, cell)
			require.Equal(t, string(c.role), got.Role, cell)
			require.Equal(t, "ok", got.Result, cell)
			require.True(t, strings.HasPrefix(got.Target, act[1]), "%s: target %q", cell, got.Target)
			require.Equal(t, audits+1, b.auditCount(), "%s: one row per action", cell)
		}
	}
}

// TestOperatorsAPI: an operator's credential is shown once and works as a
// bearer token; a role change applies to the next request; revoking ends
// it; names are unique among active operators; bad input is problem+json.
func TestOperatorsAPI(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id, tok := b.operator("rita", RoleViewer)

	got := b.do(http.MethodGet, "/v1/admin/operators/"+id.String(), tok, nil).status(http.StatusOK).json()
	require.Equal(t, "rita", got["name"])
	require.Equal(t, "viewer", got["role"])
	require.NotContains(t, got, "token", "the credential is shown only once")
	list := b.do(http.MethodGet, "/v1/admin/operators", tok, nil).status(http.StatusOK).json()["items"].([]any)
	require.Len(t, list, 1)
	var stored []byte
	require.NoError(t, b.db.Get(&stored, `SELECT token_hash FROM operators WHERE id = $1`, id))
	require.Equal(t, store.HashKey(tok), stored, "only the digest is stored")

	b.do(http.MethodPost, "/v1/admin/operators", b.admin, map[string]any{"name": "rita", "role": "admin"}).problem(http.StatusConflict, "conflict")
	b.do(http.MethodPost, "/v1/admin/operators", b.admin, map[string]any{"name": "x", "role": "root"}).problem(http.StatusUnprocessableEntity, "validation")
	b.do(http.MethodPost, "/v1/admin/operators", b.admin, map[string]any{"role": "viewer"}).problem(http.StatusUnprocessableEntity, "validation")
	b.do(http.MethodPatch, "/v1/admin/operators/"+uuid.NewString(), b.admin, map[string]any{"role": "viewer"}).problem(http.StatusNotFound, "not-found")

	// A viewer's mutating request is 403; promoted, the same credential may.
	ann := map[string]any{"message": "Back soon"}
	b.do(http.MethodPost, "/v1/admin/announcements", tok, ann).problem(http.StatusForbidden, "forbidden")
	b.do(http.MethodPatch, "/v1/admin/operators/"+id.String(), b.admin, map[string]any{"role": "operator", "reason": "on call"}).status(http.StatusOK)
	b.do(http.MethodPost, "/v1/admin/announcements", tok, ann).status(http.StatusCreated)
	b.do(http.MethodPost, "/v1/admin/operators", tok, map[string]any{"name": "y", "role": "admin"}).problem(http.StatusForbidden, "forbidden")

	b.do(http.MethodDelete, "/v1/admin/operators/"+id.String()+"?reason=left", b.admin, nil).status(http.StatusNoContent)
	b.do(http.MethodGet, "/v1/admin/operators", tok, nil).problem(http.StatusUnauthorized, "unauthorized")
	b.do(http.MethodDelete, "/v1/admin/operators/"+id.String(), b.admin, nil).status(http.StatusNoContent)
	// The name is free again once revoked.
	b.operator("rita", RoleViewer)
	require.Len(t, b.do(http.MethodGet, "/v1/admin/operators?revoked=true", b.admin, nil).status(http.StatusOK).json()["items"], 2)
	b.do(http.MethodGet, "/v1/admin/operators?revoked=maybe", b.admin, nil).problem(http.StatusBadRequest, "invalid-parameter")

	rows := b.auditRows(store.AuditFilter{Target: "operator:rita"})
	var actions []string
	for _, r := range rows {
		actions = append(actions, r.Action+" "+r.Reason)
	}
	require.Equal(t, []string{"operator.create ", "operator.revoke ", "operator.revoke left", "operator.set_role on call", "operator.create "}, actions)
}

// TestAuditList filters by actor, action, target and time, and pages
// newest first without gaps or repeats.
func TestAuditList(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, tok := b.operator("olga", RoleOperator)
	for i := range 5 {
		b.do(http.MethodPost, "/v1/admin/announcements", tok, map[string]any{"message": "m" + string(rune('a'+i))}).status(http.StatusCreated)
	}
	var seen []string
	path := "/v1/admin/audit?actor=olga&limit=2"
	for path != "" {
		page := b.do(http.MethodGet, path, tok, nil).status(http.StatusOK).json()
		for _, it := range page["items"].([]any) {
			e := it.(map[string]any)
			require.Equal(t, ActionAnnouncement, e["action"])
			require.Equal(t, "operator", e["role"])
			seen = append(seen, e["id"].(string))
		}
		path = ""
		if next, ok := page["next_cursor"].(string); ok {
			path = "/v1/admin/audit?actor=olga&limit=2&cursor=" + next
		}
	}
	require.Len(t, seen, 5)
	for i := 1; i < len(seen); i++ {
		require.Greater(t, seen[i-1], seen[i], "newest first (ids are time-ordered)")
	}
	all := b.do(http.MethodGet, "/v1/admin/audit?action="+ActionOperatorCreate, tok, nil).status(http.StatusOK).json()["items"].([]any)
	require.Len(t, all, 1)
	require.Equal(t, adminTokenActor, all[0].(map[string]any)["actor"])
	require.Equal(t, "operator:olga", all[0].(map[string]any)["target"])
	require.Empty(t, b.do(http.MethodGet, "/v1/admin/audit?since=2999-01-01T00:00:00Z", tok, nil).status(http.StatusOK).json()["items"])
	require.Len(t, b.do(http.MethodGet, "/v1/admin/audit?until=2999-01-01T00:00:00Z&target=operator:olga", tok, nil).status(http.StatusOK).json()["items"], 1)
	b.do(http.MethodGet, "/v1/admin/audit?since=yesterday", tok, nil).problem(http.StatusBadRequest, "invalid-parameter")
}

// browser sends a form or a request with the session cookie, as a browser
// on this origin would unless headers say otherwise.
func (b *testBundle) browser(method, path, cookie string, form url.Values, headers ...string) *httptest.ResponseRecorder {
	b.t.Helper()
	var req *http.Request
	if form != nil {
		req = httptest.NewRequest(method, path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req = httptest.NewRequest(method, path, nil)
	}
	if cookie != "" {
		req.Header.Set("Cookie", sessionCookie+"="+cookie)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	b.srv.Handler().ServeHTTP(rec, req)
	return rec
}

func (b *testBundle) login(credential string) string {
	b.t.Helper()
	rec := b.browser(http.MethodPost, "/console/login", "", url.Values{"credential": {credential}, "next": {"/console/groups"}}, "Sec-Fetch-Site", "same-origin")
	require.Equal(b.t, http.StatusSeeOther, rec.Code, rec.Body.String())
	require.Equal(b.t, "/console/groups", rec.Header().Get("Location"))
	cookies := rec.Result().Cookies()
	require.Len(b.t, cookies, 1)
	ck := cookies[0]
	require.Equal(b.t, sessionCookie, ck.Name)
	require.True(b.t, ck.HttpOnly)
	require.Equal(b.t, http.SameSiteStrictMode, ck.SameSite)
	require.Equal(b.t, "/", ck.Path)
	return ck.Value
}

// TestConsoleSession: logging in with an operator credential sets an
// HttpOnly, SameSite=Strict session cookie that authorizes /v1/admin
// routes from this origin with the operator's role; cross-origin
// mutations are refused; a role change applies at once; revoking the
// operator or logging out ends the session.
func TestConsoleSession(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id, tok := b.operator("sam", RoleViewer)

	bad := b.browser(http.MethodPost, "/console/login", "", url.Values{"credential": {"bzr_op_guess"}})
	require.Equal(t, http.StatusUnauthorized, bad.Code)
	require.Empty(t, bad.Result().Cookies())
	keyLogin := b.browser(http.MethodPost, "/console/login", "", url.Values{"credential": {b.keyA}})
	require.Equal(t, http.StatusUnauthorized, keyLogin.Code, "API keys do not log in")
	cross := b.browser(http.MethodPost, "/console/login", "", url.Values{"credential": {tok}}, "Sec-Fetch-Site", "cross-site")
	require.Equal(t, http.StatusForbidden, cross.Code)
	offsite := b.browser(http.MethodPost, "/console/login", "", url.Values{"credential": {tok}, "next": {"//evil.example/"}})
	require.Equal(t, "/console", offsite.Header().Get("Location"), "next stays in the console")

	sess := b.login(tok)
	require.Equal(t, http.StatusOK, b.browser(http.MethodGet, "/v1/admin/audit", sess, nil).Code)
	post := func(cookie string, headers ...string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/v1/admin/announcements", strings.NewReader(`{"message":"hello"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Cookie", sessionCookie+"="+cookie)
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		rec := httptest.NewRecorder()
		b.srv.Handler().ServeHTTP(rec, req)
		return rec
	}
	viewerPost := post(sess, "Sec-Fetch-Site", "same-origin")
	require.Equal(t, http.StatusForbidden, viewerPost.Code, viewerPost.Body.String())
	require.Equal(t, "application/problem+json", viewerPost.Header().Get("Content-Type"))

	b.do(http.MethodPatch, "/v1/admin/operators/"+id.String(), b.admin, map[string]any{"role": "operator"}).status(http.StatusOK)
	require.Equal(t, http.StatusForbidden, post(sess, "Sec-Fetch-Site", "cross-site").Code, "cross-site")
	require.Equal(t, http.StatusForbidden, post(sess, "Origin", "https://evil.example").Code, "foreign origin")
	ok := post(sess, "Sec-Fetch-Site", "same-origin")
	require.Equal(t, http.StatusCreated, ok.Code, ok.Body.String())
	rows := b.auditRows(store.AuditFilter{Action: ActionAnnouncement})
	require.Len(t, rows, 1)
	require.Equal(t, "sam", rows[0].Actor)
	require.Equal(t, &id, rows[0].ActorID)
	require.Equal(t, "operator", rows[0].Role)

	// A session is not a credential elsewhere in /v1.
	require.Equal(t, http.StatusUnauthorized, b.browser(http.MethodGet, "/v1/sellers", sess, nil).Code)

	// Revoking the operator ends its session at once.
	b.do(http.MethodDelete, "/v1/admin/operators/"+id.String(), b.admin, nil).status(http.StatusNoContent)
	rec := b.browser(http.MethodGet, "/v1/admin/audit", sess, nil)
	require.Equal(t, http.StatusUnauthorized, rec.Code)
	require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))

	// Logging out ends a session; the static admin token logs in too.
	admin := b.login(b.admin)
	require.Equal(t, http.StatusOK, b.browser(http.MethodGet, "/v1/admin/operators", admin, nil).Code)
	out := b.browser(http.MethodPost, "/console/logout", admin, nil)
	require.Equal(t, http.StatusSeeOther, out.Code)
	require.Equal(t, -1, out.Result().Cookies()[0].MaxAge)
	require.Equal(t, http.StatusUnauthorized, b.browser(http.MethodGet, "/v1/admin/operators", admin, nil).Code)
}

// TestConsoleLoginLockout: failed console logins from one address share
// the monitor's per-IP budget; past it even a right operator credential
// gets 429 and no cookie, while another address logs in.
func TestConsoleLoginLockout(t *testing.T) {
	t.Parallel()
	b := limitedSetup(t, Config{Monitor: stubMonitor{}, Limits: Limits{MonitorLogin: ratelimit.Limit{Rate: 3, Period: time.Hour}}})
	_, tok := b.operator("lou", RoleOperator)
	post := func(addr, path, field, cred string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(url.Values{field: {cred}}.Encode()))
		req.RemoteAddr = addr
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		b.srv.Handler().ServeHTTP(rec, req)
		return rec
	}
	const guesser = "198.51.100.30:999"
	require.Equal(t, http.StatusUnauthorized, post(guesser, "/console/login", "credential", "bzr_op_guess1").Code)
	require.Equal(t, http.StatusUnauthorized, post(guesser, "/console/login", "credential", "bzr_op_guess2").Code)
	require.Equal(t, http.StatusUnauthorized, post(guesser, "/console/login", "credential", "bzr_op_guess3").Code)
	locked := post(guesser, "/console/login", "credential", tok)
	require.Equal(t, http.StatusTooManyRequests, locked.Code)
	require.Equal(t, "application/problem+json", locked.Header().Get("Content-Type"))
	require.Empty(t, locked.Result().Cookies())
	require.Equal(t, http.StatusTooManyRequests, post(guesser, "/monitor/login", "token", tok).Code, "one budget for both forms")

	ok := post("198.51.100.31:999", "/console/login", "credential", tok)
	require.Equal(t, http.StatusSeeOther, ok.Code)
	require.Len(t, ok.Result().Cookies(), 1)
}

// A session of the static admin token ends when the token changes.
func TestAdminTokenSessionEndsWithTheToken(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sess := b.login(b.admin)
	require.Equal(t, http.StatusOK, b.browser(http.MethodGet, "/v1/admin/audit", sess, nil).Code)
	rotated, err := New(Config{DB: b.db, AdminToken: "rotated-admin-token-0123456789"})
	require.NoError(t, err)
	req := httptest.NewRequest(http.MethodGet, "/v1/admin/audit", nil)
	req.Header.Set("Cookie", sessionCookie+"="+sess)
	rec := httptest.NewRecorder()
	rotated.Handler().ServeHTTP(rec, req)
	require.Equal(t, http.StatusUnauthorized, rec.Code)
}
