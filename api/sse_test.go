package api

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/api/web"
	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream"
	"github.com/bazaarhq/bazaar/stream/redistest"
)

// sseTableRoutes are the routes TestSSEAuthorizationTable covers with
// every credential, streams included (they need a running hub).
var sseTableRoutes = map[string]bool{
	"GET /v1/events":                       true,
	"OPTIONS /v1/events":                   true,
	"GET /v1/sellers/:id/events":           true,
	"OPTIONS /v1/sellers/:id/events":       true,
	"GET /v1/sellers/:id/unprinted-orders": true,
	"POST /v1/printers/:id/acks":           true,
	"POST /v1/admin/announcements":         true,
}

// sseBundle is an API on real HTTP with a relay and a hub: what a serve
// process runs.
type sseBundle struct {
	*testBundle
	rdb      *redis.Client
	names    stream.Names
	relay    *stream.Relay
	hub      *stream.Hub
	http     *httptest.Server
	printerA printerToken
	printerB printerToken
}

type printerToken struct {
	id     string
	secret string
}

type sseOptions struct {
	heartbeat time.Duration
	origins   []string
	http2     bool
	demo      bool // serve the demo page at /, as "bazaar dev" does
	// serverTimeouts, when set, is the server's ReadTimeout and
	// WriteTimeout, as cmd/bazaar sets them.
	serverTimeouts time.Duration
}

func sseSetup(t *testing.T, o sseOptions) *sseBundle {
	t.Helper()
	db, _ := storetest.NewDB(t)
	rdb := redistest.Client(t)
	names := stream.Names{Prefix: redistest.Prefix(t)}
	b := &sseBundle{rdb: rdb, names: names}
	var err error
	b.relay, err = stream.NewRelay(stream.RelayConfig{DB: db, Redis: rdb, Names: names, PollInterval: 20 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, b.relay.Start(context.Background()))
	t.Cleanup(func() { require.NoError(t, b.relay.Stop(context.Background())) })
	b.hub = sseHub(t, db, names)
	srv, err := New(Config{
		DB: db, AdminToken: testAdminToken, MaxBodyBytes: 64 << 10, Observer: b.relay, Hub: b.hub,
		SSE: SSEConfig{Heartbeat: o.heartbeat, CORSOrigins: o.origins, Retry: 500 * time.Millisecond},
	})
	require.NoError(t, err)
	b.testBundle = &testBundle{t: t, srv: srv, db: db, admin: testAdminToken, observed: &observer{}}
	b.front = b.key(b.admin, "/v1/storefront-keys")
	b.sellerA = b.seller("Seller A")
	b.sellerB = b.seller("Seller B")
	b.keyA = b.key(b.admin, "/v1/sellers/"+b.sellerA.String()+"/keys")
	b.keyB = b.key(b.admin, "/v1/sellers/"+b.sellerB.String()+"/keys")
	b.printerA = b.newPrinter(b.keyA, b.sellerA)
	b.printerB = b.newPrinter(b.admin, b.sellerB)
	b.testBundle.printerA, b.testBundle.printerB = b.printerA.secret, b.printerB.secret
	if o.demo {
		srv.Engine().GET("/", gin.WrapH(web.Handler()))
	}
	b.http = httptest.NewUnstartedServer(srv.Handler())
	b.http.Config.ReadTimeout = o.serverTimeouts
	b.http.Config.WriteTimeout = o.serverTimeouts
	if o.http2 {
		b.http.EnableHTTP2 = true
		b.http.StartTLS()
	} else {
		b.http.Start()
	}
	t.Cleanup(func() {
		// A test server waits for open streams; the hub's stop ends them.
		_ = b.hub.Stop(context.Background())
		b.http.Close()
	})
	return b
}

// sseHub starts a hub on its own Redis client, as each API process has.
func sseHub(t *testing.T, db *sqlx.DB, names stream.Names) *stream.Hub {
	t.Helper()
	opt, err := redis.ParseURL(redistest.URL())
	require.NoError(t, err)
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	h, err := stream.NewHub(stream.HubConfig{Redis: rdb, DB: db, Names: names, Block: 100 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, h.Start(context.Background()))
	t.Cleanup(func() { require.NoError(t, h.Stop(context.Background())) })
	return h
}

func (b *sseBundle) newPrinter(token string, seller uuid.UUID) printerToken {
	r := b.do(http.MethodPost, "/v1/sellers/"+seller.String()+"/printer-tokens", token, map[string]any{"name": "warehouse"}).status(http.StatusCreated).json()
	return printerToken{id: r["id"].(string), secret: r["key"].(string)}
}

// sseEvent is one parsed Server-Sent Event.
type sseEvent struct {
	id, event, data string
	retry           string
}

// sseConn is an open event stream read line by line on its own goroutine.
type sseConn struct {
	res     *http.Response
	events  chan sseEvent
	comment chan string
	done    chan struct{}
}

// open connects to path; headers are name, value pairs.
func (b *sseBundle) open(path, token string, headers ...string) (*sseConn, *http.Response) {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.http.URL+path, nil)
	require.NoError(b.t, err)
	req.Header.Set("Accept", "text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := b.http.Client().Do(req)
	require.NoError(b.t, err)
	if res.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		res.Body = io.NopCloser(strings.NewReader(string(body)))
		return nil, res
	}
	c := &sseConn{res: res, events: make(chan sseEvent, 1024), comment: make(chan string, 16), done: make(chan struct{})}
	go c.read()
	b.t.Cleanup(c.close)
	return c, res
}

// mustStream opens a stream that must answer 200.
func (b *sseBundle) mustStream(path, token string, headers ...string) *sseConn {
	b.t.Helper()
	conn, res := b.open(path, token, headers...) //nolint:bodyclose // sseConn.close closes it
	require.NotNil(b.t, conn, "status %d", res.StatusCode)
	return conn
}

func (c *sseConn) read() {
	defer close(c.done)
	sc := bufio.NewScanner(c.res.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.event != "" || ev.data != "" || ev.id != "" {
				c.events <- ev
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, ":"):
			select {
			case c.comment <- line:
			default:
			}
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "id":
				ev.id = value
			case "event":
				ev.event = value
			case "data":
				if ev.data != "" {
					ev.data += "\n"
				}
				ev.data += value
			case "retry":
				ev.retry = value
			}
		}
	}
}

