package console

import (
	"context"
	"regexp"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bazaarhq/bazaar/sql/store"
)

// Business is what the order events of the last Window say: orders per
// minute by the state they reached, revenue per currency, cancellations
// by reason and the sellers with the most new orders. Labels are bounded:
// five states, at most maxCurrencies currencies, maxReasons reasons and
// maxSellers sellers, the rest summed as "other".
type Business struct {
	WindowMinutes   float64       `json:"window_minutes"`
	OrdersPerMinute []StatusRate  `json:"orders_per_minute"`
	Revenue         []Revenue     `json:"revenue"`
	Cancellations   []ReasonTotal `json:"cancellations"`
	TopSellers      []SellerTotal `json:"top_sellers"`
}

// StatusRate is how many orders reached a state in the window, and that
// a minute.
type StatusRate struct {
	Status    string  `json:"status"`
	Orders    int64   `json:"orders"`
	PerMinute float64 `json:"per_minute"`
}

// Revenue is the total of the orders confirmed in the window in one
// currency (minor units).
type Revenue struct {
	Currency string `json:"currency"`
	Minor    int64  `json:"minor"`
	Display  string `json:"display"`
}

// ReasonTotal is how many orders were cancelled for a reason.
type ReasonTotal struct {
	Reason string `json:"reason"`
	Orders int64  `json:"orders"`
}

// SellerTotal is how many orders a seller received in the window.
type SellerTotal struct {
	Rank   int    `json:"rank"`
	Seller string `json:"seller"`
	Orders int64  `json:"orders"`
}

const (
	maxCurrencies = 10
	maxReasons    = 5
	maxSellers    = 5
	maxLabelRunes = 40
)

var currencyCode = regexp.MustCompile(`^[A-Z]{3}$`)

// statusOf names the state an order event type records.
func statusOf(typ string) string {
	switch typ {
	case "order.created":
		return "created"
	case "order.confirmed":
		return "confirmed"
	case "order.shipped":
		return "shipped"
	case "order.delivered":
		return "delivered"
	case "order.cancelled":
		return "cancelled"
	}
	return ""
}

func (c *Console) business(ctx context.Context, now time.Time) (Business, error) {
	since := now.Add(-c.cfg.Window)
	b := Business{WindowMinutes: c.cfg.Window.Minutes()}
	totals, err := store.OrderEventTotals(ctx, c.cfg.DB, since)
	if err != nil {
		return b, err
	}
	byStatus := map[string]int64{}
	revenue := map[string]int64{}
	var cancelled int64
	for _, t := range totals {
		byStatus[statusOf(t.Type)] += t.Events
		if t.Type == "order.confirmed" {
			revenue[t.Currency] += t.TotalMinor
		}
		if t.Type == "order.cancelled" {
			cancelled += t.Events
		}
	}
	for _, typ := range store.OrderEventTypes {
		st := statusOf(typ)
		b.OrdersPerMinute = append(b.OrdersPerMinute, StatusRate{Status: st, Orders: byStatus[st], PerMinute: float64(byStatus[st]) / b.WindowMinutes})
	}
	b.Revenue = boundRevenue(revenue)
	reasons, err := store.CancellationReasons(ctx, c.cfg.DB, since, maxReasons)
	if err != nil {
		return b, err
	}
	b.Cancellations = []ReasonTotal{}
	var named int64
	for _, r := range reasons {
		b.Cancellations = append(b.Cancellations, ReasonTotal{Reason: label(r.Reason), Orders: r.Orders})
		named += r.Orders
	}
	if cancelled > named {
		b.Cancellations = append(b.Cancellations, ReasonTotal{Reason: "other", Orders: cancelled - named})
	}
	top, err := store.TopSellers(ctx, c.cfg.DB, since, maxSellers)
	if err != nil {
		return b, err
	}
	b.TopSellers = []SellerTotal{}
	for i, s := range top {
		b.TopSellers = append(b.TopSellers, SellerTotal{Rank: i + 1, Seller: label(s.Name), Orders: s.Orders})
	}
	return b, nil
}

