package workers

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream"
	"github.com/bazaarhq/bazaar/stream/redistest"
)

// testBundle is one test's running workers with their own database, Redis
// database, mail sink and payment sandbox.
type testBundle struct {
	opts    setupOpts
	dbURL   string
	db      *sqlx.DB
	rdb     redis.UniversalClient
	w       *Workers
	sink    *MailSink
	gateway *SandboxGateway
	insp    *asynq.Inspector
	relay   *stream.Relay
	waker   *relayWaker
	// streams and prefix are the client and key prefix of the streams.
	streams redis.UniversalClient
	prefix  string
}

// relayWaker passes the workers' commits on to the relay, which is built
// after the workers (it needs their subscriptions first).
type relayWaker struct{ relay atomic.Pointer[stream.Relay] }

func (r *relayWaker) EventsCommitted() {
	if rl := r.relay.Load(); rl != nil {
		rl.EventsCommitted()
	}
}

type setupOpts struct {
	mutate  func(*Config)
	noStart bool
	// smtpAddr, when set, is where the mailer sends instead of the sink.
	smtpAddr string
	// cluster, when set, runs the tasks, relay and groups on this Redis
	// Cluster (the test's own: asynq takes no key prefix).
	cluster *redistest.Cluster
	// sentinel, when set, runs them on the primary these sentinels name,
	// with the relay waiting for one replica.
	sentinel *redistest.Sentinel
	// extra subscriptions join the workers' consumer groups.
	extra []stream.Subscription
	// pool is how the workers reach PostgreSQL (default directly).
	pool storetest.Pool
	// unfair turns fairness off in the workers and the consumer groups.
	unfair bool
	// pauseSync is how often the groups apply seller pauses.
	pauseSync time.Duration
	// quiet keeps only warnings and errors (benchmarks).
	quiet bool
	// ownPool gives the relay and the consumer groups a PostgreSQL pool of
	// their own (of storetest.MaxConns too), as their processes have in a
	// deployment, so the workers' tasks do not starve them of connections.
	ownPool bool
}

// eachPool runs test once per way of reaching PostgreSQL: directly and
// through PgBouncer in transaction pooling mode.
func eachPool(t *testing.T, test func(t *testing.T, b *testBundle)) {
	t.Helper()
	for _, p := range storetest.Pools {
		t.Run(p.String(), func(t *testing.T) {
			t.Parallel()
			test(t, setup(t, setupOpts{pool: p}))
		})
	}
}

func (o setupOpts) logger(t testing.TB) *slog.Logger {
	if o.quiet {
		return slog.New(slog.NewJSONHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return testLogger(t)
}

func setup(t testing.TB, opts ...setupOpts) *testBundle {
	t.Helper()
	var o setupOpts
	if len(opts) > 0 {
		o = opts[0]
	}
	ctx := context.Background()
	db, dbURL, _ := storetest.NewDBVia(t, o.pool)
	var rdb redis.UniversalClient
	switch {
	case o.cluster != nil:
		rdb = o.cluster.Client(t)
	case o.sentinel != nil:
		rdb = o.sentinel.Client(t)
	default:
		c := redis.NewClient(redistest.DB(t))
		t.Cleanup(func() { _ = c.Close() })
		rdb = c
	}

	sink := NewMailSink(MailSinkConfig{})
	require.NoError(t, sink.Start(ctx))
	t.Cleanup(func() { _ = sink.Stop(context.Background()) })
	addr := sink.Addr()
	if o.smtpAddr != "" {
		addr = o.smtpAddr
	}
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	mailer, err := NewSMTPMailer(SMTPConfig{Host: host, Port: p, TLS: TLSNone, From: "shop@bazaar.test", Timeout: 2 * time.Second})
	require.NoError(t, err)

	gw := NewSandboxGatewayDB(db)
	waker := &relayWaker{}
	cfg := Config{
		DB: db, Redis: rdb, Logger: o.logger(t), Mailer: mailer, Gateway: gw, Observer: waker,
		Concurrency:     8,
		ShutdownTimeout: 2 * time.Second,
		Retry:           RetryPolicy{Base: 50 * time.Millisecond, Max: 400 * time.Millisecond},
	}
	cfg.Fairness.Off = o.unfair
	if o.mutate != nil {
		o.mutate(&cfg)
	}
	w, err := New(cfg)
	require.NoError(t, err)
	b := &testBundle{opts: o, dbURL: dbURL, waker: waker, db: db, rdb: rdb, w: w, sink: sink, gateway: gw, insp: asynq.NewInspectorFromRedisClient(rdb)}
	t.Cleanup(func() { _ = b.insp.Close() })
	// Cleanups run last-in first-out: the groups stop before the workers.
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, w.Stop(sctx))
	})
	if !o.noStart {
		require.NoError(t, w.Start(ctx))
		b.startStreams(t)
	}
	return b
}

