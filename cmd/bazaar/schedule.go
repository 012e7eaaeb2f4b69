package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
	// Time zones must load in containers without /usr/share/zoneinfo.
	_ "time/tzdata"

	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"

	"github.com/bazaarhq/bazaar/scheduler"
	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/workers"
	"github.com/bazaarhq/bazaar/workers/invoicing"
)

func init() {
	register(&command{
		name:  "schedule",
		short: "run the scheduler: bi-weekly invoicing, firing once however many run",
		run: func(ctx context.Context, env *environment, _ []string) error {
			cfg, log, err := setup(env, "schedule")
			if err != nil {
				return err
			}
			hc, err := loadHTTPConfig(env.getenv)
			if err != nil {
				return err
			}
			log.Info("http config", "http", hc)
			sc, err := loadScheduleConfig(env.getenv)
			if err != nil {
				return err
			}
			log.Info("schedule config", "schedule", sc)
			obs, err := newObservability(ctx, env.getenv, "schedule", log)
			if err != nil {
				return err
			}
			db, rdb, closeAll, err := connect(ctx, cfg)
			if err != nil {
				return err
			}
			defer closeAll()
			client := asynq.NewClientFromRedisClient(rdb)
			defer client.Close()
			notify, notifyParts, err := outboxNotifier(cfg, db, log)
			if err != nil {
				return err
			}
			iv, err := newInvoicer(sc, db, client, nil, log, notify)
			if err != nil {
				return err
			}
			s, err := newScheduler(sc, db, iv, log)
			if err != nil {
				return err
			}
			if err := obs.CollectSchedules(db, s.Leading); err != nil {
				return err
			}
			ops := obs.OpsServers(cfg.HTTPAddr, hc, log, postgresReady(db), redisReady(rdb))
			parts := append(append([]component{obs}, notifyParts...), s)
			return runComponents(ctx, log, cfg.ShutdownTimeout, append(parts, ops...)...)
		},
	})
}

// scheduleConfig is the scheduler's and invoicing's part of the
// configuration. The workers and the API need the invoicing part too
// (newInvoicer), with the same values.
type scheduleConfig struct {
	// InvoiceSpec is the invoicing cron expression; empty turns the
	// schedule off (runs can still be started by hand).
	InvoiceSpec     string
	Location        *time.Location
	CatchUp         time.Duration
	Poll            time.Duration
	LeaseTTL        time.Duration
	Tax             invoicing.TaxTable
	Queue           string
	ChunkSize       int
	PaymentTermDays int
	// DBPrepared is BAZAAR_DB_PREPARED (default true), as for the API: the
	// invoice billing transaction's statements run prepared.
	DBPrepared bool

	// The event log's partition upkeep (the event-partitions schedule).
	EventRetention       time.Duration // BAZAAR_EVENT_RETENTION
	EventArchiveDetach   bool          // BAZAAR_EVENT_ARCHIVE=detach
	EventPartitionsAhead int           // BAZAAR_EVENT_PARTITIONS_AHEAD
	// Retention is how long the bookkeeping prune keeps each table
	// (BAZAAR_*_RETENTION).
	Retention scheduler.BookkeepingRetention
}

