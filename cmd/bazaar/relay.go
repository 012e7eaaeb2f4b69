package main

import (
	"context"
	"flag"
	"log/slog"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/stream"
)

// relayOptions are the relay's tunables. Every role that runs the relay
// builds it with newRelay from these ("relay" from its flags, "dev" from
// the defaults), so every relay trims its streams with the same limits:
// a relay without them lets Redis grow without bound.
type relayOptions struct {
	batch        int
	lanes        int
	poll         time.Duration
	maxLen       int64
	maxAge       time.Duration
	trimInterval time.Duration
	// listen is -listen: LISTEN on BAZAAR_DATABASE_DIRECT_URL for the
	// NOTIFYs of BAZAAR_OUTBOX_NOTIFY, with the poll as the fallback.
	listen bool
}

func defaultRelayOptions() relayOptions {
	return relayOptions{
		batch:        5000,
		lanes:        1,
		poll:         100 * time.Millisecond,
		maxLen:       1_000_000,
		maxAge:       7 * 24 * time.Hour,
		trimInterval: 30 * time.Second,
	}
}

// register binds o to the relay's flags, with the defaults as values.
func (o *relayOptions) register(fs *flag.FlagSet) {
	d := defaultRelayOptions()
	fs.IntVar(&o.batch, "batch", d.batch, "events each lane claims per transaction")
	fs.IntVar(&o.lanes, "lanes", d.lanes, "batches in flight at once, each on its own PostgreSQL connection; the outbox is split between them by subject hash, so above 1 only each subject's events keep their order in a stream (as with several relays)")
	fs.DurationVar(&o.poll, "poll", d.poll, "how often to look for events written by other processes")
	fs.Int64Var(&o.maxLen, "maxlen", d.maxLen, "keep about this many entries per stream (0 = no length limit)")
	fs.DurationVar(&o.maxAge, "maxage", d.maxAge, "drop stream entries older than this (0 = no age limit)")
	fs.BoolVar(&o.listen, "listen", d.listen, "wake on the NOTIFYs that BAZAAR_OUTBOX_NOTIFY sends, listening on BAZAAR_DATABASE_DIRECT_URL; the poll stays as the fallback")
	fs.DurationVar(&o.trimInterval, "trim-interval", d.trimInterval, "how often streams are trimmed; never past what a consumer group still needs")
}

// config is the relay's configuration for these options.
func (o relayOptions) config(db *sqlx.DB, rdb redis.UniversalClient, names stream.Names, log *slog.Logger, obs *observability) stream.RelayConfig {
	return stream.RelayConfig{
		DB: db, Redis: rdb, Names: names, Logger: log,
		BatchSize: o.batch, Lanes: o.lanes, PollInterval: o.poll, MaxLen: o.maxLen, MaxAge: o.maxAge, TrimInterval: o.trimInterval,
		Registry: obs.Registry, TracerProvider: obs.TracerProvider(),
	}
}

func init() {
	var opts relayOptions
	register(&command{
		name:  "relay",
		short: "publish committed outbox events to Redis Streams (safe to run several)",
		flags: opts.register,
		run: func(ctx context.Context, env *environment, _ []string) error {
			cfg, log, err := setup(env, "relay")
			if err != nil {
				return err
			}
			hc, err := loadHTTPConfig(env.getenv)
			if err != nil {
				return err
			}
			log.Info("http config", "http", hc)
			obs, err := newObservability(ctx, env.getenv, "relay", log)
			if err != nil {
				return err
			}
			db, rdb, closeAll, err := connect(ctx, cfg)
			if err != nil {
				return err
			}
			defer closeAll()
			rc := opts.config(db, rdb, cfg.names(), log, obs)
			if opts.listen {
				// LISTEN needs a session of its own, which a transaction
				// pooler in front of DATABASE_URL does not give.
				rc.ListenDSN = cfg.DatabaseDirectURL
			}
			relay, err := stream.NewRelay(cfg.Redis.replicated(rc))
			if err != nil {
				return err
			}
			// The relay reports the outbox and the streams it writes; the
			// workers report the consumer groups.
			names := cfg.names()
			if err := obs.CollectBackbone(db, rdb, names, stream.CollectOutbox|stream.CollectStreams); err != nil {
				return err
			}
			// The periodic consistency audit (BAZAAR_AUDIT_INTERVAL; 0 off).
			audits, err := periodicAudit(env.getenv, db, rdb, names, log, obs)
			if err != nil {
				return err
			}
			parts := append([]component{obs, relay}, audits...)
			ops := obs.OpsServers(cfg.HTTPAddr, hc, log, postgresReady(db), redisReady(rdb))
			return runComponents(ctx, log, cfg.ShutdownTimeout, append(parts, ops...)...)
		},
	})
}

// outboxNotifier is what a role that records events tells after each
// commit: with BAZAAR_OUTBOX_NOTIFY, a Notifier that wakes the relays
// listening in other processes (returned as a component to run too);
// otherwise nil, and those relays find the events by their poll.
func outboxNotifier(cfg Config, db *sqlx.DB, log *slog.Logger) (store.TxObserver, []component, error) {
	if !cfg.OutboxNotify {
		return nil, nil, nil
	}
	n, err := stream.NewNotifier(stream.NotifierConfig{DB: db, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	return n, []component{n}, nil
}
