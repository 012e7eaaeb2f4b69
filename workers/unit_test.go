package workers

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream"
)

func TestRetryDelayGrowsWithJitterAndCaps(t *testing.T) {
	t.Parallel()
	p := RetryPolicy{Base: time.Second, Max: time.Minute}
	for n, ceiling := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second} {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := p.Delay(n)
			require.GreaterOrEqual(t, d, time.Duration(0), "retry %d", n)
			require.LessOrEqual(t, d, ceiling, "retry %d", n)
			seen[d] = true
		}
		require.Greater(t, len(seen), 10, "retry %d is jittered", n)
	}
	for range 100 {
		require.LessOrEqual(t, p.Delay(40), time.Minute, "capped at Max")
	}
}

func TestSegments(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		facts store.SegmentFacts
		want  []string
	}{
		{"fresh registration", store.SegmentFacts{}, []string{SegmentNew}},
		{"corporate newcomer", store.SegmentFacts{Corporate: true}, []string{SegmentCorporate, SegmentNew}},
		{"one order", store.SegmentFacts{Orders: 1, SpentMinor: 5000}, nil},
		{"two orders", store.SegmentFacts{Orders: 2, SpentMinor: 9000}, []string{SegmentRepeat}},
		{"big spender once", store.SegmentFacts{Orders: 1, SpentMinor: 100_000}, []string{SegmentHighValue}},
		{"corporate big repeat", store.SegmentFacts{Corporate: true, Orders: 7, SpentMinor: 250_000}, []string{SegmentCorporate, SegmentHighValue, SegmentRepeat}},
	}
	for _, tc := range tests {
		require.Equal(t, tc.want, Segments(tc.facts, 100_000), tc.name)
	}
}

func TestSandboxGateway(t *testing.T) {
	t.Parallel()
	for name, gateway := range map[string]func(t *testing.T) *SandboxGateway{
		"memory":     func(*testing.T) *SandboxGateway { return NewSandboxGateway() },
		"postgresql": func(t *testing.T) *SandboxGateway { db, _ := storetest.NewDB(t); return NewSandboxGatewayDB(db) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testSandboxGateway(t, gateway(t))
		})
	}
}

func testSandboxGateway(t *testing.T, g *SandboxGateway) {
	ctx := context.Background()
	req := func(key, tok string, amount int64) ChargeRequest {
		return ChargeRequest{IdempotencyKey: key, Token: tok, AmountMinor: amount, Currency: "EUR"}
	}
	declines := map[string]string{
		"tok_decline": "card_declined", "tok_insufficient_funds": "insufficient_funds", "tok_expired": "expired_card",
	}
	for tok, code := range declines {
		_, err := g.Charge(ctx, req("k-"+tok, tok, 100))
		var d *DeclineError
		require.ErrorAs(t, err, &d, tok)
		require.Equal(t, code, d.Code)
	}
	_, err := g.Charge(ctx, req("k-big", "tok_visa", 100_000_001))
	var d *DeclineError
	require.ErrorAs(t, err, &d)
	require.Equal(t, "amount_too_large", d.Code)

	// Idempotent: the same key returns the same charge; another request
	// under it is refused.
	c1, err := g.Charge(ctx, req("k-ok", "tok_visa", 1234))
	require.NoError(t, err)
	c2, err := g.Charge(ctx, req("k-ok", "tok_visa", 1234))
	require.NoError(t, err)
	require.Equal(t, c1, c2)
	_, err = g.Charge(ctx, req("k-ok", "tok_visa", 999))
	require.ErrorIs(t, err, ErrIdempotencyMismatch)

	// A lost answer: the charge happened; asking again learns it.
	_, err = g.Charge(ctx, req("k-lost", "tok_timeout_once", 500))
	require.ErrorIs(t, err, ErrGatewayTimeout)
	c3, err := g.Charge(ctx, req("k-lost", "tok_timeout_once", 500))
	require.NoError(t, err)
	require.NotEmpty(t, c3.ID)
	_, err = g.Charge(ctx, req("k-never", "tok_timeout", 500))
	require.ErrorIs(t, err, ErrGatewayTimeout)
	require.Equal(t, 2, g.Charges())

	// Refunds are idempotent and once per charge.
	r1, err := g.Refund(ctx, RefundRequest{IdempotencyKey: "r1", ChargeID: c1.ID})
	require.NoError(t, err)
	r2, err := g.Refund(ctx, RefundRequest{IdempotencyKey: "r2", ChargeID: c1.ID})
	require.NoError(t, err)
	require.Equal(t, r1, r2)

	// Latency past the caller's deadline is a timeout.
	slow := NewSandboxGateway()
	slow.Latency = time.Second
	tctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	_, err = slow.Charge(tctx, req("k-slow", "tok_visa", 100))
	require.ErrorIs(t, err, ErrGatewayTimeout)
}

