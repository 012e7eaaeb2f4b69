package api

import (
	"bytes"
	"cmp"
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/ratelimit"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream/redistest"
)

// limitedSetup is setup with the rate limits on: a Redis client and a
// key prefix of the test's own, whose rate keys are deleted at the end.
func limitedSetup(t *testing.T, cfg Config) *testBundle {
	t.Helper()
	if cfg.Redis == nil {
		cfg.Redis = redistest.Client(t)
		cfg.RedisPrefix = limitPrefix(t, cfg.Redis)
	}
	// A loaded machine may take Redis past the production call timeout,
	// which would let a request through unchecked and the counts drift.
	cfg.Limits.CallTimeout = cmp.Or(cfg.Limits.CallTimeout, 10*time.Second)
	db, _ := storetest.NewDB(t)
	cfg.DB, cfg.AdminToken, cfg.MaxBodyBytes = db, testAdminToken, 64<<10
	srv, err := New(cfg)
	require.NoError(t, err)
	b := &testBundle{t: t, srv: srv, db: db, admin: testAdminToken, observed: &observer{}}
	b.front = b.key(b.admin, "/v1/storefront-keys")
	b.sellerA = b.seller("Seller A")
	b.sellerB = b.seller("Seller B")
	b.keyA = b.key(b.admin, "/v1/sellers/"+b.sellerA.String()+"/keys")
	b.keyB = b.key(b.admin, "/v1/sellers/"+b.sellerB.String()+"/keys")
	// The admin makes the printer token, so the seller keys' quotas are whole.
	b.printerA = b.key(b.admin, "/v1/sellers/"+b.sellerA.String()+"/printer-tokens")
	return b
}

// limitPrefix is a key prefix of the test's own; redis_rate puts "rate:"
// before it, so those keys are deleted here besides.
func limitPrefix(t *testing.T, rdb redis.UniversalClient) string {
	t.Helper()
	p := redistest.Prefix(t)
	t.Cleanup(func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, "rate:"+p+"*", 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
	})
	return p
}