func (c *sseConn) close() {
	c.res.Body.Close()
	<-c.done
}

// next returns the next event that is not of a skipped type.
func (c *sseConn) next(t *testing.T, skip ...string) sseEvent {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev := <-c.events:
			if slicesContains(skip, ev.event) {
				continue
			}
			return ev
		case <-c.done:
			select {
			case ev := <-c.events:
				return ev
			default:
			}
			t.Fatal("stream ended")
		case <-deadline:
			t.Fatal("no event within 10s")
		}
	}
}

func slicesContains(list []string, v string) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}

type sseCaller struct {
	name  string
	token func(b *sseBundle) string
}

func sseCallers() []sseCaller {
	return []sseCaller{
		{"none", func(*sseBundle) string { return "" }},
		{"wrong", func(*sseBundle) string { return "bzr_pr_not-a-key" }},
		{"admin", func(b *sseBundle) string { return b.admin }},
		{"storefront", func(b *sseBundle) string { return b.front }},
		{"seller A", func(b *sseBundle) string { return b.keyA }},
		{"printer A", func(b *sseBundle) string { return b.printerA.secret }},
		{"seller B", func(b *sseBundle) string { return b.keyB }},
		{"printer B", func(b *sseBundle) string { return b.printerB.secret }},
	}
}

