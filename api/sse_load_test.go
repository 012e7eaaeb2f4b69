package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream"
	"github.com/bazaarhq/bazaar/stream/redistest"
)

// The SSE load benchmark runs the API (hub included) in a process of its
// own, so its memory per connection is measured alone, and plays the
// rest of the system in the benchmark process: thousands of SSE clients on
// loopback, the writes that commit orders, and the relay they wake, as an
// API process that took the order would. Latency is from the commit
// returning to the client reading the event, on one clock.
//
//	go test -run '^$' -bench SSELoad -benchtime 1x ./api/
//
// BAZAAR_SSE_CLIENTS (default 5000), BAZAAR_SSE_ORDERS (events, default
// 300), BAZAAR_SSE_RATE (events per second, default 100) and
// BAZAAR_SSE_MIX (marketplace or firehose) change the load.

const loadServerEnv = "BAZAAR_SSE_LOAD_SERVER"

// TestSSELoadServer is the server half of BenchmarkSSELoad; it runs only
// in the process the benchmark starts.
func TestSSELoadServer(t *testing.T) {
	if os.Getenv(loadServerEnv) == "" {
		t.Skip("the server process of BenchmarkSSELoad")
	}
	raiseFileLimit()
	ctx := context.Background()
	db, err := sqlx.Open("postgres", os.Getenv("BAZAAR_SSE_LOAD_DB"))
	require.NoError(t, err)
	defer db.Close()
	// The benchmark's Redis, where the relay publishes: redistest.URL here
	// would start this process a server of its own, which nothing writes to.
	opt, err := redis.ParseURL(os.Getenv("BAZAAR_SSE_LOAD_REDIS"))
	require.NoError(t, err)
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	hub, err := stream.NewHub(stream.HubConfig{Redis: rdb, DB: db, Names: stream.Names{Prefix: os.Getenv("BAZAAR_SSE_LOAD_PREFIX")}})
	require.NoError(t, err)
	require.NoError(t, hub.Start(ctx))
	srv, err := New(Config{DB: db, AdminToken: testAdminToken, Hub: hub})
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/", srv.Handler())
	mux.HandleFunc("/loadtest/mem", func(w http.ResponseWriter, _ *http.Request) {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		_ = json.NewEncoder(w).Encode(loadMem{
			RSS: rss(), HeapInuse: ms.HeapInuse, StackInuse: ms.StackInuse,
			Goroutines: runtime.NumGoroutine(), Subscribers: hub.Stats().Subscribers, Dropped: hub.Stats().Dropped,
		})
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	fmt.Printf("ADDR %s\n", ln.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin) // runs until the benchmark closes stdin
	require.NoError(t, hub.Stop(ctx))
	require.NoError(t, hs.Close())
}

type loadMem struct {
	RSS         uint64 `json:"rss"`
	HeapInuse   uint64 `json:"heap_inuse"`
	StackInuse  uint64 `json:"stack_inuse"`
	Goroutines  int    `json:"goroutines"`
	Subscribers int    `json:"subscribers"`
	Dropped     uint64 `json:"dropped"`
}

func rss() uint64 {
	b, _ := os.ReadFile("/proc/self/status")
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// raiseFileLimit lifts the soft open-file limit to the hard one: each
// connection is a descriptor on both ends.
func raiseFileLimit() uint64 {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l)
	return l.Cur
}

func envInt(key string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(key)); err == nil && n > 0 {
		return n
	}
	return def
}

// loadClient is one SSE connection of the benchmark.
type loadClient struct {
	seller        string // "" for the storefront feed
	orders        bool   // entitled to order events
	announcements bool   // entitled to system.maintenance
	got           []loadDelivery
	bad           string // first thing it received that it was not entitled to
	n             atomic.Int64
}

type loadDelivery struct {
	event int32
	at    int64 // unix nanoseconds
}

type loadEvents struct {
	mu       sync.RWMutex
	index    map[string]int32
	sellers  []string
	commitAt []int64
}

func (e *loadEvents) lookup(id string) (int32, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	i, ok := e.index[id]
	return i, ok
}

func BenchmarkSSELoad(b *testing.B) {
	clients := envInt("BAZAAR_SSE_CLIENTS", 5000)
	orders := envInt("BAZAAR_SSE_ORDERS", 300)
	rate := envInt("BAZAAR_SSE_RATE", 100)
	// The marketplace mix: 2% storefront/admin dashboards on every order
	// and announcement, 18% printers and seller dashboards on their
	// seller's orders (100 sellers), 80% anonymous frontends on the public
	// announcements; one announcement per 50 orders. The firehose mix puts
	// 80% on every order and 20% on their seller's (10 sellers).
	firehose := os.Getenv("BAZAAR_SSE_MIX") == "firehose"
	sellerCount := 100
	if firehose {
		sellerCount = 10
	}
	if limit := raiseFileLimit(); limit < uint64(clients)+200 {
		b.Skipf("open-file limit %d is below %d clients (ulimit -n)", limit, clients)
	}
	ctx := context.Background()
	db, dbURL := storetest.NewDB(b)
	db.SetMaxOpenConns(8)
	rdb := redistest.Client(b)
	prefix := redistest.Prefix(b)
	names := stream.Names{Prefix: prefix}

	addr, mem := startLoadServer(b, dbURL, prefix)
	base := "http://" + addr

	post := func(path, token string, body any) map[string]any {
		raw, _ := json.Marshal(body)
		req, _ := http.NewRequest(http.MethodPost, base+path, bytes.NewReader(raw))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		require.NoError(b, err)
		defer res.Body.Close()
		var out map[string]any
		require.NoError(b, json.NewDecoder(res.Body).Decode(&out))
		require.Equal(b, http.StatusCreated, res.StatusCode, "%s: %v", path, out)
		return out
	}
	front := post("/v1/storefront-keys", testAdminToken, map[string]any{})["key"].(string)
	sellers := make([]string, sellerCount)
	printers := make([]string, sellerCount)
	for i := range sellers {
		sellers[i] = post("/v1/sellers", testAdminToken, map[string]any{"name": "S", "email": "s@example.com"})["id"].(string)
		printers[i] = post("/v1/sellers/"+sellers[i]+"/printer-tokens", testAdminToken, map[string]any{})["key"].(string)
	}

	before := mem()

	events := &loadEvents{index: map[string]int32{}}
	all := make([]*loadClient, clients)
	var wg sync.WaitGroup
	conns := make(chan net.Conn, clients)
	sem := make(chan struct{}, 64)
	var connectErr atomic.Value
	for i := range all {
		c := &loadClient{orders: true, announcements: true}
		path := "/v1/events?topics=order.created,system.%23"
		token := front
		seller := -1
		switch {
		case firehose && i%5 == 4:
			seller = (i / 5) % sellerCount
		case firehose:
		case i%50 == 0:
		case i%50 < 10:
			seller = (i/50*9 + i%50) % sellerCount
		default:
			c.orders = false
			path, token = "/v1/events?topics=system.%23", "" //nolint:gosec // anonymous: no key at all
		}
		if seller >= 0 {
			c.seller = sellers[seller]
			c.announcements = false
			path = "/v1/sellers/" + sellers[seller] + "/events?topics=order.created"
			token = printers[seller]
		}
		all[i] = c
		wg.Add(1)
		sem <- struct{}{}
		ready := make(chan struct{})
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				connectErr.Store(err)
				<-sem
				close(ready)
				return
			}
			conns <- conn
			auth := ""
			if token != "" {
				auth = "Authorization: Bearer " + token + "\r\n"
			}
			fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\n%sAccept: text/event-stream\r\n\r\n", path, addr, auth)
			c.read(bufio.NewReaderSize(conn, 4096), events, ready, sem)
		}()
		<-ready
		if (i+1)%1000 == 0 {
			fmt.Fprintf(os.Stderr, "sse load: %d clients connected\n", i+1)
		}
	}
	if err, _ := connectErr.Load().(error); err != nil {
		b.Fatalf("connect: %v", err)
	}
	after := mem()
	require.Equal(b, clients, after.Subscribers, "every client subscribed")

	relay, err := stream.NewRelay(stream.RelayConfig{DB: db, Redis: rdb, Names: names})
	require.NoError(b, err)
	require.NoError(b, relay.Start(ctx))
	defer relay.Stop(ctx) //nolint:errcheck

	b.ResetTimer()
	for range b.N {

		tick := time.NewTicker(time.Second / time.Duration(rate))
		for i := range orders {
			<-tick.C
			seller := sellers[i%sellerCount]
			sid := uuid.MustParse(seller)
			ev, err := store.NewEvent("order.created", uuid.NewString(), &sid, 1, map[string]any{"seller_id": seller, "total_minor": 1250, "currency": "EUR"})
			if i%50 == 49 {
				seller = ""
				ev, err = store.NewEvent("system.maintenance", "announcements", nil, 1, map[string]any{"message": "maintenance", "level": "info"})
			}
			require.NoError(b, err)
			events.mu.Lock()
			n := int32(len(events.commitAt))
			events.index[ev.ID.String()] = n
			events.sellers = append(events.sellers, seller)
			events.commitAt = append(events.commitAt, 0)
			events.mu.Unlock()
			require.NoError(b, store.WithTx(ctx, db, func(tx *sqlx.Tx) error { return store.InsertEvents(ctx, tx, ev) }))
			events.mu.Lock()
			events.commitAt[n] = time.Now().UnixNano()
			events.mu.Unlock()
			relay.EventsCommitted()
		}
		tick.Stop()
		want := func(c *loadClient) int64 {
			n := int64(0)
			for _, s := range events.sellers {
				if (s == "" && c.announcements) || (s != "" && c.orders && (c.seller == "" || s == c.seller)) {
					n++
				}
			}
			return n
		}
		deadline := time.Now().Add(2 * time.Minute)
		for _, c := range all {
			w := want(c)
			for c.n.Load() < w && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if got := c.n.Load(); got != w {
				b.Fatalf("a client got %d of %d events (the hub dropped %d slow clients)", got, w, mem().Dropped)
			}
		}
	}
	b.StopTimer()

	for len(conns) > 0 {
		_ = (<-conns).Close()
	}
	wg.Wait()

	var lat []time.Duration
	for _, c := range all {
		require.Empty(b, c.bad)
		seen := map[int32]bool{}
		for _, d := range c.got {
			require.False(b, seen[d.event], "an event arrived twice")
			seen[d.event] = true
			lat = append(lat, time.Duration(d.at-events.commitAt[d.event]))
		}
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	perConn := float64(after.RSS-before.RSS) / float64(clients)
	heapPerConn := float64(after.HeapInuse+after.StackInuse-before.HeapInuse-before.StackInuse) / float64(clients)
	b.ReportMetric(float64(pct(0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(pct(0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(perConn, "rss-B/conn")
	b.ReportMetric(heapPerConn, "heap+stack-B/conn")
	b.Logf("%s mix: %d clients, %d events at %d/s: %d deliveries; commit to client p50 %s, p99 %s, max %s; server RSS %d MiB -> %d MiB (%.1f KiB/conn), heap+stacks %.1f KiB/conn, %d goroutines, %d dropped",
		map[bool]string{true: "firehose", false: "marketplace"}[firehose], clients, len(events.commitAt), rate, len(lat), pct(0.5), pct(0.99), lat[len(lat)-1],
		before.RSS>>20, after.RSS>>20, perConn/1024, heapPerConn/1024, after.Goroutines, after.Dropped)
}

// startLoadServer starts TestSSELoadServer in a process of its own on the
// benchmark's database and Redis prefix; it returns the server's address
// and a reading of its memory. The process ends with the benchmark.
func startLoadServer(b *testing.B, dbURL, prefix string) (string, func() loadMem) {
	b.Helper()
	server := exec.Command(os.Args[0], "-test.run=^TestSSELoadServer$", "-test.count=1")
	server.Env = append(os.Environ(), loadServerEnv+"=1", "BAZAAR_SSE_LOAD_DB="+dbURL, "BAZAAR_SSE_LOAD_PREFIX="+prefix, "BAZAAR_SSE_LOAD_REDIS="+redistest.URL())
	server.Stderr = os.Stderr
	stdin, err := server.StdinPipe()
	require.NoError(b, err)
	stdout, err := server.StdoutPipe()
	require.NoError(b, err)
	require.NoError(b, server.Start())
	b.Cleanup(func() {
		_ = stdin.Close()
		_ = server.Wait()
	})
	lines := bufio.NewScanner(stdout)
	var addr string
	for lines.Scan() {
		if a, ok := strings.CutPrefix(lines.Text(), "ADDR "); ok {
			addr = a
			break
		}
	}
	require.NotEmpty(b, addr, "server address")
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	mem := func() loadMem {
		res, err := http.Get("http://" + addr + "/loadtest/mem")
		require.NoError(b, err)
		defer res.Body.Close()
		var m loadMem
		require.NoError(b, json.NewDecoder(res.Body).Decode(&m))
		return m
	}
	return addr, mem
}

// read parses the stream: it signals ready after the response head and the
// ready event, then records every order event it receives.
func (c *loadClient) read(r *bufio.Reader, events *loadEvents, ready chan struct{}, sem chan struct{}) {
	signalled := false
	signal := func() {
		if !signalled {
			signalled = true
			<-sem
			close(ready)
		}
	}
	defer signal()
	status, err := r.ReadString('\n')
	if err != nil || !strings.Contains(status, " 200 ") {
		c.bad = "status " + status
		return
	}
	var event string
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case bytes.HasPrefix(line, []byte("event: ")):
			event = string(line[7:])
			if event == "ready" {
				signal()
			}
		case bytes.HasPrefix(line, []byte("data: {\"id\":\"")) && (event == "order.created" || event == "system.maintenance"):
			now := time.Now().UnixNano()
			id := string(line[13 : 13+36])
			i, ok := events.lookup(id)
			if !ok {
				c.bad = "unknown event " + id
				continue
			}
			if (event == "order.created" && !c.orders) || (event == "system.maintenance" && !c.announcements) ||
				(c.seller != "" && !bytes.Contains(line, []byte(`"seller":"`+c.seller+`"`))) {
				c.bad = "another seller's event " + id
			}
			c.got = append(c.got, loadDelivery{event: i, at: now})
			c.n.Add(1)
		}
	}
}
