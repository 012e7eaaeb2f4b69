package stream

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Dead-letter entry fields added beside the original entry's fields.
const (
	FieldDLQStream     = "dlq_stream"
	FieldDLQEntryID    = "dlq_entry_id"
	FieldDLQGroup      = "dlq_group"
	FieldDLQError      = "dlq_error"
	FieldDLQDeliveries = "dlq_deliveries"
	FieldDLQFailedAt   = "dlq_failed_at"
)

// errorsKey holds the last error of each entry a group failed to handle and
// will try again, so whichever consumer gives up on it can say why.
func errorsKey(n Names, group string) string { return n.prefix() + "errors:" + group }

type verdict int

const (
	leave verdict = iota // stays pending: tried again after the visibility timeout
	ack
	dead
)

type item struct {
	stream  string
	msg     redis.XMessage
	env     Envelope
	deliv   int64
	verdict verdict
	err     error
	run     bool // the handler is to be called
}

func (r *runner) matches(eventType string) bool {
	for _, p := range r.patterns {
		if p.Match(eventType) {
			return true
		}
	}
	return false
}

// handleBatch handles the entries of one read from one stream, then
// acknowledges the ones done and dead-letters the ones given up, in one
// round trip. It returns how many entries it ran a handler for (not those
// parked or deferred).
func (r *runner) handleBatch(ctx context.Context, stream string, msgs []redis.XMessage, deliveries map[string]int64) (ran int) {
	items := make([]*item, len(msgs))
	var toRun []*item
	for i, m := range msgs {
		it := &item{stream: stream, msg: m, deliv: max(deliveries[m.ID], 1)}
		items[i] = it
		if len(m.Values) == 0 {
			it.verdict = ack // the entry was trimmed or deleted while pending
			continue
		}
		env, err := DecodeEnvelope(m.Values)
		if err != nil {
			it.verdict, it.err = dead, err
			continue
		}
		it.env = env
		switch {
		case !r.matches(env.Type):
			it.verdict = ack
		case it.deliv > int64(r.sub.MaxDeliveries):
			// A consumer took it and never reported back (it crashed or
			// was stopped) until the limit passed.
			it.verdict, it.err = dead, r.lastError(ctx, stream, m.ID)
		default:
			it.run = true
			toRun = append(toRun, it)
		}
	}
	r.park(ctx, stream, toRun)
	r.deferShare(ctx, stream, toRun, len(msgs) >= r.g.cfg.BatchSize)
	toRun = slices.DeleteFunc(toRun, func(it *item) bool { return !it.run })
	r.runAll(ctx, toRun, r.sub.OrderedBySubject)
	r.settle(context.WithoutCancel(ctx), stream, items)
	return len(toRun)
}

// runAll calls the handler for items: in subject lanes when ordered, from
// a shared queue otherwise.
func (r *runner) runAll(ctx context.Context, items []*item, ordered bool) {
	if len(items) == 0 {
		return
	}
	n := min(r.sub.Concurrency, len(items))
	var wg sync.WaitGroup
	if ordered {
		lanes := make([][]*item, r.sub.Concurrency)
		for _, it := range items {
			h := fnv.New32a()
			h.Write([]byte(it.env.Subject))
			l := int(h.Sum32() % uint32(r.sub.Concurrency))
			lanes[l] = append(lanes[l], it)
		}
		for _, lane := range lanes {
			if len(lane) == 0 {
				continue
			}
			if !r.g.cfg.DisableFairness {
				fairOrder(lane)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, it := range lane {
					r.runOrdered(ctx, it)
				}
			}()
		}
		wg.Wait()
		return
	}
	if !r.g.cfg.DisableFairness {
		items = slices.Clone(items)
		fairOrder(items)
	}
	queue := make(chan *item)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range queue {
				r.runOnce(ctx, it)
			}
		}()
	}
	for _, it := range items {
		queue <- it
	}
	close(queue)
	wg.Wait()
}

// runOnce calls the handler once. A failure below the delivery limit leaves
// the entry pending; the reclaim after the visibility timeout tries again.
func (r *runner) runOnce(ctx context.Context, it *item) {
	err := r.call(ctx, it)
	switch {
	case err == nil:
		it.verdict = ack
	case ctx.Err() != nil:
		it.verdict = leave // stopping: another consumer finishes it
	case it.deliv >= int64(r.sub.MaxDeliveries):
		it.verdict, it.err = dead, err
	default:
		it.verdict, it.err = leave, err
	}
}

// runOrdered tries again in place, with a growing pause, so later events of
// the subject wait behind a failing one instead of overtaking it.
func (r *runner) runOrdered(ctx context.Context, it *item) {
	for {
		err := r.call(ctx, it)
		switch {
		case err == nil:
			it.verdict = ack
			return
		case ctx.Err() != nil:
			it.verdict = leave
			return
		case it.deliv >= int64(r.sub.MaxDeliveries):
			it.verdict, it.err = dead, err
			return
		}
		pause := min(100*time.Millisecond<<min(it.deliv-1, 10), r.sub.VisibilityTimeout)
		if !waitFor(ctx, pause) {
			it.verdict, it.err = leave, err
			return
		}
		it.deliv++
	}
}

