package workers

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(withStripeMock{m},
		// database/sql and lib/pq keep per-pool goroutines until Close,
		// which storetest calls in t.Cleanup after goleak's check ran for
		// nothing else; these are the pool's own and end with it.
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"),
	)
}