// loadScheduleConfig reads BAZAAR_INVOICE_* and BAZAAR_SCHEDULE_*.
func loadScheduleConfig(getenv func(string) string) (scheduleConfig, error) {
	r := &envReader{getenv: getenv}
	sc := scheduleConfig{
		InvoiceSpec:     r.str("BAZAAR_INVOICE_SCHEDULE", scheduler.DefaultInvoicingSpec),
		CatchUp:         r.duration("BAZAAR_SCHEDULE_CATCHUP", 7*24*time.Hour),
		Poll:            r.duration("BAZAAR_SCHEDULE_POLL", 10*time.Second),
		LeaseTTL:        r.duration("BAZAAR_SCHEDULE_LEASE_TTL", 30*time.Second),
		Queue:           r.str("BAZAAR_INVOICE_QUEUE", workers.QueueLow),
		ChunkSize:       int(r.integer("BAZAAR_INVOICE_CHUNK", 1000)),
		PaymentTermDays: int(r.integer("BAZAAR_INVOICE_PAYMENT_DAYS", 14)),
		DBPrepared:      r.boolean("BAZAAR_DB_PREPARED", true),
	}
	d := scheduler.DefaultBookkeepingRetention
	sc.Retention = scheduler.BookkeepingRetention{
		ProcessedEvents: r.duration("BAZAAR_PROCESSED_EVENTS_RETENTION", d.ProcessedEvents),
		SentEmails:      r.duration("BAZAAR_SENT_EMAILS_RETENTION", d.SentEmails),
		TaskFailures:    r.duration("BAZAAR_TASK_FAILURES_RETENTION", d.TaskFailures),
		ProviderEvents:  r.duration("BAZAAR_PROVIDER_EVENTS_RETENTION", d.ProviderEvents),
	}
	// A retention shorter than a day would undercut the redelivery windows
	// (docs/operations.md, Bookkeeping retention) at any setting.
	for key, v := range map[string]time.Duration{
		"BAZAAR_PROCESSED_EVENTS_RETENTION": sc.Retention.ProcessedEvents,
		"BAZAAR_SENT_EMAILS_RETENTION":      sc.Retention.SentEmails,
		"BAZAAR_TASK_FAILURES_RETENTION":    sc.Retention.TaskFailures,
		"BAZAAR_PROVIDER_EVENTS_RETENTION":  sc.Retention.ProviderEvents,
	} {
		if v < 24*time.Hour {
			r.fail(key, "must be at least 24h (durations are in hours: 720h is 30 days)")
		}
	}
	if strings.EqualFold(sc.InvoiceSpec, "off") {
		sc.InvoiceSpec = ""
	}
	if sc.InvoiceSpec != "" {
		if err := scheduler.ParseSpec(sc.InvoiceSpec); err != nil {
			r.fail("BAZAAR_INVOICE_SCHEDULE", "%q is not a cron expression such as %q (or off): %v", sc.InvoiceSpec, scheduler.DefaultInvoicingSpec, err)
		}
	}
	tz := r.str("BAZAAR_INVOICE_TZ", "UTC")
	loc, err := time.LoadLocation(tz)
	if err != nil {
		r.fail("BAZAAR_INVOICE_TZ", "%q is not a time zone such as Europe/Berlin", tz)
		loc = time.UTC
	}
	sc.Location = loc
	if sc.InvoiceSpec != "" && r.err == nil {
		if err := scheduler.CheckInvoicingSpec(sc.InvoiceSpec, loc); err != nil {
			r.fail("BAZAAR_INVOICE_SCHEDULE", "%q %v", sc.InvoiceSpec, err)
		}
	}
	tax, err := invoicing.ParseTaxTable(r.str("BAZAAR_INVOICE_TAX", invoicing.DefaultTaxRates))
	if err != nil {
		r.fail("BAZAAR_INVOICE_TAX", "%v", err)
	}
	sc.Tax = tax
	switch sc.Queue {
	case workers.QueueCritical, workers.QueueDefault, workers.QueueLow:
	default:
		r.fail("BAZAAR_INVOICE_QUEUE", "%q is not one of critical, default, low", sc.Queue)
	}
	if sc.ChunkSize < 1 || sc.ChunkSize > 100_000 {
		r.fail("BAZAAR_INVOICE_CHUNK", "must be from 1 to 100000")
	}
	if sc.Poll < time.Second {
		r.fail("BAZAAR_SCHEDULE_POLL", "must be at least 1s")
	}
	if sc.LeaseTTL <= sc.Poll {
		r.fail("BAZAAR_SCHEDULE_LEASE_TTL", "must be longer than BAZAAR_SCHEDULE_POLL (%s)", sc.Poll)
	}
	if sc.CatchUp <= sc.LeaseTTL+sc.Poll {
		r.fail("BAZAAR_SCHEDULE_CATCHUP", "must be longer than BAZAAR_SCHEDULE_LEASE_TTL + BAZAAR_SCHEDULE_POLL (%s), or a scheduler killed at a due time loses the firing", sc.LeaseTTL+sc.Poll)
	}
	loadEventLogConfig(r, &sc)
	if r.err != nil {
		return scheduleConfig{}, fmt.Errorf("config: %w", r.err)
	}
	return sc, nil
}

// loadEventLogConfig reads BAZAAR_EVENT_RETENTION (a duration, or days as
// "400d"), BAZAAR_EVENT_ARCHIVE (drop or detach) and
// BAZAAR_EVENT_PARTITIONS_AHEAD.
func loadEventLogConfig(r *envReader, sc *scheduleConfig) {
	sc.EventRetention = scheduler.DefaultEventRetention
	if v := r.str("BAZAAR_EVENT_RETENTION", ""); v != "" {
		d, err := parseDays(v)
		if err != nil || d < 31*24*time.Hour {
			r.fail("BAZAAR_EVENT_RETENTION", "%q is not a duration of at least 31 days such as 400d or 9600h", v)
		} else {
			sc.EventRetention = d
		}
	}
	switch v := r.str("BAZAAR_EVENT_ARCHIVE", "drop"); v {
	case "drop":
	case "detach":
		sc.EventArchiveDetach = true
	default:
		r.fail("BAZAAR_EVENT_ARCHIVE", "%q is not drop or detach", v)
	}
	sc.EventPartitionsAhead = int(r.integer("BAZAAR_EVENT_PARTITIONS_AHEAD", scheduler.DefaultEventPartitionsAhead))
	if sc.EventPartitionsAhead < 1 || sc.EventPartitionsAhead > 24 {
		r.fail("BAZAAR_EVENT_PARTITIONS_AHEAD", "must be from 1 to 24 months")
	}
}

