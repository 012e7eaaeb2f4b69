package workers

import (
	"cmp"
	"math/rand/v2"
	"time"

	"github.com/hibiken/asynq"
)

// RetryPolicy is the backoff between attempts of a failed task: the delay
// doubles from Base with each retry up to Max, and is drawn at random from
// its upper half, so tasks that failed together (a mail server outage) do
// not all come back in the same second.
type RetryPolicy struct {
	Base time.Duration
	Max  time.Duration
}

// Delay returns the wait before retry n+1 (n counts retries done so far).
func (p RetryPolicy) Delay(n int) time.Duration {
	base := cmp.Or(p.Base, 10*time.Second)
	maxD := cmp.Or(p.Max, time.Hour)
	d := base
	for i := 0; i < n && d < maxD; i++ {
		d *= 2
	}
	d = min(d, maxD)
	half := d / 2
	return half + rand.N(half+1)
}

func (p RetryPolicy) delayFunc() asynq.RetryDelayFunc {
	return func(n int, _ error, _ *asynq.Task) time.Duration { return p.Delay(n) }
}
