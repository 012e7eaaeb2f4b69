package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/stream/redistest"
)

// TestGroupsEndToEnd: events recorded in the outbox reach every subscribed
// group exactly once, and only the groups whose patterns match them.
func TestGroupsEndToEnd(t *testing.T) {
	t.Parallel()
	testGroupsEndToEnd(t, setup(t))
}

func testGroupsEndToEnd(t *testing.T, b testBundle) {
	var all, orders, users, created recorder
	startGroups(t, b, "c1",
		Subscription{Group: "audit", Patterns: []string{"#"}, Handler: all.handle, Concurrency: 4},
		Subscription{Group: "orders", Patterns: []string{"order.#"}, Handler: orders.handle, OrderedBySubject: true, Concurrency: 3},
		Subscription{Group: "users", Patterns: []string{"user.#"}, Handler: users.handle},
		Subscription{Group: "created", Patterns: []string{"*.created"}, Handler: created.handle},
	)
	startRelay(t, b, RelayConfig{PollInterval: 10 * time.Millisecond})
	const n = 60
	recordMany(t, b.db, "order.created", n, 10)
	recordMany(t, b.db, "order.confirmed", n, 10)
	recordMany(t, b.db, "user.registered", 7, 7)
	recordMany(t, b.db, "product.created", 5, 5)

	eventually(t, "every group got its events", func() bool {
		return all.count() >= 2*n+12 && orders.count() >= 2*n && users.count() >= 7 && created.count() >= n+5
	})
	time.Sleep(200 * time.Millisecond) // room for a duplicate to show up
	for name, rec := range map[string]*recorder{"audit": &all, "orders": &orders, "users": &users, "created": &created} {
		for id, c := range countByID(rec.seen()) {
			require.Equal(t, 1, c, "group %s got event %s %d times", name, id, c)
		}
	}
	require.Len(t, all.seen(), 2*n+12)
	require.Len(t, orders.seen(), 2*n)
	require.Len(t, created.seen(), n+5)
	for _, m := range users.seen() {
		require.Equal(t, "user.registered", m.Type, "user.# must see no order events")
	}
	require.Len(t, users.seen(), 7)
	for _, m := range orders.seen() {
		require.Equal(t, int64(1), m.Deliveries)
		require.NotEmpty(t, m.EntryID)
		require.Equal(t, b.names.Stream("order", 0), m.Stream)
	}
	// Ordered groups see each subject's events in recorded order:
	// order.created before order.confirmed for every subject.
	seenCreated := map[string]int{}
	for _, m := range orders.seen() {
		if m.Type == "order.created" {
			seenCreated[m.Subject]++
		} else {
			require.Equal(t, n/10, seenCreated[m.Subject], "order.confirmed of %s before all its order.created", m.Subject)
		}
	}
}

func TestGroupStartFromTimeReplaysHistory(t *testing.T) {
	t.Parallel()
	testGroupStartFromTimeReplaysHistory(t, setup(t))
}

func testGroupStartFromTimeReplaysHistory(t *testing.T, b testBundle) {
	ctx := context.Background()
	relay := newRelay(t, b, RelayConfig{})
	old := record(t, b.db, "order.created", "ord-old")
	// The event and its outbox row move to the older time together, as if
	// recorded then.
	_, err := b.db.ExecContext(ctx, `
WITH o AS (UPDATE outbox SET time = time - interval '2 hours' WHERE seq = (SELECT seq FROM events WHERE id = $1))
UPDATE events SET time = time - interval '2 hours' WHERE id = $1`, old[0].ID)
	require.NoError(t, err)
	since := time.Now().Add(-time.Hour)
	history := record(t, b.db, "order.created", "ord-1", "ord-2")
	history = append(history, record(t, b.db, "order.confirmed", "ord-1")...)
	record(t, b.db, "user.registered", "usr-1") // another domain: not matched
	drain(t, relay)
	// Trimming has taken the history off the stream: only the log has it.
	require.NoError(t, b.rdb.Del(ctx, b.names.Stream("order", 0)).Err())

	var rec recorder
	startGroups(t, b, "c1", Subscription{Group: "late", Patterns: []string{"order.#"}, Handler: rec.handle, StartFrom: StartAt(since)})
	eventually(t, "history replayed", func() bool { return rec.count() >= 3 })

	live := record(t, b.db, "order.shipped", "ord-1")
	drain(t, relay)
	eventually(t, "live event after replay", func() bool { return rec.count() >= 4 })
	time.Sleep(100 * time.Millisecond)
	got := rec.seen()
	require.Len(t, got, 4)
	want := append(history, live...)
	for i := range want {
		require.Equal(t, want[i].ID.String(), got[i].ID, "position %d", i)
	}
	exists, err := b.rdb.Exists(ctx, b.names.Prefix+"replay:late").Result()
	require.NoError(t, err)
	require.Zero(t, exists, "replay state removed when done")
}

