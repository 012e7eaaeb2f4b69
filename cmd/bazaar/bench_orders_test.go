package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream/redistest"
)

// benchClients is how many clients write at once, in pgbench and against
// the API alike.
const benchClients = 16

// benchSeconds is how long each side of BenchmarkOrderStorm runs
// (BAZAAR_BENCH_SECONDS, default 10).
func benchSeconds(b *testing.B) time.Duration {
	b.Helper()
	v := os.Getenv("BAZAAR_BENCH_SECONDS")
	if v == "" {
		return 10 * time.Second
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("BAZAAR_BENCH_SECONDS=%q: want a whole number of seconds", v)
	}
	return time.Duration(n) * time.Second
}

// pgbenchScript is the machine's own limit for what an order costs at the
// least: one transaction writing an order row and its outbox row into the
// migrated schema (the same tables, indexes and foreign keys the API
// writes), prepared statements, nothing else. Literals with a colon are
// variables, which pgbench would otherwise read as variable names.
const pgbenchScript = `BEGIN;
INSERT INTO orders (id, seller_id, user_id, status, currency, subtotal_minor, total_minor)
VALUES (gen_random_uuid(), :seller, :buyer, 'pending', 'EUR', 1250, 1250);
INSERT INTO events (id, type, source, subject, seller_id, dataschema, data)
VALUES (gen_random_uuid(), 'order.created', '/bazaar', 'bench', :seller, :schema, :data);
END;
`

var pgbenchTPS = regexp.MustCompile(`(?m)^tps = ([0-9.]+)`)

// runPgbench runs pgbenchScript with benchClients clients for d against a
// database of its own and returns its transactions per second.
func runPgbench(b *testing.B, d time.Duration) float64 {
	b.Helper()
	bin, err := exec.LookPath("pgbench")
	if err != nil {
		b.Skip("pgbench is not installed (Debian: postgresql-client or postgresql)")
	}
	db, dbURL := storetest.NewDB(b)
	var seller, buyer string
	ctx := context.Background()
	if err := db.GetContext(ctx, &seller, `INSERT INTO sellers (id, name, email) VALUES (gen_random_uuid(), 'pgbench', 's@example.com') RETURNING id`); err != nil {
		b.Fatal(err)
	}
	if err := db.GetContext(ctx, &buyer, `INSERT INTO users (id, email, name, country) VALUES (gen_random_uuid(), 'b@example.com', 'pgbench', 'DE') RETURNING id`); err != nil {
		b.Fatal(err)
	}
	_ = db.Close()
	script := filepath.Join(b.TempDir(), "order.sql")
	if err := os.WriteFile(script, []byte(pgbenchScript), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin, "-n", "-M", "prepared", "-c", strconv.Itoa(benchClients), "-j", "2",
		"-T", strconv.Itoa(int(d/time.Second)), "-D", "seller="+seller, "-D", "buyer="+buyer,
		"-D", "schema=urn:bazaar:order.created:1", "-D", `data={"total_minor":1250}`, "-f", script, dbURL)
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("pgbench: %v\n%s", err, out)
	}
	m := pgbenchTPS.FindSubmatch(out)
	if m == nil {
		b.Fatalf("pgbench printed no tps:\n%s", out)
	}
	tps, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		b.Fatal(err)
	}
	return tps
}

// BenchmarkOrderStorm measures POST /v1/orders through "bazaar serve" (its
// own database and Redis, the whole middleware chain, access log, metrics,
// rate limits in Redis) with a storefront key and a fresh Idempotency-Key
// on every request, benchClients clients at once, beside pgbench writing
// the two rows an order needs at the least, in the same run:
//
//	go test -run '^$' -bench OrderStorm -benchtime 1x ./cmd/bazaar/
//
// It reports orders/s, the p50 and p99 of the API's answers, pgbench's
// tx/s and the ratio of the two. Every order must answer 201.
func BenchmarkOrderStorm(b *testing.B) {
	d := benchSeconds(b)
	for range b.N {
		pg := runPgbench(b, d)
		api := runOrderStorm(b, d)
		b.ReportMetric(pg, "pgbench_tx/s")
		b.ReportMetric(api.rate, "orders/s")
		b.ReportMetric(api.p50.Seconds()*1000, "p50_ms")
		b.ReportMetric(api.p99.Seconds()*1000, "p99_ms")
		b.ReportMetric(api.rate/pg, "ratio")
	}
}

type stormResult struct {
	rate     float64
	p50, p99 time.Duration
}

