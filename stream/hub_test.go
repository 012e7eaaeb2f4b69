package stream_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
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

// hubBundle is one test's Redis prefix, Postgres database and the events
// it published, in publication order.
type hubBundle struct {
	rdb   redis.UniversalClient
	names stream.Names
	// client opens another client on the same Redis, as another process
	// would have.
	client func() redis.UniversalClient
	db     *sqlx.DB

	mu        sync.Mutex
	published []hubPublished
}

type hubPublished struct {
	id, typ, seller, domain string
}

func hubSetup(t *testing.T, withDB bool) *hubBundle {
	t.Helper()
	b := &hubBundle{rdb: redistest.Client(t), names: stream.Names{Prefix: redistest.Prefix(t)}}
	b.client = func() redis.UniversalClient {
		opt, err := redis.ParseURL(redistest.URL())
		require.NoError(t, err)
		return redis.NewClient(opt)
	}
	if withDB {
		b.db, _ = storetest.NewDB(t)
	}
	return b
}

// newHub starts a hub on its own Redis client, as a second API process
// would have, and stops it when the test ends.
func (b *hubBundle) newHub(t *testing.T, mod func(*stream.HubConfig)) *stream.Hub {
	t.Helper()
	rdb := b.client()
	t.Cleanup(func() { _ = rdb.Close() })
	cfg := stream.HubConfig{Redis: rdb, DB: b.db, Names: b.names, Block: 100 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	h, err := stream.NewHub(cfg)
	require.NoError(t, err)
	require.NoError(t, h.Start(context.Background()))
	t.Cleanup(func() { require.NoError(t, h.Stop(context.Background())) })
	return h
}

// publish does what the relay does: when the test has a database, it
// records the event in the outbox, adds it to its stream and records where
// it landed; otherwise it only adds it to the stream.
func (b *hubBundle) publish(t testing.TB, typ, seller string) hubPublished {
	t.Helper()
	ctx := context.Background()
	var sellerID *uuid.UUID
	if seller != "" {
		u := uuid.MustParse(seller)
		sellerID = &u
	}
	ev, err := store.NewEvent(typ, uuid.NewString(), sellerID, 1, map[string]any{"n": rand.IntN(1000)})
	require.NoError(t, err)
	if b.db != nil {
		require.NoError(t, store.InsertEvents(ctx, b.db, ev))
	}
	env := stream.EnvelopeOf(ev)
	values, err := env.Values()
	require.NoError(t, err)
	key := b.names.ForEvent(typ, ev.Subject)
	// The lock keeps publication order equal to stream order across the
	// test's publishing goroutines.
	b.mu.Lock()
	defer b.mu.Unlock()
	xid, err := b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: values}).Result()
	require.NoError(t, err)
	if b.db != nil {
		_, err = b.db.ExecContext(ctx, `
WITH d AS (DELETE FROM outbox WHERE seq = (SELECT seq FROM events WHERE id = $3))
INSERT INTO event_positions (seq, time, stream, ms, n)
SELECT seq, time, $1, split_part($2, '-', 1)::bigint, split_part($2, '-', 2)::bigint FROM events WHERE id = $3`, key, xid, ev.ID)
		require.NoError(t, err)
	}
	p := hubPublished{id: env.ID, typ: typ, seller: seller, domain: stream.DomainOf(typ)}
	b.published = append(b.published, p)
	return p
}

