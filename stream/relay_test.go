package stream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/stream/redistest"
)

func TestRelayPublishesAndMarks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	seller := mustUUID(t)
	e, err := store.NewEvent("order.created", "ord-1", &seller, 1, map[string]int{"total": 42})
	require.NoError(t, err)
	e.RequestID, e.TraceParent = "req-1", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	require.NoError(t, store.InsertEvents(ctx, b.db, e))
	record(t, b.db, "user.registered", "usr-1")

	r := newRelay(t, b, RelayConfig{})
	drain(t, r)
	require.Zero(t, unpublished(t, b.db))

	orders, err := b.rdb.XRange(ctx, b.names.Stream("order", 0), "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, orders, 1)
	env, err := DecodeEnvelope(orders[0].Values)
	require.NoError(t, err)
	require.Equal(t, e.ID.String(), env.ID)
	require.Equal(t, "order.created", env.Type)
	require.Equal(t, "ord-1", env.Subject)
	require.Equal(t, seller.String(), env.Seller)
	require.Equal(t, "req-1", env.RequestID)
	require.Equal(t, e.TraceParent, env.TraceParent)
	require.Equal(t, "urn:bazaar:order.created:1", env.DataSchema)
	require.JSONEq(t, `{"total":42}`, string(env.Data))
	require.Equal(t, "order.created", orders[0].Values[FieldType])

	rows, err := store.EventsBySubject(ctx, b.db, "ord-1")
	require.NoError(t, err)
	require.NotNil(t, rows[0].PublishedAt)
	require.Equal(t, b.names.Stream("order", 0), *rows[0].Stream)
	require.Equal(t, orders[0].ID, *rows[0].StreamID)

	users, err := b.rdb.XLen(ctx, b.names.Stream("user", 0)).Result()
	require.NoError(t, err)
	require.EqualValues(t, 1, users)
}

func TestRelayWakesOnCommit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// A poll this slow never fires within the test: only the wake-up can
	// publish in time.
	r := startRelay(t, b, RelayConfig{PollInterval: time.Hour})
	time.Sleep(50 * time.Millisecond) // let the first, empty batch pass
	record(t, b.db, "order.created", "ord-1")
	r.EventsCommitted()
	eventually(t, "event published after wake-up", func() bool { return unpublished(t, b.db) == 0 })
}

func TestRelayPartitionsKeepSubjectTogether(t *testing.T) {
	t.Parallel()
	testRelayPartitionsKeepSubjectTogether(t, setup(t))
}

func testRelayPartitionsKeepSubjectTogether(t *testing.T, b testBundle) {
	b.names.Partitions = 4
	recordMany(t, b.db, "order.created", 200, 20)
	drain(t, newRelay(t, b, RelayConfig{}))
	where := map[string]string{}
	total := int64(0)
	for _, s := range b.names.Streams("order") {
		msgs, err := b.rdb.XRange(context.Background(), s, "-", "+").Result()
		require.NoError(t, err)
		total += int64(len(msgs))
		for _, m := range msgs {
			subj := m.Values[FieldSubject].(string)
			if prev, ok := where[subj]; ok {
				require.Equal(t, prev, s, "subject %s split across partitions", subj)
			}
			where[subj] = s
		}
	}
	require.EqualValues(t, 200, total)
	require.Greater(t, len(map[string]bool{where["subj-0"]: true, where["subj-1"]: true, where["subj-2"]: true, where["subj-3"]: true, where["subj-5"]: true}), 1)
}