// boundRevenue keeps the maxCurrencies largest well-formed currencies and
// sums the rest as "other".
func boundRevenue(m map[string]int64) []Revenue {
	out := []Revenue{}
	var other int64
	for cur, minor := range m {
		if !currencyCode.MatchString(cur) {
			other += minor
			continue
		}
		out = append(out, Revenue{Currency: cur, Minor: minor})
	}
	slices.SortFunc(out, func(a, b Revenue) int {
		if a.Minor != b.Minor {
			if a.Minor > b.Minor {
				return -1
			}
			return 1
		}
		if a.Currency < b.Currency {
			return -1
		}
		return 1
	})
	if len(out) > maxCurrencies {
		for _, r := range out[maxCurrencies:] {
			other += r.Minor
		}
		out = out[:maxCurrencies]
	}
	if other > 0 {
		out = append(out, Revenue{Currency: "other", Minor: other})
	}
	for i := range out {
		out[i].Display = money(out[i].Minor, out[i].Currency)
	}
	return out
}

// label cuts free text to a bounded label value.
func label(s string) string {
	if utf8.RuneCountInString(s) <= maxLabelRunes {
		return s
	}
	r := []rune(s)
	return string(r[:maxLabelRunes-1]) + "…"
}

// figuresCollector exports the business figures of the latest snapshot.
type figuresCollector struct{ c *Console }

var (
	descOrdersPerMinute = prometheus.NewDesc("bazaar_business_orders_per_minute",
		"Orders that reached a state, per minute over the console's window, from the order events.", []string{"status"}, nil)
	descRevenue = prometheus.NewDesc("bazaar_business_revenue_minor",
		"Total of the orders confirmed over the console's window, in minor units of the currency.", []string{"currency"}, nil)
	descCancellations = prometheus.NewDesc("bazaar_business_cancellations",
		"Orders cancelled over the console's window, by reason (the most frequent five, the rest as other).", []string{"reason"}, nil)
	descTopSellers = prometheus.NewDesc("bazaar_business_top_seller_orders",
		"Orders received over the console's window by the five sellers with the most.", []string{"rank", "seller"}, nil)
	descWindow = prometheus.NewDesc("bazaar_business_window_seconds",
		"The span the bazaar_business_* figures cover.", nil, nil)
)

// Describe sends the series' descriptions.
func (f *figuresCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descOrdersPerMinute, descRevenue, descCancellations, descTopSellers, descWindow} {
		ch <- d
	}
}

// Collect sends the figures of a fresh snapshot.
func (f *figuresCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := f.c.business(ctx, f.c.cfg.Now())
	if err != nil {
		f.c.log.Warn("console: business figures", "err", err)
		return
	}
	ch <- prometheus.MustNewConstMetric(descWindow, prometheus.GaugeValue, b.WindowMinutes*60)
	for _, s := range b.OrdersPerMinute {
		ch <- prometheus.MustNewConstMetric(descOrdersPerMinute, prometheus.GaugeValue, s.PerMinute, s.Status)
	}
	// "other" is always there (0 when nothing falls in it), so each
	// series exists from the first scrape.
	other := false
	for _, r := range b.Revenue {
		ch <- prometheus.MustNewConstMetric(descRevenue, prometheus.GaugeValue, float64(r.Minor), r.Currency)
		other = other || r.Currency == "other"
	}
	if !other {
		ch <- prometheus.MustNewConstMetric(descRevenue, prometheus.GaugeValue, 0, "other")
	}
	other = false
	for _, r := range b.Cancellations {
		ch <- prometheus.MustNewConstMetric(descCancellations, prometheus.GaugeValue, float64(r.Orders), r.Reason)
		other = other || r.Reason == "other"
	}
	if !other {
		ch <- prometheus.MustNewConstMetric(descCancellations, prometheus.GaugeValue, 0, "other")
	}
	for _, s := range b.TopSellers {
		ch <- prometheus.MustNewConstMetric(descTopSellers, prometheus.GaugeValue, float64(s.Orders), strconv.Itoa(s.Rank), s.Seller)
	}
}