// call runs the handler, turning a panic into an error, and logs a failure
// once with the event's identity. It is timed and counted by group and
// event type, and traced when tracing is on (metrics.go, tracing.go).
func (r *runner) call(ctx context.Context, it *item) (err error) {
	stream := it.stream
	msg := Message{Envelope: it.env, Stream: stream, EntryID: it.msg.ID, Deliveries: it.deliv}
	ctx, obs := r.g.tel.start(ctx, r.sub.Group, &msg)
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panic: %v", p)
		}
		obs.end(ctx, err)
		if err != nil && ctx.Err() == nil {
			r.log.WarnContext(ctx, "handle event", "event_id", msg.ID, "type", msg.Type, "subject", msg.Subject,
				"stream", stream, "entry_id", msg.EntryID, "deliveries", msg.Deliveries,
				"max_deliveries", r.sub.MaxDeliveries, "err", err)
		}
	}()
	return r.sub.Handler(ctx, msg)
}

func (r *runner) lastError(ctx context.Context, stream, id string) error {
	s, err := r.rdb().HGet(ctx, errorsKey(r.g.cfg.Names, r.sub.Group), stream+"/"+id).Result()
	if err != nil || s == "" {
		return errors.New("delivery limit reached while no consumer reported back (a consumer stopped while handling it)")
	}
	return errors.New(s)
}

// queueDead adds the dead-letter entry of it to pipe: the original fields
// plus where it came from, the last error and the delivery count.
func (r *runner) queueDead(ctx context.Context, pipe redis.Pipeliner, it *item) {
	values := make(map[string]any, len(it.msg.Values)+6)
	for k, v := range it.msg.Values {
		values[k] = v
	}
	values[FieldDLQStream] = it.stream
	values[FieldDLQEntryID] = it.msg.ID
	values[FieldDLQGroup] = r.sub.Group
	values[FieldDLQError] = it.err.Error()
	values[FieldDLQDeliveries] = strconv.FormatInt(it.deliv, 10)
	values[FieldDLQFailedAt] = time.Now().UTC().Format(time.RFC3339Nano)
	pipe.XAdd(ctx, &redis.XAddArgs{Stream: r.dlq, Values: values})
	r.log.Error("event moved to dead letters", "event_id", it.env.ID, "type", it.env.Type,
		"stream", it.stream, "entry_id", it.msg.ID, "deliveries", it.deliv, "err", it.err)
}

// settle writes the outcome of a batch: dead letters first, then the
// acknowledgements, so a crash in between at worst dead-letters twice.
func (r *runner) settle(ctx context.Context, stream string, items []*item) {
	errKey := errorsKey(r.g.cfg.Names, r.sub.Group)
	var acks, forget []string
	pipe := r.rdb().Pipeline()
	queued := 0
	for _, it := range items {
		field := stream + "/" + it.msg.ID
		switch it.verdict {
		case dead:
			r.queueDead(ctx, pipe, it)
			queued++
			acks = append(acks, it.msg.ID)
			if it.deliv > 1 {
				forget = append(forget, field)
			}
		case ack:
			acks = append(acks, it.msg.ID)
			if it.deliv > 1 {
				forget = append(forget, field)
			}
		case leave:
			if it.err != nil {
				pipe.HSet(ctx, errKey, field, it.err.Error())
				queued++
			}
		}
	}
	if queued > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			r.log.Error("write dead letters; the entries stay pending", "stream", stream, "err", err)
			return
		}
	}
	if len(acks) == 0 {
		return
	}
	if err := r.ack(ctx, stream, acks, forget); err != nil {
		r.log.Error("acknowledge entries; will try again", "stream", stream, "count", len(acks), "err", err)
		r.owe(stream, acks, forget)
	}
}

// ack acknowledges entries done with, and forgets their recorded errors.
func (r *runner) ack(ctx context.Context, stream string, acks, forget []string) error {
	pipe := r.rdb().Pipeline()
	pipe.XAck(ctx, stream, r.sub.Group, acks...)
	if stream == r.retry {
		// Redriven entries are read by this group alone; once done they
		// are of no further use.
		pipe.XDel(ctx, stream, acks...)
	}
	if len(forget) > 0 {
		pipe.HDel(ctx, errorsKey(r.g.cfg.Names, r.sub.Group), forget...)
	}
	_, err := pipe.Exec(ctx)
	return err
}

// maxOwed bounds the acknowledgements kept for another try. Entries past
// it stay pending and come back through the reclaim after the visibility
// timeout; the handler sees them again and, being idempotent, only acks.
const maxOwed = 10_000

// owedAcks are acknowledgements of one stream that did not reach Redis.
type owedAcks struct{ acks, forget []string }

// owe keeps acknowledgements that failed (Redis unreachable) to be sent
// again as soon as Redis answers, so handled entries do not stay pending
// while this consumer keeps its streams: nothing else would look at them
// before a restart.
func (r *runner) owe(stream string, acks, forget []string) {
	if r.owed == nil {
		r.owed = make(map[string]*owedAcks)
	}
	o := r.owed[stream]
	if o == nil {
		o = &owedAcks{}
		r.owed[stream] = o
	}
	if len(o.acks)+len(acks) > maxOwed {
		return
	}
	o.acks = append(o.acks, acks...)
	o.forget = append(o.forget, forget...)
}

// payOwed sends the acknowledgements owe kept. It reports whether none are
// left; the ones that fail again stay for the next try.
func (r *runner) payOwed(ctx context.Context) bool {
	for stream, o := range r.owed {
		if err := r.ack(ctx, stream, o.acks, o.forget); err != nil {
			return false
		}
		r.log.Info("acknowledged entries after a failure", "stream", stream, "count", len(o.acks))
		delete(r.owed, stream)
	}
	return true
}
