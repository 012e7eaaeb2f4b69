package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/bazaarhq/bazaar/api"
	"github.com/bazaarhq/bazaar/sql/migrations"
	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream"
	"github.com/bazaarhq/bazaar/stream/redistest"
	"github.com/bazaarhq/bazaar/workers"
)

// stack is every role in one process, as "bazaar dev" runs them, with
// observability wired the way the roles wire it: one registry, the
// backbone, queue and schedule collectors, /metrics beside the API.
type stack struct {
	t       *testing.T
	db      *sqlx.DB
	rdb     *redis.Client
	names   stream.Names
	obs     *observability
	relay   *stream.Relay
	workers *workers.Workers
	url     string
	client  *http.Client
}

func testLog() *slog.Logger {
	if os.Getenv("BAZAAR_TEST_LOG") != "" {
		return slog.New(withTraceIDs(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})))
	}
	return slog.New(slog.DiscardHandler)
}

func startStack(t *testing.T, env map[string]string) *stack {
	t.Helper()
	ctx := context.Background()
	db, _ := storetest.NewDB(t)
	// asynq takes no key prefix: the whole stack gets a Redis database of
	// its own, streams included.
	rdb := redis.NewClient(redistest.DB(t))
	t.Cleanup(func() { _ = rdb.Close() })
	log := testLog()
	names := stream.Names{Prefix: "bazaar:"}

	obs, err := newObservability(ctx, envOf(env), "dev", log)
	require.NoError(t, err)
	tp := obs.TracerProvider()
	relay, err := stream.NewRelay(stream.RelayConfig{
		DB: db, Redis: rdb, Names: names, Logger: log, PollInterval: 20 * time.Millisecond,
		Registry: obs.Registry, TracerProvider: tp,
	})
	require.NoError(t, err)

	sink := workers.NewMailSink(workers.MailSinkConfig{})
	require.NoError(t, sink.Start(ctx))
	t.Cleanup(func() { _ = sink.Stop(context.Background()) })
	host, port, _ := net.SplitHostPort(sink.Addr())
	p, _ := strconv.Atoi(port)
	mailer, err := workers.NewSMTPMailer(workers.SMTPConfig{Host: host, Port: p, TLS: workers.TLSNone, From: "shop@bazaar.test", Timeout: 2 * time.Second})
	require.NoError(t, err)
	w, err := workers.New(workers.Config{
		DB: db, Redis: rdb, Logger: log, Mailer: mailer, Observer: relay, Concurrency: 4,
		ShutdownTimeout: 2 * time.Second, Registry: obs.Registry, TracerProvider: tp,
	})
	require.NoError(t, err)
	groups, err := stream.NewGroups(stream.GroupsConfig{
		Redis: rdb, DB: db, Names: names, Logger: log, Block: 100 * time.Millisecond,
		Registry: obs.Registry, TracerProvider: tp,
	})
	require.NoError(t, err)
	// Two deliveries, so a poison event reaches the dead letters at once.
	for _, sub := range w.Subscriptions(workers.SubscriptionOptions{MaxDeliveries: 2}) {
		require.NoError(t, groups.Add(sub))
	}
	require.NoError(t, obs.CollectBackbone(db, rdb, names, stream.CollectAll))
	require.NoError(t, obs.CollectQueues(rdb))
	require.NoError(t, obs.CollectSchedules(db, nil))

	hub, err := stream.NewHub(stream.HubConfig{Redis: rdb, DB: db, Names: names, Logger: log, Block: 100 * time.Millisecond})
	require.NoError(t, err)
	srv, err := api.New(api.Config{
		DB: db, Logger: log, AdminToken: testAdmin, Observer: relay, Hub: hub,
		Registry: obs.Registry, TracerProvider: tp,
	})
	require.NoError(t, err)
	httpSrv := httptest.NewServer(obs.WithMetrics(srv.Handler()))

	// The relay role's periodic audit, as wired there.
	audits, err := periodicAudit(envOf(env), db, rdb, names, log, obs)
	require.NoError(t, err)
	require.Len(t, audits, 1)
	parts := append([]component{obs, relay}, audits...)
	parts = append(parts, w, groups, hub)
	for _, c := range parts {
		require.NoError(t, c.Start(ctx))
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_ = hub.Stop(ctx) // ends the open event streams
		httpSrv.Close()
		for i := len(parts) - 1; i >= 0; i-- {
			require.NoError(t, parts[i].Stop(ctx))
		}
	})
	return &stack{t: t, db: db, rdb: rdb, names: names, obs: obs, relay: relay, workers: w, url: httpSrv.URL, client: httpSrv.Client()}
}

