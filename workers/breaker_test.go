package workers

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
)

// The mail server is down for much longer than a mail task's retry
// budget. The breaker opens, the tasks wait without spending their
// retries, nothing is archived, and when the server is back every mail goes
// out once.
func TestSMTPOutageLongerThanTheRetryBudgetArchivesNoMail(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	const maxRetry = 2
	b := setup(t, setupOpts{noStart: true, mutate: func(c *Config) {
		c.Registry = reg
		c.Breakers = BreakerConfig{Failures: 2, OpenFor: 300 * time.Millisecond}
		c.Policies = map[string]TaskPolicy{TypeEmailWelcome: {MaxRetry: maxRetry, Timeout: 5 * time.Second}}
	}})
	addr := b.sink.Addr()
	require.NoError(t, b.sink.Stop(ctx))
	require.NoError(t, b.w.Start(ctx))

	const mails = 6
	var users []store.User
	for i := range mails {
		u, err := store.CreateUser(ctx, b.db, store.User{Email: fmt.Sprintf("u%d@bazaar.test", i), Name: "Ada"}, nil)
		require.NoError(t, err)
		users = append(users, u)
		task, err := NewUserTask(TypeEmailWelcome, Meta{Version: PayloadVersion}, u.ID)
		require.NoError(t, err)
		require.NoError(t, b.w.Enqueue(ctx, task, "welcome-"+u.ID.String()))
	}

	opens := func() float64 {
		return testutil.ToFloat64(b.w.mailer.(breakerMailer).b.metrics.opens.WithLabelValues(BreakerSMTP))
	}
	// Each opening follows a failed attempt (the tripping one or a failed
	// probe): this many mean every task would have run out of retries.
	eventually(t, 60*time.Second, func() bool { return opens() >= 3*(maxRetry+1) },
		"the breaker did not keep opening while the server was down (opened %v times)", opens())
	info, err := b.insp.GetQueueInfo(QueueDefault)
	require.NoError(t, err)
	require.Zero(t, info.Archived, "no mail task archived during the outage")
	require.GreaterOrEqual(t, testutil.ToFloat64(b.w.mailer.(breakerMailer).b.metrics.state.WithLabelValues(BreakerSMTP)), 1.0,
		"the state gauge says open (2) or probing (1)")

	sink := NewMailSink(MailSinkConfig{Addr: addr})
	require.NoError(t, sink.Start(ctx))
	t.Cleanup(func() { _ = sink.Stop(context.Background()) })

	b.settle(t, 60*time.Second)
	for _, u := range users {
		require.Equal(t, 1, sink.Count(u.Email, "Welcome"), "one welcome mail to %s", u.Email)
	}
	info, err = b.insp.GetQueueInfo(QueueDefault)
	require.NoError(t, err)
	require.Zero(t, info.Archived, "no mail task archived")
	require.False(t, b.w.mailer.(breakerMailer).b.Open(), "a probe closed the breaker")
	var failures int
	require.NoError(t, b.db.GetContext(ctx, &failures, `SELECT count(*) FROM task_failures`))
	require.Zero(t, failures)
}

func TestBreakerDefersWhileOpen(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	br, err := NewBreaker("receiver", BreakerConfig{Failures: 2, OpenFor: time.Hour}, nil, reg)
	require.NoError(t, err)
	down := errors.New("connection refused")
	calls := 0
	fail := func() error { calls++; return down }

	err = br.Do(fail)
	require.ErrorIs(t, err, down)
	_, deferred := deferredOf(err)
	require.False(t, deferred, "a failure while the breaker stays closed counts")
	require.True(t, isFailure(err))

	err = br.Do(fail)
	d, deferred := deferredOf(err)
	require.True(t, deferred, "the failure that opens the breaker is deferred")
	require.ErrorIs(t, err, down)
	require.False(t, isFailure(err), "a deferred attempt does not spend a retry")
	require.Greater(t, d.RetryAfter, 59*time.Minute, "retry when the breaker half-opens")

	err = br.Do(fail)
	require.Equal(t, 2, calls, "an open breaker does not call the dependency")
	_, deferred = deferredOf(err)
	require.True(t, deferred)
	require.Equal(t, time.Hour, RetryPolicy{Base: time.Millisecond}.retryDelay(0, err, nil).Round(time.Hour))
	require.Equal(t, 1.0, testutil.ToFloat64(br.metrics.opens.WithLabelValues("receiver")))
	require.Equal(t, 2.0, testutil.ToFloat64(br.metrics.state.WithLabelValues("receiver")), "open")

	// Answers that are no sign of trouble do not open it.
	ok, err := NewBreaker("gw", BreakerConfig{Failures: 1}, gatewayAnswered, reg)
	require.NoError(t, err)
	for range 3 {
		require.Error(t, ok.Do(func() error { return &DeclineError{Code: "card_declined"} }))
	}
	require.False(t, ok.Open(), "declines are answers")
}

func TestRetryAfterErrorPicksTheWait(t *testing.T) {
	t.Parallel()
	err := &RetryAfterError{After: 3 * time.Hour, Err: errors.New("receiver answered 500")}
	require.Equal(t, 3*time.Hour, RetryPolicy{Base: time.Millisecond}.retryDelay(0, fmt.Errorf("deliver: %w", err), nil))
	require.True(t, isFailure(err), "the attempt counts against the retries")
}
