package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/stream"
	"github.com/bazaarhq/bazaar/workers"
	"github.com/bazaarhq/bazaar/workers/invoicing"
	"github.com/bazaarhq/bazaar/workers/webhooks"
)

func init() {
	register(&command{
		name:  "work",
		short: "run the workers: the consumer groups and the asynq tasks they enqueue",
		run: func(ctx context.Context, env *environment, _ []string) error {
			cfg, log, err := setup(env, "work")
			if err != nil {
				return err
			}
			hc, err := loadHTTPConfig(env.getenv)
			if err != nil {
				return err
			}
			log.Info("http config", "http", hc)
			wc, err := loadWorkConfig(env.getenv, false)
			if err != nil {
				return err
			}
			sc, err := loadScheduleConfig(env.getenv)
			if err != nil {
				return err
			}
			pc, err := loadPaymentConfig(env.getenv, false)
			if err != nil {
				return err
			}
			log.Info("worker config", "workers", wc, "invoicing", sc, "payments", pc)
			obs, err := newObservability(ctx, env.getenv, "work", log)
			if err != nil {
				return err
			}
			db, rdb, closeAll, err := connect(ctx, cfg)
			if err != nil {
				return err
			}
			defer closeAll()
			// The invoicer enqueues the account tasks of the runs it is
			// handed; the client shares rdb, so it is closed before it.
			client := asynq.NewClientFromRedisClient(rdb)
			defer func() { _ = client.Close() }()
			notify, notifyParts, err := outboxNotifier(cfg, db, log)
			if err != nil {
				return err
			}
			iv, err := newInvoicer(sc, db, client, asynq.NewInspectorFromRedisClient(rdb), log, notify)
			if err != nil {
				return err
			}
			parts, err := newWorkerParts(workerDeps{
				Config: cfg, Work: wc, DB: db, Redis: rdb, Logger: log, Observer: notify,
				Registry: obs.Registry, TracerProvider: obs.TracerProvider(), Invoicer: iv, Payments: pc,
			})
			if err != nil {
				return err
			}
			// The workers report the consumer groups they read and the
			// asynq queues; the relay reports the outbox and streams.
			names := cfg.names()
			if err := obs.CollectBackbone(nil, rdb, names, stream.CollectGroups); err != nil {
				return err
			}
			if err := obs.CollectQueues(rdb); err != nil {
				return err
			}
			ops := obs.OpsServers(cfg.HTTPAddr, hc, log, postgresReady(db), redisReady(rdb))
			components := append(append([]component{obs}, notifyParts...), parts.Components()...)
			return runComponents(ctx, log, cfg.ShutdownTimeout, append(components, ops...)...)
		},
	})
}

// workConfig is the workers' part of the configuration.
type workConfig struct {
	SMTP          workers.SMTPConfig
	Concurrency   int
	FollowUpDelay time.Duration
	ReminderLead  time.Duration
	// TaskRetention is BAZAAR_TASK_RETENTION: how long asynq keeps a
	// finished task so its TaskID refuses a duplicate (default 0: not at
	// all; duplicates are refused in PostgreSQL, workers.Config.Retention).
	TaskRetention time.Duration
	// DevMailAddr is where "bazaar dev" runs its mail sink when no SMTP host
	// is configured.
	DevMailAddr string
	// WebhookAllowPrivate lets seller webhooks reach http:// and private
	// and loopback addresses: for development and tests only.
	WebhookAllowPrivate bool
	// WebhookDisableAfter is how long a seller's webhook endpoint may fail
	// without a delivery before it is disabled and the seller mailed.
	WebhookDisableAfter time.Duration
	// Fairness is BAZAAR_FAIRNESS (on, or off for comparison) and
	// BAZAAR_FAIR_SELLER_CAP (tasks per seller in a fair queue; 0: the
	// concurrency).
	Fairness workers.FairnessConfig
	// GroupSellerShare is BAZAAR_GROUP_SELLER_SHARE: entries of one seller
	// a consumer group's batch runs before it defers the rest (0: the
	// group's concurrency).
	GroupSellerShare int
}