// runOrderStorm starts "bazaar serve" on a fresh database, seeds a seller,
// two products, a buyer and a storefront key through the API, and posts
// orders from benchClients clients for d.
func runOrderStorm(b *testing.B, d time.Duration) stormResult {
	b.Helper()
	_, dbURL := storetest.NewDB(b)
	logs, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer logs.Close()
	addr := freeAddr(b)
	env := map[string]string{
		"DATABASE_URL": dbURL, "REDIS_URL": redistest.URL(), "BAZAAR_REDIS_PREFIX": redistest.Prefix(b),
		"BAZAAR_ADMIN_TOKEN": testAdmin, "BAZAAR_HTTP_ADDR": addr, "BAZAAR_SHUTDOWN_TIMEOUT": "5s",
		// The default 200/s per storefront key would be what is measured.
		"BAZAAR_RATE_LIMIT_STOREFRONT": "1000000/1s", "BAZAAR_RATE_LIMIT_ADMIN": "1000000/1s",
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
	base := "http://" + addr
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: benchClients * 2}}
	defer client.CloseIdleConnections()
	waitHealthy(b, client, base)
	post := benchPoster(ctx, b, client, base)
	seller := post("/v1/sellers", testAdmin, map[string]any{"name": "Storm", "email": "s@example.com"}, http.StatusCreated)["id"]
	front := post("/v1/storefront-keys", testAdmin, map[string]any{"name": "storm"}, http.StatusCreated)["key"].(string)
	var products []any
	for i := range 2 {
		p := post("/v1/products", testAdmin, map[string]any{
			"seller_id": seller, "sku": fmt.Sprintf("SKU-%d", i), "name": "Mug", "price_minor": 1250, "currency": "EUR", "stock": 1000,
		}, http.StatusCreated)
		products = append(products, p["id"])
	}
	buyer := post("/v1/users", front, map[string]any{"email": "b@example.com", "name": "Buyer", "country": "DE"}, http.StatusCreated)["id"]
	body, _ := json.Marshal(map[string]any{
		"user_id": buyer, "payment_method": "card",
		"items": []map[string]any{{"product_id": products[0], "quantity": 2}, {"product_id": products[1], "quantity": 1}},
	})

	var (
		mu        sync.Mutex
		latencies []time.Duration
		failed    atomic.Value
		seq       atomic.Int64
		wg        sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(d)
	for range benchClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			defer func() { mu.Lock(); latencies = append(latencies, mine...); mu.Unlock() }()
			for time.Now().Before(end) {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/orders", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+front)
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Idempotency-Key", fmt.Sprintf("storm-%d", seq.Add(1)))
				t0 := time.Now()
				res, err := client.Do(req)
				if err != nil {
					failed.CompareAndSwap(nil, err.Error())
					return
				}
				_, _ = io.Copy(io.Discard, res.Body)
				_ = res.Body.Close()
				mine = append(mine, time.Since(t0))
				if res.StatusCode != http.StatusCreated {
					failed.CompareAndSwap(nil, fmt.Sprintf("POST /v1/orders answered %d", res.StatusCode))
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if f := failed.Load(); f != nil {
		b.Fatal(f)
	}
	slices.Sort(latencies)
	q := func(p float64) time.Duration { return latencies[int(float64(len(latencies)-1)*p)] }
	return stormResult{rate: float64(len(latencies)) / elapsed.Seconds(), p50: q(0.50), p99: q(0.99)}
}

// benchServeEnv passes BAZAAR_* settings of the benchmark's own
// environment to the server (BAZAAR_DB_PREPARED=false, say), so a setting
// can be compared in the same way.
func benchServeEnv() map[string]string {
	out := map[string]string{}
	for _, k := range []string{"BAZAAR_DB_PREPARED", "BAZAAR_LOG_LEVEL"} {
		if v, ok := os.LookupEnv(k); ok {
			out[k] = v
		}
	}
	return out
}

// benchPoster returns a POST helper for the benchmarks' setup requests: it
// fails the benchmark on any other status than want and decodes the answer.
func benchPoster(ctx context.Context, b *testing.B, client *http.Client, base string) func(path, token string, body any, want int) map[string]any {
	return func(path, token string, body any, want int) map[string]any {
		raw, _ := json.Marshal(body)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(raw))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		res, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer res.Body.Close()
		out, _ := io.ReadAll(res.Body)
		if res.StatusCode != want {
			b.Fatalf("POST %s: %d %s", path, res.StatusCode, out)
		}
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil {
			b.Fatal(err)
		}
		return m
	}
}

// waitHealthy waits for a started server to answer /healthz.
func waitHealthy(b *testing.B, client *http.Client, base string) {
	b.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := client.Get(base + "/healthz") //nolint:noctx // a probe of our own server
		if err == nil {
			_ = res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("serve did not answer /healthz: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