// expected returns the published events a subscription is entitled to.
func (b *hubBundle) expected(patterns []string, seller string) []hubPublished {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []hubPublished
	for _, p := range b.published {
		if seller != "" && p.seller != seller && (p.seller != "" || p.domain != "system") {
			continue
		}
		for _, pat := range patterns {
			if stream.MatchTopic(pat, p.typ) {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// next reads one event, skipping the ready-style bookkeeping none of these
// tests expect, within a deadline.
func hubNext(t testing.TB, s *stream.Subscriber) stream.LiveEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ev, err := s.Next(ctx)
	require.NoError(t, err)
	return ev
}

// requireNoEvent asserts nothing more arrives within d.
func requireNoEvent(t *testing.T, s *stream.Subscriber, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	ev, err := s.Next(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded, "unexpected event %s %s", ev.Type, ev.EventID)
}

// sameByDomain checks got against want: the same events, none twice, and
// in publication order within each domain's stream (the order the hub
// promises; across streams live delivery follows the reader).
func sameByDomain(t *testing.T, want, got []hubPublished) {
	t.Helper()
	require.Len(t, got, len(want))
	byDomain := func(list []hubPublished) map[string][]string {
		m := map[string][]string{}
		for _, p := range list {
			m[p.domain] = append(m[p.domain], p.id)
		}
		return m
	}
	require.Equal(t, byDomain(want), byDomain(got))
}

func TestHubFansOutByTopicAndSeller(t *testing.T) {
	t.Parallel()
	b := hubSetup(t, false)
	h := b.newHub(t, nil)
	ctx := context.Background()
	sellerA, sellerB := uuid.NewString(), uuid.NewString()

	type sub struct {
		patterns []string
		seller   string
		s        *stream.Subscriber
	}
	subs := []*sub{
		{patterns: []string{"#"}},
		{patterns: []string{"order.created"}},
		{patterns: []string{"order.*", "system.#"}, seller: sellerA},
		{patterns: []string{"#"}, seller: sellerB},
		{patterns: []string{"user.#"}},
		{patterns: []string{"system.maintenance"}},
	}
	for _, s := range subs {
		var err error
		s.s, err = h.Subscribe(ctx, stream.SubscribeOptions{Patterns: s.patterns, Seller: s.seller})
		require.NoError(t, err)
		defer s.s.Close()
	}
	for i := range 30 {
		seller := sellerA
		if i%3 == 0 {
			seller = sellerB
		}
		switch i % 5 {
		case 0, 1:
			b.publish(t, "order.created", seller)
		case 2:
			b.publish(t, "order.confirmed", seller)
		case 3:
			b.publish(t, "user.registered", "")
		case 4:
			b.publish(t, "system.maintenance", "")
		}
	}
	for _, s := range subs {
		want := b.expected(s.patterns, s.seller)
		require.NotEmpty(t, want)
		var got []hubPublished
		for range want {
			ev := hubNext(t, s.s)
			got = append(got, hubPublished{id: ev.EventID, typ: ev.Type, seller: ev.Seller, domain: stream.DomainOf(ev.Type)})
			var env stream.Envelope
			require.NoError(t, json.Unmarshal(ev.Data, &env))
			require.Equal(t, ev.EventID, env.ID)
			require.NotEmpty(t, ev.ID)
		}
		sameByDomain(t, want, got)
		requireNoEvent(t, s.s, 150*time.Millisecond)
	}
	require.Equal(t, len(subs), h.Stats().Subscribers)
}

func TestHubSubscribeRejectsBadInput(t *testing.T) {
	t.Parallel()
	b := hubSetup(t, false)
	h := b.newHub(t, nil)
	ctx := context.Background()
	for _, c := range []string{"garbage!", "AQ", "MTcxNzE3MTcxNzE3MS0w"} {
		_, err := h.Subscribe(ctx, stream.SubscribeOptions{Cursor: c})
		require.ErrorIs(t, err, stream.ErrBadCursor, c)
	}
	_, err := h.Subscribe(ctx, stream.SubscribeOptions{Patterns: []string{""}})
	require.ErrorIs(t, err, stream.ErrBadTopic)
	_, err = h.Subscribe(ctx, stream.SubscribeOptions{Patterns: []string{"order.*created"}})
	require.ErrorIs(t, err, stream.ErrBadTopic)
}

// TestHubResumeUnderLoad disconnects a subscriber at random points while
// events flow, resuming each time from the last id it received, on one of
// two hubs (two API processes), with a queue small enough to overflow. The
// sessions together must be the full sequence: nothing lost, nothing twice.
func TestHubResumeUnderLoad(t *testing.T) {
	t.Parallel()
	testHubResumeUnderLoad(t, hubSetup(t, false))
}

func testHubResumeUnderLoad(t *testing.T, b *hubBundle) {
	small := func(c *stream.HubConfig) { c.QueueSize = 4; c.CatchUpBatch = 7 }
	hubs := []*stream.Hub{b.newHub(t, small), b.newHub(t, small)}
	sellerA := uuid.NewString()
	ctx := context.Background()

	cases := []struct {
		patterns []string
		seller   string
	}{
		{[]string{"#"}, ""},
		{[]string{"order.#", "system.#"}, sellerA},
	}
	// Start before the first event so the whole sequence is owed.
	starts := make([]string, len(cases))
	for ci, c := range cases {
		first, err := hubs[0].Subscribe(ctx, stream.SubscribeOptions{Patterns: c.patterns, Seller: c.seller})
		require.NoError(t, err)
		starts[ci] = first.Cursor()
		first.Close()
	}

	const total = 900
	done := make(chan struct{})
	go func() {
		defer close(done)
		types := []string{"order.created", "order.confirmed", "user.registered", "system.maintenance", "inventory.reserved"}
		for i := range total {
			seller := ""
			if i%2 == 0 {
				seller = sellerA
			} else if i%4 == 1 {
				seller = uuid.NewString()
			}
			typ := types[i%len(types)]
			if typ == "user.registered" || typ == "system.maintenance" {
				seller = ""
			}
			b.publish(t, typ, seller)
			if i%50 == 0 {
				time.Sleep(5 * time.Millisecond)
			}
		}
	}()

	var wg sync.WaitGroup
	results := make([][]hubPublished, len(cases))
	for ci, c := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(ci), 42))
			cursor := starts[ci]
			var got []hubPublished
			sessions := 0
			deadline := time.Now().Add(60 * time.Second)
			for time.Now().Before(deadline) {
				sessions++
				s, err := hubs[sessions%2].Subscribe(ctx, stream.SubscribeOptions{Patterns: c.patterns, Seller: c.seller, Cursor: cursor})
				if !assertNoErr(t, err) {
					return
				}
				quota := 1 + rng.IntN(60)
				for range quota {
					nctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
					ev, err := s.Next(nctx)
					cancel()
					if errors.Is(err, stream.ErrSlowConsumer) || errors.Is(err, context.DeadlineExceeded) {
						break
					}
					if !assertNoErr(t, err) {
						s.Close()
						return
					}
					if ev.Type == stream.ResetType {
						t.Errorf("unexpected reset: %s", ev.Data)
					}
					got = append(got, hubPublished{id: ev.EventID, typ: ev.Type, seller: ev.Seller, domain: stream.DomainOf(ev.Type)})
					cursor = ev.ID
					if rng.IntN(10) == 0 {
						time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond) // a slow reader
					}
				}
				s.Close()
				select {
				case <-done:
					if len(got) >= len(b.expected(c.patterns, c.seller)) {
						results[ci] = got
						return
					}
				default:
				}
			}
			results[ci] = got
		}()
	}
	wg.Wait()
	<-done
	for ci, c := range cases {
		sameByDomain(t, b.expected(c.patterns, c.seller), results[ci])
	}
	for _, h := range hubs {
		require.Zero(t, h.Stats().Subscribers, "closed subscriptions are unregistered")
	}
}

