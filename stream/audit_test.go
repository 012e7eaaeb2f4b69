package stream

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/stream/redistest"
)

func newAuditor(t *testing.T, b testBundle, cfg AuditConfig) *Auditor {
	t.Helper()
	cfg.DB, cfg.Redis, cfg.Names, cfg.Logger = b.db, b.rdb, b.names, b.log
	a, err := NewAuditor(cfg)
	require.NoError(t, err)
	return a
}

func audit(t *testing.T, a *Auditor, repair bool) AuditReport {
	t.Helper()
	rep, err := a.Run(context.Background(), AuditOptions{Since: time.Now().Add(-time.Hour), Repair: repair})
	require.NoError(t, err)
	return rep
}

func missingIDs(rep AuditReport) []string {
	var out []string
	for _, m := range rep.MissingEvents {
		out = append(out, m.ID)
	}
	return out
}

// auditGroups are two groups subscribed to the order stream; each counts
// what it handles.
type auditGroups struct {
	b          testBundle
	subs       []Subscription
	recs       []*recorder
	consumerID string
}

func newAuditGroups(b testBundle) *auditGroups {
	g := &auditGroups{b: b, consumerID: "c1"}
	for _, name := range []string{"audit-inventory", "audit-mail"} {
		rec := &recorder{}
		g.recs = append(g.recs, rec)
		g.subs = append(g.subs, Subscription{Group: name, Patterns: []string{"order.#"}, Handler: rec.handle})
	}
	return g
}

// create makes the groups at the end of the streams, reading nothing yet.
func (g *auditGroups) create(t *testing.T) {
	t.Helper()
	gr := newGroups(t, g.b, g.consumerID, g.subs...)
	require.NoError(t, gr.Start(context.Background()))
	require.NoError(t, gr.Stop(context.Background()))
}

// consumeAll reads until every group has handled want events and holds
// nothing pending, then stops, so the counts are final.
func (g *auditGroups) consumeAll(t *testing.T, stream string, want int) {
	t.Helper()
	gr := newGroups(t, g.b, g.consumerID, g.subs...)
	require.NoError(t, gr.Start(context.Background()))
	for i, rec := range g.recs {
		group := g.subs[i].Group
		eventually(t, group+" handles every event", func() bool {
			if rec.count() < want {
				return false
			}
			p, err := g.b.rdb.XPending(context.Background(), stream, group).Result()
			return err == nil && p.Count == 0
		})
	}
	require.NoError(t, gr.Stop(context.Background()))
}

// requireEachOnce asserts that every group handled each of ids exactly
// once and nothing else.
func (g *auditGroups) requireEachOnce(t *testing.T, ids []string) {
	t.Helper()
	want := map[string]int{}
	for _, id := range ids {
		want[id] = 1
	}
	for i, rec := range g.recs {
		require.Equal(t, want, countByID(rec.seen()), "group %s", g.subs[i].Group)
	}
}

func eventIDs(events []store.Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.ID.String()
	}
	return out
}

func TestAuditRepairsEntriesDeletedBehindTheRelay(t *testing.T) {
	t.Parallel()
	eachPool(t, func(t *testing.T, b testBundle) {
		ctx := context.Background()
		groups := newAuditGroups(b)
		groups.create(t)

		events := record(t, b.db, "order.created", "o0", "o1", "o2", "o3", "o4", "o5", "o6", "o7", "o8", "o9")
		drain(t, newRelay(t, b, RelayConfig{}))
		stream := b.names.ForEvent("order.created", "o0")
		entries, err := b.rdb.XRange(ctx, stream, "-", "+").Result()
		require.NoError(t, err)
		require.Len(t, entries, 10)
		var lost []string
		for _, i := range []int{2, 5, 9} {
			require.NoError(t, b.rdb.XDel(ctx, stream, entries[i].ID).Err())
			lost = append(lost, events[i].ID.String())
		}

		reg := prometheus.NewRegistry()
		a := newAuditor(t, b, AuditConfig{Registry: reg})
		rep := audit(t, a, false)
		require.Equal(t, 10, rep.Checked)
		require.Equal(t, 3, rep.Missing)
		require.Equal(t, lost, missingIDs(rep))
		require.Zero(t, rep.Repaired)
		require.False(t, rep.Consistent())
		require.Equal(t, 3.0, testutil.ToFloat64(a.tel.missing))
		require.InDelta(t, float64(time.Now().Unix()), testutil.ToFloat64(a.tel.lastRun), 60)
		n, err := b.rdb.XLen(ctx, stream).Result()
		require.NoError(t, err)
		require.Equal(t, int64(7), n, "an audit without repair changes nothing")

		rep = audit(t, a, true)
		require.Equal(t, 3, rep.Missing)
		require.Equal(t, 3, rep.Repaired)
		require.True(t, rep.Consistent())

		// The log now points at the new entries: the next audit finds nothing
		// and publishes nothing again.
		rep = audit(t, a, true)
		require.Zero(t, rep.Missing)
		require.Zero(t, rep.Repaired)
		require.Equal(t, 0.0, testutil.ToFloat64(a.tel.missing))
		n, err = b.rdb.XLen(ctx, stream).Result()
		require.NoError(t, err)
		require.Equal(t, int64(10), n)

		groups.consumeAll(t, stream, 10)
		groups.requireEachOnce(t, eventIDs(events))
	})
}