// TestRelayHoldsBackBehindOlderEvent: when another relay holds an older
// event of a subject, a newer one waits, so the subject stays in order.
func TestRelayHoldsBackBehindOlderEvent(t *testing.T) {
	t.Parallel()
	eachPool(t, func(t *testing.T, b testBundle) {
		ctx := context.Background()
		evs := record(t, b.db, "order.created", "ord-1")
		evs = append(evs, record(t, b.db, "order.confirmed", "ord-1")...)
		record(t, b.db, "order.created", "ord-2")

		// Another relay has claimed the oldest event and not yet committed.
		tx, err := b.db.BeginTxx(ctx, nil)
		require.NoError(t, err)
		defer tx.Rollback() //nolint:errcheck
		held, err := store.ClaimUnpublished(ctx, tx, 1)
		require.NoError(t, err)
		require.Equal(t, evs[0].ID, held[0].ID)

		r := newRelay(t, b, RelayConfig{})
		n, err := r.PublishBatch(ctx)
		require.NoError(t, err)
		require.Equal(t, 2, n) // claimed ord-1's second event and ord-2's
		msgs, err := b.rdb.XRange(ctx, b.names.Stream("order", 0), "-", "+").Result()
		require.NoError(t, err)
		require.Len(t, msgs, 1, "only ord-2 may be published while ord-1's first event is held")
		require.Equal(t, "ord-2", msgs[0].Values[FieldSubject])

		require.NoError(t, tx.Rollback())
		drain(t, r)
		msgs, err = b.rdb.XRange(ctx, b.names.Stream("order", 0), "-", "+").Result()
		require.NoError(t, err)
		require.Len(t, msgs, 3)
		require.Equal(t, evs[0].ID.String(), msgs[1].Values[FieldID])
		require.Equal(t, evs[1].ID.String(), msgs[2].Values[FieldID])
	})
}

// TestRelayCrashBetweenAddAndMark: a relay that dies after XADD and before
// its commit leaves the events waiting; they are published again, and the
// Once helper absorbs the duplicate.
func TestRelayCrashBetweenAddAndMark(t *testing.T) {
	t.Parallel()
	eachPool(t, testRelayCrashBetweenAddAndMark)
}