// startStreams runs the outbox relay and the workers' consumer groups on
// a key prefix of this test's own, as "bazaar work" and "bazaar relay" do.
func (b *testBundle) startStreams(t testing.TB) {
	ctx := context.Background()
	var rdb0 redis.UniversalClient
	names := stream.Names{Prefix: "bazaar:"}
	minReplicas := 0
	switch {
	case b.opts.cluster != nil:
		rdb0, names.Partitions = b.opts.cluster.Client(t), 4
	case b.opts.sentinel != nil:
		rdb0, minReplicas = b.opts.sentinel.Client(t), 1
	default:
		rdb0, names = redistest.Client(t), stream.Names{Prefix: redistest.Prefix(t)}
	}
	b.streams, b.prefix = rdb0, names.Prefix
	log := b.opts.logger(t)
	streamDB := b.db
	if b.opts.ownPool {
		var err error
		streamDB, err = sqlx.Open("postgres", b.dbURL)
		require.NoError(t, err)
		streamDB.SetMaxOpenConns(storetest.MaxConns)
		t.Cleanup(func() { _ = streamDB.Close() })
	}
	groups, err := stream.NewGroups(stream.GroupsConfig{
		Redis: rdb0, DB: streamDB, Names: names, Logger: log, Block: 100 * time.Millisecond,
		DisableFairness: b.opts.unfair, PauseSync: b.opts.pauseSync,
	})
	require.NoError(t, err)
	for _, sub := range b.w.Subscriptions(SubscriptionOptions{StartFrom: stream.StartBeginning}) {
		require.NoError(t, groups.Add(sub))
	}
	for _, sub := range b.opts.extra {
		require.NoError(t, groups.Add(sub))
	}
	relay, err := stream.NewRelay(stream.RelayConfig{
		DB: streamDB, Redis: rdb0, Names: names, Logger: log, PollInterval: 20 * time.Millisecond,
		MinReplicas: minReplicas, ReplicaTimeout: 500 * time.Millisecond,
	})
	require.NoError(t, err)
	require.NoError(t, groups.Start(ctx))
	require.NoError(t, relay.Start(ctx))
	b.relay = relay
	b.waker.relay.Store(relay)
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, relay.Stop(sctx))
		require.NoError(t, groups.Stop(sctx))
	})
}

// group returns the named consumer group.
func (b *testBundle) group(t *testing.T, name string) Group {
	for _, g := range b.w.Groups() {
		if g.Name == name {
			return g
		}
	}
	t.Fatalf("no group %s", name)
	return Group{}
}

func (b *testBundle) seller(t testing.TB) store.Seller {
	s, err := store.CreateSeller(context.Background(), b.db, "Seller "+uuid.NewString()[:8], "seller@bazaar.test")
	require.NoError(t, err)
	return s
}

func (b *testBundle) product(t testing.TB, sellerID uuid.UUID, stock int, priceMinor int64) store.Product {
	p, err := store.CreateProduct(context.Background(), b.db, store.Product{
		SellerID: sellerID, SKU: "SKU-" + uuid.NewString()[:8], Name: "Teapot", PriceMinor: priceMinor,
		Currency: "EUR", Stock: stock, Attributes: []byte(`{}`),
	})
	require.NoError(t, err)
	return p
}