func TestPayloadsAreVersionedAndBadOnesSkipRetry(t *testing.T) {
	t.Parallel()
	id := uuid.New()
	task, err := NewOrderTask(TypeOrderCancel, Meta{Version: PayloadVersion, EventID: "e1", RequestID: "r1"}, id, "out_of_stock")
	require.NoError(t, err)
	p, err := decode[OrderPayload](task)
	require.NoError(t, err)
	require.Equal(t, id, p.OrderID)
	require.Equal(t, "out_of_stock", p.Reason)
	require.Equal(t, "r1", p.RequestID)

	for name, payload := range map[string]string{
		"not json":       `{`,
		"future version": `{"v": 99, "order_id": "` + id.String() + `"}`,
		"no version":     `{"order_id": "` + id.String() + `"}`,
	} {
		_, err := decode[OrderPayload](asynq.NewTask(TypeOrderCancel, []byte(payload)))
		require.ErrorIs(t, err, asynq.SkipRetry, name)
		require.ErrorIs(t, err, errBadPayload, name)
	}
	require.Equal(t, "inventory:e1", TaskID(GroupInventory, "e1", ""))
	require.Equal(t, "orders:e1:refund", TaskID(GroupOrders, "e1", "refund"))
}

func TestAggregateIDPrefersDataOverSubject(t *testing.T) {
	t.Parallel()
	order, ret := uuid.New(), uuid.New()
	env := stream.Envelope{
		ID: "e", Type: "return.resolved", Subject: ret.String(),
		Data: []byte(`{"return_id":"` + ret.String() + `","order_id":"` + order.String() + `"}`),
	}
	got, err := aggregateID(env, aboutOrder)
	require.NoError(t, err)
	require.Equal(t, order, got)
	got, err = aggregateID(env, aboutReturn)
	require.NoError(t, err)
	require.Equal(t, ret, got)
	_, err = aggregateID(stream.Envelope{Type: "user.registered", Subject: "nope", Data: []byte(`{}`)}, aboutUser)
	require.ErrorIs(t, err, errBadEvent)
}

func TestMiddlewareCountsAndTimesTasksByType(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	require.NoError(t, err)
	w := &Workers{log: testLogger(t), metrics: m}
	fail := errors.New("boom")
	h := w.instrument(asynq.HandlerFunc(func(_ context.Context, t *asynq.Task) error {
		switch string(t.Payload()) {
		case "fail":
			return fail
		case "bad":
			return errors.Join(fail, asynq.SkipRetry)
		}
		return nil
	}))
	ctx := context.Background()
	for _, p := range []string{"ok", "ok", "fail", "bad"} {
		_ = h.ProcessTask(ctx, asynq.NewTask("email:welcome", []byte(p)))
	}
	require.Equal(t, 2.0, testutil.ToFloat64(m.processed.WithLabelValues("email:welcome", outcomeSuccess)))
	// Outside asynq there is no retry budget: a plain failure counts as final.
	require.Equal(t, 2.0, testutil.ToFloat64(m.processed.WithLabelValues("email:welcome", outcomeArchived)))
	require.Equal(t, 1, testutil.CollectAndCount(m.duration))
	n, err := testutil.GatherAndCount(reg, "bazaar_task_duration_seconds")
	require.NoError(t, err)
	require.Equal(t, 1, n)

	// A second set of metrics on the same registry shares the collectors.
	m2, err := newMetrics(reg)
	require.NoError(t, err)
	require.Same(t, m.processed, m2.processed)
}

func TestReminderSaysTheTimeLeftAndIsDroppedOnceItPassed(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	at := func(d time.Duration) store.Order {
		s := now.Add(d)
		return store.Order{ID: uuid.New(), Status: store.OrderConfirmed, ScheduledAt: &s}
	}
	for _, tc := range []struct {
		left time.Duration
		want string
	}{
		{24 * time.Hour, "is due in 24 hours"},
		{2 * time.Hour, "is due in 2 hours"},
		{72 * time.Hour, "is due in 3 days"},
		{90 * time.Minute, "is due in 2 hours"},
		{30 * time.Minute, "is due in 30 minutes"},
		{20 * time.Second, "is due in 1 minute"},
	} {
		m, ok := reminderMail(now)(at(tc.left), store.User{Name: "Ada"}, OrderPayload{})
		require.True(t, ok, "%s ahead", tc.left)
		require.Contains(t, m.Subject, tc.want, "%s ahead", tc.left)
		require.NotContains(t, m.Subject, "tomorrow")
	}
	_, ok := reminderMail(now)(at(0), store.User{}, OrderPayload{})
	require.False(t, ok, "a reminder at the scheduled time is not sent")
	_, ok = reminderMail(now)(at(-time.Minute), store.User{}, OrderPayload{})
	require.False(t, ok, "a late retry of a reminder is not sent")
}