// TestSSEAuthorizationTable sends every route of this file with every kind
// of credential. Refused writes change nothing.
func TestSSEAuthorizationTable(t *testing.T) {
	t.Parallel()
	b := sseSetup(t, sseOptions{})
	a, bb := b.sellerA.String(), b.sellerB.String()
	product := b.product(b.keyA, nil)
	productB := b.product(b.keyB, nil)
	// want is the status per caller, in sseCallers order.
	tests := []struct {
		method, route string
		path          func() string
		body          func() any
		stream        bool
		want          [8]int
	}{
		{
			"GET", "/v1/events", func() string { return "/v1/events" }, nil, true,
			[8]int{200, 401, 200, 200, 200, 200, 200, 200},
		},
		{
			"GET", "/v1/events", func() string { return "/v1/events?topics=system.maintenance,system.%23" }, nil, true,
			[8]int{200, 401, 200, 200, 200, 200, 200, 200},
		},
		{
			"GET", "/v1/events", func() string { return "/v1/events?topics=order.%23" }, nil, true,
			[8]int{401, 401, 200, 200, 403, 403, 403, 403},
		},
		{
			"GET", "/v1/events", func() string { return "/v1/events?topics=%23" }, nil, true,
			[8]int{401, 401, 200, 200, 403, 403, 403, 403},
		},
		{
			"GET", "/v1/sellers/:id/events", func() string { return "/v1/sellers/" + a + "/events?topics=order.created" }, nil, true,
			[8]int{401, 401, 200, 403, 200, 200, 404, 404},
		},
		{
			"GET", "/v1/sellers/:id/events", func() string { return "/v1/sellers/" + bb + "/events" }, nil, true,
			[8]int{401, 401, 200, 403, 404, 404, 200, 200},
		},
		{
			"OPTIONS", "/v1/events", func() string { return "/v1/events" }, nil, false,
			[8]int{204, 204, 204, 204, 204, 204, 204, 204},
		},
		{
			"OPTIONS", "/v1/sellers/:id/events", func() string { return "/v1/sellers/" + a + "/events" }, nil, false,
			[8]int{204, 204, 204, 204, 204, 204, 204, 204},
		},
		{
			"GET", "/v1/sellers/:id/unprinted-orders", func() string { return "/v1/sellers/" + a + "/unprinted-orders" }, nil, false,
			[8]int{401, 401, 200, 403, 200, 200, 404, 404},
		},
		{
			"POST", "/v1/printers/:id/acks", func() string { return "/v1/printers/" + b.printerA.id + "/acks" },
			func() any { return map[string]any{"order_id": b.order(product, b.user(), store.OrderPending)} }, false,
			[8]int{401, 401, 403, 403, 403, 201, 403, 404},
		},
		{
			"POST", "/v1/printers/:id/acks", func() string { return "/v1/printers/" + b.printerA.id + "/acks" },
			func() any { return map[string]any{"order_id": b.order(productB, b.user(), store.OrderPending)} }, false,
			[8]int{401, 401, 403, 403, 403, 404, 403, 404},
		},
		{
			"POST", "/v1/admin/announcements", func() string { return "/v1/admin/announcements" },
			func() any { return map[string]any{"message": "Maintenance at 02:00"} }, false,
			[8]int{401, 401, 201, 403, 403, 403, 403, 403},
		},
	}
	covered := map[string]bool{}
	for _, tt := range tests {
		covered[tt.method+" "+tt.route] = true
		for i, c := range sseCallers() {
			cell := tt.method + " " + tt.path() + " as " + c.name
			if tt.stream {
				conn, res := b.open(tt.path(), c.token(b))
				defer res.Body.Close()
				require.Equal(t, tt.want[i], res.StatusCode, cell)
				if conn != nil {
					require.Equal(t, "ready", conn.next(t).event, cell)
					conn.close()
				} else {
					require.Equal(t, "application/problem+json", res.Header.Get("Content-Type"), cell)
				}
				continue
			}
			var body any
			if tt.body != nil {
				body = tt.body()
			}
			before, acks := b.counts(), b.acks()
			res := b.do(tt.method, tt.path(), c.token(b), body)
			require.Equal(t, tt.want[i], res.code, "%s: %s", cell, res.body)
			if res.code >= 400 {
				require.Equal(t, before, b.counts(), "%s changed something", cell)
				require.Equal(t, acks, b.acks(), "%s changed something", cell)
			}
		}
	}
	for route := range sseTableRoutes {
		require.True(t, covered[route], "%s has no row in this table", route)
	}
}