// TestGroupStartFromTimeSeam: events published while the group is created
// are delivered once, either replayed or live.
func TestGroupStartFromTimeSeam(t *testing.T) {
	t.Parallel()
	b := setup(t)
	since := time.Now().Add(-time.Minute)
	startRelay(t, b, RelayConfig{PollInterval: 5 * time.Millisecond})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var written atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			record(t, b.db, "order.created", fmt.Sprintf("ord-%d", i%7))
			written.Add(1)
		}
	}()
	time.Sleep(150 * time.Millisecond)
	var rec recorder
	startGroups(t, b, "c1", Subscription{Group: "late", Patterns: []string{"order.#"}, Handler: rec.handle, StartFrom: StartAt(since)})
	time.Sleep(150 * time.Millisecond)
	close(stop)
	wg.Wait()
	eventually(t, "all events delivered", func() bool { return int64(rec.count()) >= written.Load() })
	time.Sleep(100 * time.Millisecond)
	require.Len(t, countByID(rec.seen()), int(written.Load()))
	require.Len(t, rec.seen(), int(written.Load()), "an event was delivered twice at the seam")
}

// TestConsumerKilledMidBatch: a consumer stopped while its handler runs
// acknowledges nothing; another consumer finishes the entries after the
// visibility timeout.
func TestConsumerKilledMidBatch(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	recordMany(t, b.db, "order.created", 10, 10)

	started := make(chan struct{}, 10)
	stuck := func(ctx context.Context, _ Message) error {
		started <- struct{}{}
		<-ctx.Done() // never finishes on its own
		return ctx.Err()
	}
	sub := Subscription{Group: "g", Patterns: []string{"order.*"}, VisibilityTimeout: 300 * time.Millisecond, StartFrom: StartBeginning}
	drain(t, newRelay(t, b, RelayConfig{}))
	s1 := sub
	s1.Handler = stuck
	first := newGroups(t, b, "first", s1)
	require.NoError(t, first.Start(ctx))
	<-started
	killed, cancel := context.WithCancel(ctx)
	cancel()
	require.Error(t, first.Stop(killed), "stopping with an expired context abandons the batch")

	p, err := b.rdb.XPending(ctx, b.names.Stream("order", 0), "g").Result()
	require.NoError(t, err)
	require.EqualValues(t, 10, p.Count, "nothing acknowledged by the killed consumer")

	var rec recorder
	s2 := sub
	s2.Handler = rec.handle
	startGroups(t, b, "second", s2)
	eventually(t, "second consumer finished the entries", func() bool { return rec.count() >= 10 })
	require.Len(t, countByID(rec.seen()), 10)
	for _, m := range rec.seen() {
		require.GreaterOrEqual(t, m.Deliveries, int64(2))
	}
	eventually(t, "acknowledged", func() bool {
		p, err := b.rdb.XPending(ctx, b.names.Stream("order", 0), "g").Result()
		return err == nil && p.Count == 0
	})
}

// TestPoisonEventDeadLetteredAndRedriven: an event that always fails is
// tried exactly MaxDeliveries times, lands in the group's DLQ with its
// error, and after a redrive (handler fixed) is handled once, by that group
// alone.
func TestPoisonEventDeadLetteredAndRedriven(t *testing.T) {
	t.Parallel()
	testPoisonEventDeadLetteredAndRedriven(t, setup(t))
}