// register records a user and user.registered as the API does.
func (b *testBundle) register(t testing.TB, email string, corporate bool) store.User {
	var u store.User
	err := store.WithTx(context.Background(), b.db, func(tx *sqlx.Tx) error {
		var acct *store.CorporateAccount
		if corporate {
			acct = &store.CorporateAccount{Name: "ACME", BillingEmail: "billing@acme.test"}
		}
		var err error
		u, err = store.CreateUser(context.Background(), tx, store.User{Email: email, Name: "Ada"}, acct)
		if err != nil {
			return err
		}
		ev, err := store.NewUserEvent(eventUserRegistered, u, nil)
		if err != nil {
			return err
		}
		ev.RequestID = "req-" + u.ID.String()[:8]
		ev.TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		return store.InsertEvents(context.Background(), tx, ev)
	})
	require.NoError(t, err)
	return u
}

// order places an order of qty units of p for u, paid with token, as the
// API does: the order and order.created in one transaction.
func (b *testBundle) order(t testing.TB, u store.User, p store.Product, qty int, token string, scheduledAt *time.Time) store.Order {
	var o store.Order
	err := store.WithTx(context.Background(), b.db, func(tx *sqlx.Tx) error {
		total := p.PriceMinor * int64(qty)
		var err error
		o, err = store.CreateOrder(context.Background(), tx, store.Order{
			SellerID: p.SellerID, UserID: u.ID, Currency: p.Currency, SubtotalMinor: total, TotalMinor: total,
			PaymentMethod: token, ScheduledAt: scheduledAt,
			Items: []store.OrderItem{{ProductID: p.ID, SKU: p.SKU, Name: p.Name, Quantity: qty, UnitPriceMinor: p.PriceMinor, LineTotalMinor: total}},
		})
		if err != nil {
			return err
		}
		ev, err := store.NewOrderEvent(eventOrderCreated, o)
		if err != nil {
			return err
		}
		return store.InsertEvents(context.Background(), tx, ev)
	})
	require.NoError(t, err)
	return o
}

// transition moves an order as the API's seller endpoints do.
func (b *testBundle) transition(t *testing.T, id uuid.UUID, to store.OrderStatus, reason string) {
	err := store.WithTx(context.Background(), b.db, func(tx *sqlx.Tx) error {
		o, err := store.TransitionOrder(context.Background(), tx, id, to, reason)
		if err != nil {
			return err
		}
		ev, err := store.NewOrderEvent("", o)
		if err != nil {
			return err
		}
		return store.InsertEvents(context.Background(), tx, ev)
	})
	require.NoError(t, err)
}

func (b *testBundle) status(t *testing.T, id uuid.UUID) store.OrderStatus {
	o, err := store.GetOrder(context.Background(), b.db, id)
	require.NoError(t, err)
	return o.Status
}

func (b *testBundle) stock(t *testing.T, id uuid.UUID) int {
	n, err := store.ProductStock(context.Background(), b.db, id)
	require.NoError(t, err)
	return n
}

func (b *testBundle) eventCount(t *testing.T, typ, subject string) int {
	var n int
	require.NoError(t, b.db.Get(&n, `SELECT count(*) FROM events WHERE type = $1 AND ($2 = '' OR subject = $2)`, typ, subject))
	return n
}

// eventually waits for cond, failing with msg and the state it saw.
func eventually(t testing.TB, within time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	require.Eventually(t, cond, within, 20*time.Millisecond, fmt.Sprintf(format, args...))
}

// settle waits until no task is pending, active, scheduled or retrying in
// any queue: the workers have nothing left to do.
func (b *testBundle) settle(t testing.TB, within time.Duration) {
	t.Helper()
	eventually(t, within, func() bool {
		for q := range b.w.cfg.Queues {
			info, err := b.insp.GetQueueInfo(q)
			if err != nil {
				continue // queue not created yet
			}
			if info.Pending+info.Active+info.Retry > 0 {
				return false
			}
		}
		return true
	}, "tasks did not settle")
}
