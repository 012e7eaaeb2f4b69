package scheduler

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store/storetest"
)

// The hourly sweep deletes every expired Idempotency-Key record, however
// many there are, and keeps the live ones; firing again deletes nothing.
func TestIdempotencySweepDeletesExpiredRecordsOnly(t *testing.T) {
	t.Parallel()
	db, _ := storetest.NewDB(t)
	ctx := context.Background()
	seed := `
INSERT INTO idempotency_keys (principal, key, method, path, request_hash, status, response, expires_at)
SELECT 'storefront:k', $1 || g, 'POST', '/v1/orders', '\x00', 201, '{}', now() + $2 * interval '1 second'
FROM generate_series(1, $3) AS g`
	_, err := db.ExecContext(ctx, seed, "expired-", -60, 2*sweepChunk+500)
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, seed, "live-", 3600, 3)
	require.NoError(t, err)
	count := func() (expired, live int) {
		require.NoError(t, db.GetContext(ctx, &expired, `SELECT count(*) FROM idempotency_keys WHERE expires_at <= now()`))
		require.NoError(t, db.GetContext(ctx, &live, `SELECT count(*) FROM idempotency_keys WHERE expires_at > now()`))
		return expired, live
	}

	now := time.Date(2026, 11, 22, 10, 30, 0, 0, time.UTC)
	s, err := New(Config{
		DB:           db,
		Schedules:    []Schedule{NewIdempotencySweepSchedule(DefaultIdempotencySweepSpec, db, quiet())},
		CatchUp:      2 * time.Hour,
		PollInterval: 10 * time.Millisecond,
		LeaseTTL:     400 * time.Millisecond,
		Now:          func() time.Time { return now },
		Logger:       quiet(),
	})
	require.NoError(t, err)
	require.NoError(t, s.Start(ctx))
	t.Cleanup(func() { _ = s.Stop(context.Background()) })

	firings := func() int {
		var n int
		require.NoError(t, db.GetContext(ctx, &n, `SELECT count(*) FROM schedule_firings WHERE schedule = $1`, IdempotencySweepSchedule))
		return n
	}
	// The 09:00 and 10:00 firings lie inside the catch-up window; the
	// sweep needs no catch-up, so only the latest fires.
	waitFor(t, 10*time.Second, "the latest firing and the sweep", func() bool {
		expired, _ := count()
		return firings() == 1 && expired == 0
	})
	require.NoError(t, s.Tick(ctx))
	require.NoError(t, s.Stop(ctx))
	_, live := count()
	require.Equal(t, 3, live, "live records are kept")
	require.Equal(t, 1, firings(), "the missed 09:00 firing is not caught up")
	var due time.Time
	require.NoError(t, db.GetContext(ctx, &due, `SELECT due_at FROM schedule_firings WHERE schedule = $1`, IdempotencySweepSchedule))
	require.True(t, due.Equal(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)), "the latest firing ran: %s", due)

	job := IdempotencySweepJob{DB: db}
	require.NoError(t, job.Fire(ctx, Firing{Schedule: IdempotencySweepSchedule, Due: now}))
	_, live = count()
	require.Equal(t, 3, live)
}