func assertNoErr(t *testing.T, err error) bool {
	t.Helper()
	if err != nil {
		t.Errorf("unexpected error: %v", err)
		return false
	}
	return true
}

func TestHubDisconnectsSlowSubscriber(t *testing.T) {
	t.Parallel()
	b := hubSetup(t, false)
	h := b.newHub(t, func(c *stream.HubConfig) { c.QueueSize = 3 })
	ctx := context.Background()
	slow, err := h.Subscribe(ctx, stream.SubscribeOptions{})
	require.NoError(t, err)
	fast, err := h.Subscribe(ctx, stream.SubscribeOptions{})
	require.NoError(t, err)
	defer fast.Close()
	start := slow.Cursor()

	fastGot := make(chan int)
	go func() {
		n := 0
		for range 10 {
			nctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := fast.Next(nctx)
			cancel()
			if err != nil {
				break
			}
			n++
		}
		fastGot <- n
	}()
	for range 10 {
		b.publish(t, "order.created", uuid.NewString())
		time.Sleep(2 * time.Millisecond)
	}
	// The fast subscriber is not held back by the slow one.
	require.Equal(t, 10, <-fastGot)
	nctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = slow.Next(nctx)
	require.ErrorIs(t, err, stream.ErrSlowConsumer)
	require.EqualValues(t, 1, h.Stats().Dropped)
	require.Equal(t, 1, h.Stats().Subscribers)

	// It resumes from the last id it had and gets every event once.
	again, err := h.Subscribe(ctx, stream.SubscribeOptions{Cursor: start})
	require.NoError(t, err)
	defer again.Close()
	var got []string
	for range 10 {
		got = append(got, hubNext(t, again).EventID)
	}
	var want []string
	for _, p := range b.expected([]string{"#"}, "") {
		want = append(want, p.id)
	}
	require.Equal(t, want, got)
	requireNoEvent(t, again, 150*time.Millisecond)
}

// TestHubResumeFromEventLog resumes from a cursor older than the stream's
// trim: the trimmed part comes from the Postgres event log, the rest from
// the stream, then live, in order and once each.
func TestHubResumeFromEventLog(t *testing.T) {
	t.Parallel()
	testHubResumeFromEventLog(t, hubSetup(t, true))
}