// from sends a request from a client address, validated against the spec.
func (b *testBundle) from(addr, method, path, token string, headers ...string) response {
	b.t.Helper()
	req := httptest.NewRequest(method, path, nil)
	req.RemoteAddr = addr
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	b.srv.Handler().ServeHTTP(rec, req)
	res := response{t: b.t, code: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
	validateResponse(b.t, method, path, res)
	return res
}

// TestRateLimitWrongTokenGuesses: 300 wrong-token guesses from one address
// get 401 until the failure quota is spent, then 429 with Retry-After and
// the RateLimit headers; a locked-out address gets 429 even for the right
// token, and another address is not affected.
func TestRateLimitWrongTokenGuesses(t *testing.T) {
	t.Parallel()
	b := limitedSetup(t, Config{Limits: Limits{AuthFailures: ratelimit.Limit{Rate: 20, Period: 24 * time.Hour}}})
	const guesser = "198.51.100.7:4000"
	codes := map[int]int{}
	var last response
	for i := range 300 {
		last = b.from(guesser, http.MethodGet, "/v1/orders", "bzr_sk_guess"+strconv.Itoa(i))
		codes[last.code]++
	}
	require.Equal(t, map[int]int{http.StatusUnauthorized: 20, http.StatusTooManyRequests: 280}, codes)
	last.problem(http.StatusTooManyRequests, "rate-limited")
	retry, err := strconv.Atoi(last.header.Get("Retry-After"))
	require.NoError(t, err)
	require.InDelta(t, 72*60, retry, 60, "one failure comes back every 72 min; Retry-After %d", retry)
	require.Equal(t, `"auth-failures";q=20;w=86400`, last.header.Get("RateLimit-Policy"))
	require.Regexp(t, `^"auth-failures";r=0;t=4[23]\d\d$`, last.header.Get("RateLimit"))

	// The right token from the locked-out address learns nothing either.
	b.from(guesser, http.MethodGet, "/v1/orders", b.front).problem(http.StatusTooManyRequests, "rate-limited")
	b.from(guesser, http.MethodGet, "/v1/orders", "", "Authorization", "Basic eDp5").problem(http.StatusTooManyRequests, "rate-limited")
	b.from("198.51.100.8:4000", http.MethodGet, "/v1/orders", b.front).status(http.StatusOK)
	require.Equal(t, 282.0, testutil.ToFloat64(b.srv.tel.rateLimited.WithLabelValues(policyAuthFailures)))
}

// TestRateLimitPerCredential: each credential has its role's quota, told in
// the RateLimit headers of every answer; past it 429, while other
// credentials go on.
func TestRateLimitPerCredential(t *testing.T) {
	t.Parallel()
	b := limitedSetup(t, Config{Limits: Limits{Seller: ratelimit.Limit{Rate: 5, Period: time.Hour}}})
	const addr = "198.51.100.9:4000"
	for i := range 5 {
		r := b.from(addr, http.MethodGet, "/v1/sellers/"+b.sellerA.String(), b.keyA).status(http.StatusOK)
		require.Equal(t, `"seller";q=5;w=3600`, r.header.Get("RateLimit-Policy"))
		require.Regexp(t, `^"seller";r=`+strconv.Itoa(4-i)+`;t=\d+$`, r.header.Get("RateLimit"))
	}
	r := b.from(addr, http.MethodGet, "/v1/sellers/"+b.sellerA.String(), b.keyA)
	p := r.problem(http.StatusTooManyRequests, "rate-limited")
	require.Contains(t, p["detail"], "Retry-After")
	require.NotEmpty(t, r.header.Get("Retry-After"))
	require.Regexp(t, `^"seller";r=0;t=7[12]\d$`, r.header.Get("RateLimit"))
	// Another seller's key, and the storefront, have their own quotas.
	b.from(addr, http.MethodGet, "/v1/sellers/"+b.sellerB.String(), b.keyB).status(http.StatusOK)
	r = b.from(addr, http.MethodGet, "/v1/sellers/"+b.sellerA.String(), b.front).status(http.StatusOK)
	require.Equal(t, `"storefront";q=200;w=1`, r.header.Get("RateLimit-Policy"))
}

// TestRateLimitAnonymousPerClientIP: requests without a credential share a
// quota per client IP; X-Forwarded-For picks the IP only when the peer is
// a trusted proxy.
func TestRateLimitAnonymousPerClientIP(t *testing.T) {
	t.Parallel()
	b := limitedSetup(t, Config{
		Limits:         Limits{Anonymous: ratelimit.Limit{Rate: 3, Period: time.Hour}},
		TrustedProxies: []string{"10.1.2.3", "10.9.0.0/16"},
	})
	for range 3 {
		r := b.from("203.0.113.5:1000", http.MethodGet, "/openapi.yaml", "").status(http.StatusOK)
		require.Equal(t, `"anonymous";q=3;w=3600`, r.header.Get("RateLimit-Policy"))
	}
	b.from("203.0.113.5:1000", http.MethodGet, "/openapi.yaml", "").problem(http.StatusTooManyRequests, "rate-limited")
	b.from("203.0.113.5:1000", http.MethodGet, "/v1/nothing-here", "").problem(http.StatusTooManyRequests, "rate-limited")
	// An untrusted peer cannot pick another address.
	b.from("203.0.113.5:1000", http.MethodGet, "/openapi.yaml", "", "X-Forwarded-For", "192.0.2.99").problem(http.StatusTooManyRequests, "rate-limited")
	// Probes are never limited.
	b.from("203.0.113.5:1000", http.MethodGet, "/healthz", "").status(http.StatusOK)
	// Behind a trusted proxy each client has its own quota, the same
	// behind every proxy.
	for range 3 {
		b.from("10.1.2.3:5000", http.MethodGet, "/openapi.yaml", "", "X-Forwarded-For", "192.0.2.10").status(http.StatusOK)
		b.from("10.1.2.3:5000", http.MethodGet, "/openapi.yaml", "", "X-Forwarded-For", "192.0.2.11, 10.9.0.1").status(http.StatusOK)
	}
	b.from("10.9.4.4:5000", http.MethodGet, "/openapi.yaml", "", "X-Forwarded-For", "192.0.2.10").problem(http.StatusTooManyRequests, "rate-limited")
	b.from("10.9.4.4:5000", http.MethodGet, "/openapi.yaml", "", "X-Forwarded-For", "192.0.2.11").problem(http.StatusTooManyRequests, "rate-limited")
	b.from("10.9.4.4:5000", http.MethodGet, "/openapi.yaml", "", "X-Forwarded-For", "192.0.2.12").status(http.StatusOK)

	_, err := New(Config{DB: b.db, AdminToken: testAdminToken, TrustedProxies: []string{"not-an-address"}})
	require.ErrorContains(t, err, "TrustedProxies")
}

// stubMonitor stands in for asynqmon, which is not under test here.
type stubMonitor struct{}

func (stubMonitor) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	_, _ = w.Write([]byte("asynqmon"))
}
func (stubMonitor) RootPath() string { return monitorRoot }

func (stubMonitor) HasQueue(string) (bool, error) { return true, nil }

// postLogin posts the monitor login form from a client address.
func (b *testBundle) postLogin(addr, token string, headers ...string) *httptest.ResponseRecorder {
	b.t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/monitor/login", strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.RemoteAddr = addr
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	b.srv.Handler().ServeHTTP(rec, req)
	return rec
}

