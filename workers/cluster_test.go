package workers

import (
	"testing"

	"github.com/bazaarhq/bazaar/stream/redistest"
)

// TestWorkersOnCluster runs the workers suite's order saga (relay, consumer
// groups on partitioned streams, asynq tasks) and its retry-then-archive
// case on a Redis Cluster, each on a cluster of its own since asynq takes
// no key prefix.
func TestWorkersOnCluster(t *testing.T) {
	t.Parallel()
	for name, test := range map[string]func(*testing.T, setupOpts){
		"OrderIsReservedChargedConfirmedAndMailed": testOrderIsReservedChargedConfirmedAndMailed,
		"FollowUpFiresAfterItsDelay":               testFollowUpFiresAfterItsDelay,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			test(t, setupOpts{cluster: redistest.StartCluster(t)})
		})
	}
}