func testHubResumeFromEventLog(t *testing.T, b *hubBundle) {
	h := b.newHub(t, func(c *stream.HubConfig) { c.CatchUpBatch = 8 })
	ctx := context.Background()
	sellerA, sellerB := uuid.NewString(), uuid.NewString()

	s, err := h.Subscribe(ctx, stream.SubscribeOptions{Patterns: []string{"order.#"}, Seller: sellerA})
	require.NoError(t, err)
	for i := range 60 {
		if i%3 == 2 {
			b.publish(t, "order.created", sellerB)
			continue
		}
		b.publish(t, "order.created", sellerA)
	}
	var cursor string
	for range 10 {
		cursor = hubNext(t, s).ID
	}
	s.Close()
	orderStream := b.names.Stream("order", 0)
	require.NoError(t, b.rdb.XTrimMaxLen(ctx, orderStream, 5).Err())
	for range 6 {
		b.publish(t, "order.created", sellerA)
	}

	want := b.expected([]string{"order.#"}, sellerA)[10:]
	resumed, err := h.Subscribe(ctx, stream.SubscribeOptions{Patterns: []string{"order.#"}, Seller: sellerA, Cursor: cursor})
	require.NoError(t, err)
	defer resumed.Close()
	var got []string
	for range want {
		ev := hubNext(t, resumed)
		require.NotEqual(t, stream.ResetType, ev.Type)
		got = append(got, ev.EventID)
	}
	var wantIDs []string
	for _, p := range want {
		wantIDs = append(wantIDs, p.id)
	}
	require.Equal(t, wantIDs, got)
	live := b.publish(t, "order.created", sellerA)
	require.Equal(t, live.id, hubNext(t, resumed).EventID)
	requireNoEvent(t, resumed, 150*time.Millisecond)
}

// TestHubResetWhenCursorIsGone covers the cursor neither the stream nor
// the event log can serve: the subscriber gets one reset event and then
// the events published after it.
func TestHubResetWhenCursorIsGone(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		db     bool
		prune  bool // delete some of the event log's positions
		expire bool // the retention drops the log's partitions
	}{
		{name: "no event log", db: false},
		{name: "event log pruned", db: true, prune: true},
		{name: "event log expired", db: true, expire: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := hubSetup(t, tt.db)
			h := b.newHub(t, nil)
			ctx := context.Background()
			s, err := h.Subscribe(ctx, stream.SubscribeOptions{Patterns: []string{"order.#"}})
			require.NoError(t, err)
			b.publish(t, "order.created", uuid.NewString())
			cursor := hubNext(t, s).ID
			s.Close()
			for range 20 {
				b.publish(t, "order.created", uuid.NewString())
			}
			require.NoError(t, b.rdb.XTrimMaxLen(ctx, b.names.Stream("order", 0), 3).Err())
			if tt.prune {
				_, err := b.db.ExecContext(ctx, `DELETE FROM event_positions WHERE seq IN (SELECT seq FROM event_positions ORDER BY seq LIMIT 10)`)
				require.NoError(t, err)
			}
			if tt.expire {
				// A retention that ends in the future expires this month's
				// partitions with everything the cursor needs; later events
				// land in the default partition.
				expired, err := store.ExpireEventPartitions(ctx, b.db, time.Now().AddDate(0, 2, 0), false, time.Second)
				require.NoError(t, err)
				require.NotEmpty(t, expired)
			}
			resumed, err := h.Subscribe(ctx, stream.SubscribeOptions{Patterns: []string{"order.#"}, Cursor: cursor})
			require.NoError(t, err)
			defer resumed.Close()
			ev := hubNext(t, resumed)
			require.Equal(t, stream.ResetType, ev.Type)
			require.JSONEq(t, `{"reason":"cursor_expired","stream":"order","partition":0}`, string(ev.Data))
			next := b.publish(t, "order.created", uuid.NewString())
			require.Equal(t, next.id, hubNext(t, resumed).EventID)
			requireNoEvent(t, resumed, 150*time.Millisecond)

			// Resuming from the reset's id is an ordinary resume.
			again, err := h.Subscribe(ctx, stream.SubscribeOptions{Patterns: []string{"order.#"}, Cursor: ev.ID})
			require.NoError(t, err)
			defer again.Close()
			require.Equal(t, next.id, hubNext(t, again).EventID)
		})
	}
}

