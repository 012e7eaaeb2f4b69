package workers

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
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
	db      *sqlx.DB
	rdb     *redis.Client
	w       *Workers
	sink    *MailSink
	gateway *SandboxGateway
	insp    *asynq.Inspector
	feed    *eventFeed
}

type setupOpts struct {
	mutate  func(*Config)
	noStart bool
	// smtpAddr, when set, is where the mailer sends instead of the sink.
	smtpAddr string
}

func setup(t *testing.T, opts ...setupOpts) *testBundle {
	t.Helper()
	var o setupOpts
	if len(opts) > 0 {
		o = opts[0]
	}
	ctx := context.Background()
	db, _ := storetest.NewDB(t)
	rdb := redis.NewClient(redistest.DB(t))
	t.Cleanup(func() { _ = rdb.Close() })

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

	gw := NewSandboxGateway()
	cfg := Config{
		DB: db, Redis: rdb, Logger: testLogger(t), Mailer: mailer, Gateway: gw,
		Concurrency:     8,
		ShutdownTimeout: 2 * time.Second,
		Retry:           RetryPolicy{Base: 50 * time.Millisecond, Max: 400 * time.Millisecond},
	}
	if o.mutate != nil {
		o.mutate(&cfg)
	}
	w, err := New(cfg)
	require.NoError(t, err)
	b := &testBundle{db: db, rdb: rdb, w: w, sink: sink, gateway: gw, insp: asynq.NewInspectorFromRedisClient(rdb)}
	t.Cleanup(func() { _ = b.insp.Close() })
	if !o.noStart {
		require.NoError(t, w.Start(ctx))
		b.feed = startFeed(t, db, w.Groups())
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, w.Stop(sctx))
	})
	return b
}

// eventFeed delivers every event committed to the outbox to the groups
// whose patterns match, in commit order, retrying a failing handler: what
// the relay and the stream consumer groups do, in process.
type eventFeed struct {
	groups []Group
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	seen   map[string]int // event type -> count delivered
	errs   atomic.Int64
}

func startFeed(t *testing.T, db *sqlx.DB, groups []Group) *eventFeed {
	ctx, cancel := context.WithCancel(context.Background())
	f := &eventFeed{groups: groups, cancel: cancel, done: make(chan struct{}), seen: map[string]int{}}
	go func() {
		defer close(f.done)
		// Transactions commit out of seq order, so every poll rereads the
		// log and skips what it delivered; test logs are small.
		seen := map[string]bool{}
		for ctx.Err() == nil {
			var evs []store.Event
			err := db.SelectContext(ctx, &evs, `
SELECT seq, id, type, source, specversion, subject, seller_id, dataschema, time, data, request_id, traceparent, created_at
FROM events ORDER BY seq`)
			if err != nil {
				if ctx.Err() == nil {
					t.Logf("feed: %v", err)
				}
				sleep(ctx, 20*time.Millisecond)
				continue
			}
			fresh := 0
			for _, e := range evs {
				if seen[e.ID.String()] {
					continue
				}
				f.deliver(ctx, stream.EnvelopeOf(e))
				seen[e.ID.String()] = true
				fresh++
			}
			if fresh == 0 {
				sleep(ctx, 15*time.Millisecond)
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-f.done })
	return f
}

func (f *eventFeed) deliver(ctx context.Context, env stream.Envelope) {
	for _, g := range f.groups {
		if !matchesAny(g.Patterns, env.Type) {
			continue
		}
		for ctx.Err() == nil {
			if err := g.Handle(ctx, env); err != nil {
				f.errs.Add(1)
				sleep(ctx, 20*time.Millisecond)
				continue
			}
			break
		}
	}
	f.mu.Lock()
	f.seen[env.Type]++
	f.mu.Unlock()
}

func matchesAny(patterns []string, typ string) bool {
	for _, p := range patterns {
		if stream.MatchTopic(p, typ) {
			return true
		}
	}
	return false
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
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

func (b *testBundle) seller(t *testing.T) store.Seller {
	s, err := store.CreateSeller(context.Background(), b.db, "Seller "+uuid.NewString()[:8], "seller@bazaar.test")
	require.NoError(t, err)
	return s
}

func (b *testBundle) product(t *testing.T, sellerID uuid.UUID, stock int, priceMinor int64) store.Product {
	p, err := store.CreateProduct(context.Background(), b.db, store.Product{
		SellerID: sellerID, SKU: "SKU-" + uuid.NewString()[:8], Name: "Teapot", PriceMinor: priceMinor,
		Currency: "EUR", Stock: stock, Attributes: []byte(`{}`),
	})
	require.NoError(t, err)
	return p
}

// register records a user and user.registered as the API does.
func (b *testBundle) register(t *testing.T, email string, corporate bool) store.User {
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
func (b *testBundle) order(t *testing.T, u store.User, p store.Product, qty int, token string, scheduledAt *time.Time) store.Order {
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
func eventually(t *testing.T, within time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	require.Eventually(t, cond, within, 20*time.Millisecond, fmt.Sprintf(format, args...))
}

// settle waits until no task is pending, active, scheduled or retrying in
// any queue: the workers have nothing left to do.
func (b *testBundle) settle(t *testing.T, within time.Duration) {
	t.Helper()
	eventually(t, within, func() bool {
		for _, q := range []string{QueueCritical, QueueDefault, QueueLow} {
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