func testPoisonEventDeadLetteredAndRedriven(t *testing.T, b testBundle) {
	ctx := context.Background()
	var fixed atomic.Bool
	var attempts atomic.Int64
	var handled recorder
	poisonID := ""
	var mu sync.Mutex
	handler := func(ctx context.Context, m Message) error {
		mu.Lock()
		poison := m.ID == poisonID
		mu.Unlock()
		if poison && !fixed.Load() {
			attempts.Add(1)
			return errors.New("card number missing")
		}
		return handled.handle(ctx, m)
	}
	var other recorder
	startGroups(t, b, "c1",
		Subscription{Group: "payments", Patterns: []string{"order.created"}, Handler: handler, MaxDeliveries: 3, VisibilityTimeout: 100 * time.Millisecond},
		Subscription{Group: "audit", Patterns: []string{"#"}, Handler: other.handle},
	)
	evs := record(t, b.db, "order.created", "ord-bad", "ord-good")
	mu.Lock()
	poisonID = evs[0].ID.String()
	mu.Unlock()
	drain(t, newRelay(t, b, RelayConfig{}))

	admin, err := NewAdmin(AdminConfig{Redis: b.rdb, DB: b.db, Names: b.names})
	require.NoError(t, err)
	var dead []DeadLetter
	eventually(t, "poison event dead-lettered", func() bool {
		dead, _, err = admin.DeadLetters(ctx, "payments", 10)
		return err == nil && len(dead) == 1
	})
	require.EqualValues(t, 3, attempts.Load(), "tried exactly MaxDeliveries times")
	require.Equal(t, "card number missing", dead[0].Error)
	require.EqualValues(t, 3, dead[0].Deliveries)
	require.Equal(t, evs[0].ID.String(), dead[0].Envelope.ID)
	require.Equal(t, b.names.Stream("order", 0), dead[0].Stream)
	require.Len(t, handled.seen(), 1)
	// The dead letter is written before the acknowledgement, in its own
	// round trip: the entry may still be pending for a moment.
	eventually(t, "dead-lettered entry acknowledged", func() bool {
		p, err := b.rdb.XPending(ctx, b.names.Stream("order", 0), "payments").Result()
		return err == nil && p.Count == 0
	})

	shown, err := admin.DeadLetterByID(ctx, "payments", dead[0].ID)
	require.NoError(t, err)
	require.Equal(t, dead[0], shown)

	fixed.Store(true)
	n, err := admin.Redrive(ctx, "payments", Selection{IDs: []string{dead[0].ID}})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	eventually(t, "redriven event handled", func() bool { return handled.count() == 2 })
	time.Sleep(200 * time.Millisecond)
	require.Len(t, countByID(handled.seen()), 2)
	require.Len(t, handled.seen(), 2, "redriven event handled once")
	require.Len(t, other.seen(), 2, "other groups are not sent the redriven event")
	depth, err := b.rdb.XLen(ctx, b.names.DLQ("payments")).Result()
	require.NoError(t, err)
	require.Zero(t, depth)
	eventually(t, "retry stream emptied", func() bool {
		n, err := b.rdb.XLen(ctx, b.names.Retry("payments")).Result()
		return err == nil && n == 0
	})
}

// TestTwoRelaysThreeConsumers: on one load, two relays and three consumers
// of one ordered group lose nothing and keep each subject in order.
func TestTwoRelaysThreeConsumers(t *testing.T) {
	t.Parallel()
	testTwoRelaysThreeConsumers(t, setup(t))
}

func testTwoRelaysThreeConsumers(t *testing.T, b testBundle) {
	b.names.Partitions = 3
	const subjects, perSubject = 30, 20
	var mu sync.Mutex
	got := map[string][]int{}      // subject -> the n of each event, in handling order
	byConsumer := map[string]int{} // consumer -> events handled
	handler := func(consumer string) Handler {
		return func(_ context.Context, m Message) error {
			var data struct{ N int }
			if err := jsonUnmarshal(m.Data, &data); err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			got[m.Subject] = append(got[m.Subject], data.N)
			byConsumer[consumer]++
			return nil
		}
	}
	for _, c := range []string{"c1", "c2", "c3"} {
		startGroups(t, b, c, Subscription{
			Group: "shipping", Patterns: []string{"order.#"}, Handler: handler(c),
			OrderedBySubject: true, Concurrency: 4, StartFrom: StartBeginning,
		})
	}
	startRelay(t, b, RelayConfig{PollInterval: 5 * time.Millisecond, BatchSize: 37})
	startRelay(t, b, RelayConfig{PollInterval: 5 * time.Millisecond, BatchSize: 23})
	// Writers interleave subjects; each subject's n counts up.
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perSubject {
				for s := w; s < subjects; s += 3 {
					recordN(t, b, fmt.Sprintf("ord-%d", s), i)
				}
			}
		}()
	}
	wg.Wait()
	eventually(t, "every event handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		total := 0
		for _, v := range got {
			total += len(v)
		}
		return total >= subjects*perSubject
	})
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, got, subjects)
	for s, ns := range got {
		want := make([]int, perSubject)
		for i := range want {
			want[i] = i
		}
		require.Equal(t, want, ns, "subject %s", s)
	}
	require.Greater(t, len(byConsumer), 1, "the streams were shared among the consumers: %v", byConsumer)
}