func TestHubStopDisconnectsAndTolerates(t *testing.T) {
	t.Parallel()
	b := hubSetup(t, false)
	h, err := stream.NewHub(stream.HubConfig{Redis: b.rdb, Names: b.names, Block: 100 * time.Millisecond})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, h.Stop(ctx), "stop without start")
	_, err = h.Subscribe(ctx, stream.SubscribeOptions{})
	require.ErrorIs(t, err, stream.ErrHubStopped)

	h2, err := stream.NewHub(stream.HubConfig{Redis: b.rdb, Names: b.names, Block: 100 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, h2.Start(ctx))
	s, err := h2.Subscribe(ctx, stream.SubscribeOptions{})
	require.NoError(t, err)
	require.NoError(t, h2.Stop(ctx))
	require.NoError(t, h2.Stop(ctx), "second stop")
	_, err = s.Next(ctx)
	require.ErrorIs(t, err, stream.ErrHubStopped)
	s.Close()
}

func TestHubStartsWithoutRedisAndCatchesUp(t *testing.T) {
	t.Parallel()
	b := hubSetup(t, false)
	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer down.Close()
	h, err := stream.NewHub(stream.HubConfig{Redis: down, Names: b.names})
	require.NoError(t, err)
	require.NoError(t, h.Start(context.Background()))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = h.Subscribe(ctx, stream.SubscribeOptions{})
	require.ErrorIs(t, err, context.DeadlineExceeded, "subscribe waits for the readers")
	require.NoError(t, h.Stop(context.Background()))
}

func BenchmarkHubFanOut(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			bb := &hubBundle{rdb: redistest.Client(b), names: stream.Names{Prefix: redistest.Prefix(b)}}
			h, err := stream.NewHub(stream.HubConfig{Redis: bb.rdb, Names: bb.names, QueueSize: 1 << 16})
			require.NoError(b, err)
			ctx := context.Background()
			require.NoError(b, h.Start(ctx))
			defer h.Stop(ctx) //nolint:errcheck
			subs := make([]*stream.Subscriber, n)
			for i := range subs {
				subs[i], err = h.Subscribe(ctx, stream.SubscribeOptions{Patterns: []string{"order.*"}})
				require.NoError(b, err)
			}
			var wg sync.WaitGroup
			for _, s := range subs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range b.N {
						if _, err := s.Next(ctx); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			b.ResetTimer()
			for range b.N {
				bb.publish(b, "order.created", "")
			}
			wg.Wait()
			b.ReportMetric(float64(n), "deliveries/op")
			for _, s := range subs {
				s.Close()
			}
		})
	}
}

// TestHubResumeAcrossDeletedEntry: the relay deletes an entry again when
// a pipeline half fails (and adds the event anew later). A resume over
// such a hole reads on from the stream: no reset, nothing twice.
func TestHubResumeAcrossDeletedEntry(t *testing.T) {
	t.Parallel()
	b := hubSetup(t, true)
	h := b.newHub(t, func(c *stream.HubConfig) { c.CatchUpBatch = 3 })
	ctx := context.Background()
	s, err := h.Subscribe(ctx, stream.SubscribeOptions{Patterns: []string{"order.#"}})
	require.NoError(t, err)
	var pubs []hubPublished
	for range 10 {
		pubs = append(pubs, b.publish(t, "order.created", uuid.NewString()))
	}
	var cursor string
	for range 2 {
		cursor = hubNext(t, s).ID
	}
	s.Close()
	key := b.names.Stream("order", 0)
	entries, err := b.rdb.XRange(ctx, key, "-", "+").Result()
	require.NoError(t, err)
	require.NoError(t, b.rdb.XDel(ctx, key, entries[4].ID).Err())

	resumed, err := h.Subscribe(ctx, stream.SubscribeOptions{Patterns: []string{"order.#"}, Cursor: cursor})
	require.NoError(t, err)
	defer resumed.Close()
	for _, p := range append(pubs[2:4:4], pubs[5:]...) {
		require.Equal(t, p.id, hubNext(t, resumed).EventID)
	}
	requireNoEvent(t, resumed, 200*time.Millisecond)
}

// TestHubOnCluster runs the resume tests on a Redis Cluster of their own,
// where each stream has its own reader: subscribers move between two hubs
// under load, and resume from the event log.
func TestHubOnCluster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t)
	bundle := func(t *testing.T, name string, withDB bool) *hubBundle {
		b := &hubBundle{rdb: c.Client(t), names: stream.Names{Prefix: "bazaar:" + name + ":"}}
		b.client = func() redis.UniversalClient { return redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()}) }
		if withDB {
			b.db, _ = storetest.NewDB(t)
		}
		return b
	}
	t.Run("ResumeUnderLoad", func(t *testing.T) { t.Parallel(); testHubResumeUnderLoad(t, bundle(t, "load", false)) })
	t.Run("ResumeFromEventLog", func(t *testing.T) { t.Parallel(); testHubResumeFromEventLog(t, bundle(t, "log", true)) })
}
