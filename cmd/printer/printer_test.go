package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/bazaarhq/bazaar/api"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream"
	"github.com/bazaarhq/bazaar/stream/redistest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"),
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).reaper"),
	)
}

const adminToken = "printer-test-admin-token"

// market is a running API (relay and hub included) with two sellers.
type market struct {
	t        *testing.T
	url      string
	db       *sqlx.DB
	front    string
	sellers  [2]string
	keys     [2]string
	products [2]string
	user     string
}

func newMarket(t *testing.T) *market {
	t.Helper()
	ctx := context.Background()
	db, _ := storetest.NewDB(t)
	rdb := redistest.Client(t)
	names := stream.Names{Prefix: redistest.Prefix(t)}
	relay, err := stream.NewRelay(stream.RelayConfig{DB: db, Redis: rdb, Names: names, PollInterval: 20 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, relay.Start(ctx))
	t.Cleanup(func() { require.NoError(t, relay.Stop(ctx)) })
	hub, err := stream.NewHub(stream.HubConfig{Redis: rdb, DB: db, Names: names, Block: 100 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, hub.Start(ctx))
	srv, err := api.New(api.Config{DB: db, AdminToken: adminToken, Observer: relay, Hub: hub, SSE: api.SSEConfig{Heartbeat: time.Second}})
	require.NoError(t, err)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		require.NoError(t, hub.Stop(ctx))
		ts.Close()
	})
	m := &market{t: t, url: ts.URL, db: db}
	m.front = m.post("/v1/storefront-keys", adminToken, nil)["key"].(string)
	for i := range 2 {
		m.sellers[i] = m.post("/v1/sellers", adminToken, map[string]any{"name": fmt.Sprintf("Seller %d", i), "email": "s@example.com"})["id"].(string)
		m.keys[i] = m.post("/v1/sellers/"+m.sellers[i]+"/keys", adminToken, nil)["key"].(string)
		m.products[i] = m.post("/v1/products", m.keys[i], map[string]any{"sku": "MUG-" + uuid.NewString()[:6], "name": "Mug", "price_minor": 1250, "currency": "EUR", "stock": 100000})["id"].(string)
	}
	m.user = m.post("/v1/users", m.front, map[string]any{"email": "buyer@example.com", "name": "Buyer"})["id"].(string)
	return m
}

func (m *market) post(path, token string, body any) map[string]any {
	m.t.Helper()
	var raw []byte
	if body != nil {
		raw, _ = json.Marshal(body)
	}
	req, err := http.NewRequest(http.MethodPost, m.url+path, bytes.NewReader(raw))
	require.NoError(m.t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	if raw != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(m.t, err)
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	require.Equal(m.t, http.StatusCreated, res.StatusCode, "POST %s: %s", path, b)
	var out map[string]any
	require.NoError(m.t, json.Unmarshal(b, &out))
	return out
}

func (m *market) order(seller int) string {
	return m.post("/v1/orders", m.front, map[string]any{
		"user_id": m.user, "payment_method": "pm_card_visa",
		"items": []map[string]any{{"product_id": m.products[seller], "quantity": 1}},
	})["id"].(string)
}

// buildPrinter builds the printer binary once per test.
func buildPrinter(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "printer")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// agent is one run of the printer binary.
type agent struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	exited chan struct{}
	err    error
}

func startAgent(t *testing.T, bin string, args ...string) *agent {
	t.Helper()
	a := &agent{cmd: exec.Command(bin, args...), stderr: &syncBuffer{}, exited: make(chan struct{})}
	a.cmd.Stderr = a.stderr
	require.NoError(t, a.cmd.Start())
	go func() {
		a.err = a.cmd.Wait()
		close(a.exited)
	}()
	t.Cleanup(a.kill)
	return a
}

func (a *agent) stop(t *testing.T) {
	t.Helper()
	// A SIGTERM before the printer has installed its handler kills it
	// outright; its first log line comes after the handler is in place.
	waitFor(t, "the printer to start", 10*time.Second, func() bool {
		return strings.Contains(a.stderr.String(), "printer starting")
	})
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
		require.NoError(t, a.err, "printer log: %s", a.stderr)
	case <-time.After(10 * time.Second):
		t.Fatalf("printer did not stop; log: %s", a.stderr)
	}
}

func (a *agent) kill() {
	_ = a.cmd.Process.Kill()
	<-a.exited
}

// syncBuffer is a bytes.Buffer safe for the process's writes and the
// test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var receiptOrder = regexp.MustCompile(`(?m)^Order: ([0-9a-f-]{36})$`)

func receipts(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	var ids []string
	for _, m := range receiptOrder.FindAllStringSubmatch(string(b), -1) {
		ids = append(ids, m[1])
	}
	return ids
}