func TestGroupsValidate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	g := newGroups(t, b, "c1")
	h := func(context.Context, Message) error { return nil }
	require.Error(t, g.Add(Subscription{Patterns: []string{"#"}, Handler: h}))
	require.Error(t, g.Add(Subscription{Group: "g", Handler: h}))
	require.Error(t, g.Add(Subscription{Group: "g", Patterns: []string{"order.*x"}, Handler: h}))
	require.Error(t, g.Add(Subscription{Group: "g", Patterns: []string{"#"}}))
	require.NoError(t, g.Add(Subscription{Group: "g", Patterns: []string{"#"}, Handler: h}))
	require.Error(t, g.Add(Subscription{Group: "g", Patterns: []string{"#"}, Handler: h}), "group added twice")
	require.NoError(t, g.Stop(context.Background()), "stop without start")
	require.NoError(t, g.Start(context.Background()))
	require.Error(t, g.Add(Subscription{Group: "h", Patterns: []string{"#"}, Handler: h}), "add after start")
	require.NoError(t, g.Stop(context.Background()))
	require.NoError(t, g.Stop(context.Background()), "second stop")
}

func TestIdleConsumersRemovedOnlyWithoutPending(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	s := b.names.Stream("order", 0)
	require.NoError(t, b.rdb.XGroupCreateMkStream(ctx, s, "g", "$").Err())
	require.NoError(t, b.rdb.XGroupCreateConsumer(ctx, s, "g", "gone-empty").Err())
	require.NoError(t, b.rdb.XAdd(ctx, (&redisXAdd{s}).args()).Err())
	require.NoError(t, b.rdb.XReadGroup(ctx, redisRead(s, "g", "gone-holding")).Err())
	time.Sleep(60 * time.Millisecond)

	g, err := NewGroups(GroupsConfig{Redis: b.rdb, Names: b.names, Consumer: "live", Block: 20 * time.Millisecond, IdleConsumerTimeout: 50 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, g.Add(Subscription{
		Group: "g", Patterns: []string{"order.*"}, Handler: func(context.Context, Message) error { return nil },
		VisibilityTimeout: time.Hour,
	}))
	require.NoError(t, g.Start(ctx))
	defer func() { require.NoError(t, g.Stop(ctx)) }()
	eventually(t, "empty idle consumer removed", func() bool {
		cs, err := b.rdb.XInfoConsumers(ctx, s, "g").Result()
		if err != nil {
			return false
		}
		names := map[string]bool{}
		for _, c := range cs {
			names[c.Name] = true
		}
		return !names["gone-empty"] && names["gone-holding"]
	})
}

// TestOrderedTakeover: when the consumer holding an ordered group's stream
// stops mid-batch, the next one takes the stream over and handles the
// abandoned entries first, in order, before newer ones.
func TestOrderedTakeover(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	evs := record(t, b.db, "order.created", "ord-1", "ord-1", "ord-1")
	drain(t, newRelay(t, b, RelayConfig{}))
	started := make(chan struct{}, 10)
	sub := Subscription{Group: "g", Patterns: []string{"order.#"}, OrderedBySubject: true, StartFrom: StartBeginning}
	s1 := sub
	s1.Handler = func(ctx context.Context, _ Message) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}
	first := newGroups(t, b, "first", s1)
	require.NoError(t, first.Start(ctx))
	<-started
	killed, cancel := context.WithCancel(ctx)
	cancel()
	require.Error(t, first.Stop(killed))

	var rec recorder
	s2 := sub
	s2.Handler = rec.handle
	startGroups(t, b, "second", s2)
	later := record(t, b.db, "order.created", "ord-1")
	drain(t, newRelay(t, b, RelayConfig{}))
	eventually(t, "all handled", func() bool { return rec.count() >= 4 })
	got := rec.seen()
	require.Len(t, got, 4)
	for i, e := range append(evs, later...) {
		require.Equal(t, e.ID.String(), got[i].ID, "position %d", i)
	}
	require.GreaterOrEqual(t, got[0].Deliveries, int64(2), "the abandoned entry was taken over")
}

