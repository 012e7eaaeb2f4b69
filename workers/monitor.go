package workers

import (
	"errors"
	"slices"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
)

// MonitorRoot is where the API serves asynqmon.
const MonitorRoot = "/monitor"

// Monitor is asynqmon's UI and API with the queue lookup the API uses to
// refuse unknown queue names itself: asynqmon answers several of its
// queue actions with a 500 in plain text when the queue does not exist.
type Monitor struct {
	*asynqmon.HTTPHandler
	insp *asynq.Inspector
}

// NewMonitor returns asynqmon's UI and API for the Redis the workers'
// queues live on, to be mounted at MonitorRoot behind admin
// authentication (asynqmon has none of its own). Close it when done.
func NewMonitor(redis asynq.RedisConnOpt) *Monitor {
	return &Monitor{
		HTTPHandler: asynqmon.New(asynqmon.Options{
			RootPath:     MonitorRoot,
			RedisConnOpt: redis,
		}),
		insp: asynq.NewInspector(redis),
	}
}

// HasQueue reports whether asynq knows the queue, that is whether it is
// one asynqmon lists.
func (m *Monitor) HasQueue(name string) (bool, error) {
	qs, err := m.insp.Queues()
	if err != nil {
		return false, err
	}
	return slices.Contains(qs, name), nil
}

// Close releases the Redis connections of asynqmon and of the lookup.
func (m *Monitor) Close() error {
	return errors.Join(m.HTTPHandler.Close(), m.insp.Close())
}
