package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream"
	"github.com/bazaarhq/bazaar/stream/redistest"
)

// latencyRates are the order rates BenchmarkCommitToHandlerLatency runs
// (BAZAAR_BENCH_RATES, comma-separated orders per second; default 1000,50).
func latencyRates(b *testing.B) []int {
	b.Helper()
	v := cmpOr(os.Getenv("BAZAAR_BENCH_RATES"), "1000,50")
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			b.Fatalf("BAZAAR_BENCH_RATES=%q: want rates such as 1000,50", v)
		}
		out = append(out, n)
	}
	return out
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// BenchmarkCommitToHandlerLatency measures how long an order's event takes
// from its commit to a consumer group's handler and to an SSE client, with
// "bazaar serve" taking the orders and "bazaar relay" (the built binary,
// another process) publishing them, at a fixed rate of POST /v1/orders:
//
//	go test -run '^$' -bench CommitToHandlerLatency -benchtime 1x ./cmd/bazaar/
//
// Each rate runs twice in the same run: "poll" is the relay finding the
// events by its 100 ms poll; "notify" is BAZAAR_OUTBOX_NOTIFY on the API
// and "bazaar relay -listen". The clock starts when the 201 arrives, which
// is after the commit: the figures are a floor of commit to handler, short
// of the time the answer takes to leave the API. BAZAAR_BENCH_SECONDS sets
// each run's length (default 5), BAZAAR_BENCH_RATES the rates.
func BenchmarkCommitToHandlerLatency(b *testing.B) {
	d := 5 * time.Second
	if os.Getenv("BAZAAR_BENCH_SECONDS") != "" {
		d = benchSeconds(b)
	}
	bin := filepath.Join(b.TempDir(), "bazaar")
	if out, err := exec.CommandContext(context.Background(), "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	for _, rate := range latencyRates(b) {
		for _, mode := range []string{"poll", "notify"} {
			b.Run(fmt.Sprintf("rate=%d/wake=%s", rate, mode), func(b *testing.B) {
				for range b.N {
					r := runLatency(b, bin, rate, mode == "notify", d)
					b.ReportMetric(r.rate, "orders/s")
					b.ReportMetric(ms(r.handler, 0.50), "handler_p50_ms")
					b.ReportMetric(ms(r.handler, 0.99), "handler_p99_ms")
					b.ReportMetric(ms(r.sse, 0.50), "sse_p50_ms")
					b.ReportMetric(ms(r.sse, 0.99), "sse_p99_ms")
					b.ReportMetric(ms(r.api, 0.99), "api_p99_ms")
				}
			})
		}
	}
}

func ms(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(float64(len(sorted)-1)*p)].Seconds() * 1000
}

type latencyResult struct {
	rate              float64
	handler, sse, api []time.Duration // sorted
}

// latencyClock records when each order was answered and when its event
// reached each observer; either may come first.
type latencyClock struct {
	mu        sync.Mutex
	committed map[string]time.Time
	seen      [2]map[string]time.Time // handler, SSE client
}

func (c *latencyClock) mark(m map[string]time.Time, id string, at time.Time) {
	c.mu.Lock()
	if _, ok := m[id]; !ok {
		m[id] = at
	}
	c.mu.Unlock()
}

func (c *latencyClock) count(i int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen[i])
}

