package ratelimit_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/bazaarhq/bazaar/ratelimit"
	"github.com/bazaarhq/bazaar/stream/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newLimiter(t *testing.T) *ratelimit.Limiter {
	t.Helper()
	rdb := redistest.Client(t)
	p := redistest.Prefix(t)
	t.Cleanup(func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, "rate:"+p+"*", 100).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
	})
	l, err := ratelimit.New(rdb, p)
	require.NoError(t, err)
	return l
}

func TestParseLimit(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]ratelimit.Limit{
		"100/1s":   {Rate: 100, Period: time.Second},
		" 20/1m ":  {Rate: 20, Period: time.Minute},
		"10/1m,30": {Rate: 10, Period: time.Minute, Burst: 30},
	} {
		got, err := ratelimit.ParseLimit(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "100", "0/1s", "x/1s", "5/soon", "5/1s,0", "5/0s"} {
		_, err := ratelimit.ParseLimit(bad)
		require.Error(t, err, bad)
	}
	require.Equal(t, 30*time.Minute, ratelimit.Limit{Rate: 1, Period: time.Minute, Burst: 30}.Window())
}

// TestAllowAndCheck: Allow spends the quota, Check only looks.
func TestAllowAndCheck(t *testing.T) {
	t.Parallel()
	testAllowAndCheck(t, newLimiter(t))
}

func testAllowAndCheck(t *testing.T, l *ratelimit.Limiter) {
	ctx := context.Background()
	lim := ratelimit.Limit{Rate: 3, Period: time.Hour}
	for i := range 5 {
		c, err := l.Check(ctx, "k", lim)
		require.NoError(t, err)
		require.True(t, c.Allowed, "checking spends nothing (%d)", i)
	}
	for want := 2; want >= 0; want-- {
		r, err := l.Allow(ctx, "k", lim)
		require.NoError(t, err)
		require.True(t, r.Allowed)
		require.Equal(t, want, r.Remaining)
	}
	r, err := l.Allow(ctx, "k", lim)
	require.NoError(t, err)
	require.False(t, r.Allowed)
	require.InDelta(t, (20 * time.Minute).Seconds(), r.RetryAfter.Seconds(), 5)
	c, err := l.Check(ctx, "k", lim)
	require.NoError(t, err)
	require.False(t, c.Allowed)
	require.InDelta(t, (20 * time.Minute).Seconds(), c.RetryAfter.Seconds(), 5)
	other, err := l.Allow(ctx, "other", lim)
	require.NoError(t, err)
	require.True(t, other.Allowed)
}

// TestLeases: a full set refuses, a release frees a slot, and a lease its
// holder stopped refreshing (a crashed process) expires by itself.
func TestLeases(t *testing.T) {
	t.Parallel()
	testLeases(t, newLimiter(t))
}

func testLeases(t *testing.T, l *ratelimit.Limiter) {
	ctx := context.Background()
	a, ok, err := l.Acquire(ctx, "s", "a", 2, time.Hour)
	require.NoError(t, err)
	require.True(t, ok)
	_, ok, err = l.Acquire(ctx, "s", "b", 2, 300*time.Millisecond)
	require.NoError(t, err)
	require.True(t, ok)
	_, ok, err = l.Acquire(ctx, "s", "c", 2, time.Hour)
	require.NoError(t, err)
	require.False(t, ok, "the set is full")

	// "b" is never refreshed: its slot comes back once it expires.
	require.Eventually(t, func() bool {
		_, ok, err := l.Acquire(ctx, "s", "c", 2, time.Hour)
		require.NoError(t, err)
		return ok
	}, 10*time.Second, 50*time.Millisecond)
	require.NoError(t, l.Refresh(ctx, a, time.Hour))
	_, ok, err = l.Acquire(ctx, "s", "d", 2, time.Hour)
	require.NoError(t, err)
	require.False(t, ok)
	require.NoError(t, l.Release(ctx, a))
	_, ok, err = l.Acquire(ctx, "s", "d", 2, time.Hour)
	require.NoError(t, err)
	require.True(t, ok)
}

// TestOnCluster runs the limits and the leases on a Redis Cluster of their
// own: each check and each lease script touches one key.
func TestOnCluster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t)
	for name, test := range map[string]func(*testing.T, *ratelimit.Limiter){
		"AllowAndCheck": testAllowAndCheck,
		"Leases":        testLeases,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			l, err := ratelimit.New(c.Client(t), "bazaar:"+name+":")
			require.NoError(t, err)
			test(t, l)
		})
	}
}
