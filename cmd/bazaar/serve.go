package main

import (
	"context"
	"net"
	"strings"

	"github.com/hibiken/asynq"

	"github.com/bazaarhq/bazaar/api"
	"github.com/bazaarhq/bazaar/stream"
)

func init() {
	register(&command{
		name:  "serve",
		short: "serve the REST API, the live event routes, the console at /console and asynqmon at /monitor",
		run: func(ctx context.Context, env *environment, _ []string) error {
			cfg, log, err := setup(env, "serve")
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
			ac, err := loadAPIConfig(env.getenv)
			if err != nil {
				return err
			}
			obs, err := newObservability(ctx, env.getenv, "serve", log)
			if err != nil {
				return err
			}
			db, rdb, closeAll, err := connect(ctx, cfg)
			if err != nil {
				return err
			}
			defer closeAll()
			names := cfg.names()
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
			notify, notifyParts, err := outboxNotifier(cfg, db, log)
			if err != nil {
				return err
			}
			hooks, err := stripeWebhooks(env.getenv, db, log, notify)
			if err != nil {
				return err
			}
			// api.New only builds the router; handlers use their request's context.
			srv, err := api.New(api.Config{ //nolint:contextcheck // see above
				DB: db, Logger: log, AdminToken: cfg.AdminToken, MaxBodyBytes: cfg.MaxBodyBytes, Observer: notify,
				Streams: admin, Monitor: mon, InvoiceLocation: sc.Location, Hub: hub, SSE: ac.SSE,
				Registry: obs.Registry, TracerProvider: obs.TracerProvider(), StripeWebhooks: hooks,
				Redis: rdb, RedisPrefix: cfg.RedisPrefix, Limits: ac.Limits, TrustedProxies: ac.TrustedProxies,
				Webhooks:           webhooksAPI(ac.Webhooks, db, rdb, log),
				DisablePrepared:    !ac.DBPrepared,
				PausedSellerOrders: ac.PausedSellerOrders,
				// The console's Tasks page (shares rdb; nothing to close).
				Tasks: asynq.NewInspectorFromRedisClient(rdb),
			})
			if err != nil {
				return err
			}
			// /metrics stays off the API port, which faces clients: it is
			// served on a listener of its own, or not at all.
			// The notifier starts before the HTTP server and stops after it,
			// so every commit the API makes is announced.
			parts := append([]component{obs}, notifyParts...)
			if hc.MetricsAddr != "" {
				parts = append(parts, obs.MetricsServer(hc, log))
			} else {
				log.Info("no /metrics: set BAZAAR_METRICS_ADDR to serve it on a port of its own")
			}
			parts = append(parts, hub, srv, newHTTPServer("BAZAAR_HTTP_ADDR", cfg.HTTPAddr, srv.Handler(), hc, log).endStreamsOnShutdown(hub)) //nolint:contextcheck // shutdown hook has no context
			return runComponents(ctx, log, cfg.ShutdownTimeout, parts...)
		},
	})
}

// apiConfig is the live event routes' part of the configuration.
type apiConfig struct {
	SSE            api.SSEConfig
	Limits         api.Limits
	TrustedProxies []string
	// Webhooks has BAZAAR_WEBHOOK_ALLOW_PRIVATE, which registration checks too.
	Webhooks api.WebhooksConfig
	// DBPrepared is BAZAAR_DB_PREPARED (default true): the write path's
	// queries run as named prepared statements. Set it to false behind a
	// pooler that cannot carry them, such as PgBouncer in transaction mode.
	DBPrepared bool
	// PausedSellerOrders is BAZAAR_PAUSED_SELLER_ORDERS: accept (default)
	// or refuse the orders of a paused seller.
	PausedSellerOrders string
}

func loadAPIConfig(getenv func(string) string) (apiConfig, error) {
	r := &envReader{getenv: getenv}
	var ac apiConfig
	ac.SSE.Heartbeat = r.duration("BAZAAR_SSE_HEARTBEAT", 0)
	ac.SSE.WriteTimeout = r.duration("BAZAAR_SSE_WRITE_TIMEOUT", 0)
	for _, o := range strings.Split(r.str("BAZAAR_CORS_ORIGINS", ""), ",") {
		if o = strings.TrimSpace(o); o != "" {
			ac.SSE.CORSOrigins = append(ac.SSE.CORSOrigins, o)
		}
	}
	ac.Limits, ac.TrustedProxies = loadLimits(r)
	ac.Webhooks.AllowPrivate = r.boolean("BAZAAR_WEBHOOK_ALLOW_PRIVATE", false)
	ac.DBPrepared = r.boolean("BAZAAR_DB_PREPARED", true)
	ac.PausedSellerOrders = r.str("BAZAAR_PAUSED_SELLER_ORDERS", api.PausedOrdersAccept)
	if ac.PausedSellerOrders != api.PausedOrdersAccept && ac.PausedSellerOrders != api.PausedOrdersRefuse {
		r.fail("BAZAAR_PAUSED_SELLER_ORDERS", "%q is not accept or refuse", ac.PausedSellerOrders)
	}
	if r.err != nil {
		return apiConfig{}, r.err
	}
	return ac, nil
}

// portOf returns ":8080" for "0.0.0.0:8080" or ":8080", for the start line.
func portOf(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return ":" + port
}
