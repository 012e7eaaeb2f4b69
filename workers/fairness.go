package workers

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// FairnessConfig shares the task queues out by seller. Each fair queue Q
// gets an overflow queue Q_overflow of the same weight. A tenant (a
// seller, or a kind of work without one: stream.FairKey) may have at most
// SellerCap tasks in Q at once, counted from enqueue to their last
// attempt; its further tasks go to Q_overflow. asynq takes from Q and
// Q_overflow by weight, and from whichever holds work when the other is
// empty, so:
//   - a seller alone on the system gets the whole capacity (its excess in
//     Q_overflow is all there is to do);
//   - during one seller's flood, another seller's task sits in Q behind at
//     most SellerCap tasks of each tenant, instead of behind the flood.
type FairnessConfig struct {
	// Off sends every task to its own queue, first come first served, for
	// comparison (BAZAAR_FAIRNESS=off).
	Off bool
	// SellerCap is how many tasks one tenant may have in a fair queue at
	// once (default: Concurrency). Too small a cap backfires: a small
	// seller with a few orders in flight during a flood goes over it, and
	// its tasks land in the overflow queue behind the flood.
	SellerCap int
	// FairWeight is how many times its overflow queue's weight a fair
	// queue gets (default 4): when both hold work, asynq takes from the
	// fair queue, where every tenant's first tasks wait, FairWeight times
	// as often as from the overflow of the tenants over their share. The
	// two together keep the class's weight against the other queues.
	FairWeight int
	// Queues are the fair queues (default: those of critical, default and
	// low, where the consumer groups' tasks go, that the workers read).
	Queues []string
}

// OverflowQueue is the queue that takes the tasks of a tenant over its cap
// in queue q.
func OverflowQueue(q string) string { return q + "_overflow" }

// DefaultFairWeight is FairnessConfig.FairWeight's default. With equal
// weights (1) a small seller's task in the fair queue was taken only half
// of the time while a flood filled the overflow queue.
const DefaultFairWeight = 4

// fairWeights returns the queue weights with the overflow queue of each
// fair queue. A fair class of weight w becomes w*FairWeight for the fair
// queue and w for its overflow; every other queue's weight is multiplied
// by FairWeight+1, so that the classes keep their shares of the workers
// when both twins hold work.
func fairWeights(queues map[string]int, f FairnessConfig) (map[string]int, error) {
	k := cmp.Or(f.FairWeight, DefaultFairWeight)
	out := make(map[string]int, len(queues)+len(f.Queues))
	fair := map[string]bool{}
	for _, q := range f.Queues {
		if _, ok := queues[q]; !ok {
			return nil, fmt.Errorf("workers: fair queue %q is no queue the workers read", q)
		}
		fair[q] = true
	}
	for q, w := range queues {
		if fair[q] {
			out[q] = w * k
			if _, ok := queues[OverflowQueue(q)]; !ok {
				out[OverflowQueue(q)] = w
			}
			continue
		}
		if _, set := out[q]; !set {
			out[q] = w * (k + 1)
		}
	}
	return out, nil
}

// fairCountTTL bounds how long a lost count (a worker killed between a
// task's end and the decrement) holds a tenant's share: the count expires
// once the tenant has enqueued nothing for this long.
const fairCountTTL = 10 * time.Minute

func fairCountKey(queue, key string) string { return "bazaar:fair:" + queue + ":" + key }

// admitScript counts a task into a tenant's share of a queue, or refuses
// it when the share is full. KEYS: count; ARGV: cap, ttl ms.
var admitScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n > tonumber(ARGV[1]) then
  redis.call('DECR', KEYS[1])
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`)

// releaseScript takes a task off a tenant's count, never below zero.
var releaseScript = redis.NewScript(`
local n = redis.call('DECR', KEYS[1])
if n <= 0 then redis.call('DEL', KEYS[1]) end
return n
`)

// fairQueue reports whether queue q is shared out by tenant.
func (w *Workers) fairQueue(q string) bool {
	if w.cfg.Fairness.Off {
		return false
	}
	for _, f := range w.cfg.Fairness.Queues {
		if f == q {
			return true
		}
	}
	return false
}

// fairField marks, in a task's payload, the tenant whose share of its
// queue the task holds. It is set only on tasks counted in, outside Meta,
// so the tasks a task makes from its own Meta never carry it.
const fairField = "fair"

// fairMark is how the mark's key appears in a marked payload.
var fairMark = []byte(`"` + fairField + `"`)

// markFair returns t with the tenant mark in its payload.
func markFair(t *asynq.Task, key string) (*asynq.Task, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(t.Payload(), &fields); err != nil {
		return nil, fmt.Errorf("mark %s payload: %w", t.Type(), err)
	}
	k, err := json.Marshal(key)
	if err != nil {
		return nil, fmt.Errorf("mark %s payload: %w", t.Type(), err)
	}
	fields[fairField] = k
	b, err := json.Marshal(fields)
	if err != nil {
		return nil, fmt.Errorf("mark %s payload: %w", t.Type(), err)
	}
	return asynq.NewTask(t.Type(), b), nil
}

// enqueueFair enqueues a task of tenant key in its queue while the
// tenant's share there has room, else in the overflow queue.
func (w *Workers) enqueueFair(ctx context.Context, key string, t *asynq.Task, taskID string) error {
	q := w.policy(t.Type()).Queue
	if key == "" || !w.fairQueue(q) {
		return w.enqueue(ctx, t, taskID)
	}
	count := fairCountKey(q, key)
	n, err := admitScript.Run(ctx, w.cfg.Redis, []string{count}, w.cfg.Fairness.SellerCap, fairCountTTL.Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("fair share of %s in %s: %w", key, q, err)
	}
	if n == 0 {
		return w.enqueue(ctx, t, taskID, asynq.Queue(OverflowQueue(q)))
	}
	marked, err := markFair(t, key)
	if err != nil {
		_ = releaseScript.Run(context.WithoutCancel(ctx), w.cfg.Redis, []string{count}).Err()
		return err
	}
	added, err := w.enqueueNew(ctx, marked, taskID)
	if err != nil || !added {
		// Not in the queue (a duplicate, or Redis failed): give the
		// place back.
		_ = releaseScript.Run(context.WithoutCancel(ctx), w.cfg.Redis, []string{count}).Err()
	}
	return err
}

// releaseFair is the task middleware's part of fairness: a task in a fair
// queue leaves its tenant's count after its last attempt.
func (w *Workers) releaseFair(ctx context.Context, t *asynq.Task, oc string) {
	if oc == outcomeRetry || oc == outcomeDeferred {
		return // it stays in the queue (its retry set) and keeps its place
	}
	q, _ := asynq.GetQueueName(ctx)
	if !w.fairQueue(q) {
		return
	}
	// Most tasks carry no mark; finding that out must not cost a decode
	// of every payload.
	if !bytes.Contains(t.Payload(), fairMark) {
		return
	}
	var m struct {
		Fair string `json:"fair"`
	}
	if json.Unmarshal(t.Payload(), &m) != nil || m.Fair == "" {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := releaseScript.Run(rctx, w.cfg.Redis, []string{fairCountKey(q, m.Fair)}).Err(); err != nil && !errors.Is(err, redis.Nil) {
		w.log.Warn("release fair share; it expires on its own", "queue", q, "tenant", m.Fair, "error", err)
	}
}
