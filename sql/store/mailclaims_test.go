package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
)

func TestEmailClaimIsExclusiveUntilReleasedOrStale(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	a, b := uuid.New(), uuid.New()

	ok, _, err := store.ClaimEmail(ctx, f.db, "welcome:x", a, time.Hour)
	require.NoError(t, err)
	require.True(t, ok, "the first claim wins")
	ok, at, err := store.ClaimEmail(ctx, f.db, "welcome:x", b, time.Hour)
	require.NoError(t, err)
	require.False(t, ok, "a fresh claim keeps others out")
	require.False(t, at.IsZero(), "the standing claim's time is reported")

	require.NoError(t, store.ReleaseEmailClaim(ctx, f.db, "welcome:x", b), "another's release is a no-op")
	ok, _, err = store.ClaimEmail(ctx, f.db, "welcome:x", b, time.Hour)
	require.NoError(t, err)
	require.False(t, ok, "releasing with the wrong claim id leaves the claim")

	require.NoError(t, store.ReleaseEmailClaim(ctx, f.db, "welcome:x", a))
	ok, _, err = store.ClaimEmail(ctx, f.db, "welcome:x", b, time.Hour)
	require.NoError(t, err)
	require.True(t, ok, "a released claim can be taken")

	_, err = f.db.ExecContext(ctx, `UPDATE mail_claims SET claimed_at = now() - interval '2 hours'`)
	require.NoError(t, err)
	ok, _, err = store.ClaimEmail(ctx, f.db, "welcome:x", a, time.Hour)
	require.NoError(t, err)
	require.True(t, ok, "a claim older than the TTL is taken over")
}
