package workers

import (
	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
)

// MonitorRoot is where the API serves asynqmon.
const MonitorRoot = "/monitor"

// NewMonitor returns asynqmon's UI and API for the Redis the workers'
// queues live on, to be mounted at MonitorRoot behind admin
// authentication (asynqmon has none of its own). Close it when done.
func NewMonitor(redis asynq.RedisConnOpt) *asynqmon.HTTPHandler {
	return asynqmon.New(asynqmon.Options{
		RootPath:     MonitorRoot,
		RedisConnOpt: redis,
	})
}