func TestAuditLooksOnlyWithinTheTrimHorizon(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	events := record(t, b.db, "order.created", "o0", "o1", "o2", "o3", "o4", "o5")
	drain(t, newRelay(t, b, RelayConfig{}))
	stream := b.names.ForEvent("order.created", "o0")
	entries, err := b.rdb.XRange(ctx, stream, "-", "+").Result()
	require.NoError(t, err)
	// Trimmed (the first three): below the horizon, not missing. Deleted
	// (the fifth): above it, missing.
	require.NoError(t, b.rdb.XTrimMinID(ctx, stream, entries[3].ID).Err())
	require.NoError(t, b.rdb.XDel(ctx, stream, entries[4].ID).Err())

	rep := audit(t, newAuditor(t, b, AuditConfig{}), false)
	require.Equal(t, 1, rep.Missing)
	require.Equal(t, []string{events[4].ID.String()}, missingIDs(rep))
	require.Zero(t, rep.Orphans)
}

func TestAuditReportsOrphanEntriesAndStaleDeadLetters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	record(t, b.db, "order.created", "o0", "o1")
	drain(t, newRelay(t, b, RelayConfig{}))
	stream := b.names.ForEvent("order.created", "o0")
	// An entry whose event id no row has, and one with no id at all.
	stranger := mustUUID(t).String()
	require.NoError(t, b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: map[string]any{FieldID: stranger, FieldType: "order.created"}}).Err())
	require.NoError(t, b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: map[string]any{"k": "v"}}).Err())
	// A group with one dead letter from long ago and one from now.
	require.NoError(t, b.rdb.XGroupCreateMkStream(ctx, stream, "audit-stale", "$").Err())
	dlq := b.names.DLQ("audit-stale")
	old := time.Now().Add(-3 * time.Hour).UnixMilli()
	require.NoError(t, b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: dlq, ID: xid{ms: uint64(old)}.String(), Values: map[string]any{FieldID: "old"}}).Err())
	require.NoError(t, b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: dlq, Values: map[string]any{FieldID: "new"}}).Err())

	rep := audit(t, newAuditor(t, b, AuditConfig{DLQMaxAge: time.Hour}), true)
	require.Zero(t, rep.Missing)
	require.Equal(t, 2, rep.Orphans)
	got := []string{rep.OrphanEntries[0].EventID, rep.OrphanEntries[1].EventID}
	require.Equal(t, []string{stranger, ""}, got)
	require.Equal(t, 1, rep.StaleDeadLetters)
	require.Equal(t, "audit-stale", rep.StaleEntries[0].Group)
	require.Equal(t, "old", rep.StaleEntries[0].EventID)
	require.InDelta(t, 3*time.Hour, rep.StaleEntries[0].Age, float64(time.Minute))
	require.False(t, rep.Consistent())
}

func TestAuditRunsOneAtATime(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, ok, err := store.AcquireLease(context.Background(), b.db, auditLease, "someone-else", time.Minute)
	require.NoError(t, err)
	require.True(t, ok)
	_, err = newAuditor(t, b, AuditConfig{}).Run(context.Background(), AuditOptions{Since: time.Now().Add(-time.Hour)})
	require.ErrorIs(t, err, ErrAuditBusy)
}

// A Redis with appendfsync no leaves flushing its AOF to the kernel: a
// SIGKILL alone loses nothing (the kernel still writes what Redis wrote),
// but a host crash loses the writes not yet on disk. The test plays that:
// it notes the AOF's size, publishes more, SIGKILLs the server, cuts the
// AOF back to the noted size and restarts it. The relay had marked the
// second batch published; the audit finds it missing and repairs it.
func TestAuditRepairsLossAfterRedisCrashWithoutFsync(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t, redistest.ServerOptions{Persist: true, AppendFsync: "no"})
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: 5})
	t.Cleanup(func() { _ = rdb.Close() })
	b := setup(t)
	b.rdb = rdb
	ctx := context.Background()
	groups := newAuditGroups(b)
	groups.create(t)
	relay := newRelay(t, b, RelayConfig{})

	kept := record(t, b.db, "order.created", "k0", "k1", "k2", "k3", "k4")
	drain(t, relay)
	size, err := srv.AOFSize()
	require.NoError(t, err)
	lost := record(t, b.db, "order.created", "l0", "l1", "l2", "l3", "l4")
	drain(t, relay)
	require.Zero(t, unpublished(t, b.db))
	grown, err := srv.AOFSize()
	require.NoError(t, err)
	require.Greater(t, grown, size, "the second batch reached the AOF")

	srv.Stop() // SIGKILL
	require.NoError(t, srv.TruncateAOF(size))
	require.NoError(t, srv.Start())
	stream := b.names.ForEvent("order.created", "k0")
	n, err := rdb.XLen(ctx, stream).Result()
	require.NoError(t, err)
	require.Equal(t, int64(5), n, "the restarted server lost the second batch")

	a := newAuditor(t, b, AuditConfig{})
	rep := audit(t, a, true)
	require.Equal(t, eventIDs(lost), missingIDs(rep))
	require.Equal(t, 5, rep.Repaired)
	require.Zero(t, audit(t, a, false).Missing)

	groups.consumeAll(t, stream, 10)
	groups.requireEachOnce(t, append(eventIDs(kept), eventIDs(lost)...))
}