func (b *sseBundle) acks() int {
	var n int
	require.NoError(b.t, b.db.Get(&n, `SELECT count(*) FROM printer_acks`))
	return n
}

// TestSSEProtocol checks the stream over HTTP/1.1 and HTTP/2: headers,
// the ready message, events with id/event/data, heartbeats, and an exact
// resume by Last-Event-ID or ?last_event_id=.
func TestSSEProtocol(t *testing.T) {
	t.Parallel()
	for _, h2 := range []bool{false, true} {
		name := "HTTP/1.1"
		if h2 {
			name = "HTTP/2"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := sseSetup(t, sseOptions{heartbeat: 100 * time.Millisecond, http2: h2})
			product := b.product(b.keyA, nil)
			path := "/v1/events?topics=order.created"
			conn, res := b.open(path, b.front)
			defer res.Body.Close()
			require.NotNil(t, conn, "status %d", res.StatusCode)
			if h2 {
				require.Equal(t, 2, res.ProtoMajor)
			} else {
				require.Equal(t, 1, res.ProtoMajor)
			}
			require.Equal(t, "text/event-stream", res.Header.Get("Content-Type"))
			require.Equal(t, "no-cache", res.Header.Get("Cache-Control"))
			require.Equal(t, "no", res.Header.Get("X-Accel-Buffering"))
			require.Empty(t, res.Header.Get("Content-Encoding"))
			ready := conn.next(t)
			require.Equal(t, "ready", ready.event)
			require.Equal(t, "500", ready.retry)
			require.NotEmpty(t, ready.id)

			order := b.order(product, b.user(), store.OrderPending)
			ev := conn.next(t)
			require.Equal(t, "order.created", ev.event)
			require.NotContains(t, ev.id, "\n")
			var env stream.Envelope
			require.NoError(t, json.Unmarshal([]byte(ev.data), &env))
			require.Equal(t, "order.created", env.Type)
			require.Equal(t, order.String(), env.Subject)
			require.Equal(t, b.sellerA.String(), env.Seller)
			require.Equal(t, "1.0", env.SpecVersion)
			select {
			case c := <-conn.comment:
				require.Equal(t, ": heartbeat", c)
			case <-time.After(5 * time.Second):
				t.Fatal("no heartbeat")
			}
			conn.close()

			// Orders placed while disconnected arrive on resume, exactly.
			var missed []string
			for range 3 {
				missed = append(missed, b.order(product, b.user(), store.OrderPending).String())
			}
			for _, how := range []string{"header", "query"} {
				var again *sseConn
				if how == "header" {
					again, res = b.open(path, b.front, "Last-Event-ID", ev.id)
				} else {
					again, res = b.open(path+"&last_event_id="+ev.id, b.front)
				}
				defer res.Body.Close()
				require.NotNil(t, again, "%s: status %d", how, res.StatusCode)
				var got []string
				for range missed {
					e := again.next(t, "ready")
					require.NoError(t, json.Unmarshal([]byte(e.data), &env))
					got = append(got, env.Subject)
				}
				require.Equal(t, missed, got, how)
				again.close()
			}
		})
	}
}

func TestSSERejectsBadInput(t *testing.T) {
	t.Parallel()
	b := sseSetup(t, sseOptions{})
	tests := []struct {
		name, path string
		headers    []string
		status     int
		slug       string
	}{
		{"malformed Last-Event-ID", "/v1/events", []string{"Last-Event-ID", "not-a-cursor"}, 400, "invalid-parameter"},
		{"malformed last_event_id", "/v1/events?last_event_id=AAAA", nil, 400, "invalid-parameter"},
		{"bad topic", "/v1/events?topics=order.*x", nil, 400, "invalid-parameter"},
		{"no topics", "/v1/events?topics=,", nil, 200, ""},
		{"seller id not a uuid", "/v1/sellers/nope/events", nil, 400, "invalid-parameter"},
		{"unknown seller", "/v1/sellers/" + uuid.NewString() + "/events", nil, 404, "not-found"},
	}
	for _, tt := range tests {
		conn, res := b.open(tt.path, b.admin, tt.headers...)
		defer res.Body.Close()
		if tt.status == http.StatusOK {
			require.NotNil(t, conn, tt.name)
			conn.close()
			continue
		}
		require.Nil(t, conn, tt.name)
		require.Equal(t, tt.status, res.StatusCode, tt.name)
		var p Problem
		require.NoError(t, json.NewDecoder(res.Body).Decode(&p), tt.name)
		require.Equal(t, ProblemBase+tt.slug, p.Type, tt.name)
	}
}