func runLatency(b *testing.B, bin string, rate int, notify bool, d time.Duration) latencyResult {
	b.Helper()
	_, dbURL := storetest.NewDB(b)
	logs, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer logs.Close()
	prefix := redistest.Prefix(b)
	addr := freeAddr(b)
	env := map[string]string{
		"DATABASE_URL": dbURL, "REDIS_URL": redistest.URL(), "BAZAAR_REDIS_PREFIX": prefix,
		"BAZAAR_ADMIN_TOKEN": testAdmin, "BAZAAR_HTTP_ADDR": addr, "BAZAAR_SHUTDOWN_TIMEOUT": "5s",
		"BAZAAR_RATE_LIMIT_STOREFRONT": "1000000/1s", "BAZAAR_RATE_LIMIT_ADMIN": "1000000/1s",
		"BAZAAR_OUTBOX_NOTIFY": strconv.FormatBool(notify), "BAZAAR_DB_MAX_CONNS": "8",
	}
	for k, v := range benchServeEnv() {
		env[k] = v
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"bazaar", "serve"}, envOf(env), logs, logs) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			b.Errorf("serve: %v", err)
		}
	}()

	// The relay: another process, as in production.
	args := []string{"relay"}
	if notify {
		args = append(args, "-listen")
	}
	relay := exec.CommandContext(ctx, bin, args...) //nolint:gosec // the binary this benchmark built
	relay.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "BAZAAR_DATABASE_DIRECT_URL="+dbURL, "REDIS_URL="+redistest.URL(),
		"BAZAAR_REDIS_PREFIX="+prefix, "BAZAAR_ADMIN_TOKEN="+testAdmin, "BAZAAR_HTTP_ADDR="+freeAddr(b), "BAZAAR_DB_MAX_CONNS=4")
	relay.Stdout, relay.Stderr = logs, logs
	relay.Cancel = func() error { return relay.Process.Signal(syscall.SIGTERM) }
	if err := relay.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { stop(); _ = relay.Wait() }()

	base := "http://" + addr
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	waitHealthy(b, client, base)
	post := benchPoster(ctx, b, client, base)
	seller := post("/v1/sellers", testAdmin, map[string]any{"name": "Latency", "email": "s@example.com"}, http.StatusCreated)["id"]
	front := post("/v1/storefront-keys", testAdmin, map[string]any{"name": "latency"}, http.StatusCreated)["key"].(string)
	product := post("/v1/products", testAdmin, map[string]any{
		"seller_id": seller, "sku": "SKU-1", "name": "Mug", "price_minor": 1250, "currency": "EUR", "stock": 10_000_000,
	}, http.StatusCreated)["id"]
	buyer := post("/v1/users", front, map[string]any{"email": "b@example.com", "name": "Buyer", "country": "DE"}, http.StatusCreated)["id"]
	body, _ := json.Marshal(map[string]any{
		"user_id": buyer, "payment_method": "card",
		"items": []map[string]any{{"product_id": product, "quantity": 1}},
	})

	clock := &latencyClock{committed: map[string]time.Time{}, seen: [2]map[string]time.Time{{}, {}}}

	// The consumer group, reading with its blocking XREADGROUP.
	opt, err := redis.ParseURL(redistest.URL())
	if err != nil {
		b.Fatal(err)
	}
	opt.PoolSize = 4
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	groups, err := stream.NewGroups(stream.GroupsConfig{Redis: rdb, Names: stream.Names{Prefix: prefix}, Consumer: "latency"})
	if err != nil {
		b.Fatal(err)
	}
	err = groups.Add(stream.Subscription{
		Group: "latency", Patterns: []string{"order.created"}, Concurrency: 4,
		Handler: func(_ context.Context, m stream.Message) error {
			clock.mark(clock.seen[0], m.Subject, time.Now())
			return nil
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := groups.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = groups.Stop(context.Background()) }()

	// The SSE client, on the API's live route.
	ready := make(chan struct{})
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/events?topics=order.created", nil)
		req.Header.Set("Authorization", "Bearer "+front)
		res, err := (&http.Client{}).Do(req)
		if err != nil {
			close(ready)
			return
		}
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		once := sync.OnceFunc(func() { close(ready) })
		for sc.Scan() {
			line := sc.Bytes()
			if bytes.HasPrefix(line, []byte("event: ready")) {
				once()
			}
			data, ok := bytes.CutPrefix(line, []byte("data: "))
			if !ok {
				continue
			}
			var env struct {
				Type    string `json:"type"`
				Subject string `json:"subject"`
			}
			if json.Unmarshal(data, &env) == nil && env.Type == "order.created" {
				clock.mark(clock.seen[1], env.Subject, time.Now())
			}
		}
		once()
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		b.Fatal("SSE client got no ready event")
	}
	time.Sleep(200 * time.Millisecond) // the groups' first read is blocking

	// Open loop: orders are due at a fixed rate whatever the answers take,
	// from enough clients that a slow answer does not delay the next.
	total := int(float64(rate) * d.Seconds())
	due := make(chan struct{}, total)
	var (
		mu       sync.Mutex
		apiTimes []time.Duration
		failure  error
		wg       sync.WaitGroup
	)
	for range 48 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range due {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/orders", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+front)
				req.Header.Set("Content-Type", "application/json")
				t0 := time.Now()
				res, err := client.Do(req)
				if err != nil {
					mu.Lock()
					failure = cmpErr(failure, err)
					mu.Unlock()
					continue
				}
				answered := time.Now()
				out, _ := io.ReadAll(res.Body)
				_ = res.Body.Close()
				var o struct {
					ID string `json:"id"`
				}
				if res.StatusCode != http.StatusCreated || json.Unmarshal(out, &o) != nil {
					mu.Lock()
					failure = cmpErr(failure, fmt.Errorf("POST /v1/orders answered %d %s", res.StatusCode, out))
					mu.Unlock()
					continue
				}
				clock.mark(clock.committed, o.ID, answered)
				mu.Lock()
				apiTimes = append(apiTimes, answered.Sub(t0))
				mu.Unlock()
			}
		}()
	}
	start := time.Now()
	interval := time.Second / time.Duration(rate)
	for i := range total {
		if w := time.Until(start.Add(time.Duration(i) * interval)); w > 0 {
			time.Sleep(w)
		}
		due <- struct{}{}
	}
	close(due)
	wg.Wait()
	elapsed := time.Since(start)
	if failure != nil {
		b.Fatal(failure)
	}
	deadline := time.Now().Add(30 * time.Second)
	for clock.count(0) < total || clock.count(1) < total {
		if time.Now().After(deadline) {
			b.Fatalf("after 30s: %d of %d events handled, %d reached the SSE client", clock.count(0), total, clock.count(1))
		}
		time.Sleep(20 * time.Millisecond)
	}
	res := latencyResult{rate: float64(total) / elapsed.Seconds(), api: apiTimes}
	clock.mu.Lock()
	for id, at := range clock.committed {
		res.handler = append(res.handler, clock.seen[0][id].Sub(at))
		res.sse = append(res.sse, clock.seen[1][id].Sub(at))
	}
	clock.mu.Unlock()
	for _, s := range [][]time.Duration{res.handler, res.sse, res.api} {
		slices.Sort(s)
	}
	return res
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
