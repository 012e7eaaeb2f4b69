package stream

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream/redistest"
)

// listenBundle is a bundle whose writers reach PostgreSQL through p and
// whose relay listens on the direct URL, as in production behind PgBouncer.
func listenBundle(t *testing.T, p storetest.Pool) (testBundle, string) {
	t.Helper()
	db, _, direct := storetest.NewDBVia(t, p)
	return testBundle{db: db, rdb: redistest.Client(t), names: Names{Prefix: redistest.Prefix(t)}, log: testLogger(t)}, direct
}

func startNotifier(t *testing.T, b testBundle) *Notifier {
	t.Helper()
	n, err := NewNotifier(NotifierConfig{DB: b.db, Logger: b.log})
	require.NoError(t, err)
	require.NoError(t, n.Start(context.Background()))
	t.Cleanup(func() { require.NoError(t, n.Stop(context.Background())) })
	return n
}

// A commit in another process (the notifier's own pool, possibly through
// PgBouncer) wakes a listening relay whose poll would never fire in time.
func TestRelayListenWakesOnNotify(t *testing.T) {
	t.Parallel()
	for _, p := range storetest.Pools {
		t.Run(p.String(), func(t *testing.T) {
			t.Parallel()
			b, direct := listenBundle(t, p)
			startRelay(t, b, RelayConfig{PollInterval: time.Hour, ListenDSN: direct})
			n := startNotifier(t, b)
			for i := range 3 {
				record(t, b.db, "order.created", "ord-"+string(rune('a'+i)))
				n.EventsCommitted()
				eventually(t, "event published after NOTIFY", func() bool { return unpublished(t, b.db) == 0 })
			}
		})
	}
}

// A NOTIFY that never comes (a writer without BAZAAR_OUTBOX_NOTIFY, a
// notifier that failed) costs a poll interval, not the event.
func TestRelayListenLostNotifyFallsBackToPoll(t *testing.T) {
	t.Parallel()
	b, direct := listenBundle(t, storetest.Direct)
	startRelay(t, b, RelayConfig{PollInterval: 100 * time.Millisecond, ListenDSN: direct})
	eventually(t, "relay listening", func() bool { return listenerPID(t, b) != 0 })
	time.Sleep(50 * time.Millisecond) // past the wake at connect
	record(t, b.db, "order.created", "ord-1")
	eventually(t, "event published by the poll", func() bool { return unpublished(t, b.db) == 0 })
}

// When the listen connection drops, the relay reconnects and wakes, so an
// event committed while nobody listened is published without the poll,
// and later NOTIFYs reach it again.
func TestRelayListenReconnects(t *testing.T) {
	t.Parallel()
	b, direct := listenBundle(t, storetest.Direct)
	startRelay(t, b, RelayConfig{PollInterval: time.Hour, ListenDSN: direct})
	n := startNotifier(t, b)
	ctx := context.Background()
	listener := func() int { return listenerPID(t, b) }
	eventually(t, "relay listening", func() bool { return listener() != 0 })
	first := listener()
	// Recorded without a NOTIFY, as a commit made while the listen connection
	// is down is announced to nobody; recording it before the kill keeps the
	// test from racing the reconnect (which takes 10 ms) to the commit.
	record(t, b.db, "order.created", "ord-1")
	require.EqualValues(t, 1, unpublished(t, b.db), "nothing woke the relay yet")
	_, err := b.db.ExecContext(ctx, `SELECT pg_terminate_backend($1)`, first)
	require.NoError(t, err)
	eventually(t, "event published after reconnecting", func() bool { return unpublished(t, b.db) == 0 })
	eventually(t, "a new listen connection", func() bool { p := listener(); return p != 0 && p != first })
	record(t, b.db, "order.created", "ord-2")
	n.EventsCommitted()
	eventually(t, "event published after NOTIFY on the new connection", func() bool { return unpublished(t, b.db) == 0 })
}

// listenerPID is the relay's listening backend in the test's own database
// (0 while there is none).
func listenerPID(t *testing.T, b testBundle) (pid int) {
	t.Helper()
	err := b.db.GetContext(context.Background(), &pid, `SELECT coalesce(max(pid), 0) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid() AND query ILIKE 'LISTEN%'`)
	require.NoError(t, err)
	return pid
}
