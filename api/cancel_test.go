package api

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store/storetest"
)

// logLines is a JSON log sink a test can read.
type logLines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logLines) records(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), line)
		out = append(out, m)
	}
	return out
}

// A client that goes away while its request runs is no server error: the
// request is logged at info and counted as 499, and nothing at error level
// or as a 5xx is recorded.
func TestClientGoneIsNotServerError(t *testing.T) {
	t.Parallel()
	db, _ := storetest.NewDB(t)
	logs := &logLines{}
	reg := prometheus.NewPedanticRegistry()
	srv, err := New(Config{
		DB: db, AdminToken: testAdminToken, Registry: reg,
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	require.NoError(t, err)
	started := make(chan struct{})
	srv.beforeCommit = func(ctx context.Context, _ *sqlx.Tx) error {
		close(started)
		<-ctx.Done() // held until the client hangs up
		return ctx.Err()
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)

	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, hs.URL+"/v1/sellers", strings.NewReader(`{"name":"Gone","email":"g@example.com"}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	req.Header.Set("Content-Type", "application/json")
	done := make(chan error, 1)
	go func() {
		res, err := hs.Client().Do(req)
		if err == nil {
			_ = res.Body.Close()
		}
		done <- err
	}()
	<-started
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)

	// Close waits for the request to finish, logged and counted.
	hs.Close()
	var access map[string]any
	for _, r := range logs.records(t) {
		if r["msg"] == "request" {
			access = r
		}
	}
	require.NotNil(t, access, "no access log line")
	require.EqualValues(t, StatusClientClosedRequest, access["status"])
	require.Equal(t, "INFO", access["level"])
	for _, r := range logs.records(t) {
		require.NotEqual(t, "ERROR", r["level"], "%v", r)
		require.NotEqual(t, "WARN", r["level"], "%v", r)
	}
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP bazaar_http_requests_total API requests answered, by route pattern, method and status.
# TYPE bazaar_http_requests_total counter
bazaar_http_requests_total{method="POST",route="/v1/sellers",status="499"} 1
`), "bazaar_http_requests_total"))
	var n int
	require.NoError(t, db.Get(&n, `SELECT count(*) FROM sellers`))
	require.Zero(t, n)
}