// loadWorkConfig reads the workers' settings. Outside development an SMTP
// server is required; "bazaar dev" falls back to its built-in mail sink.
func loadWorkConfig(getenv func(string) string, dev bool) (workConfig, error) {
	r := &envReader{getenv: getenv}
	wc := workConfig{
		SMTP: workers.SMTPConfig{
			Host:     r.str("BAZAAR_SMTP_HOST", ""),
			Port:     int(r.integer("BAZAAR_SMTP_PORT", 587)),
			Username: r.str("BAZAAR_SMTP_USERNAME", ""),
			Password: r.str("BAZAAR_SMTP_PASSWORD", ""),
			TLS:      r.str("BAZAAR_SMTP_TLS", workers.TLSStartTLS),
			From:     r.str("BAZAAR_MAIL_FROM", "Bazaar <no-reply@bazaar.localhost>"),
			Timeout:  r.duration("BAZAAR_SMTP_TIMEOUT", 10*time.Second),
		},
		Concurrency:   int(r.integer("BAZAAR_WORKER_CONCURRENCY", 10)),
		FollowUpDelay: r.duration("BAZAAR_FOLLOWUP_DELAY", 5*time.Minute),
		ReminderLead:  r.duration("BAZAAR_REMINDER_LEAD", 24*time.Hour),
		TaskRetention: r.duration("BAZAAR_TASK_RETENTION", workers.DefaultRetention),
		DevMailAddr:   r.addr("BAZAAR_DEV_SMTP_ADDR", "127.0.0.1:2525"),
	}
	wc.WebhookAllowPrivate = r.boolean("BAZAAR_WEBHOOK_ALLOW_PRIVATE", false)
	wc.WebhookDisableAfter = r.duration("BAZAAR_WEBHOOK_DISABLE_AFTER", webhooks.DefaultDisableAfter)
	if wc.WebhookDisableAfter <= 0 {
		r.fail("BAZAAR_WEBHOOK_DISABLE_AFTER", "must be positive (for example 120h)")
	}
	switch f := r.str("BAZAAR_FAIRNESS", "on"); f {
	case "on":
	case "off":
		wc.Fairness.Off = true
	default:
		r.fail("BAZAAR_FAIRNESS", "%q is not on or off", f)
	}
	wc.Fairness.SellerCap = int(r.integer("BAZAAR_FAIR_SELLER_CAP", 0))
	if wc.Fairness.SellerCap < 0 {
		r.fail("BAZAAR_FAIR_SELLER_CAP", "must not be negative")
	}
	wc.GroupSellerShare = int(r.integer("BAZAAR_GROUP_SELLER_SHARE", 0))
	if wc.GroupSellerShare < 0 {
		r.fail("BAZAAR_GROUP_SELLER_SHARE", "must not be negative")
	}
	switch wc.SMTP.TLS {
	case workers.TLSStartTLS, workers.TLSOpportunistic, workers.TLSImplicit, workers.TLSNone:
	default:
		r.fail("BAZAAR_SMTP_TLS", "%q is not one of starttls, opportunistic, tls, none", wc.SMTP.TLS)
	}
	if wc.SMTP.Host == "" && !dev {
		r.fail("BAZAAR_SMTP_HOST", "is required to send mail (bazaar dev uses a built-in mail sink instead)")
	}
	if wc.TaskRetention < 0 {
		r.fail("BAZAAR_TASK_RETENTION", "must not be negative")
	}
	if wc.Concurrency < 1 {
		r.fail("BAZAAR_WORKER_CONCURRENCY", "must be at least 1")
	}
	if r.err != nil {
		return workConfig{}, fmt.Errorf("config: %w", r.err)
	}
	return wc, nil
}

// LogValue masks the SMTP password.
func (w workConfig) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("smtp_host", w.SMTP.Host),
		slog.Int("smtp_port", w.SMTP.Port),
		slog.String("smtp_username", w.SMTP.Username),
		slog.String("smtp_password", mask(w.SMTP.Password)),
		slog.String("smtp_tls", w.SMTP.TLS),
		slog.String("mail_from", w.SMTP.From),
		slog.Int("concurrency", w.Concurrency),
		slog.Duration("followup_delay", w.FollowUpDelay),
		slog.Duration("reminder_lead", w.ReminderLead),
		slog.Duration("task_retention", w.TaskRetention),
		slog.Duration("webhook_disable_after", w.WebhookDisableAfter),
		slog.Bool("fairness", !w.Fairness.Off),
		slog.Int("fair_seller_cap", w.Fairness.SellerCap),
		slog.Int("group_seller_share", w.GroupSellerShare),
	)
}

// workerDeps is what newWorkerParts wires.
type workerDeps struct {
	Config Config
	Work   workConfig
	DB     *sqlx.DB
	Redis  redis.UniversalClient
	Logger *slog.Logger
	// Mailer overrides the SMTP mailer (bazaar dev's sink).
	Mailer workers.Mailer
	// Registry receives the task and consumer group metrics; nil leaves
	// them unexported.
	Registry prometheus.Registerer
	// TracerProvider traces tasks and handler calls; nil turns tracing off.
	TracerProvider trace.TracerProvider
	// Observer is told when a task commits events: the in-process relay
	// (dev), or the outbox notifier (BAZAAR_OUTBOX_NOTIFY).
	Observer store.TxObserver
	// Invoicer, when set, runs batch invoicing on these workers: its task
	// handlers go on their mux and its consumer group (which hands runs
	// started through the API to the workers) joins theirs.
	Invoicer *invoicing.Invoicer
	// Payments picks the gateway that charges orders.
	Payments paymentConfig
}

