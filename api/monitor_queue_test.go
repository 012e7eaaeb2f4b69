package api_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/api"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream/redistest"
	"github.com/bazaarhq/bazaar/workers"
)

// An asynqmon action on a queue that does not exist is a 404 problem, not
// asynqmon's 500 in plain text; actions on a real queue still reach it.
func TestMonitorUnknownQueueIsNotFound(t *testing.T) {
	t.Parallel()
	db, _ := storetest.NewDB(t)
	opt := redistest.DB(t)
	conn := asynq.RedisClientOpt{Addr: opt.Addr, DB: opt.DB}
	client := asynq.NewClient(conn)
	t.Cleanup(func() { _ = client.Close() })
	_, err := client.Enqueue(asynq.NewTask("test:noop", nil), asynq.Queue("known"))
	require.NoError(t, err)

	mon := workers.NewMonitor(conn)
	t.Cleanup(func() { _ = mon.Close() })
	a, err := api.New(api.Config{DB: db, AdminToken: monitorToken, Monitor: mon})
	require.NoError(t, err)
	do := func(method, path string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, nil)
		req.Header.Set("Authorization", "Bearer "+monitorToken)
		rec := httptest.NewRecorder()
		a.Handler().ServeHTTP(rec, req)
		return rec
	}
	for _, tc := range []struct{ method, path string }{
		{http.MethodPost, "/monitor/api/queues/nope:resume"},
		{http.MethodPost, "/monitor/api/queues/nope:pause"},
		{http.MethodDelete, "/monitor/api/queues/nope/archived_tasks:delete_all"},
		{http.MethodDelete, "/monitor/api/queues/nope"},
		{http.MethodGet, "/monitor/api/queues/nope/pending_tasks"},
		{http.MethodGet, "/monitor/api/queues/nope"},
	} {
		rec := do(tc.method, tc.path)
		require.Equal(t, http.StatusNotFound, rec.Code, "%s %s: %s", tc.method, tc.path, rec.Body)
		require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"), "%s %s", tc.method, tc.path)
		require.Contains(t, rec.Body.String(), `"type":"`+api.ProblemBase+`not-found"`)
	}
	for _, tc := range []struct{ method, path string }{
		{http.MethodPost, "/monitor/api/queues/known:pause"},
		{http.MethodPost, "/monitor/api/queues/known:resume"},
		{http.MethodDelete, "/monitor/api/queues/known/archived_tasks:delete_all"},
		{http.MethodGet, "/monitor/api/queues/known/pending_tasks"},
		{http.MethodGet, "/monitor/api/queues"},
	} {
		rec := do(tc.method, tc.path)
		require.Less(t, rec.Code, 300, "%s %s: %s", tc.method, tc.path, rec.Body)
	}
}
