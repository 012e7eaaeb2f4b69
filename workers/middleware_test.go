package workers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream/redistest"
)

// syncBuffer is a log sink the workers' goroutines may write at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range bytes.Split(bytes.TrimSpace(b.buf.Bytes()), []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal(l, &m), "%s", l)
		out = append(out, m)
	}
	return out
}

// The logger a handler gets, built only when something logs, carries the
// task's and the event's ids in the handler's lines and in the failure
// line; and a task counted into a seller's share of a fair queue gives its
// place back after its last attempt.
func TestTaskLinesCarryTheirIDsAndFairPlacesAreReleased(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := storetest.NewDB(t)
	rdb := redis.NewClient(redistest.DB(t))
	t.Cleanup(func() { _ = rdb.Close() })
	var logs syncBuffer
	w, err := New(Config{
		DB: db, Redis: rdb, Mailer: nopMailer{}, Concurrency: 2,
		Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	require.NoError(t, err)
	const typ = "test:fails"
	ran := make(chan struct{}, 1)
	w.Mux().HandleFunc(typ, func(ctx context.Context, _ *asynq.Task) error {
		Logger(ctx, nil).Info("inside the handler")
		ran <- struct{}{}
		return errors.Join(errors.New("no such thing"), asynq.SkipRetry)
	})
	meta := Meta{Version: PayloadVersion, EventID: "0192e4f0-7b1a-7000-8000-0000000000aa", EventType: "user.registered", RequestID: "req-1"}
	task, err := newTask(typ, meta)
	require.NoError(t, err)
	id := TaskID("test", meta.EventID, "")
	require.NoError(t, w.enqueueFair(ctx, "seller-1", task, id))
	count := fairCountKey(QueueDefault, "seller-1")
	n, err := rdb.Get(ctx, count).Int()
	require.NoError(t, err)
	require.Equal(t, 1, n, "the task holds a place in the seller's share")

	require.NoError(t, w.Start(ctx))
	t.Cleanup(func() { _ = w.Stop(context.Background()) })
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		t.Fatal("the task never ran")
	}
	require.Eventually(t, func() bool {
		return rdb.Exists(ctx, count).Val() == 0
	}, 10*time.Second, 10*time.Millisecond, "the place is given back")

	want := map[string]any{
		"task_type": typ, "task_id": id, "queue": QueueDefault,
		"event_id": meta.EventID, "event_type": meta.EventType, "request_id": "req-1",
	}
	require.Eventually(t, func() bool {
		found := 0
		for _, l := range logs.lines(t) {
			if l["msg"] != "inside the handler" && l["msg"] != "task failed for good" {
				continue
			}
			for k, v := range want {
				require.Equal(t, v, l[k], "%s of %q", k, l["msg"])
			}
			found++
		}
		return found == 2
	}, 10*time.Second, 10*time.Millisecond, "the handler's line and the failure line")
}
