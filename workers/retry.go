package workers

import (
	"cmp"
	"time"

	"github.com/bazaarhq/bazaar/internal/backoff"
)

// RetryPolicy is the backoff between attempts of a failed task: the ceiling
// doubles from Base with each retry up to Max, and the delay is drawn from
// zero to the ceiling (full jitter, internal/backoff), so tasks that failed
// together (a mail server outage) do not all come back in the same second.
type RetryPolicy struct {
	// Base is the ceiling of the first retry's delay (default 10s).
	Base time.Duration
	// Max caps the ceiling (default 1h).
	Max time.Duration
}

func (p RetryPolicy) backoff() backoff.Policy {
	return backoff.Policy{Base: cmp.Or(p.Base, 10*time.Second), Max: cmp.Or(p.Max, time.Hour)}
}

// Delay returns the wait before retry n+1 (n counts retries done so far).
func (p RetryPolicy) Delay(n int) time.Duration { return p.backoff().Delay(n) }
