package workers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
)

// Names of the breakers the workers keep, as in the breaker label of
// bazaar_breaker_state and bazaar_breaker_opens_total.
const (
	BreakerSMTP    = "smtp"
	BreakerGateway = "payment_gateway"
)

// BreakerConfig tunes the circuit breakers around outside dependencies.
type BreakerConfig struct {
	// Failures is how many failures in a row open a breaker (default 5).
	Failures uint32
	// OpenFor is how long an open breaker refuses calls before it lets one
	// probe through (default 30s).
	OpenFor time.Duration
}

// DeferredError reports a task that could not run because a dependency is
// unavailable (its breaker is open, or another attempt holds the work).
// asynq retries the task after RetryAfter (the policy's delay when zero)
// without counting the attempt against its retries, so an outage longer
// than the retry budget archives nothing.
type DeferredError struct {
	// Dependency names what the task waits for ("smtp").
	Dependency string
	// RetryAfter is when the dependency is worth asking again.
	RetryAfter time.Duration
	Err        error
}

func (e *DeferredError) Error() string {
	return fmt.Sprintf("deferred: %s unavailable: %v", e.Dependency, e.Err)
}

func (e *DeferredError) Unwrap() error { return e.Err }

// RetryAfterError is a failed attempt whose task picks its own wait
// before the next one (a webhook delivery's longer backoff). Unlike a
// DeferredError the attempt counts as a failure.
type RetryAfterError struct {
	// After is the wait before the next attempt.
	After time.Duration
	Err   error
}

func (e *RetryAfterError) Error() string { return e.Err.Error() }

func (e *RetryAfterError) Unwrap() error { return e.Err }

// deferredOf returns the DeferredError in err's chain, if any.
func deferredOf(err error) (*DeferredError, bool) {
	var d *DeferredError
	return d, errors.As(err, &d)
}

// isFailure is asynq's IsFailure: a deferred task did not fail.
func isFailure(err error) bool {
	_, deferred := deferredOf(err)
	return !deferred
}

// Breaker is a circuit breaker around one outside dependency (the SMTP
// server, a payment gateway, a webhook receiver), shared by every worker of
// a process. After Failures failures in a row it opens: calls fail at once
// with a *DeferredError for OpenFor, then one probe goes through; its
// success closes the breaker, its failure opens it again. The state is
// gobreaker's; Breaker adds the deferral and the metrics.
type Breaker struct {
	name    string
	openFor time.Duration
	cb      *gobreaker.CircuitBreaker[struct{}]
	metrics *breakerMetrics

	mu       sync.Mutex
	openedAt time.Time
}

// NewBreaker returns the breaker called name. isSuccess tells answers of
// the dependency that are no sign of trouble (a declined card, an SMTP 5xx
// for one recipient) from failures; nil counts every error as a failure.
// Context cancellations (the task's own deadline or shutdown) are not
// counted either way.
func NewBreaker(name string, cfg BreakerConfig, isSuccess func(error) bool, reg prometheus.Registerer) (*Breaker, error) {
	m, err := newBreakerMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("breaker %s: metrics: %w", name, err)
	}
	failures := cmp.Or(cfg.Failures, 5)
	b := &Breaker{name: name, openFor: cmp.Or(cfg.OpenFor, 30*time.Second), metrics: m}
	b.cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        name,
		MaxRequests: 1,
		Timeout:     b.openFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
		IsSuccessful: func(err error) bool {
			return err == nil || (isSuccess != nil && isSuccess(err))
		},
		IsExcluded: func(err error) bool {
			return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
		},
		OnStateChange: func(_ string, _, to gobreaker.State) {
			m.state.WithLabelValues(name).Set(float64(to))
			if to == gobreaker.StateOpen {
				m.opens.WithLabelValues(name).Inc()
				b.mu.Lock()
				b.openedAt = time.Now()
				b.mu.Unlock()
			}
		},
	})
	m.state.WithLabelValues(name).Set(float64(gobreaker.StateClosed))
	m.opens.WithLabelValues(name)
	return b, nil
}

// Name returns the breaker's name.
func (b *Breaker) Name() string { return b.name }

// Open reports whether the breaker refuses calls now (open or probing).
func (b *Breaker) Open() bool { return b.cb.State() != gobreaker.StateClosed }