const testAdmin = "test-admin-token-0123456789"

// call sends a JSON request and decodes the JSON answer into a map.
func (s *stack) call(method, path, token string, body any, want int) map[string]any {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		require.NoError(s.t, err)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	require.NoError(s.t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	res, err := s.client.Do(req)
	require.NoError(s.t, err)
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	require.NoError(s.t, err)
	require.Equal(s.t, want, res.StatusCode, "%s %s: %s", method, path, raw)
	out := map[string]any{}
	if len(raw) > 0 {
		require.NoError(s.t, json.Unmarshal(raw, &out))
	}
	return out
}

// shop is a seller with a product and a registered buyer, set up through
// the API.
type shop struct {
	storefront, product, user string
}

func (s *stack) shop() shop {
	s.t.Helper()
	seller := s.call(http.MethodPost, "/v1/sellers", testAdmin, map[string]any{"name": "Corner Shop", "email": "shop@example.com"}, http.StatusCreated)["id"].(string)
	sellerKey := s.call(http.MethodPost, "/v1/sellers/"+seller+"/keys", testAdmin, map[string]any{"name": "back office"}, http.StatusCreated)["key"].(string)
	front := s.call(http.MethodPost, "/v1/storefront-keys", testAdmin, map[string]any{"name": "web shop"}, http.StatusCreated)["key"].(string)
	product := s.call(http.MethodPost, "/v1/products", sellerKey, map[string]any{
		"sku": "mug-1", "name": "Mug", "price_minor": 1250, "currency": "EUR", "stock": 100,
	}, http.StatusCreated)["id"].(string)
	user := s.call(http.MethodPost, "/v1/users", front, map[string]any{"email": "ada@example.com", "name": "Ada", "country": "GB"}, http.StatusCreated)["id"].(string)
	return shop{storefront: front, product: product, user: user}
}

// order places an order and waits until the saga confirmed it.
func (s *stack) order(sh shop) string {
	s.t.Helper()
	id := s.call(http.MethodPost, "/v1/orders", sh.storefront, map[string]any{
		"user_id": sh.user, "payment_method": "pm_card_visa",
		"items": []map[string]any{{"product_id": sh.product, "quantity": 1}},
	}, http.StatusCreated)["id"].(string)
	require.Eventually(s.t, func() bool {
		return s.call(http.MethodGet, "/v1/orders/"+id, sh.storefront, nil, http.StatusOK)["status"] == "confirmed"
	}, 30*time.Second, 50*time.Millisecond, "order %s confirmed", id)
	return id
}

// scrape reads /metrics as Prometheus does.
func (s *stack) scrape() map[string]*dto.MetricFamily {
	s.t.Helper()
	res, err := s.client.Get(s.url + "/metrics")
	require.NoError(s.t, err)
	defer res.Body.Close()
	require.Equal(s.t, http.StatusOK, res.StatusCode)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(res.Body)
	require.NoError(s.t, err)
	return mfs
}

// settled reports whether the scrape shows nothing in flight: the outbox
// drained, every published entry delivered and acknowledged, no task
// waiting, running or retrying (deferred ones may wait), and the relay's
// count matching the published events.
func (s *stack) settled(mfs map[string]*dto.MetricFamily) bool {
	backlog, ok := value(mfs, "bazaar_outbox_backlog", nil)
	if !ok || backlog != 0 {
		return false
	}
	if sum(mfs, "bazaar_consumer_lag", nil) != 0 || sum(mfs, "bazaar_consumer_pending", nil) != 0 {
		return false
	}
	for _, state := range []string{"pending", "active", "retry"} {
		if sum(mfs, "bazaar_asynq_tasks", map[string]string{"state": state}) != 0 {
			return false
		}
	}
	var published float64
	if err := s.db.GetContext(context.Background(), &published, `SELECT count(*) FROM event_positions`); err != nil {
		return false
	}
	got, _ := value(mfs, "bazaar_relay_published_total", nil)
	return got == published
}

// settle waits until two scrapes in a row are settled and cond holds, and
// returns the last scrape.
func (s *stack) settle(what string, cond func(map[string]*dto.MetricFamily) bool) map[string]*dto.MetricFamily {
	s.t.Helper()
	var mfs map[string]*dto.MetricFamily
	calm := 0
	require.Eventually(s.t, func() bool {
		mfs = s.scrape()
		if s.settled(mfs) && cond(mfs) {
			calm++
		} else {
			calm = 0
		}
		return calm >= 2
	}, 30*time.Second, 100*time.Millisecond, what)
	return mfs
}

// value returns the value of the series of family name whose labels
// include want (a histogram's sample count), and whether there is one.
func value(mfs map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	mf, ok := mfs[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

// sum adds up every series of family name whose labels include want.
func sum(mfs map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	total := 0.0
	mf := mfs[name]
	if mf == nil {
		return 0
	}
	for _, m := range mf.GetMetric() {
		match := true
		for _, l := range m.GetLabel() {
			if v, ok := want[l.GetName()]; ok && v != l.GetValue() {
				match = false
			}
		}
		if match {
			total += m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return total
}

// documentedMetrics are the metric names docs/operations.md lists.
func documentedMetrics(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("../../docs/operations.md")
	require.NoError(t, err)
	re := regexp.MustCompile("(?m)^\\| `(bazaar_[a-z0-9_]+)` \\|")
	var out []string
	for _, m := range re.FindAllStringSubmatch(string(raw), -1) {
		out = append(out, m[1])
	}
	require.NotEmpty(t, out)
	return out
}

// After orders, a poison event and a task that fails for good, /metrics
// shows every documented series with what happened: the outbox drained,
// one dead letter in each group the poison event reached, one archived
// task, and the requests, publications, handler calls and tasks counted.
func TestMetricsScrape(t *testing.T) {
	t.Parallel()
	s := startStack(t, nil)
	ctx := context.Background()
	sh := s.shop()
	const orders = 3
	for range orders {
		s.order(sh)
	}

	// An order.created whose subject is no order id: the inventory and
	// follow-ups groups fail on it every time and dead-letter it.
	poison, err := store.NewEvent("order.created", "not-an-order", nil, 1, map[string]string{"note": "poison"})
	require.NoError(t, err)
	require.NoError(t, store.InsertEvents(ctx, s.db, poison))
	s.relay.EventsCommitted()

	// A paused seller with one held event: once the groups hold it back,
	// its order.created is parked by the groups that bind it.
	paused, err := store.CreateSeller(ctx, s.db, "Paused Ltd", "paused@example.test")
	require.NoError(t, err)
	_, err = store.PauseSeller(ctx, s.db, paused.ID, "review")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return s.rdb.HGet(ctx, s.names.Prefix+"hold:{"+paused.ID.String()+"}", "state").Val() == "paused"
	}, 20*time.Second, 20*time.Millisecond, "the pause applied")
	held, err := store.NewEvent("order.created", "held-order", &paused.ID, 1, map[string]string{"note": "held"})
	require.NoError(t, err)
	require.NoError(t, store.InsertEvents(ctx, s.db, held))
	s.relay.EventsCommitted()

	// A task whose payload this build cannot read fails for good (asynq
	// archives it without retrying).
	bad := asynq.NewTask(workers.TypeEmailWelcome, []byte(`{"v": 99}`))
	require.NoError(t, s.workers.Enqueue(ctx, bad, "unreadable-welcome"))

	// A schedule that handed its work over, as the scheduler records it.
	_, _, err = store.InsertFiring(ctx, s.db, store.Firing{Schedule: "invoicing", Period: "2026-01-01", DueAt: time.Now().Add(-time.Hour), TaskID: "invoice:run:2026-01-01", FiredBy: "test"})
	require.NoError(t, err)
	require.NoError(t, store.MarkFiringEnqueued(ctx, s.db, "invoicing", "2026-01-01"))

	mfs := s.settle("dead letters, the archived task and a drained outbox", func(mfs map[string]*dto.MetricFamily) bool {
		inv, _ := value(mfs, "bazaar_dlq_depth", map[string]string{"group": "inventory"})
		fol, _ := value(mfs, "bazaar_dlq_depth", map[string]string{"group": "followups"})
		_, held := mfs["bazaar_seller_held_events"]
		return inv == 1 && fol == 1 && sum(mfs, "bazaar_asynq_tasks", map[string]string{"state": "archived"}) == 1 && held
	})

	for _, name := range documentedMetrics(t) {
		_, ok := mfs[name]
		require.True(t, ok, "/metrics has no %s", name)
	}
	is := func(want float64, name string, labels map[string]string) {
		t.Helper()
		got, ok := value(mfs, name, labels)
		require.True(t, ok, "no %s%v", name, labels)
		require.Equal(t, want, got, "%s%v", name, labels)
	}
	is(0, "bazaar_outbox_backlog", nil)
	// The audit at the relay's start completed and found nothing missing.
	lastAudit, _ := value(mfs, "bazaar_audit_last_run_timestamp_seconds", nil)
	require.Positive(t, lastAudit, "the periodic audit ran")
	is(0, "bazaar_audit_missing_events", nil)
	is(0, "bazaar_outbox_oldest_unpublished_age_seconds", nil)
	is(1, "bazaar_dlq_depth", map[string]string{"group": "inventory"})
	is(1, "bazaar_dlq_depth", map[string]string{"group": "followups"})
	is(0, "bazaar_dlq_depth", map[string]string{"group": "payments"})
	is(1, "bazaar_asynq_tasks", map[string]string{"queue": workers.QueueDefault, "state": "archived"})
	is(1, "bazaar_task_processed_total", map[string]string{"task_type": workers.TypeEmailWelcome, "outcome": "archived"})
	is(orders, "bazaar_task_processed_total", map[string]string{"task_type": workers.TypeOrderConfirm, "outcome": "success"})
	is(orders, "bazaar_task_duration_seconds", map[string]string{"task_type": workers.TypeOrderConfirm})
	is(orders, "bazaar_http_requests_total", map[string]string{"route": "/v1/orders", "method": "POST", "status": "201"})
	is(orders, "bazaar_http_request_duration_seconds", map[string]string{"route": "/v1/orders", "method": "POST"})
	require.Positive(t, sum(mfs, "bazaar_http_requests_total", map[string]string{"route": "/v1/orders/:id", "method": "GET", "status": "200"}))
	// Two failed deliveries of the poison event in each group it reached;
	// every order.created was handled once more successfully.
	is(2, "bazaar_consumer_handler_errors_total", map[string]string{"group": "inventory", "event_type": "order.created"})
	is(orders+2, "bazaar_consumer_handler_duration_seconds", map[string]string{"group": "inventory", "event_type": "order.created"})
	is(0, "bazaar_consumer_lag", map[string]string{"group": "inventory", "stream": s.names.Stream("order", 0)})
	is(0, "bazaar_consumer_pending", map[string]string{"group": "inventory"})

	var published, onOrderStream float64
	require.NoError(t, s.db.GetContext(ctx, &published, `SELECT count(*) FROM event_positions`))
	require.NoError(t, s.db.GetContext(ctx, &onOrderStream, `SELECT count(*) FROM event_positions WHERE stream = $1`, s.names.Stream("order", 0)))
	is(published, "bazaar_relay_published_total", nil)
	is(published, "bazaar_relay_publish_latency_seconds", nil)
	is(onOrderStream, "bazaar_stream_length", map[string]string{"stream": s.names.Stream("order", 0)})

	is(0, "bazaar_sse_clients", nil)
	is(0, "bazaar_invoice_run_failed_accounts", nil)
	is(0, "bazaar_invoice_runs_total", map[string]string{"status": "succeeded"})
	last, _ := value(mfs, "bazaar_scheduler_last_success_timestamp_seconds", map[string]string{"schedule": "invoicing"})
	require.InDelta(t, float64(time.Now().Unix()), last, 60)

	// No id ever became a label value.
	uuidRe := regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-`)
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				require.NotRegexp(t, uuidRe, l.GetValue(), "%s{%s}", name, l.GetName())
			}
		}
	}
}

// otlpStub is an OTLP/HTTP collector that keeps the spans it is sent.
type otlpStub struct {
	mu       sync.Mutex
	spans    []*tracepb.Span
	services map[string]bool
}

func (c *otlpStub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "want protobuf at /v1/traces", http.StatusBadRequest)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = gz
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(raw, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	for _, rs := range req.GetResourceSpans() {
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				c.services[a.GetValue().GetStringValue()] = true
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			c.spans = append(c.spans, ss.GetSpans()...)
		}
	}
	c.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (c *otlpStub) all() []*tracepb.Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*tracepb.Span(nil), c.spans...)
}

// With OTEL_EXPORTER_OTLP_ENDPOINT set, one order is one trace: the API's
// request span, the relay's publications, the consumer groups' handler
// calls, the tasks they enqueued and the events those recorded, down to
// the SSE push of the confirmation, all exported over OTLP.
func TestOneOrderOneTrace(t *testing.T) {
	t.Parallel()
	collector := &otlpStub{services: map[string]bool{}}
	col := httptest.NewServer(collector)
	t.Cleanup(col.Close)
	s := startStack(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": col.URL, "OTEL_SERVICE_NAME": "bazaar-test"})
	require.NotNil(t, s.obs.TracerProvider())
	sh := s.shop()

	// A live event stream that sees the order's events.
	req, err := http.NewRequest(http.MethodGet, s.url+"/v1/events?topics=order.%23", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+sh.storefront)
	res, err := s.client.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { res.Body.Close() })
	require.Equal(t, http.StatusOK, res.StatusCode)
	confirmed := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "data: ") && strings.Contains(sc.Text(), `"order.confirmed"`) {
				confirmed <- sc.Text()
			}
		}
	}()

	orderID := s.order(sh)
	select {
	case <-confirmed:
	case <-time.After(20 * time.Second):
		t.Fatal("the stream never showed order.confirmed")
	}
	// The confirmation's own reactions (mail, segments) finish too; then
	// every span has ended.
	s.settle("the order's reactions done", func(mfs map[string]*dto.MetricFamily) bool {
		ok, _ := value(mfs, "bazaar_task_processed_total", map[string]string{"task_type": workers.TypeEmailOrderConfirmed, "outcome": "success"})
		return ok == 1
	})
	require.NoError(t, s.obs.sdk.ForceFlush(context.Background()))

	var root *tracepb.Span
	for _, sp := range collector.all() {
		if sp.GetName() == "POST /v1/orders" {
			require.Nil(t, root, "one request, one server span")
			root = sp
		}
	}
	require.NotNil(t, root, "the API's span was exported")
	require.Empty(t, root.GetParentSpanId(), "the request came without a traceparent: its span starts the trace")
	traceID := root.GetTraceId()

	inTrace := map[string]*tracepb.Span{}
	names := map[string]int{}
	for _, sp := range collector.all() {
		if bytes.Equal(sp.GetTraceId(), traceID) {
			inTrace[string(sp.GetSpanId())] = sp
			names[sp.GetName()]++
		}
	}
	for _, want := range []string{
		"POST /v1/orders",                      // API
		"publish order.created",                // relay
		"process order.created",                // consumer groups (inventory, follow-ups)
		"task " + workers.TypeInventoryReserve, // task
		"publish inventory.reserved", "process inventory.reserved",
		"task " + workers.TypePaymentCharge,
		"publish payment.succeeded", "process payment.succeeded",
		"task " + workers.TypeOrderConfirm,
		"publish order.confirmed", "process order.confirmed",
		"task " + workers.TypeEmailOrderConfirmed,
		"sse push order.created", "sse push order.confirmed", // SSE
	} {
		require.Positive(t, names[want], "no %q span in the order's trace; it has %v", want, names)
	}
	require.Equal(t, 2, names["process order.created"], "inventory and follow-ups")
	// The spans form one tree under the request's span.
	for _, sp := range inTrace {
		if sp == root {
			continue
		}
		_, ok := inTrace[string(sp.GetParentSpanId())]
		require.True(t, ok, "span %q has a parent outside the trace", sp.GetName())
	}
	require.True(t, collector.services["bazaar-test"], "OTEL_SERVICE_NAME names the service")

	// Every event of the order, recorded by the API or by a task, carries
	// the trace.
	evs, err := store.EventsBySubject(context.Background(), s.db, orderID)
	require.NoError(t, err)
	var all []store.Event
	require.NoError(t, s.db.SelectContext(context.Background(), &all, `SELECT id, type, traceparent, data FROM events`))
	for _, e := range all {
		var data struct {
			OrderID string `json:"order_id"`
		}
		if json.Unmarshal(e.Data, &data) == nil && data.OrderID == orderID {
			evs = append(evs, e)
		}
	}
	require.GreaterOrEqual(t, len(evs), 4)
	require.Equal(t, "order.created", evs[0].Type)
	for _, e := range evs {
		require.Contains(t, e.TraceParent, "-"+hex.EncodeToString(traceID)+"-", "event %s (%s)", e.ID, e.Type)
	}
	// The event the API recorded carries the request's span.
	require.Equal(t, "00-"+hex.EncodeToString(traceID)+"-"+hex.EncodeToString(root.GetSpanId())+"-01", evs[0].TraceParent)
}

func TestLoadTracingConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		env      map[string]string
		endpoint string
		wantErr  string
	}{
		{"off without an endpoint", nil, "", ""},
		{"base endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "http://collector:4318/v1/traces", ""},
		{"base endpoint with a path", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://otel.example/otlp/"}, "https://otel.example/otlp/v1/traces", ""},
		{"traces endpoint as it is", map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:4318/in",
		}, "http://traces:4318/in", ""},
		{"disabled", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}, "", ""},
		{"no exporter", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"}, "", ""},
		{"unknown exporter", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "zipkin"}, "", "OTEL_TRACES_EXPORTER"},
		{"grpc", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "", "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{"no scheme", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "", "OTEL_EXPORTER_OTLP_ENDPOINT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := loadTracingConfig(envOf(tc.env))
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.endpoint, c.Endpoint)
		})
	}
}

// Without an endpoint there is no tracer provider at all: the packages
// skip their spans.
func TestObservabilityWithoutTracing(t *testing.T) {
	t.Parallel()
	o, err := newObservability(context.Background(), envOf(nil), "work", testLog())
	require.NoError(t, err)
	require.Nil(t, o.TracerProvider())
	require.NoError(t, o.Stop(context.Background()))
}

// /readyz of a role without the API reports each of its dependencies: a
// worker is not ready while Redis or PostgreSQL does not answer.
func TestOpsHandlerReadiness(t *testing.T) {
	t.Parallel()
	db, _ := storetest.NewDB(t)
	rdb := redistest.Client(t)
	deadRedis := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = deadRedis.Close() })
	deadDB, err := sqlx.Open("postgres", "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=1")
	require.NoError(t, err)
	t.Cleanup(func() { _ = deadDB.Close() })
	o, err := newObservability(context.Background(), envOf(nil), "work", testLog())
	require.NoError(t, err)

	get := func(h http.Handler, path string) (int, map[string]any) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		out := map[string]any{}
		if strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &out))
		}
		return rec.Code, out
	}
	tests := []struct {
		name   string
		h      http.Handler
		status int
		checks map[string]any
	}{
		{
			"all up", o.OpsHandler(postgresReady(db), redisReady(rdb)), http.StatusOK,
			map[string]any{"postgres": "ok", "redis": "ok"},
		},
		{
			"redis down", o.OpsHandler(postgresReady(db), redisReady(deadRedis)), http.StatusServiceUnavailable,
			map[string]any{"postgres": "ok", "redis": "unreachable"},
		},
		{
			"postgres down", o.OpsHandler(postgresReady(deadDB), redisReady(rdb)), http.StatusServiceUnavailable,
			map[string]any{"postgres": "unreachable", "redis": "ok"},
		},
	}
	for _, tc := range tests {
		code, body := get(tc.h, "/readyz")
		require.Equal(t, tc.status, code, tc.name)
		require.Equal(t, tc.checks, body["checks"], tc.name)
		require.Equal(t, tc.status == http.StatusOK, body["ready"], tc.name)
		// Alive however the dependencies are.
		code, body = get(tc.h, "/healthz")
		require.Equal(t, http.StatusOK, code, tc.name)
		require.Equal(t, "ok", body["status"], tc.name)
	}
	// A schema one version beyond the binary (a rolling upgrade after
	// "migrate up") is ready; one behind, or dirty, is not.
	latest := migrations.Latest()
	for _, st := range []struct {
		version uint
		dirty   bool
		status  int
		check   string
	}{
		{latest + 1, false, http.StatusOK, "ok"},
		{latest - 1, false, http.StatusServiceUnavailable, "migrations pending"},
		{latest + 1, true, http.StatusServiceUnavailable, "migrations dirty"},
	} {
		_, err := db.Exec(`UPDATE schema_migrations SET version = $1, dirty = $2`, st.version, st.dirty)
		require.NoError(t, err)
		code, body := get(o.OpsHandler(postgresReady(db)), "/readyz")
		require.Equal(t, st.status, code, "version %d dirty %v", st.version, st.dirty)
		require.Equal(t, map[string]any{"postgres": st.check}, body["checks"], "version %d dirty %v", st.version, st.dirty)
	}

	rec := httptest.NewRecorder()
	o.OpsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	require.Contains(t, rec.Body.String(), "go_goroutines")
	require.Contains(t, rec.Body.String(), "process_cpu_seconds_total")
}

// Log lines logged with a context that carries a span get its trace id.
func TestLogsCarryTraceID(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(withTraceIDs(slog.NewJSONHandler(&buf, nil))).With("request_id", "req-1")
	ctx := stream.ContextWithTraceParent(context.Background(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	log.InfoContext(ctx, "with span")
	log.Info("without")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 2)
	var first, second map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &first))
	require.NoError(t, json.Unmarshal([]byte(lines[1]), &second))
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", first["trace_id"])
	require.Equal(t, "00f067aa0ba902b7", first["span_id"])
	require.Equal(t, "req-1", first["request_id"])
	require.NotContains(t, second, "trace_id")
}
