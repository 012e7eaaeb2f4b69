package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
)

func outboxEvent(t *testing.T, typ, subject string) store.Event {
	t.Helper()
	e, err := store.NewEvent(typ, subject, nil, 1, map[string]string{"s": subject})
	require.NoError(t, err)
	return e
}

func TestRelayQueries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := storetest.NewDB(t)
	a1, a2, b1 := outboxEvent(t, "order.created", "a"), outboxEvent(t, "order.confirmed", "a"), outboxEvent(t, "order.created", "b")
	waiting, err := store.HasUnpublished(ctx, db)
	require.NoError(t, err)
	require.False(t, waiting)
	require.NoError(t, store.InsertEvents(ctx, db, a1, a2, b1))
	waiting, err = store.HasUnpublished(ctx, db)
	require.NoError(t, err)
	require.True(t, waiting)

	backlog, err := store.OutboxBacklog(ctx, db)
	require.NoError(t, err)
	require.EqualValues(t, 3, backlog.Count)
	require.NotNil(t, backlog.Oldest)

	// One relay holds a's first event.
	holder, err := db.BeginTxx(ctx, nil)
	require.NoError(t, err)
	defer holder.Rollback() //nolint:errcheck
	held, err := store.ClaimUnpublished(ctx, holder, 1)
	require.NoError(t, err)
	require.Len(t, held, 1)
	require.Equal(t, a1.ID, held[0].ID)

	err = store.WithTx(ctx, db, func(tx *sqlx.Tx) error {
		require.NoError(t, store.LockPublishShared(ctx, tx))
		got, err := store.ClaimUnpublished(ctx, tx, 10)
		require.NoError(t, err)
		require.Len(t, got, 2, "the held row is skipped")
		first, err := store.FirstWaiting(ctx, tx, []store.Claim{{Subject: "a", MaxSeq: got[0].Seq}, {Subject: "b", MaxSeq: got[1].Seq}}, []int64{got[0].Seq, got[1].Seq})
		require.NoError(t, err)
		require.Equal(t, map[string]int64{"a": held[0].Seq}, first, "a's older event still waits outside this claim")
		return store.MarkPublished(ctx, tx, []store.Publication{{Seq: got[1].Seq, Time: got[1].Time, Stream: "s:order", StreamID: "5-0"}})
	})
	require.NoError(t, err)
	require.NoError(t, holder.Rollback())

	rows, err := store.EventsBySubject(ctx, db, "b")
	require.NoError(t, err)
	require.NotNil(t, rows[0].PublishedAt)
	require.Equal(t, "s:order", *rows[0].Stream)
	require.Equal(t, "5-0", *rows[0].StreamID)

	last, err := store.LastStreamID(ctx, db, "s:order")
	require.NoError(t, err)
	require.Equal(t, "5-0", last)
	last, err = store.LastStreamID(ctx, db, "s:none")
	require.NoError(t, err)
	require.Empty(t, last)

	since, err := store.PublishedSince(ctx, db, time.Now().Add(-time.Hour), []string{"s:order"}, 0, 10)
	require.NoError(t, err)
	require.Len(t, since, 1)
	require.Equal(t, b1.ID, since[0].ID)
	since, err = store.PublishedSince(ctx, db, time.Now().Add(-time.Hour), []string{"s:order"}, since[0].Seq, 10)
	require.NoError(t, err)
	require.Empty(t, since)
}

func TestMarkProcessed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := storetest.NewDB(t)
	id := outboxEvent(t, "order.created", "a").ID
	mark := func(group string) bool {
		var first bool
		require.NoError(t, store.WithTx(ctx, db, func(tx *sqlx.Tx) error {
			var err error
			first, err = store.MarkProcessed(ctx, tx, group, id)
			return err
		}))
		return first
	}
	require.True(t, mark("ledger"))
	require.False(t, mark("ledger"), "second delivery to the same group")
	require.True(t, mark("mail"), "another group processes it on its own")

	// A rolled-back first attempt leaves no record.
	other := outboxEvent(t, "order.created", "b").ID
	tx, err := db.BeginTxx(ctx, nil)
	require.NoError(t, err)
	first, err := store.MarkProcessed(ctx, tx, "ledger", other)
	require.NoError(t, err)
	require.True(t, first)
	require.NoError(t, tx.Rollback())
	require.NoError(t, store.WithTx(ctx, db, func(tx *sqlx.Tx) error {
		first, err = store.MarkProcessed(ctx, tx, "ledger", other)
		return err
	}))
	require.True(t, first)
}

// Lanes split the outbox by subject: each event is claimed by exactly one
// lane, every event of a subject by the same one, and a lane's order check
// is not held back by the other lanes' rows.
func TestClaimLanesSplitBySubject(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := storetest.NewDB(t)
	var events []store.Event
	for i := range 60 {
		events = append(events, outboxEvent(t, "order.created", string(rune('a'+i%20))))
	}
	require.NoError(t, store.InsertEvents(ctx, db, events...))

	const lanes = 3
	laneOf := map[string]int{}
	claimed := map[int64]bool{}
	txs := make([]*sqlx.Tx, lanes)
	for i := range lanes {
		tx, err := db.BeginTxx(ctx, nil)
		require.NoError(t, err)
		defer tx.Rollback() //nolint:errcheck
		txs[i] = tx
		lane := store.Lane{Index: i, Of: lanes}
		got, err := store.ClaimLane(ctx, tx, 100, lane)
		require.NoError(t, err)
		var claims []store.Claim
		var seqs []int64
		for _, e := range got {
			require.False(t, claimed[e.Seq], "event %d claimed by two lanes", e.Seq)
			claimed[e.Seq] = true
			if l, ok := laneOf[e.Subject]; ok {
				require.Equal(t, l, i, "subject %s in two lanes", e.Subject)
			}
			laneOf[e.Subject] = i
			claims = append(claims, store.Claim{Subject: e.Subject, MaxSeq: e.Seq})
			seqs = append(seqs, e.Seq)
		}
		first, err := store.FirstWaitingInLane(ctx, tx, lane, claims, seqs)
		require.NoError(t, err)
		require.Empty(t, first, "nothing older of this lane's subjects waits outside its claim")
	}
	require.Len(t, claimed, len(events), "the lanes together claim every event")
}
