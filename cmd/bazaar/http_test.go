package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream/redistest"
)

func TestLoadHTTPConfig(t *testing.T) {
	t.Parallel()
	hc, err := loadHTTPConfig(envOf(nil))
	require.NoError(t, err)
	require.Equal(t, httpConfig{
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 60 * time.Second,
		IdleTimeout: 120 * time.Second, MaxHeaderBytes: 64 << 10,
	}, hc)
	hc, err = loadHTTPConfig(envOf(map[string]string{
		"BAZAAR_HTTP_READ_HEADER_TIMEOUT": "2s", "BAZAAR_HTTP_READ_TIMEOUT": "5s", "BAZAAR_HTTP_WRITE_TIMEOUT": "7s",
		"BAZAAR_HTTP_IDLE_TIMEOUT": "9s", "BAZAAR_HTTP_MAX_HEADER_BYTES": "8192", "BAZAAR_METRICS_ADDR": ":9464",
	}))
	require.NoError(t, err)
	require.Equal(t, httpConfig{
		ReadHeaderTimeout: 2 * time.Second, ReadTimeout: 5 * time.Second, WriteTimeout: 7 * time.Second,
		IdleTimeout: 9 * time.Second, MaxHeaderBytes: 8192, MetricsAddr: ":9464",
	}, hc)
	for _, tc := range []struct{ key, value string }{
		{"BAZAAR_HTTP_READ_TIMEOUT", "0s"},
		{"BAZAAR_HTTP_READ_TIMEOUT", "soon"},
		{"BAZAAR_HTTP_READ_HEADER_TIMEOUT", "1m"}, // longer than the whole request's 30s
		{"BAZAAR_HTTP_WRITE_TIMEOUT", "0"},
		{"BAZAAR_HTTP_IDLE_TIMEOUT", "-1s"},
		{"BAZAAR_HTTP_MAX_HEADER_BYTES", "100"},
		{"BAZAAR_METRICS_ADDR", "9464"},
	} {
		_, err := loadHTTPConfig(envOf(map[string]string{tc.key: tc.value}))
		require.ErrorContains(t, err, tc.key, "%s=%s", tc.key, tc.value)
		require.NotContains(t, err.Error(), "\n")
	}
}

// startHTTP serves h under the HTTP settings of env and returns its address.
func startHTTP(t *testing.T, env map[string]string, h http.Handler) string {
	t.Helper()
	hc, err := loadHTTPConfig(envOf(env))
	require.NoError(t, err)
	s := newHTTPServer("BAZAAR_HTTP_ADDR", "127.0.0.1:0", h, hc, testLog())
	require.NoError(t, s.Start(context.Background()))
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	return s.Addr()
}

// A client trickling its body, a byte every 100 ms, is cut at
// BAZAAR_HTTP_READ_TIMEOUT instead of holding the connection for as long
// as it likes.
func TestSlowBodyIsCutAtReadTimeout(t *testing.T) {
	t.Parallel()
	type result struct {
		n   int
		err error
	}
	got := make(chan result, 1)
	addr := startHTTP(t, map[string]string{"BAZAAR_HTTP_READ_HEADER_TIMEOUT": "200ms", "BAZAAR_HTTP_READ_TIMEOUT": "500ms"},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, err := io.ReadAll(r.Body)
			got <- result{len(b), err}
		}))
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	const size = 40 // 4 s at one byte per 100 ms
	_, err = io.WriteString(conn, "POST /orders HTTP/1.1\r\nHost: bazaar\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n")
	require.NoError(t, err)
	go func() {
		for range size {
			if _, err := conn.Write([]byte{'x'}); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	var r result
	select {
	case r = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler is still reading the body")
	}
	var ne net.Error
	require.ErrorAs(t, r.err, &ne, "read %d bytes", r.n)
	require.True(t, ne.Timeout(), "%v", r.err)
	require.Less(t, r.n, size)
}

// Headers larger than BAZAAR_HTTP_MAX_HEADER_BYTES get 431.
func TestLargeHeadersAreRefused(t *testing.T) {
	t.Parallel()
	addr := startHTTP(t, map[string]string{"BAZAAR_HTTP_MAX_HEADER_BYTES": "4096"}, http.NotFoundHandler())
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	require.NoError(t, err)
	req.Header.Set("X-Padding", strings.Repeat("a", 16<<10))
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = res.Body.Close()
	require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, res.StatusCode)
}

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// Under serve, /metrics is not on the API port: it has a listener of its
// own at BAZAAR_METRICS_ADDR. The other roles keep it beside their probes
// unless BAZAAR_METRICS_ADDR moves it too.
func TestMetricsAddr(t *testing.T) {
	t.Parallel()
	_, dbURL := storetest.NewDB(t)
	base := map[string]string{
		"DATABASE_URL": dbURL, "REDIS_URL": redistest.URL(), "BAZAAR_REDIS_PREFIX": redistest.Prefix(t),
		"BAZAAR_ADMIN_TOKEN": testAdmin, "BAZAAR_LOG_LEVEL": "warn", "BAZAAR_SHUTDOWN_TIMEOUT": "5s",
	}
	fetch := func(url string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		return http.DefaultClient.Do(req)
	}
	get := func(url string) int {
		res, err := fetch(url)
		if err != nil {
			return 0
		}
		_ = res.Body.Close()
		return res.StatusCode
	}
	for _, tc := range []struct {
		role        string
		metricsAddr bool
		onMain      int
	}{
		{"serve", true, http.StatusNotFound},
		{"serve", false, http.StatusNotFound},
		{"relay", true, http.StatusNotFound},
		{"relay", false, http.StatusOK},
	} {
		env := map[string]string{"BAZAAR_HTTP_ADDR": freeAddr(t)}
		for k, v := range base {
			env[k] = v
		}
		if tc.metricsAddr {
			env["BAZAAR_METRICS_ADDR"] = freeAddr(t)
		}
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- run(ctx, []string{"bazaar", tc.role}, envOf(env), io.Discard, io.Discard) }()
		mainURL := "http://" + env["BAZAAR_HTTP_ADDR"]
		require.Eventually(t, func() bool { return get(mainURL+"/healthz") == http.StatusOK }, 15*time.Second, 20*time.Millisecond, "%s did not start", tc.role)
		require.Equal(t, tc.onMain, get(mainURL+"/metrics"), "%s /metrics on BAZAAR_HTTP_ADDR (metrics addr %v)", tc.role, tc.metricsAddr)
		if tc.metricsAddr {
			res, err := fetch("http://" + env["BAZAAR_METRICS_ADDR"] + "/metrics")
			require.NoError(t, err)
			body, _ := io.ReadAll(res.Body)
			_ = res.Body.Close()
			require.Equal(t, http.StatusOK, res.StatusCode, tc.role)
			require.Contains(t, string(body), "bazaar_build_info{", tc.role)
			require.Equal(t, http.StatusNotFound, get("http://"+env["BAZAAR_METRICS_ADDR"]+"/healthz"), "the metrics port serves /metrics alone")
		}
		stop()
		select {
		case err := <-done:
			require.NoError(t, err, tc.role)
		case <-time.After(20 * time.Second):
			t.Fatalf("bazaar %s did not stop", tc.role)
		}
	}
}