func TestSSECORS(t *testing.T) {
	t.Parallel()
	b := sseSetup(t, sseOptions{origins: []string{"https://shop.example.com"}})
	conn, res := b.open("/v1/events", "", "Origin", "https://shop.example.com")
	defer res.Body.Close()
	require.NotNil(t, conn)
	require.Equal(t, "https://shop.example.com", res.Header.Get("Access-Control-Allow-Origin"))
	conn.close()
	conn, res2 := b.open("/v1/events", "", "Origin", "https://evil.example.com")
	defer res2.Body.Close()
	require.NotNil(t, conn)
	require.Empty(t, res2.Header.Get("Access-Control-Allow-Origin"))
	conn.close()

	r := b.serve(http.MethodOptions, "/v1/events", "", nil, "Origin", "https://shop.example.com", "Access-Control-Request-Headers", "last-event-id")
	require.Equal(t, http.StatusNoContent, r.code)
	require.Equal(t, "https://shop.example.com", r.header.Get("Access-Control-Allow-Origin"))
	require.Contains(t, r.header.Get("Access-Control-Allow-Headers"), "Last-Event-ID")
}

// TestAnnouncements: connected frontends get an announcement live; one
// connecting later gets the current one at once, until it expires.
func TestAnnouncements(t *testing.T) {
	t.Parallel()
	b := sseSetup(t, sseOptions{})
	early := b.mustStream("/v1/events", "")
	require.Equal(t, "ready", early.next(t).event)

	res := b.do(http.MethodPost, "/v1/admin/announcements", b.admin, map[string]any{"message": "Down for maintenance at 02:00", "level": "warning"}).status(http.StatusCreated).json()
	live := early.next(t)
	require.Equal(t, "system.maintenance", live.event)
	var env stream.Envelope
	require.NoError(t, json.Unmarshal([]byte(live.data), &env))
	require.Equal(t, res["id"], env.ID)
	require.JSONEq(t, `"Down for maintenance at 02:00"`, string(mustJSON(t, mustMap(t, env.Data)["message"])))

	late := b.mustStream("/v1/events?topics=system.maintenance", "")
	require.Equal(t, "ready", late.next(t).event)
	cur := late.next(t)
	require.Equal(t, "system.maintenance", cur.event)
	require.Equal(t, live.data, cur.data)

	// Resuming does not repeat it: the cursor is past it.
	resumed := b.mustStream("/v1/events", "", "Last-Event-ID", live.id)
	require.Equal(t, "ready", resumed.next(t).event)
	select {
	case ev := <-resumed.events:
		t.Fatalf("unexpected %s on resume", ev.event)
	case <-time.After(300 * time.Millisecond):
	}

	// An expired announcement is not current.
	b.do(http.MethodPost, "/v1/admin/announcements", b.admin, map[string]any{"message": "short", "expires_at": time.Now().Add(700 * time.Millisecond)}).status(http.StatusCreated)
	require.Equal(t, "system.maintenance", early.next(t).event)
	time.Sleep(time.Second)
	after := b.mustStream("/v1/events", "")
	require.Equal(t, "ready", after.next(t).event)
	select {
	case ev := <-after.events:
		t.Fatalf("unexpected %s after expiry", ev.event)
	case <-time.After(300 * time.Millisecond):
	}

	for name, body := range map[string]any{
		"no message":    map[string]any{"level": "info"},
		"blank message": map[string]any{"message": "  "},
		"bad level":     map[string]any{"message": "x", "level": "loud"},
		"past expiry":   map[string]any{"message": "x", "expires_at": time.Now().Add(-time.Minute)},
		"far expiry":    map[string]any{"message": "x", "expires_at": time.Now().Add(40 * 24 * time.Hour)},
		"unknown field": map[string]any{"message": "x", "colour": "red"},
	} {
		before := b.counts()
		r := b.do(http.MethodPost, "/v1/admin/announcements", b.admin, body)
		require.GreaterOrEqual(t, r.code, 400, name)
		require.Less(t, r.code, 500, name)
		require.Equal(t, before, b.counts(), name)
	}
}