func testRelayCrashBetweenAddAndMark(t *testing.T, b testBundle) {
	ctx := context.Background()
	record(t, b.db, "order.created", "ord-1", "ord-2")

	_, err := b.db.ExecContext(ctx, `CREATE TABLE effects (event_id uuid NOT NULL, subject text NOT NULL)`)
	require.NoError(t, err)
	startGroups(t, b, "c1", Subscription{
		Group: "ledger", Patterns: []string{"order.created"},
		Handler: Once(b.db, "ledger", func(ctx context.Context, tx *sqlx.Tx, m Message) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO effects VALUES ($1, $2)`, m.ID, m.Subject)
			return err
		}),
	})

	crashing := newRelay(t, b, RelayConfig{})
	crashing.afterAdd = func() error { return errors.New("killed") }
	_, err = crashing.PublishBatch(ctx)
	require.Error(t, err)
	require.EqualValues(t, 2, unpublished(t, b.db), "a crash before commit leaves the events waiting")

	drain(t, newRelay(t, b, RelayConfig{}))
	n, err := b.rdb.XLen(ctx, b.names.Stream("order", 0)).Result()
	require.NoError(t, err)
	require.EqualValues(t, 4, n, "each event is on the stream twice")

	eventually(t, "duplicates handled", func() bool {
		// Read count first: pending 0 afterwards means all four were handled.
		info, ierr := b.rdb.XInfoGroups(ctx, b.names.Stream("order", 0)).Result()
		p, err := b.rdb.XPending(ctx, b.names.Stream("order", 0), "ledger").Result()
		return err == nil && ierr == nil && p.Count == 0 && info[0].EntriesRead == 4
	})
	var rows []struct {
		EventID string `db:"event_id"`
		N       int    `db:"n"`
	}
	require.NoError(t, b.db.SelectContext(ctx, &rows, `SELECT event_id, count(*) AS n FROM effects GROUP BY event_id ORDER BY event_id`))
	require.Len(t, rows, 2)
	for _, r := range rows {
		require.Equal(t, 1, r.N, "event %s applied twice", r.EventID)
	}
}

// TestRelayRedisDown: while Redis is down events are recorded and wait;
// when it returns every event is published once, each subject in order.
func TestRelayRedisDown(t *testing.T) {
	t.Parallel()
	b := setup(t)
	srv := redistest.StartServer(t, redistest.ServerOptions{})
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	b.rdb = rdb
	startRelay(t, b, RelayConfig{PollInterval: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})

	const subjects = 5
	recordMany(t, b.db, "order.created", 50, subjects)
	eventually(t, "first events published", func() bool { return unpublished(t, b.db) == 0 })

	srv.Stop()
	for range 20 {
		recordMany(t, b.db, "order.updated", 5, subjects) // writes go on while Redis is down
	}
	time.Sleep(300 * time.Millisecond)
	require.EqualValues(t, 100, unpublished(t, b.db), "the backlog waits while Redis is down")

	require.NoError(t, srv.Start()) // an empty Redis: the stream starts over
	eventually(t, "backlog drained", func() bool { return unpublished(t, b.db) == 0 })
	msgs, err := rdb.XRange(context.Background(), b.names.Stream("order", 0), "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, msgs, 100, "every waiting event published once")
	assertSubjectOrder(t, b.db, msgs)
}

// TestSeveralRelaysKeepSubjectOrder: four relays with small batches drain
// an outbox that three writers keep filling, over five subjects, so claims
// interleave and the per-subject check (its quick count and its full
// query) decides what each relay may publish. Every event lands exactly
// once, each subject's events in seq order, with one position each.
func TestSeveralRelaysKeepSubjectOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	// Lane counts differ between relays, so their lanes overlap: a lane
	// can claim events of a subject whose older events another relay's
	// lane holds.
	relays := make([]*Relay, 4)
	for i, lanes := range []int{1, 2, 3, 2} {
		relays[i] = newRelay(t, b, RelayConfig{BatchSize: 7, Lanes: lanes})
	}
	const writers, perWriter = 3, 40
	var writing sync.WaitGroup
	for w := range writers {
		writing.Add(1)
		go func() {
			defer writing.Done()
			for i := range perWriter {
				ev, err := store.NewEvent("order.created", fmt.Sprintf("ord-%d", (w+i)%5), nil, 1, map[string]int{"i": i})
				if err != nil {
					t.Error(err)
					return
				}
				// Writers lock the aggregate before recording its event, as
				// the API does with the order's row: seq order is then
				// commit order per subject, the order the relays keep.
				err = store.WithTx(ctx, b.db, func(tx *sqlx.Tx) error {
					if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, ev.Subject); err != nil {
						return err
					}
					return store.InsertEvents(ctx, tx, ev)
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { writing.Wait(); close(done) }()
	var publishing sync.WaitGroup
	for _, r := range relays {
		publishing.Add(1)
		go func() {
			defer publishing.Done()
			for {
				n, err := r.PublishBatch(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				if n == 0 {
					select {
					case <-done:
						waiting, err := store.HasUnpublished(ctx, b.db)
						if err != nil {
							t.Error(err)
							return
						}
						if !waiting {
							return
						}
					default:
					}
				}
			}
		}()
	}
	publishing.Wait()
	require.Zero(t, unpublished(t, b.db))
	msgs, err := b.rdb.XRange(ctx, b.names.Stream("order", 0), "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, msgs, writers*perWriter, "every event published once")
	assertSubjectOrder(t, b.db, msgs)
	var positions int
	require.NoError(t, b.db.GetContext(ctx, &positions, `SELECT count(DISTINCT seq) FROM event_positions`))
	require.Equal(t, writers*perWriter, positions)
}

// assertSubjectOrder checks that entries of each subject appear in seq order.
func assertSubjectOrder(t *testing.T, db *sqlx.DB, msgs []redis.XMessage) {
	t.Helper()
	seqOf := map[string]int64{}
	var all []struct {
		ID  string `db:"id"`
		Seq int64  `db:"seq"`
	}
	require.NoError(t, db.SelectContext(context.Background(), &all, `SELECT id::text AS id, seq FROM events`))
	for _, r := range all {
		seqOf[r.ID] = r.Seq
	}
	last := map[string]int64{}
	for _, m := range msgs {
		subj, id := m.Values[FieldSubject].(string), m.Values[FieldID].(string)
		seq, ok := seqOf[id]
		require.True(t, ok)
		require.Greater(t, seq, last[subj], "subject %s out of order at entry %s", subj, m.ID)
		last[subj] = seq
	}
}

func TestTrimKeepsWhatGroupsNeed(t *testing.T) {
	t.Parallel()
	testTrimKeepsWhatGroupsNeed(t, setup(t))
}

func testTrimKeepsWhatGroupsNeed(t *testing.T, b testBundle) {
	ctx := context.Background()
	s := b.names.Stream("order", 0)
	for i := range 1000 {
		require.NoError(t, b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: s, Values: map[string]any{"n": i}}).Err())
	}
	all, err := b.rdb.XRange(ctx, s, "-", "+").Result()
	require.NoError(t, err)
	// A slow group has read 300 entries and acknowledged 100 of them.
	require.NoError(t, b.rdb.XGroupCreate(ctx, s, "slow", "0").Err())
	require.NoError(t, b.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "slow", Consumer: "c", Streams: []string{s, ">"}, Count: 300}).Err())
	ids := make([]string, 100)
	for i := range ids {
		ids[i] = all[i].ID
	}
	require.NoError(t, b.rdb.XAck(ctx, s, "slow", ids...).Err())

	r := newRelay(t, b, RelayConfig{MaxLen: 50})
	_, err = r.Trim(ctx)
	require.NoError(t, err)
	first, err := b.rdb.XRangeN(ctx, s, "-", "+", 1).Result()
	require.NoError(t, err)
	require.LessOrEqual(t, compareIDs(first[0].ID, all[100].ID), 0, "trimmed past the group's oldest pending entry")
	n, _ := b.rdb.XLen(ctx, s).Result()
	require.Less(t, n, int64(1000), "nothing trimmed although the group acknowledged 100 entries")

	// Once the group has acknowledged everything, the length limit applies.
	rest := make([]string, 0, 900)
	for _, m := range all[100:] {
		rest = append(rest, m.ID)
	}
	require.NoError(t, b.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "slow", Consumer: "c", Streams: []string{s, ">"}, Count: 1000}).Err())
	require.NoError(t, b.rdb.XAck(ctx, s, "slow", rest...).Err())
	for range 3 {
		_, err = r.Trim(ctx)
		require.NoError(t, err)
	}
	n, _ = b.rdb.XLen(ctx, s).Result()
	require.GreaterOrEqual(t, n, int64(50))
	require.Less(t, n, int64(300), "approximate trimming keeps whole nodes, not the whole stream")

	// Age: entries older than MaxAge go (all of them here), unless a group needs them.
	time.Sleep(20 * time.Millisecond)
	aged := newRelay(t, b, RelayConfig{MaxAge: 10 * time.Millisecond})
	_, err = aged.Trim(ctx)
	require.NoError(t, err)
	n, _ = b.rdb.XLen(ctx, s).Result()
	require.Less(t, n, int64(100))
}

func TestNewRelayValidates(t *testing.T) {
	t.Parallel()
	_, err := NewRelay(RelayConfig{})
	require.Error(t, err)
	b := setup(t)
	_, err = NewRelay(RelayConfig{DB: b.db, Redis: b.rdb, BatchSize: -1})
	require.Error(t, err)
	r := newRelay(t, b, RelayConfig{})
	require.NoError(t, r.Stop(context.Background()), "stop without start")
	require.NoError(t, r.Start(context.Background()))
	require.Error(t, r.Start(context.Background()))
	require.NoError(t, r.Stop(context.Background()))
	require.NoError(t, r.Stop(context.Background()), "second stop")
}
