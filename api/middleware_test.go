package api

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store/storetest"
)

func TestRequestIDs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, tc := range []struct {
		sent string
		kept bool
	}{
		{"abc-123", true},
		{strings.Repeat("x", 128), true},
		{strings.Repeat("x", 129), false},
		{"has space", false},
		{"tab\there", false},
		{"", false},
	} {
		r := b.do(http.MethodGet, "/healthz", "", nil, HeaderRequestID, tc.sent).status(http.StatusOK)
		got := r.header.Get(HeaderRequestID)
		if tc.kept {
			require.Equal(t, tc.sent, got)
			continue
		}
		id, err := uuid.Parse(got)
		require.NoError(t, err, "a made id is a UUID, got %q for %q", got, tc.sent)
		require.Equal(t, uuid.Version(7), id.Version())
	}
	// Problems carry the id too.
	p := b.do(http.MethodGet, "/v1/sellers", "", nil, HeaderRequestID, "trace-me").problem(http.StatusUnauthorized, "unauthorized")
	require.Equal(t, "trace-me", p["request_id"])
	require.Equal(t, "/v1/sellers", p["instance"])
}

func TestTraceParent(t *testing.T) {
	t.Parallel()
	for v, ok := range map[string]bool{
		testTraceParent: true,
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra": true,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra": false,
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01":       false,
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01":       false,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01":       false,
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01":       false,
		"garbage": false,
		"":        false,
	} {
		c, _ := gin.CreateTestContext(httptest.NewRecorder())
		c.Request = httptest.NewRequest(http.MethodGet, "/", nil)
		c.Request.Header.Set("traceparent", v)
		want := ""
		if ok {
			want = v
		}
		require.Equal(t, want, traceParent(c), v)
	}
	// An invalid traceparent is left off the event, the write still succeeds.
	b := setup(t)
	id := b.do(http.MethodPost, "/v1/sellers", b.admin, map[string]any{"name": "T", "email": "t@example.com"}, "traceparent", "nope").status(http.StatusCreated).id()
	require.Empty(t, b.lastEvent(id, "seller.created").TraceParent)
}

// A panicking handler answers a 500 problem without the stack, and the
// log has the stack with the request id.
func TestPanicRecovery(t *testing.T) {
	t.Parallel()
	db, _ := storetest.NewDB(t)
	var logs bytes.Buffer
	srv, err := New(Config{DB: db, AdminToken: testAdminToken, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	require.NoError(t, err)
	srv.Engine().GET("/boom", func(*gin.Context) { panic("kaboom") })

	req := httptest.NewRequest(http.MethodGet, "/boom", nil)
	req.Header.Set(HeaderRequestID, "req-boom")
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, req)
	require.Equal(t, http.StatusInternalServerError, rec.Code)
	require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
	var p Problem
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &p))
	require.Equal(t, ProblemBase+"internal", p.Type)
	require.NotContains(t, rec.Body.String(), "kaboom")
	require.NotContains(t, rec.Body.String(), "goroutine")
	require.Contains(t, logs.String(), "kaboom")
	require.Contains(t, logs.String(), `"request_id":"req-boom"`)
}

// Every request is logged once with method, route, status, duration and
// request id.
func TestAccessLog(t *testing.T) {
	t.Parallel()
	db, _ := storetest.NewDB(t)
	var logs bytes.Buffer
	srv, err := New(Config{DB: db, AdminToken: testAdminToken, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	require.NoError(t, err)
	id := uuid.NewString()
	req := httptest.NewRequest(http.MethodGet, "/v1/sellers/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	req.Header.Set(HeaderRequestID, "req-log")
	srv.Handler().ServeHTTP(httptest.NewRecorder(), req)

	var line map[string]any
	require.NoError(t, json.Unmarshal(bytes.TrimSpace(logs.Bytes()), &line), logs.String())
	require.Equal(t, "request", line["msg"])
	require.Equal(t, "GET", line["method"])
	require.Equal(t, "/v1/sellers/:id", line["route"])
	require.EqualValues(t, 404, line["status"])
	require.Equal(t, "req-log", line["request_id"])
	require.Contains(t, line, "duration_ms")
	require.NotContains(t, logs.String(), testAdminToken)
}

func TestMethodNotAllowedListsAllow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do(http.MethodPut, "/v1/orders", b.admin, nil)
	r.problem(http.StatusMethodNotAllowed, "method-not-allowed")
	require.Contains(t, r.header.Get("Allow"), "GET")
	require.Contains(t, r.header.Get("Allow"), "POST")
	b.do(http.MethodGet, "/v1/sellers/", b.admin, nil).problem(http.StatusNotFound, "not-found")
}

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	_, err := New(Config{AdminToken: "x"})
	require.Error(t, err)
	db, _ := storetest.NewDB(t)
	_, err = New(Config{DB: db})
	require.Error(t, err)
}
