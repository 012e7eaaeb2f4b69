package main

import (
	"log/slog"

	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"

	"github.com/bazaarhq/bazaar/api"
	"github.com/bazaarhq/bazaar/workers/webhooks"
)

// webhooksAPI completes the API's webhook settings with a redeliverer that
// queues on the workers' Redis: the API runs no workers itself. The asynq
// client shares rdb and closes nothing of it.
func webhooksAPI(wc api.WebhooksConfig, db *sqlx.DB, rdb redis.UniversalClient, log *slog.Logger) api.WebhooksConfig {
	svc, err := webhooks.New(webhooks.Config{
		DB: db, Enqueuer: webhooks.ClientEnqueuer{Client: asynq.NewClientFromRedisClient(rdb)},
		Logger: log.With("component", "webhooks"), AllowPrivate: wc.AllowPrivate,
	})
	if err == nil {
		wc.Redeliverer = svc
	}
	return wc
}
