package stream

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream/redistest"
)

// TestBackboneOnCluster runs the relay and consumer group tests on a Redis
// Cluster of their own: the relay's pipelines and trimming script, groups
// reading streams of several slots (each read split per stream), dead
// letters and redrive, replay from the event log, and partitioned streams
// whose hash tags spread them over the nodes.
func TestBackboneOnCluster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t)
	var n atomic.Int64
	bundle := func(t *testing.T) testBundle {
		db, _ := storetest.NewDB(t)
		return testBundle{db: db, rdb: c.Client(t), names: Names{Prefix: fmt.Sprintf("bazaar:c%d:", n.Add(1))}, log: testLogger(t)}
	}
	for name, test := range map[string]func(*testing.T, testBundle){
		"GroupsEndToEnd":                     testGroupsEndToEnd,
		"GroupStartFromTimeReplaysHistory":   testGroupStartFromTimeReplaysHistory,
		"PoisonEventDeadLetteredAndRedriven": testPoisonEventDeadLetteredAndRedriven,
		"TwoRelaysThreeConsumers":            testTwoRelaysThreeConsumers,
		"RelayPartitionsKeepSubjectTogether": testRelayPartitionsKeepSubjectTogether,
		"RelayCrashBetweenAddAndMark":        testRelayCrashBetweenAddAndMark,
		"TrimKeepsWhatGroupsNeed":            testTrimKeepsWhatGroupsNeed,
		"RelayWaitsOnEveryPrimary":           testRelayWaitsOnEveryPrimary,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			test(t, bundle(t))
		})
	}
}