// parseDays parses a Go duration or a whole number of days ("400d").
func parseDays(v string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(v, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil {
			return 0, err
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	return time.ParseDuration(v)
}

// LogValue lists the settings for the start-up log line.
func (sc scheduleConfig) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("invoice_schedule", cmp.Or(sc.InvoiceSpec, "off")),
		slog.String("invoice_tz", sc.Location.String()),
		slog.String("invoice_tax", sc.Tax.String()),
		slog.String("invoice_queue", sc.Queue),
		slog.Int("invoice_chunk", sc.ChunkSize),
		slog.Bool("db_prepared", sc.DBPrepared),
		slog.Int("invoice_payment_days", sc.PaymentTermDays),
		slog.Duration("catch_up", sc.CatchUp),
		slog.Duration("poll", sc.Poll),
		slog.Duration("lease_ttl", sc.LeaseTTL),
		slog.Duration("event_retention", sc.EventRetention),
		slog.Bool("event_archive_detach", sc.EventArchiveDetach),
		slog.Int("event_partitions_ahead", sc.EventPartitionsAhead),
		slog.Duration("processed_events_retention", sc.Retention.ProcessedEvents),
		slog.Duration("sent_emails_retention", sc.Retention.SentEmails),
		slog.Duration("task_failures_retention", sc.Retention.TaskFailures),
		slog.Duration("provider_events_retention", sc.Retention.ProviderEvents),
	)
}

// newInvoicer builds batch invoicing. The scheduler uses it to start runs,
// the workers to run its tasks (Invoicer.Register on their mux) and the
// API to start runs and retry failed accounts by hand. insp is set where
// the account tasks run (work, dev), to clear their failed attempts from
// the archive.
func newInvoicer(sc scheduleConfig, db *sqlx.DB, client *asynq.Client, insp *asynq.Inspector, log *slog.Logger, observer store.TxObserver) (*invoicing.Invoicer, error) {
	tax := sc.Tax
	return invoicing.New(invoicing.Config{
		DB: db, Client: client, Inspector: insp, Location: sc.Location, Tax: &tax, Queue: sc.Queue,
		ChunkSize: sc.ChunkSize, PaymentTermDays: sc.PaymentTermDays, DisablePrepared: !sc.DBPrepared,
		Logger: log.With("component", "invoicing"), Observer: observer,
	})
}

// newScheduler builds the scheduler with the invoicing schedule (unless it
// is off).
func newScheduler(sc scheduleConfig, db *sqlx.DB, iv *invoicing.Invoicer, log *slog.Logger) (*scheduler.Scheduler, error) {
	var schedules []scheduler.Schedule
	if sc.InvoiceSpec != "" {
		schedules = append(schedules, scheduler.NewInvoicingSchedule(sc.InvoiceSpec, iv))
	}
	// Expired Idempotency-Key records are ignored already; the sweep only
	// gives their space back.
	schedules = append(schedules, scheduler.NewIdempotencySweepSchedule(
		scheduler.DefaultIdempotencySweepSpec, db, log.With("component", "scheduler")))
	// The event log's partitions are made here, ahead, never on the write
	// path; expired months are dropped or detached whole.
	schedules = append(schedules, scheduler.NewEventPartitionsSchedule(scheduler.DefaultEventPartitionsSpec,
		scheduler.EventPartitionsJob{
			DB: db, Logger: log.With("component", "scheduler"), Ahead: sc.EventPartitionsAhead,
			Retention: sc.EventRetention, Detach: sc.EventArchiveDetach,
		}))
	// Per-event bookkeeping older than its retention.
	schedules = append(schedules, scheduler.NewBookkeepingPruneSchedule(
		scheduler.DefaultBookkeepingPruneSpec, db, sc.Retention, log.With("component", "scheduler")))
	return scheduler.New(scheduler.Config{
		DB: db, Schedules: schedules, Location: sc.Location,
		CatchUp: sc.CatchUp, PollInterval: sc.Poll, LeaseTTL: sc.LeaseTTL,
		Logger: log.With("component", "scheduler"),
	})
}