func mustMap(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(raw, &m))
	return m
}

func TestPrinterAcksAndUnprintedOrders(t *testing.T) {
	t.Parallel()
	b := sseSetup(t, sseOptions{})
	product := b.product(b.keyA, nil)
	var orders []string
	for range 3 {
		orders = append(orders, b.order(product, b.user(), store.OrderPending).String())
	}
	b.order(b.product(b.keyB, nil), b.user(), store.OrderPending)
	unprinted := func() []string {
		var out []string
		for _, it := range b.do(http.MethodGet, "/v1/sellers/"+b.sellerA.String()+"/unprinted-orders?limit=2", b.printerA.secret, nil).status(http.StatusOK).json()["items"].([]any) {
			out = append(out, it.(map[string]any)["id"].(string))
		}
		return out
	}
	require.Equal(t, orders[:2], unprinted(), "oldest first, paged")

	ack := b.do(http.MethodPost, "/v1/printers/"+b.printerA.id+"/acks", b.printerA.secret, map[string]any{"order_id": orders[0]}).status(http.StatusCreated).json()
	require.Equal(t, orders[0], ack["order_id"])
	require.Equal(t, b.printerA.id, ack["printer_id"])
	again := b.do(http.MethodPost, "/v1/printers/"+b.printerA.id+"/acks", b.printerA.secret, map[string]any{"order_id": orders[0]}).status(http.StatusOK).json()
	require.Equal(t, ack["acked_at"], again["acked_at"])
	require.Equal(t, orders[1:], unprinted())

	b.do(http.MethodPost, "/v1/printers/"+b.printerA.id+"/acks", b.printerA.secret, map[string]any{"order_id": uuid.NewString()}).problem(http.StatusNotFound, "not-found")
	b.do(http.MethodPost, "/v1/printers/"+b.printerA.id+"/acks", b.printerA.secret, map[string]any{"order_id": "x"}).problem(http.StatusUnprocessableEntity, "validation")
	b.do(http.MethodPost, "/v1/printers/not-an-id/acks", b.printerA.secret, map[string]any{"order_id": orders[1]}).problem(http.StatusBadRequest, "invalid-parameter")
	require.Equal(t, orders[1:], unprinted())
}

// A live event stream outlives the server's read and write timeouts
// (BAZAAR_HTTP_READ_TIMEOUT, BAZAAR_HTTP_WRITE_TIMEOUT): it sets its own
// write deadline per write, and net/http lifts the read deadline once the
// request has been read.
func TestSSEOutlivesServerTimeouts(t *testing.T) {
	t.Parallel()
	for _, h2 := range []bool{false, true} {
		t.Run(map[bool]string{false: "HTTP/1.1", true: "HTTP/2"}[h2], func(t *testing.T) {
			t.Parallel()
			const timeouts = 200 * time.Millisecond
			b := sseSetup(t, sseOptions{heartbeat: 50 * time.Millisecond, http2: h2, serverTimeouts: timeouts})
			product := b.product(b.keyA, nil)
			conn := b.mustStream("/v1/events?topics=order.created", b.front)
			require.Equal(t, "ready", conn.next(t).event)
			// Heartbeats for five times the timeouts.
			for start := time.Now(); time.Since(start) < 5*timeouts; {
				select {
				case <-conn.comment:
				case <-conn.done:
					t.Fatal("the stream ended at the server's timeouts")
				case <-time.After(5 * time.Second):
					t.Fatal("no heartbeat")
				}
			}
			order := b.order(product, b.user(), store.OrderPending)
			ev := conn.next(t)
			require.Equal(t, "order.created", ev.event)
			require.Contains(t, ev.data, order.String())
		})
	}
}
