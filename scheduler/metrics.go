package scheduler

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/workers"
)

// CollectorConfig configures a Collector.
type CollectorConfig struct {
	// DB holds the firings and invoice runs (required).
	DB *sqlx.DB
	// Leading, when set, limits reporting to the times it returns true
	// (pass Scheduler.Leading): of several schedulers only the lease
	// holder reports, so a sum over processes counts each run once.
	Leading func() bool
	// Timeout bounds the queries of one scrape (default 5s).
	Timeout time.Duration
	Logger  *slog.Logger
}

// Collector is a Prometheus collector that reads, when scraped, each
// schedule's last success and the invoice runs from PostgreSQL. Reading
// them from the database rather than counting in memory keeps them right
// across restarts, which matters for schedules that fire twice a month.
type Collector struct {
	cfg                                  CollectorConfig
	log                                  *slog.Logger
	lastSuccess, runs, runFailedAccounts *prometheus.Desc
	eventDefaultRows                     *prometheus.Desc
}

// NewCollector builds a Collector; register it with a prometheus.Registerer.
func NewCollector(cfg CollectorConfig) (*Collector, error) {
	if cfg.DB == nil {
		return nil, errors.New("scheduler metrics: DB is required")
	}
	cfg.Timeout = cmp.Or(cfg.Timeout, 5*time.Second)
	cfg.Logger = cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	return &Collector{
		cfg: cfg,
		log: cfg.Logger.With("component", "scheduler_metrics"),
		lastSuccess: prometheus.NewDesc("bazaar_scheduler_last_success_timestamp_seconds",
			"Unix time of each schedule's last successful run (its work handed over).", []string{"schedule"}, nil),
		runs: prometheus.NewDesc("bazaar_invoice_runs_total",
			"Invoice runs completed, by status: succeeded (every account billed) or partial (some accounts failed).",
			[]string{"status"}, nil),
		runFailedAccounts: prometheus.NewDesc("bazaar_invoice_run_failed_accounts",
			"Accounts left failed by the latest completed invoice run.", nil, nil),
		eventDefaultRows: prometheus.NewDesc("bazaar_event_log_default_rows",
			"Rows in the default partitions of the event log: events whose month had no partition when written (0 while the event-partitions schedule keeps ahead).",
			nil, nil),
	}, nil
}

// Describe sends the descriptors of every series the Collector reports.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.lastSuccess
	ch <- c.runs
	ch <- c.runFailedAccounts
	ch <- c.eventDefaultRows
}

// Collect reads the state and sends its series; a query that fails leaves
// its series out of this scrape.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	if c.cfg.Leading != nil && !c.cfg.Leading() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	last, err := store.LastScheduleSuccesses(ctx, c.cfg.DB)
	if err != nil {
		c.log.Warn("metrics: read schedules", "err", err)
	}
	for _, s := range last {
		ch <- prometheus.MustNewConstMetric(c.lastSuccess, prometheus.GaugeValue, float64(s.At.UnixMilli())/1000, s.Schedule)
	}
	runs, err := store.InvoiceRunCompletions(ctx, c.cfg.DB, workers.EventInvoiceRunCompleted)
	if err != nil {
		c.log.Warn("metrics: read invoice runs", "err", err)
	} else {
		ch <- prometheus.MustNewConstMetric(c.runs, prometheus.CounterValue, float64(runs.Clean), "succeeded")
		ch <- prometheus.MustNewConstMetric(c.runs, prometheus.CounterValue, float64(runs.Partial), "partial")
	}
	failed, err := store.LatestRunFailedAccounts(ctx, c.cfg.DB)
	if err != nil {
		c.log.Warn("metrics: read the latest invoice run", "err", err)
	} else {
		ch <- prometheus.MustNewConstMetric(c.runFailedAccounts, prometheus.GaugeValue, float64(failed))
	}
	stray, err := store.EventDefaultRows(ctx, c.cfg.DB)
	if err != nil {
		c.log.Warn("metrics: read the event log's default partitions", "err", err)
	} else {
		ch <- prometheus.MustNewConstMetric(c.eventDefaultRows, prometheus.GaugeValue, float64(stray))
	}
}