// Do calls fn unless the breaker is open. A refused call, and a failure
// that leaves the breaker open (the one that tripped it, a failed probe),
// return a *DeferredError wrapping the cause, so the task waits for the
// dependency without spending its retries. Failures while the breaker
// stays closed are returned as they are.
func (b *Breaker) Do(fn func() error) error {
	_, err := b.cb.Execute(func() (struct{}, error) { return struct{}{}, fn() })
	switch {
	case err == nil:
		return nil
	case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests):
		return &DeferredError{Dependency: b.name, RetryAfter: b.retryAfter(), Err: err}
	case b.cb.State() == gobreaker.StateOpen:
		return &DeferredError{Dependency: b.name, RetryAfter: b.retryAfter(), Err: err}
	}
	return err
}

// retryAfter is the rest of the open period plus up to a tenth of it at
// random, so the deferred tasks do not all come back at the probe's
// instant. While a probe runs it is a random part of a tenth of the period.
func (b *Breaker) retryAfter() time.Duration {
	b.mu.Lock()
	rest := time.Until(b.openedAt.Add(b.openFor))
	b.mu.Unlock()
	return max(rest, 0) + rand.N(b.openFor/10+1)
}

// breakerMetrics are the breakers' collectors, shared by every breaker of
// a registry.
type breakerMetrics struct {
	state *prometheus.GaugeVec
	opens *prometheus.CounterVec
}

func newBreakerMetrics(reg prometheus.Registerer) (*breakerMetrics, error) {
	m := &breakerMetrics{
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bazaar_breaker_state",
			Help: "State of the circuit breaker around an outside dependency: 0 closed, 1 half-open (probing), 2 open.",
		}, []string{"breaker"}),
		opens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bazaar_breaker_opens_total",
			Help: "Times the circuit breaker around an outside dependency opened.",
		}, []string{"breaker"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.state, m.opens} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
			// Another breaker (or Workers) in the process registered them.
			switch existing := are.ExistingCollector.(type) {
			case *prometheus.GaugeVec:
				m.state = existing
			case *prometheus.CounterVec:
				m.opens = existing
			}
		}
	}
	return m, nil
}

// breakerMailer sends mail through a breaker. A 5xx reply (SkipRetry) is
// the server answering, not failing.
type breakerMailer struct {
	next Mailer
	b    *Breaker
}

func (m breakerMailer) Send(ctx context.Context, mail Mail) error {
	return m.b.Do(func() error { return m.next.Send(ctx, mail) })
}

// breakerGateway calls a payment gateway through a breaker. A decline or a
// refused idempotency key is the gateway answering, not failing.
type breakerGateway struct {
	next PaymentGateway
	b    *Breaker
}

func (g breakerGateway) Name() string { return g.next.Name() }

func (g breakerGateway) Charge(ctx context.Context, req ChargeRequest) (Charge, error) {
	var c Charge
	err := g.b.Do(func() error {
		var err error
		c, err = g.next.Charge(ctx, req)
		return err
	})
	return c, err
}

func (g breakerGateway) Refund(ctx context.Context, req RefundRequest) (Refund, error) {
	var r Refund
	err := g.b.Do(func() error {
		var err error
		r, err = g.next.Refund(ctx, req)
		return err
	})
	return r, err
}

// gatewayAnswered reports errors that are the gateway's answer.
func gatewayAnswered(err error) bool {
	var d *DeclineError
	return errors.As(err, &d) || errors.Is(err, ErrIdempotencyMismatch) || errors.Is(err, asynq.SkipRetry)
}

// mailAnswered reports errors that are the mail server's answer.
func mailAnswered(err error) bool { return errors.Is(err, asynq.SkipRetry) }

// retryDelay is asynq's RetryDelayFunc: a deferred task comes back when its
// dependency is worth asking again, any other after the policy's backoff.
func (p RetryPolicy) retryDelay(n int, err error, _ *asynq.Task) time.Duration {
	if d, ok := deferredOf(err); ok && d.RetryAfter > 0 {
		return d.RetryAfter
	}
	var ra *RetryAfterError
	if errors.As(err, &ra) && ra.After > 0 {
		return ra.After
	}
	return p.Delay(n)
}
