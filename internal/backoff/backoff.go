// Package backoff computes the wait before a retry: exponential growth with
// full jitter, the one policy every retry loop in Bazaar uses (task
// retries, the outbox relay, consumer groups, the SSE hub, the printer
// client, recording a sent mail).
//
// It is a leaf: it imports only the standard library, so every package may
// use it whatever its place in the import order.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Policy is an exponential backoff: the ceiling starts at Base, doubles with
// every attempt and stops growing at Max; the wait is drawn uniformly from
// zero to the ceiling ("full jitter"), so clients that failed together (a
// Redis or mail server outage) spread out instead of retrying in step.
type Policy struct {
	// Base is the ceiling of the first wait (attempt 0).
	Base time.Duration
	// Max caps the ceiling; zero means Base is never exceeded.
	Max time.Duration
}

// Ceiling returns the longest wait before retry attempt+1: Base·2^attempt,
// at most Max. A negative attempt counts as 0.
func (p Policy) Ceiling(attempt int) time.Duration {
	base := max(p.Base, 0)
	capD := max(p.Max, base)
	d := base
	for i := 0; i < attempt && d < capD; i++ {
		d *= 2
	}
	return min(d, capD)
}

// Delay returns a wait drawn uniformly from [0, Ceiling(attempt)].
func (p Policy) Delay(attempt int) time.Duration {
	c := p.Ceiling(attempt)
	if c <= 0 {
		return 0
	}
	return rand.N(c + 1)
}
