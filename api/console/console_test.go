package console

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestAlertRulesFollowRulesYML: the evaluator knows every rule of
// deploy/prometheus/rules.yml by name and severity, in order, and nothing
// else, so a rule added there must be added here.
func TestAlertRulesFollowRulesYML(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../deploy/prometheus/rules.yml")
	require.NoError(t, err)
	var doc struct {
		Groups []struct {
			Rules []struct {
				Alert  string            `yaml:"alert"`
				Labels map[string]string `yaml:"labels"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &doc))
	var want []string
	severity := map[string]string{}
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			want = append(want, r.Alert)
			severity[r.Alert] = r.Labels["severity"]
		}
	}
	require.Empty(t, cmp.Diff(want, ruleNames))

	quiet := evaluate(&Snapshot{At: time.Now()}, nil)
	var names []string
	for _, a := range quiet {
		names = append(names, a.Name)
		require.False(t, a.Firing, a.Name)
		require.Equal(t, severity[a.Name], a.Severity, a.Name)
		require.Equal(t, "docs/operations.md#"+strings.ToLower(a.Name), a.Runbook)
	}
	require.Empty(t, cmp.Diff(want, names), "one quiet alert per rule, in the file's order")
}

// TestAlertsFireOnTheirThresholds: each evaluated condition fires just
// past its threshold of rules.yml, not at it, and links to where it is
// fixed.
func TestAlertsFireOnTheirThresholds(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	lag := func(n int64) *int64 { return &n }
	last := now.Add(-scheduleMissAfter - time.Second)
	edge := now.Add(-scheduleMissAfter)
	snap := &Snapshot{
		At:     now,
		Outbox: OutboxFigure{Backlog: 3, OldestAgeSeconds: 61},
		Groups: []GroupFigure{
			{Name: "mail", Stream: "s:order", DeadLetters: 2, Lag: lag(1001), OldestPendingAgeSeconds: 601},
			{Name: "audit", Stream: "s:order", DeadLetters: 0, Lag: lag(1000), OldestPendingAgeSeconds: 600},
		},
		Queues:         []QueueFigure{{Name: "default", Archived: 5}, {Name: "invoicing", Archived: 2}},
		Schedules:      []ScheduleFigure{{Name: "invoicing", LastSuccess: &last}, {Name: "edge", LastSuccess: &edge}},
		SSEDropped:     151,
		FailedAccounts: 1,
	}
	samples := []sample{
		{at: now.Add(-20 * time.Minute), archived: map[string]int{"default": 0}},
		{at: now.Add(-10 * time.Minute), archived: map[string]int{"default": 4, "invoicing": 2}, dropped: 0},
		{at: now.Add(-4 * time.Minute), archived: map[string]int{"default": 5, "invoicing": 2}, dropped: 100},
	}
	firing := map[string][]string{}
	for _, a := range evaluate(snap, samples) {
		if a.Firing {
			firing[a.Name] = append(firing[a.Name], a.Subject+" -> "+a.Link)
		}
	}
	require.Empty(t, cmp.Diff(map[string][]string{
		"BazaarDLQNotEmpty":              {"mail -> /console/dlq/mail"},
		"BazaarConsumerLagHigh":          {"mail on s:order -> /console/groups#mail"},
		"BazaarConsumerStuck":            {"mail -> /console/groups#mail"},
		"BazaarOutboxStale":              {"outbox -> /console#outbox"},
		"BazaarArchivedTasksGrowing":     {"default -> /console/tasks#default"},
		"BazaarSchedulerMissedRun":       {"invoicing -> /console/invoicing#schedules"},
		"BazaarSSEDisconnectStorm":       {"live clients -> /console#clients"},
		"BazaarInvoiceRunFailedAccounts": {"latest invoice run -> /console/invoicing"},
	}, firing))
}

// TestBusinessFigures: the figures count the order events of the window
// only, by state, revenue from confirmed orders per currency, reasons and
// sellers by name, and the Prometheus series carry the same numbers with
// bounded labels.
func TestBusinessFigures(t *testing.T) {
	t.Parallel()
	db, _ := storetest.NewDB(t)
	ctx := context.Background()
	now := time.Now().UTC()
	alpha, err := store.CreateSeller(ctx, db, "Alpha Ceramics", "a@example.com")
	require.NoError(t, err)
	beta, err := store.CreateSeller(ctx, db, "Beta Books", "b@example.com")
	require.NoError(t, err)
	event := func(typ string, seller uuid.UUID, cur string, total int64, reason string, at time.Time) {
		t.Helper()
		ev, err := store.NewEvent(typ, uuid.NewString(), &seller, 1, map[string]any{"currency": cur, "total_minor": total, "cancel_reason": reason})
		require.NoError(t, err)
		ev.Time = at
		require.NoError(t, store.InsertEvents(ctx, db, ev))
	}
	for range 3 {
		event("order.created", alpha.ID, "EUR", 1000, "", now.Add(-time.Minute))
	}
	event("order.created", beta.ID, "GBP", 500, "", now.Add(-time.Minute))
	event("order.created", beta.ID, "GBP", 500, "", now.Add(-time.Hour)) // outside the window
	event("order.confirmed", alpha.ID, "EUR", 1000, "", now.Add(-time.Minute))
	event("order.confirmed", alpha.ID, "EUR", 1250, "", now.Add(-time.Minute))
	event("order.confirmed", beta.ID, "GBP", 500, "", now.Add(-time.Minute))
	event("order.confirmed", beta.ID, "gbp?", 7, "", now.Add(-time.Minute))
	for i, r := range []string{"out of stock", "out of stock", "buyer changed mind", "a", "b", "c", "d"} {
		event("order.cancelled", alpha.ID, "EUR", int64(i), r, now.Add(-time.Minute))
	}

	reg := prometheus.NewRegistry()
	c, err := New(Config{DB: db, Authorize: func(*http.Request) (string, string, bool) { return "", "", false }, Registry: reg, Window: 10 * time.Minute})
	require.NoError(t, err)
	b, err := c.business(ctx, now)
	require.NoError(t, err)
	require.Empty(t, cmp.Diff(Business{
		WindowMinutes: 10,
		OrdersPerMinute: []StatusRate{
			{"created", 4, 0.4}, {"confirmed", 4, 0.4}, {"shipped", 0, 0}, {"delivered", 0, 0}, {"cancelled", 7, 0.7},
		},
		Revenue: []Revenue{{"EUR", 2250, "EUR 22.50"}, {"GBP", 500, "GBP 5.00"}, {"other", 7, "other 0.07"}},
		Cancellations: []ReasonTotal{
			{"out of stock", 2}, {"a", 1}, {"b", 1}, {"buyer changed mind", 1}, {"c", 1}, {"other", 1},
		},
		TopSellers: []SellerTotal{{1, "Alpha Ceramics", 3}, {2, "Beta Books", 1}},
	}, b))

	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP bazaar_business_orders_per_minute Orders that reached a state, per minute over the console's window, from the order events.
# TYPE bazaar_business_orders_per_minute gauge
bazaar_business_orders_per_minute{status="cancelled"} 0.7
bazaar_business_orders_per_minute{status="confirmed"} 0.4
bazaar_business_orders_per_minute{status="created"} 0.4
bazaar_business_orders_per_minute{status="delivered"} 0
bazaar_business_orders_per_minute{status="shipped"} 0
# HELP bazaar_business_revenue_minor Total of the orders confirmed over the console's window, in minor units of the currency.
# TYPE bazaar_business_revenue_minor gauge
bazaar_business_revenue_minor{currency="EUR"} 2250
bazaar_business_revenue_minor{currency="GBP"} 500
bazaar_business_revenue_minor{currency="other"} 7
# HELP bazaar_business_top_seller_orders Orders received over the console's window by the five sellers with the most.
# TYPE bazaar_business_top_seller_orders gauge
bazaar_business_top_seller_orders{rank="1",seller="Alpha Ceramics"} 3
bazaar_business_top_seller_orders{rank="2",seller="Beta Books"} 1
`), "bazaar_business_orders_per_minute", "bazaar_business_revenue_minor", "bazaar_business_top_seller_orders"))
	n, err := testutil.GatherAndCount(reg, "bazaar_business_cancellations")
	require.NoError(t, err)
	require.Equal(t, maxReasons+1, n, "five reasons and other")
}

func TestMoneyAndLabels(t *testing.T) {
	t.Parallel()
	for in, want := range map[[2]any]string{
		{int64(1250), "EUR"}: "EUR 12.50", {int64(5), "EUR"}: "EUR 0.05", {int64(-99), "USD"}: "USD -0.99",
		{int64(1200), "JPY"}: "JPY 1200", {int64(1234), "KWD"}: "KWD 1.234",
	} {
		require.Equal(t, want, money(in[0].(int64), in[1].(string)))
	}
	require.Equal(t, maxLabelRunes, len([]rune(label(strings.Repeat("é", 100)))))
	require.Equal(t, "short", label("short"))
}