// TestMonitorLoginLockout: 50 failed /monitor logins from one address lock
// it out after the MonitorLogin quota (5 an hour here): 429 even for the
// right token, by form, bearer or basic, while other addresses log in.
func TestMonitorLoginLockout(t *testing.T) {
	t.Parallel()
	b := limitedSetup(t, Config{Monitor: stubMonitor{}, Limits: Limits{MonitorLogin: ratelimit.Limit{Rate: 5, Period: time.Hour}}})
	const guesser = "198.51.100.20:999"
	codes := map[int]int{}
	for i := range 50 {
		codes[b.postLogin(guesser, "guess-"+strconv.Itoa(i)).Code]++
	}
	require.Equal(t, map[int]int{http.StatusUnauthorized: 5, http.StatusTooManyRequests: 45}, codes)
	rec := b.postLogin(guesser, testAdminToken)
	require.Equal(t, http.StatusTooManyRequests, rec.Code)
	require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
	require.NotEmpty(t, rec.Header().Get("Retry-After"))
	require.Equal(t, `"monitor-login";q=5;w=3600`, rec.Header().Get("RateLimit-Policy"))
	require.Empty(t, rec.Result().Cookies()) //nolint:bodyclose // a recorder's body
	b.from(guesser, http.MethodGet, "/monitor/", testAdminToken).problem(http.StatusTooManyRequests, "rate-limited")
	b.from(guesser, http.MethodGet, "/monitor/", "", "Authorization", basic("x", testAdminToken)).problem(http.StatusTooManyRequests, "rate-limited")

	rec = b.postLogin("198.51.100.21:999", testAdminToken)
	require.Equal(t, http.StatusSeeOther, rec.Code)
	require.Len(t, rec.Result().Cookies(), 1) //nolint:bodyclose // a recorder's body
	b.from("198.51.100.21:999", http.MethodGet, "/monitor/", testAdminToken).status(http.StatusOK)
}

func basic(user, pw string) string {
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.SetBasicAuth(user, pw)
	return req.Header.Get("Authorization")
}

// privateRedis starts a redis-server of the test's own on a free port and
// returns its client and a stop func (also run at cleanup).
func privateRedis(t *testing.T) (*redis.Client, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	require.NoError(t, ln.Close())
	srv := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	require.NoError(t, srv.Start())
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = srv.Process.Kill()
			_ = srv.Wait()
		})
	}
	t.Cleanup(stop)
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + port, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	require.Eventually(t, func() bool { return rdb.Ping(context.Background()).Err() == nil }, 10*time.Second, 20*time.Millisecond)
	return rdb, stop
}

// syncBuffer is a log sink safe for concurrent handlers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// TestRateLimitFailsOpenWhenRedisIsDown: with Redis stopped, requests are
// still served (limits unchecked), the fail-open metric counts each, and
// one log line says so instead of one per request.
func TestRateLimitFailsOpenWhenRedisIsDown(t *testing.T) {
	t.Parallel()
	rdb, stopRedis := privateRedis(t)
	var logs syncBuffer
	b := limitedSetup(t, Config{
		Redis: rdb, RedisPrefix: "bazaar:", Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
		Limits: Limits{Seller: ratelimit.Limit{Rate: 2, Period: time.Hour}},
	})
	const addr = "198.51.100.30:1"
	b.from(addr, http.MethodGet, "/v1/sellers/"+b.sellerA.String(), b.keyA).status(http.StatusOK)
	b.from(addr, http.MethodGet, "/v1/sellers/"+b.sellerA.String(), b.keyA).status(http.StatusOK)
	b.from(addr, http.MethodGet, "/v1/sellers/"+b.sellerA.String(), b.keyA).problem(http.StatusTooManyRequests, "rate-limited")
	require.Zero(t, testutil.ToFloat64(b.srv.tel.limitFailOpen))

	stopRedis()
	for range 20 {
		r := b.from(addr, http.MethodGet, "/v1/sellers/"+b.sellerA.String(), b.keyA).status(http.StatusOK)
		require.Empty(t, r.header.Get("RateLimit"), "no quota to tell while Redis is down")
	}
	b.from(addr, http.MethodGet, "/openapi.yaml", "").status(http.StatusOK)
	b.from(addr, http.MethodGet, "/v1/orders", "bzr_sk_wrong").problem(http.StatusUnauthorized, "unauthorized")
	// Each request with a credential makes two checks (the failure guard,
	// then its quota or the failure count), one without makes one.
	require.Equal(t, 43.0, testutil.ToFloat64(b.srv.tel.limitFailOpen))
	require.Equal(t, 1, strings.Count(logs.String(), "rate limits unchecked"), "logs: %s", logs.String())
}