// TestRestartFinishesOwnPendingFirst: a consumer restarted under the same
// name handles the entries it had taken before, without waiting for the
// visibility timeout.
func TestRestartFinishesOwnPendingFirst(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	record(t, b.db, "order.created", "ord-1", "ord-2", "ord-3")
	drain(t, newRelay(t, b, RelayConfig{}))
	sub := Subscription{Group: "g", Patterns: []string{"order.#"}, VisibilityTimeout: time.Hour, StartFrom: StartBeginning}
	started := make(chan struct{}, 10)
	s1 := sub
	s1.Handler = func(ctx context.Context, _ Message) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}
	before := newGroups(t, b, "pod-0", s1)
	require.NoError(t, before.Start(ctx))
	<-started
	killed, cancel := context.WithCancel(ctx)
	cancel()
	require.Error(t, before.Stop(killed))

	var rec recorder
	s2 := sub
	s2.Handler = rec.handle
	startGroups(t, b, "pod-0", s2)
	eventually(t, "own pending entries handled at once", func() bool { return rec.count() == 3 })
	require.EqualValues(t, 2, rec.seen()[0].Deliveries)
}

// TestLostAcksSettleWithoutRestart: Redis goes away after a batch was
// handled and before it was acknowledged, and comes back with its data (an
// append-only file synced on every write). The ordered consumer keeps its
// stream lease throughout, and still settles the batch without a restart:
// nothing stays pending, no event is handled twice, and it goes on reading.
func TestLostAcksSettleWithoutRestart(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	srv := redistest.StartServer(t, redistest.ServerOptions{Persist: true})
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	b.rdb = rdb

	ackFailed := &logSignal{msg: "acknowledge entries; will try again", ch: make(chan struct{})}
	var rec recorder
	var cut sync.Once
	handler := func(ctx context.Context, m Message) error {
		// Redis dies while the batch is being handled, once the relay has
		// marked every event published (a reply it lost would make it
		// publish again, a duplicate this test is not about).
		cut.Do(func() {
			for {
				bl, err := store.OutboxBacklog(ctx, b.db)
				if err == nil && bl.Count == 0 {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			srv.Stop()
		})
		return rec.handle(ctx, m)
	}
	// The lease outlives the test, so only settling, not a takeover of the
	// stream, can clear the pending entries.
	g, err := NewGroups(GroupsConfig{
		Redis: rdb, Names: b.names, Logger: slog.New(ackFailed), Consumer: "c1",
		Block: 50 * time.Millisecond, LeaseTTL: time.Minute,
	})
	require.NoError(t, err)
	require.NoError(t, g.Add(Subscription{
		Group: "ledger", Patterns: []string{"order.#"}, Handler: handler,
		OrderedBySubject: true, Concurrency: 2, VisibilityTimeout: 2 * time.Second,
	}))
	require.NoError(t, g.Start(ctx))
	t.Cleanup(func() { require.NoError(t, g.Stop(context.Background())) })
	startRelay(t, b, RelayConfig{PollInterval: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})

	recordMany(t, b.db, "order.created", 10, 3)
	select {
	case <-ackFailed.ch:
	case <-time.After(20 * time.Second):
		t.Fatal("the acknowledgement never failed")
	}
	require.NoError(t, srv.Start())

	st := b.names.Stream("order", 0)
	pending := func() int64 {
		p, err := rdb.XPending(ctx, st, "ledger").Result()
		if err != nil {
			return -1
		}
		return p.Count
	}
	eventually(t, "the handled batch is acknowledged", func() bool { return pending() == 0 && rec.count() >= 10 })

	recordMany(t, b.db, "order.confirmed", 5, 3)
	eventually(t, "the consumer goes on reading", func() bool { return rec.count() >= 15 && pending() == 0 })
	for id, c := range countByID(rec.seen()) {
		require.Equal(t, 1, c, "event %s handled %d times", id, c)
	}
	require.Len(t, rec.seen(), 15)
}

// logSignal is a log handler that closes ch when msg is logged.
type logSignal struct {
	msg  string
	once sync.Once
	ch   chan struct{}
}

func (h *logSignal) Enabled(context.Context, slog.Level) bool { return true }
func (h *logSignal) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logSignal) WithGroup(string) slog.Handler            { return h }

func (h *logSignal) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.once.Do(func() { close(h.ch) })
	}
	return nil
}

