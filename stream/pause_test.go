package stream

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestPauseGroupHoldsReadsUntilResumed: a paused group handles nothing
// published while it is paused (checked after its runner has looked at
// the flag again, not after a sleep), other groups carry on, and resuming
// delivers what waited.
func TestPauseGroupHoldsReadsUntilResumed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	var paused, other recorder
	g := startGroups(t, b, "c1",
		Subscription{Group: "mail", Patterns: []string{"order.#"}, Handler: paused.handle},
		Subscription{Group: "audit", Patterns: []string{"#"}, Handler: other.handle},
	)
	relay := newRelay(t, b, RelayConfig{})
	admin, err := NewAdmin(AdminConfig{Redis: b.rdb, DB: b.db, Names: b.names})
	require.NoError(t, err)

	record(t, b.db, "order.created", "before")
	drain(t, relay)
	eventually(t, "the event before the pause handled", func() bool { return paused.count() == 1 })

	require.ErrorIs(t, admin.PauseGroup(ctx, "nobody", "x"), ErrUnknownGroup)
	require.NoError(t, admin.PauseGroup(ctx, "mail", "ops: mail provider down"))
	r := g.runners[0]
	require.Equal(t, "mail", r.sub.Group)
	// Two looks at the flag after setting it: the second began after the
	// pause was set, so the runner is paused from then on.
	checks := r.pauseChecks.Load()
	eventually(t, "the runner saw the pause", func() bool { return r.pauseChecks.Load() >= checks+2 })

	record(t, b.db, "order.created", "during-1", "during-2")
	drain(t, relay)
	eventually(t, "the other group handled them", func() bool { return other.count() == 3 })
	checks = r.pauseChecks.Load()
	eventually(t, "the paused runner looked again", func() bool { return r.pauseChecks.Load() >= checks+2 })
	require.Equal(t, 1, paused.count(), "a paused group handles nothing")

	ov, err := admin.Inspect(ctx)
	require.NoError(t, err)
	var seen bool
	for _, st := range ov.Streams {
		for _, gs := range st.Groups {
			if gs.Name == "mail" {
				seen = true
				require.True(t, gs.Paused)
				require.EqualValues(t, 2, *gs.Lag, "the paused group's lag shows what waits")
			}
			if gs.Name == "audit" {
				require.False(t, gs.Paused)
			}
		}
		if st.Name == b.names.Stream("order", 0) {
			require.EqualValues(t, 3, st.EntriesAdded)
		}
	}
	require.True(t, seen)

	require.NoError(t, admin.ResumeGroup(ctx, "mail"))
	eventually(t, "resumed group handled what waited", func() bool { return paused.count() == 3 })
}

// TestRedriveAtRate: all dead letters move to the retry stream in batches,
// with progress after each; cancelling stops between batches and leaves
// the rest.
func TestRedriveAtRate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	var handled atomic.Int64
	startGroups(t, b, "c1", Subscription{
		Group: "billing", Patterns: []string{"order.created"}, MaxDeliveries: 1, VisibilityTimeout: 50 * time.Millisecond,
		Handler: func(context.Context, Message) error { handled.Add(1); return errors.New("down") },
	})
	recordMany(t, b.db, "order.created", 30, 30)
	drain(t, newRelay(t, b, RelayConfig{}))
	admin, err := NewAdmin(AdminConfig{Redis: b.rdb, DB: b.db, Names: b.names})
	require.NoError(t, err)
	dlqLen := func() int64 {
		n, err := b.rdb.XLen(ctx, b.names.DLQ("billing")).Result()
		require.NoError(t, err)
		return n
	}
	eventually(t, "all dead-lettered", func() bool { return dlqLen() == 30 })

	_, err = admin.RedriveAtRate(ctx, "billing", 0, nil)
	require.ErrorIs(t, err, ErrBadSelection)

	// Cancelled once the first batch (a tenth of 50/s: 5) has moved.
	cctx, cancel := context.WithCancel(ctx)
	var mu sync.Mutex
	var seen [][2]int
	moved, err := admin.RedriveAtRate(cctx, "billing", 50, func(m, total int) {
		mu.Lock()
		seen = append(seen, [2]int{m, total})
		mu.Unlock()
		if m >= 5 {
			cancel()
		}
	})
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, 5, moved)
	require.Equal(t, [][2]int{{0, 30}, {5, 30}}, seen)

	// The rest, to the end, at a high rate.
	seen = nil
	moved, err = admin.RedriveAtRate(ctx, "billing", 1000, func(m, total int) {
		mu.Lock()
		seen = append(seen, [2]int{m, total})
		mu.Unlock()
	})
	require.NoError(t, err)
	require.GreaterOrEqual(t, moved, 25, "at least what was left when it started")
	require.Equal(t, [2]int{moved, seen[0][1]}, seen[len(seen)-1])
	for i := 1; i < len(seen); i++ {
		require.Greater(t, seen[i][0], seen[i-1][0], "progress grows")
	}
}

// TestReplayGroupFromTime: the dry run counts the published events since a
// time that the group's patterns match; the replay sends exactly those to
// that group again, in order, and no other group sees them.
func TestReplayGroupFromTime(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	var orders, other recorder
	startGroups(t, b, "c1",
		Subscription{Group: "search", Patterns: []string{"order.*"}, Handler: orders.handle},
		Subscription{Group: "audit", Patterns: []string{"#"}, Handler: other.handle},
	)
	relay := newRelay(t, b, RelayConfig{})
	old := record(t, b.db, "order.created", "old")
	// The outbox names an event by (seq, time): both move together.
	_, err := b.db.ExecContext(ctx, `WITH e AS (UPDATE events SET time = now() - interval '2 hours' WHERE id = $1 RETURNING seq, time)
UPDATE outbox o SET time = e.time FROM e WHERE o.seq = e.seq`, old[0].ID)
	require.NoError(t, err)
	since := time.Now().Add(-time.Hour)
	recent := record(t, b.db, "order.created", "a", "b")
	recent = append(recent, record(t, b.db, "order.confirmed", "a")...)
	record(t, b.db, "user.registered", "u")
	drain(t, relay)
	eventually(t, "all handled once", func() bool { return orders.count() == 4 && other.count() == 5 })
	admin, err := NewAdmin(AdminConfig{Redis: b.rdb, DB: b.db, Names: b.names})
	require.NoError(t, err)

	n, err := admin.ReplayCount(ctx, "search", since)
	require.NoError(t, err)
	require.EqualValues(t, 3, n, "order.* since the time: not the old one, not user.registered")
	_, err = admin.ReplayCount(ctx, "nobody", since)
	require.ErrorIs(t, err, ErrUnknownGroup)

	sent, err := admin.Replay(ctx, "search", since)
	require.NoError(t, err)
	require.Equal(t, 3, sent)
	eventually(t, "replayed events handled", func() bool { return orders.count() == 7 })
	var again []string
	for _, m := range orders.seen()[4:] {
		again = append(again, m.ID)
	}
	require.Equal(t, []string{recent[0].ID.String(), recent[1].ID.String(), recent[2].ID.String()}, again, "in recorded order")
	depth, err := b.rdb.XLen(ctx, b.names.Retry("audit")).Result()
	require.NoError(t, err)
	require.Zero(t, depth, "other groups are sent nothing")
	require.Equal(t, 5, other.count())
}
