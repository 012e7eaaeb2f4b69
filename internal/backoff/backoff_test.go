package backoff_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/internal/backoff"
)

func TestCeilingDoublesUpToMax(t *testing.T) {
	t.Parallel()
	p := backoff.Policy{Base: 100 * time.Millisecond, Max: time.Second}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for n, w := range want {
		require.Equal(t, w*time.Millisecond, p.Ceiling(n), "attempt %d", n)
	}
	require.Equal(t, time.Second, p.Ceiling(1<<20), "a huge attempt does not overflow")
	require.Equal(t, 100*time.Millisecond, p.Ceiling(-3))
	require.Equal(t, 100*time.Millisecond, backoff.Policy{Base: 100 * time.Millisecond}.Ceiling(5), "no Max: Base is the cap")
}

func TestDelayIsFullJitter(t *testing.T) {
	t.Parallel()
	p := backoff.Policy{Base: time.Second, Max: time.Minute}
	for n := range 8 {
		c := p.Ceiling(n)
		var low, high bool
		for range 2000 {
			d := p.Delay(n)
			require.GreaterOrEqual(t, d, time.Duration(0))
			require.LessOrEqual(t, d, c)
			low = low || d < c/4
			high = high || d > c*3/4
		}
		require.True(t, low && high, "attempt %d: waits spread over the whole range [0, %s]", n, c)
	}
	require.Zero(t, backoff.Policy{}.Delay(3))
}
