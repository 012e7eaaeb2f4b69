package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/gin-gonic/gin"
	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"

	"github.com/bazaarhq/bazaar/api"
	"github.com/bazaarhq/bazaar/api/web"
	"github.com/bazaarhq/bazaar/sql/migrations"
	"github.com/bazaarhq/bazaar/stream"
)

func init() {
	register(&command{
		name:  "dev",
		short: "run every role in one process: API, demo page, asynqmon, relay, workers, scheduler",
		run:   runDev,
	})
}

// runDev runs every role in one process for development and demos: the
// migrations, the API with the demo page at / and asynqmon at /monitor, the
// relay (woken by the API's commits), the consumer groups and the asynq
// workers, the scheduler, and a mail sink at /dev/mail unless an SMTP
// server is configured.
func runDev(ctx context.Context, env *environment, _ []string) error {
	cfg, log, err := setup(env, "dev")
	if err != nil {
		return err
	}
	wc, err := loadWorkConfig(env.getenv, true)
	if err != nil {
		return err
	}
	pc, err := loadPaymentConfig(env.getenv, true)
	if err != nil {
		return err
	}
	sc, err := loadScheduleConfig(env.getenv)
	if err != nil {
		return err
	}
	ac, err := loadAPIConfig(env.getenv)
	if err != nil {
		return err
	}
	hc, err := loadHTTPConfig(env.getenv)
	if err != nil {
		return err
	}
	log.Info("http config", "http", hc)
	obs, err := newObservability(ctx, env.getenv, "dev", log)
	if err != nil {
		return err
	}
	tp := obs.TracerProvider()
	if err := ensureDatabase(ctx, cfg, log); err != nil {
		return err
	}
	db, rdb, closeAll, err := connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeAll()
	if err := migrateDirect(ctx, cfg); err != nil {
		return err
	}
	names := cfg.names()

	relay, err := stream.NewRelay(cfg.Redis.replicated(devRelayConfig(db, rdb, names, log, obs)))
	if err != nil {
		return err
	}
	sink, mailer, err := devMailParts(wc, log.With("component", "mailsink"))
	if err != nil {
		return err
	}
	client := asynq.NewClientFromRedisClient(rdb)
	defer client.Close()
	iv, err := newInvoicer(sc, db, client, asynq.NewInspectorFromRedisClient(rdb), log, relay)
	if err != nil {
		return err
	}
	parts, err := newWorkerParts(workerDeps{
		Config: cfg, Work: wc, DB: db, Redis: rdb, Logger: log, Mailer: mailer, Observer: relay,
		Registry: obs.Registry, TracerProvider: tp, Invoicer: iv, Payments: pc,
	})
	if err != nil {
		return err
	}
	sched, err := newScheduler(sc, db, iv, log)
	if err != nil {
		return err
	}
	mon, err := newMonitor(cfg)
	if err != nil {
		return err
	}
	defer mon.Close()
	hub, err := stream.NewHub(stream.HubConfig{Redis: rdb, DB: db, Names: names, Logger: log.With("component", "hub")})
	if err != nil {
		return err
	}
	admin, err := stream.NewAdmin(stream.AdminConfig{Redis: rdb, DB: db, Names: names})
	if err != nil {
		return err
	}
	apiCfg := api.Config{
		DB: db, Logger: log, AdminToken: cfg.AdminToken, MaxBodyBytes: cfg.MaxBodyBytes,
		Observer: relay, Streams: admin, Monitor: mon, InvoiceLocation: sc.Location,
		Hub: hub, SSE: ac.SSE, Registry: obs.Registry, TracerProvider: tp,
		Redis: rdb, RedisPrefix: cfg.RedisPrefix, Limits: ac.Limits, TrustedProxies: ac.TrustedProxies,
		Webhooks: ac.Webhooks, DisablePrepared: !ac.DBPrepared, PausedSellerOrders: ac.PausedSellerOrders,
		// The console's Tasks page (shares rdb; nothing to close).
		Tasks: asynq.NewInspectorFromRedisClient(rdb),
	}
	apiCfg.Webhooks.Redeliverer = parts.Webhooks
	if sink != nil {
		apiCfg.DevMail = sink
	}
	if apiCfg.StripeWebhooks, err = stripeWebhooks(env.getenv, db, log, relay); err != nil {
		return err
	}
	// api.New only builds the router; handlers use their request's context.
	srv, err := api.New(apiCfg) //nolint:contextcheck // see above
	if err != nil {
		return err
	}
	srv.Engine().GET("/", gin.WrapH(web.Handler()))

	if err := obs.CollectBackbone(db, rdb, names, stream.CollectAll); err != nil {
		return err
	}
	if err := obs.CollectQueues(rdb); err != nil {
		return err
	}
	if err := obs.CollectSchedules(db, sched.Leading); err != nil {
		return err
	}
	parts2 := []component{obs} // stopped last: flushes the spans of the rest
	if hc.MetricsAddr != "" {
		parts2 = append(parts2, obs.MetricsServer(hc, log))
	}
	if sink != nil {
		parts2 = append(parts2, sink)
	}
	audits, err := periodicAudit(env.getenv, db, rdb, names, log, obs)
	if err != nil {
		return err
	}
	parts2 = append(parts2, relay)
	parts2 = append(parts2, audits...)
	parts2 = append(parts2, parts.Workers, parts.Groups, sched, hub, srv,
		// Only dev serves /metrics on the API port too, for the demo.
		newHTTPServer("BAZAAR_HTTP_ADDR", cfg.HTTPAddr, obs.WithMetrics(srv.Handler()), hc, log).endStreamsOnShutdown(hub)) //nolint:contextcheck // shutdown hook has no context
	log.Info("bazaar dev", "url", fmt.Sprintf("http://localhost%s/", portOf(cfg.HTTPAddr)),
		"console", "/console", "monitor", "/monitor", "mail", "/dev/mail")
	return runComponents(ctx, log, cfg.ShutdownTimeout, parts2...)
}

// devRelayConfig is the relay "dev" runs: the relay role's defaults, so its
// streams are trimmed as in production.
func devRelayConfig(db *sqlx.DB, rdb redis.UniversalClient, names stream.Names, log *slog.Logger, obs *observability) stream.RelayConfig {
	return defaultRelayOptions().config(db, rdb, names, log, obs)
}

// migrateDirect applies the migrations over BAZAAR_DATABASE_DIRECT_URL,
// which keeps the session their advisory lock needs.
func migrateDirect(ctx context.Context, cfg Config) error {
	direct, err := openDirectDB(ctx, cfg)
	if err != nil {
		return err
	}
	defer direct.Close()
	return migrations.Up(ctx, direct.DB)
}
