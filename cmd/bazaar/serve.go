package main

import (
	"context"

	"github.com/bazaarhq/bazaar/api"
)

func init() {
	register(&command{
		name:  "serve",
		short: "serve the REST API",
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
			srv, err := api.New(api.Config{DB: db, Logger: log, AdminToken: cfg.AdminToken, MaxBodyBytes: cfg.MaxBodyBytes})
			if err != nil {
				return err
			}
			return runComponents(ctx, log, cfg.ShutdownTimeout, newHTTPServer(cfg.HTTPAddr, srv.Handler(), log))
		},
	})
}
