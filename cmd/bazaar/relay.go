package main

import (
	"context"
	"flag"
	"time"

	"github.com/bazaarhq/bazaar/stream"
)

func init() {
	var (
		batch        int
		poll         time.Duration
		maxLen       int64
		maxAge       time.Duration
		trimInterval time.Duration
	)
	register(&command{
		name:  "relay",
		short: "publish committed outbox events to Redis Streams (safe to run several)",
		flags: func(fs *flag.FlagSet) {
			fs.IntVar(&batch, "batch", 500, "events claimed per transaction")
			fs.DurationVar(&poll, "poll", 100*time.Millisecond, "how often to look for events written by other processes")
			fs.Int64Var(&maxLen, "maxlen", 1_000_000, "keep about this many entries per stream (0 = no length limit)")
			fs.DurationVar(&maxAge, "maxage", 7*24*time.Hour, "drop stream entries older than this (0 = no age limit)")
			fs.DurationVar(&trimInterval, "trim-interval", 30*time.Second, "how often streams are trimmed; never past what a consumer group still needs")
		},
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
			relay, err := stream.NewRelay(stream.RelayConfig{
				DB: db, Redis: rdb, Names: cfg.names(), Logger: log,
				BatchSize: batch, PollInterval: poll, MaxLen: maxLen, MaxAge: maxAge, TrimInterval: trimInterval,
				Registry: obs.Registry, TracerProvider: obs.TracerProvider(),
			})
			if err != nil {
				return err
			}
			// The relay reports the outbox and the streams it writes; the
			// workers report the consumer groups.
			names := cfg.names()
			if err := obs.CollectBackbone(db, rdb, names, stream.CollectOutbox|stream.CollectStreams); err != nil {
				return err
			}
			ops := obs.OpsServers(cfg.HTTPAddr, hc, log, postgresReady(db), redisReady(rdb))
			return runComponents(ctx, log, cfg.ShutdownTimeout, append([]component{obs, relay}, ops...)...)
		},
	})
}