// workerParts are the running pieces of the workers role.
type workerParts struct {
	Workers *workers.Workers
	Groups  *stream.Groups
	// Webhooks delivers seller webhooks; "bazaar dev" redelivers with it.
	Webhooks *webhooks.Service
}

// Components lists the parts in start order: the task server first, so
// the tasks the groups enqueue find it running; stopped in reverse.
func (p workerParts) Components() []component {
	return []component{p.Workers, p.Groups}
}

// newWorkerParts builds the workers (asynq server and handlers) and the
// consumer groups that feed them, with batch invoicing when d.Invoicer is
// set. "bazaar dev" calls it too.
func newWorkerParts(d workerDeps) (workerParts, error) {
	mailer := d.Mailer
	if mailer == nil {
		m, err := workers.NewSMTPMailer(d.Work.SMTP)
		if err != nil {
			return workerParts{}, fmt.Errorf("config: %w", err)
		}
		mailer = m
	}
	gw, err := d.Payments.gateway(d.DB, d.Logger)
	if err != nil {
		return workerParts{}, err
	}
	w, err := workers.New(workers.Config{
		DB: d.DB, Redis: d.Redis, Logger: d.Logger, Registry: d.Registry, TracerProvider: d.TracerProvider, Observer: d.Observer,
		Mailer: mailer, Concurrency: d.Work.Concurrency, ShutdownTimeout: d.Config.ShutdownTimeout,
		FollowUpDelay: d.Work.FollowUpDelay, ReminderLead: d.Work.ReminderLead, Retention: d.Work.TaskRetention,
		Gateway: gw, MarketplaceFeeBPS: d.Payments.FeeBPS, Fairness: d.Work.Fairness,
	})
	if err != nil {
		return workerParts{}, err
	}
	g, err := stream.NewGroups(stream.GroupsConfig{
		Redis: d.Redis, DB: d.DB, Names: d.Config.names(), Logger: d.Logger,
		Registry: d.Registry, TracerProvider: d.TracerProvider, DisableFairness: d.Work.Fairness.Off,
		SellerShare: d.Work.GroupSellerShare,
	})
	if err != nil {
		return workerParts{}, err
	}
	hooks, err := webhooks.New(webhooks.Config{
		DB: d.DB, Enqueuer: w, Logger: d.Logger.With("component", "webhooks"), AllowPrivate: d.Work.WebhookAllowPrivate,
		DisableAfter: d.Work.WebhookDisableAfter,
	})
	if err != nil {
		return workerParts{}, err
	}
	hooks.Register(w.Mux())
	subs := append(w.Subscriptions(workers.SubscriptionOptions{}), hooks.Subscription())
	if d.Invoicer != nil {
		d.Invoicer.Register(w.Mux())
		subs = append(subs, d.Invoicer.Subscription())
	}
	var errs []error
	for _, sub := range subs {
		if err := g.Add(sub); err != nil {
			errs = append(errs, fmt.Errorf("group %s: %w", sub.Group, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return workerParts{}, err
	}
	return workerParts{Workers: w, Groups: g, Webhooks: hooks}, nil
}

// devMailParts is the mail sink "bazaar dev" runs when no SMTP server is
// configured, and the mailer that sends to it.
func devMailParts(wc workConfig, log *slog.Logger) (*workers.MailSink, workers.Mailer, error) {
	if wc.SMTP.Host != "" {
		return nil, nil, nil
	}
	sink := workers.NewMailSink(workers.MailSinkConfig{Addr: wc.DevMailAddr, Logger: log})
	host, port, _ := strings.Cut(wc.DevMailAddr, ":")
	var p int
	if _, err := fmt.Sscanf(port, "%d", &p); err != nil {
		return nil, nil, fmt.Errorf("config: BAZAAR_DEV_SMTP_ADDR: %w", err)
	}
	m, err := workers.NewSMTPMailer(workers.SMTPConfig{Host: host, Port: p, TLS: workers.TLSNone, From: wc.SMTP.From})
	if err != nil {
		return nil, nil, err
	}
	return sink, m, nil
}

// newMonitor builds asynqmon on the configured Redis topology, for the API
// to serve at /monitor (api.Config.Monitor). Close it after the HTTP server stopped.
func newMonitor(cfg Config) (*workers.Monitor, error) {
	opt, err := asynqConnOpt(cfg.Redis)
	if err != nil {
		return nil, err
	}
	return workers.NewMonitor(opt), nil
}
