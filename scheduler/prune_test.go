package scheduler

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream"
)

// Pruning deletes the bookkeeping that is older than its retention and
// nothing younger: an event handled inside the window and delivered again
// after a prune still finds its processed_events row and changes nothing,
// however many rows the prune had to delete around it.
func TestBookkeepingPruneKeepsTheRedeliveryWindow(t *testing.T) {
	t.Parallel()
	db, _ := storetest.NewDB(t)
	ctx := context.Background()

	var mu sync.Mutex
	applied := map[string]int{}
	handle := stream.Once(db, "ledger", func(_ context.Context, _ *sqlx.Tx, m stream.Message) error {
		mu.Lock()
		defer mu.Unlock()
		applied[m.ID]++
		return nil
	})
	deliver := func(id uuid.UUID) {
		require.NoError(t, handle(ctx, stream.Message{Envelope: stream.Envelope{ID: id.String(), Type: "order.created"}}))
	}
	// ages handles one event per age, then dates its record back that far.
	ages := []time.Duration{0, 29 * 24 * time.Hour, 31 * 24 * time.Hour, 400 * 24 * time.Hour}
	ids := make([]uuid.UUID, len(ages))
	for i, age := range ages {
		ids[i] = uuid.New()
		deliver(ids[i])
		_, err := db.ExecContext(ctx, `UPDATE processed_events SET processed_at = now() - make_interval(secs => $1) WHERE event_id = $2`, age.Seconds(), ids[i])
		require.NoError(t, err)
	}
	// More expired rows than one batch deletes, of another group.
	_, err := db.ExecContext(ctx, `INSERT INTO processed_events (group_name, event_id, processed_at)
SELECT 'mail', gen_random_uuid(), now() - interval '60 days' FROM generate_series(1, $1)`, 2*pruneChunk+7)
	require.NoError(t, err)
	// The other tables: one row outside and one inside their windows.
	seed := []string{
		`INSERT INTO sent_emails (dedupe_key, kind, recipient, subject, sent_at) VALUES
		  ('welcome:old', 'welcome', 'a@example.com', 's', now() - interval '121 days'),
		  ('welcome:new', 'welcome', 'b@example.com', 's', now() - interval '119 days')`,
		`INSERT INTO mail_claims (dedupe_key, claim_id, claimed_at) VALUES
		  ('welcome:old', gen_random_uuid(), now() - interval '121 days'),
		  ('welcome:new', gen_random_uuid(), now() - interval '1 hour')`,
		`INSERT INTO task_failures (task_id, task_type, queue, payload, error, retried, max_retry, failed_at) VALUES
		  ('old', 'email:welcome', 'default', '', 'x', 12, 12, now() - interval '91 days'),
		  ('new', 'email:welcome', 'default', '', 'x', 12, 12, now() - interval '89 days')`,
		`INSERT INTO provider_events (id, type, received_at) VALUES
		  ('evt_old', 'charge.refunded', now() - interval '46 days'),
		  ('evt_new', 'charge.refunded', now() - interval '44 days')`,
	}
	for _, q := range seed {
		_, err := db.ExecContext(ctx, q)
		require.NoError(t, err)
	}

	job := BookkeepingPruneJob{DB: db, Logger: quiet()}
	require.NoError(t, job.Fire(ctx, Firing{}))

	remaining := func(query string) []string {
		var out []string
		require.NoError(t, db.SelectContext(ctx, &out, query))
		return out
	}
	require.ElementsMatch(t, []string{ids[0].String(), ids[1].String()},
		remaining(`SELECT event_id::text FROM processed_events`), "kept inside 30 days, deleted beyond, in batches")
	require.Equal(t, []string{"welcome:new"}, remaining(`SELECT dedupe_key FROM sent_emails`))
	require.Equal(t, []string{"welcome:new"}, remaining(`SELECT dedupe_key FROM mail_claims`))
	require.Equal(t, []string{"new"}, remaining(`SELECT task_id FROM task_failures`))
	require.Equal(t, []string{"evt_new"}, remaining(`SELECT id FROM provider_events`))

	// Every event delivered again: those inside the window change nothing.
	for _, id := range ids {
		deliver(id)
	}
	require.Equal(t, map[string]int{
		ids[0].String(): 1, ids[1].String(): 1,
		// Outside the window the record is gone: a delivery this late
		// (past every redelivery window) would apply again.
		ids[2].String(): 2, ids[3].String(): 2,
	}, applied)

	// A second run finds nothing more to delete.
	require.NoError(t, job.Fire(ctx, Firing{}))
	var n int
	require.NoError(t, db.GetContext(ctx, &n, `SELECT count(*) FROM processed_events`))
	require.Equal(t, 4, n, "the two kept and the two recorded again just now")
}

// A prune never waits for, nor deletes, a row a handler holds in a
// transaction still open.
func TestBookkeepingPruneSkipsRowsInFlight(t *testing.T) {
	t.Parallel()
	db, _ := storetest.NewDB(t)
	ctx := context.Background()
	id := uuid.New()
	_, err := db.ExecContext(ctx, `INSERT INTO processed_events (group_name, event_id, processed_at) VALUES ('ledger', $1, now() - interval '40 days')`, id)
	require.NoError(t, err)
	tx, err := db.BeginTxx(ctx, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback() })
	_, err = tx.ExecContext(ctx, `SELECT 1 FROM processed_events WHERE event_id = $1 FOR UPDATE`, id)
	require.NoError(t, err)

	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	n, err := store.PruneBookkeeping(pctx, db, store.BookkeepingProcessedEvents, 30*24*time.Hour, pruneChunk)
	require.NoError(t, err, "the prune does not wait for the open transaction")
	require.Zero(t, n)
	require.NoError(t, tx.Rollback())
	n, err = store.PruneBookkeeping(ctx, db, store.BookkeepingProcessedEvents, 30*24*time.Hour, pruneChunk)
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
}