// TestOwnPendingOfHeldStreamRedelivered: an entry pending under the very
// consumer that holds its stream, with nobody working on it (its
// acknowledgement lost where the consumer could not tell, as when Redis
// restarts from a file that missed it), is handled again after the
// visibility timeout, without a restart or a change of lease.
func TestOwnPendingOfHeldStreamRedelivered(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	var rec recorder
	g, err := NewGroups(GroupsConfig{
		Redis: b.rdb, Names: b.names, Logger: b.log, Consumer: "c1",
		Block: 50 * time.Millisecond, LeaseTTL: time.Minute,
	})
	require.NoError(t, err)
	require.NoError(t, g.Add(Subscription{
		Group: "ledger", Patterns: []string{"order.#"}, Handler: rec.handle,
		OrderedBySubject: true, VisibilityTimeout: 500 * time.Millisecond,
	}))
	require.NoError(t, g.Start(ctx))
	t.Cleanup(func() { require.NoError(t, g.Stop(context.Background())) })
	st := b.names.Stream("order", 0)
	eventually(t, "c1 holds the stream", func() bool {
		v, err := b.rdb.Get(ctx, b.names.prefix()+"lease:ledger:"+st).Result()
		return err == nil && v == "c1"
	})

	// Add an entry and deliver it to c1 in one transaction, so the running
	// reader never sees it as new: it is c1's, pending, and unhandled.
	e, err := store.NewEvent("order.created", "ord-1", nil, 1, map[string]int{"n": 1})
	require.NoError(t, err)
	values, err := EnvelopeOf(e).Values()
	require.NoError(t, err)
	pipe := b.rdb.TxPipeline()
	pipe.XAdd(ctx, &redis.XAddArgs{Stream: st, Values: values})
	pipe.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "ledger", Consumer: "c1", Streams: []string{st, ">"}, Count: 1})
	_, err = pipe.Exec(ctx)
	require.NoError(t, err)

	eventually(t, "the entry is handled and acknowledged", func() bool {
		p, err := b.rdb.XPending(ctx, st, "ledger").Result()
		return err == nil && p.Count == 0 && rec.count() == 1
	})
	require.Equal(t, e.ID.String(), rec.seen()[0].ID)
}

// A group asked to start before the event log's retention horizon (its
// older partitions were dropped) is refused with a clear error instead of
// silently replaying a history with a hole; a start after it is fine.
func TestGroupStartBeforeRetentionIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	horizon := time.Now().Add(-24 * time.Hour).UTC().Truncate(time.Second)
	_, err := b.db.ExecContext(ctx, `INSERT INTO event_log_horizon (expired_before) VALUES ($1)`, horizon)
	require.NoError(t, err)

	var rec recorder
	g := newGroups(t, b, "c1", Subscription{Group: "too-late", Patterns: []string{"order.#"}, Handler: rec.handle, StartFrom: StartAt(horizon.Add(-time.Hour))})
	err = g.Start(ctx)
	require.ErrorIs(t, err, store.ErrEventLogExpired)
	require.ErrorContains(t, err, "the event log starts at "+horizon.Format(time.RFC3339))
	require.NoError(t, g.Stop(ctx))

	startGroups(t, b, "c2", Subscription{Group: "in-time", Patterns: []string{"order.#"}, Handler: rec.handle, StartFrom: StartAt(horizon)})
}