func (m *market) acked(printerID string) []string {
	m.t.Helper()
	var ids []string
	require.NoError(m.t, m.db.Select(&ids, `SELECT a.order_id::text FROM printer_acks a JOIN orders o ON o.id = a.order_id
		WHERE a.printer_key_id = $1 ORDER BY o.created_at, o.id`, printerID))
	return ids
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPrinterOfflineOvernight: the printer runs, stops, misses 100 orders
// of its seller (and 100 of another), and on restart prints exactly its
// seller's 100, in order, each once, all acknowledged.
func TestPrinterOfflineOvernight(t *testing.T) {
	m := newMarket(t)
	bin := buildPrinter(t)
	tok := m.post("/v1/sellers/"+m.sellers[0]+"/printer-tokens", m.keys[0], map[string]any{"name": "warehouse"})
	dir := t.TempDir()
	out := filepath.Join(dir, "receipts.txt")
	args := []string{
		"-url", m.url, "-token", tok["key"].(string), "-seller", m.sellers[0], "-printer-id", tok["id"].(string),
		"-out", out, "-state-dir", filepath.Join(dir, "state"), "-idle-timeout", "5s", "-max-backoff", "1s",
	}

	first := startAgent(t, bin, args...)
	waitFor(t, "the printer to save its position", 10*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(dir, "state", "cursor"))
		return err == nil
	})
	first.stop(t)

	var want []string
	for i := range 200 {
		if i%2 == 0 {
			want = append(want, m.order(0))
		} else {
			m.order(1)
		}
	}
	second := startAgent(t, bin, args...)
	waitFor(t, "100 acknowledgements", 60*time.Second, func() bool { return len(m.acked(tok["id"].(string))) >= 100 })
	time.Sleep(500 * time.Millisecond) // nothing more may arrive
	second.stop(t)

	require.Equal(t, want, receipts(t, out), "exactly the seller's orders, in order, once each")
	require.Equal(t, want, m.acked(tok["id"].(string)))
	require.Contains(t, string(mustRead(t, out)), "EUR 12.50")

	// Restarting again prints nothing new.
	third := startAgent(t, bin, args...)
	time.Sleep(time.Second)
	third.stop(t)
	require.Len(t, receipts(t, out), 100)
}

// TestPrinterKilledMidway kills the printer with SIGKILL while it works
// through a backlog; after a restart every order is printed and
// acknowledged, and at most the one receipt in flight at the kill repeats.
func TestPrinterKilledMidway(t *testing.T) {
	m := newMarket(t)
	bin := buildPrinter(t)
	tok := m.post("/v1/sellers/"+m.sellers[0]+"/printer-tokens", m.keys[0], map[string]any{"name": "warehouse"})
	dir := t.TempDir()
	out := filepath.Join(dir, "receipts.txt")
	args := []string{
		"-url", m.url, "-token", tok["key"].(string), "-seller", m.sellers[0], "-printer-id", tok["id"].(string),
		"-out", out, "-state-dir", filepath.Join(dir, "state"), "-max-backoff", "1s",
	}
	first := startAgent(t, bin, args...)
	waitFor(t, "the printer to save its position", 10*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(dir, "state", "cursor"))
		return err == nil
	})
	var want []string
	for range 60 {
		want = append(want, m.order(0))
	}
	waitFor(t, "some receipts", 30*time.Second, func() bool { return len(receipts(t, out)) >= 10 })
	first.kill()

	second := startAgent(t, bin, args...)
	waitFor(t, "60 acknowledgements", 60*time.Second, func() bool { return len(m.acked(tok["id"].(string))) >= 60 })
	second.stop(t)
	got := receipts(t, out)
	seen := map[string]int{}
	for _, id := range got {
		seen[id]++
	}
	require.Len(t, seen, 60)
	require.LessOrEqual(t, len(got), 61, "at most the receipt in flight repeats")
	require.Equal(t, want, m.acked(tok["id"].(string)))
}

// TestPrinterRefusesAnotherSellersFeed: a token of seller A aimed at
// seller B's feed is refused, and the printer stops with the reason.
func TestPrinterRefusesAnotherSellersFeed(t *testing.T) {
	m := newMarket(t)
	bin := buildPrinter(t)
	tok := m.post("/v1/sellers/"+m.sellers[0]+"/printer-tokens", m.keys[0], nil)
	dir := t.TempDir()
	a := startAgent(t, bin, "-url", m.url, "-token", tok["key"].(string), "-seller", m.sellers[1], "-printer-id", tok["id"].(string),
		"-out", filepath.Join(dir, "r.txt"), "-state-dir", dir)
	select {
	case <-a.exited:
		require.Error(t, a.err)
		require.Contains(t, a.stderr.String(), "404")
	case <-time.After(10 * time.Second):
		t.Fatal("printer kept running on another seller's feed")
	}
}

func TestReceiptText(t *testing.T) {
	o := order{
		ID: "0190c0de-0000-7000-8000-000000000001", Currency: "EUR", SubtotalMinor: 2500, TotalMinor: 2500,
		CreatedAt: time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC),
		Items:     []orderItem{{SKU: "MUG-1", Name: "Mug", Quantity: 2, UnitPriceMinor: 1250, LineTotalMinor: 2500}},
	}
	r := receiptText(o)
	require.Contains(t, r, "Order: "+o.ID+"\n")
	require.Contains(t, r, "  2 x Mug\n")
	require.Contains(t, r, "EUR 25.00")
	require.Equal(t, "JPY 1250", money(1250, "JPY"))
	require.Equal(t, "BHD 1.250", money(1250, "BHD"))
	for _, l := range strings.Split(r, "\n") {
		require.LessOrEqual(t, len([]rune(l)), 48, l)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}
