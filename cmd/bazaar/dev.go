package main

import (
	"context"

	"github.com/bazaarhq/bazaar/api"
	"github.com/bazaarhq/bazaar/sql/migrations"
)

func init() {
	register(&command{
		name:  "dev",
		short: "run every role in one process (migrations applied at start)",
		run: func(ctx context.Context, env *environment, _ []string) error {
			cfg, log, err := setup(env)
			if err != nil {
				return err
			}
			db, err := openDB(ctx, cfg)
			if err != nil {
				return err
			}
			defer db.Close()
			if err := migrations.Up(ctx, db.DB); err != nil {
				return err
			}
			rdb, err := openRedis(ctx, cfg)
			if err != nil {
				return err
			}
			defer rdb.Close()
			srv, err := api.New(api.Config{DB: db, Logger: log, AdminToken: cfg.AdminToken, MaxBodyBytes: cfg.MaxBodyBytes})
			if err != nil {
				return err
			}
			return runComponents(ctx, log, cfg.ShutdownTimeout, newHTTPServer(cfg.HTTPAddr, srv.Handler(), log))
		},
	})
}
