package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// runner reads and handles the entries of one subscription.
type runner struct {
	g        *Groups
	sub      Subscription
	log      *slog.Logger
	patterns []Pattern
	streams  []string // domain streams the patterns can match
	retry    string   // redriven entries, read by this group alone
	all      []string // streams and retry
	dlq      string

	// owned holds the streams an ordered subscription has claimed, with the
	// time each claim was last renewed.
	owned map[string]time.Time
	// owed holds acknowledgements that failed, by stream (see owe). Only
	// the run loop's goroutine touches it.
	owed map[string]*owedAcks
	// pauseChecks counts the looks at the pause flag (tests wait on it);
	// pausedNow and nextPauseCheck cache the last look. Only the run loop's
	// goroutine touches the cache.
	pauseChecks    atomic.Int64
	pausedNow      bool
	nextPauseCheck time.Time
}

// drainInterval is how often a runner looks for held events of resumed
// sellers to hand over.
const drainInterval = 100 * time.Millisecond

func (r *runner) consumer() string           { return r.g.cfg.Consumer }
func (r *runner) rdb() redis.UniversalClient { return r.g.cfg.Redis }

// setup creates the group on every stream (and its retry stream). Creation
// is idempotent: an existing group keeps its position.
func (r *runner) setup(ctx context.Context) error {
	if err := r.rdb().Set(ctx, r.g.cfg.Names.Patterns(r.sub.Group), strings.Join(r.sub.Patterns, " "), 0).Err(); err != nil {
		return fmt.Errorf("record patterns of %s: %w", r.sub.Group, err)
	}
	if r.sub.StartFrom.mode == startAt {
		if err := r.setupReplay(ctx); err != nil {
			return err
		}
	} else {
		start := "$"
		if r.sub.StartFrom.mode == startBeginning {
			start = "0"
		}
		for _, s := range r.streams {
			if err := createGroup(ctx, r.rdb(), s, r.sub.Group, start); err != nil {
				return err
			}
		}
	}
	// The retry stream is read from its start: it holds only what a person
	// redrove for this group.
	return createGroup(ctx, r.rdb(), r.retry, r.sub.Group, "0")
}

func createGroup(ctx context.Context, rdb redis.UniversalClient, stream, group, start string) error {
	err := rdb.XGroupCreateMkStream(ctx, stream, group, start).Err()
	if err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
		return errors.Join(errors.New("create group "+group+" on "+stream), err)
	}
	return nil
}

// run is the subscription's read loop. loopCtx ends it; handlerCtx is what
// handlers get, so a batch in flight can finish after Stop.
func (r *runner) run(loopCtx, handlerCtx context.Context) {
	defer r.releaseAll(context.WithoutCancel(loopCtx))
	defer func() {
		if len(r.owed) > 0 && !r.payOwed(context.WithoutCancel(loopCtx)) {
			r.log.Warn("stopping with acknowledgements unsent; the entries will be delivered again")
		}
	}()
	if r.sub.StartFrom.mode == startAt {
		if !r.replay(loopCtx, handlerCtx) {
			return
		}
	}
	// Entries this consumer took before a restart come first. An ordered
	// subscription takes its domain streams' pending entries over with
	// their leases instead.
	for _, s := range r.claimable() {
		if !r.drainOwnPending(loopCtx, handlerCtx, s) {
			return
		}
	}
	var nextClaim, nextCleanup, nextLease, nextDrain time.Time
	failures := 0
	for loopCtx.Err() == nil {
		// Acknowledgements lost to a Redis outage go first: until they
		// land, the entries hold back trimming and look unhandled.
		if len(r.owed) > 0 && !r.payOwed(loopCtx) && loopCtx.Err() == nil {
			failures++
			if !waitFor(loopCtx, retryDelay(failures, 5*time.Second)) {
				return
			}
			continue
		}
		if r.paused(loopCtx) {
			// A paused group reads nothing new and claims nothing; what
			// it holds stays pending until it is resumed.
			if !waitFor(loopCtx, pausePoll) {
				return
			}
			continue
		}
		now := time.Now()
		if r.sub.OrderedBySubject && !now.Before(nextLease) {
			r.balance(loopCtx, handlerCtx)
			nextLease = now.Add(r.g.cfg.LeaseTTL / 3)
		}
		if !now.Before(nextClaim) {
			// What this consumer reads, it also takes back once idle past
			// the visibility timeout: for an ordered subscription that
			// covers the streams it holds, where entries can sit pending
			// under this very consumer with nobody working on them when
			// their acknowledgement was lost (Redis restarted from a file
			// that missed it, or more failed than owe keeps). They were
			// handled in order once, so handling them again (idempotent
			// handlers only acknowledge) reorders no subject.
			for _, s := range r.readStreams() {
				r.reclaim(loopCtx, handlerCtx, s, r.sub.VisibilityTimeout)
			}
			nextClaim = now.Add(max(r.sub.VisibilityTimeout/4, 10*time.Millisecond))
		}
		block := r.g.cfg.Block
		if !now.Before(nextDrain) {
			nextDrain = time.Now().Add(drainInterval)
			if r.drainHeld(loopCtx, handlerCtx) {
				// More parked entries wait: the live read between two
				// batches of them must not sit out its block time.
				nextDrain, block = time.Time{}, -1
			}
		}
		if !now.Before(nextCleanup) {
			r.removeIdleConsumers(loopCtx)
			nextCleanup = now.Add(max(r.g.cfg.IdleConsumerTimeout/4, time.Second))
		}
		if err := r.readNew(loopCtx, handlerCtx, block); err != nil {
			if loopCtx.Err() != nil {
				return
			}
			failures++
			if failures&(failures-1) == 0 {
				r.log.Error("read consumer group; will retry", "err", err, "attempt", failures)
			}
			if !waitFor(loopCtx, retryDelay(failures, 5*time.Second)) {
				return
			}
			continue
		}
		if failures > 0 {
			r.log.Info("reading resumed", "failed_attempts", failures)
			failures = 0
		}
	}
}

// pausePoll is how often a group looks whether it was paused or resumed:
// a pause takes effect within it (plus one read's block time).
const pausePoll = 250 * time.Millisecond

// paused reports whether the group is paused, looking at most every
// pausePoll. A Redis error counts as not paused: the read that follows
// meets the same error and backs off.
func (r *runner) paused(ctx context.Context) bool {
	now := time.Now()
	if now.Before(r.nextPauseCheck) {
		return r.pausedNow
	}
	n, err := r.rdb().Exists(ctx, r.g.cfg.Names.Paused(r.sub.Group)).Result()
	r.pausedNow, r.nextPauseCheck = err == nil && n > 0, now.Add(pausePoll)
	r.pauseChecks.Add(1)
	return r.pausedNow
}

// claimable are the streams whose idle pending entries any consumer of the
// group may take over after the visibility timeout: all of them, or for an
// ordered subscription only the retry stream (a leased stream's entries
// move with its lease).
func (r *runner) claimable() []string {
	if r.sub.OrderedBySubject {
		return []string{r.retry}
	}
	return r.all
}

// readStreams are the streams this consumer reads new entries from now.
func (r *runner) readStreams() []string {
	if !r.sub.OrderedBySubject {
		return append(append([]string(nil), r.streams...), r.retry)
	}
	out := make([]string, 0, len(r.owned)+1)
	for _, s := range r.streams { // keep a stable order
		if _, ok := r.owned[s]; ok {
			out = append(out, s)
		}
	}
	return append(out, r.retry)
}

// readNew reads and handles the next entries, waiting up to block for
// some (-1: not at all).
func (r *runner) readNew(loopCtx, handlerCtx context.Context, block time.Duration) error {
	return r.readNewRounds(loopCtx, handlerCtx, block, maxParkedRounds)
}

// maxParkedRounds bounds how many reads in a row readNew makes while all
// it reads is parked, so the loop's other duties (acknowledgements owed,
// leases, reclaims) still come round.
const maxParkedRounds = 20

func (r *runner) readNewRounds(loopCtx, handlerCtx context.Context, block time.Duration, rounds int) error {
	streams := r.readStreams()
	if _, ok := r.rdb().(*redis.ClusterClient); ok && len(streams) > 1 {
		return r.readNewSplit(loopCtx, handlerCtx, streams, block)
	}
	args := make([]string, 0, 2*len(streams))
	args = append(args, streams...)
	for range streams {
		args = append(args, ">")
	}
	res, err := r.rdb().XReadGroup(loopCtx, &redis.XReadGroupArgs{
		Group:    r.sub.Group,
		Consumer: r.consumer(),
		Streams:  args,
		Count:    int64(r.g.cfg.BatchSize),
		Block:    block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil {
		if redis.HasErrorPrefix(err, "NOGROUP") {
			// The stream or group was deleted (by a person, or a test):
			// make them again rather than fail forever.
			if serr := r.setupLive(loopCtx); serr != nil {
				return serr
			}
		}
		return err
	}
	ran, full := 0, false
	for _, xs := range res {
		deliveries := make(map[string]int64, len(xs.Messages))
		for _, m := range xs.Messages {
			deliveries[m.ID] = 1
		}
		ran += r.handleBatch(handlerCtx, xs.Stream, xs.Messages, deliveries)
		full = full || len(xs.Messages) >= r.g.cfg.BatchSize
	}
	if ran == 0 && full && rounds > 1 {
		// Everything read was parked (a paused or deferred seller's
		// backlog): read on at once, so the entries of others behind it
		// run now rather than after the next batches of the drain.
		return r.readNewRounds(loopCtx, handlerCtx, -1, rounds-1)
	}
	return nil
}

// clusterPoll is how long readNewSplit pauses when no stream had anything
// (at most GroupsConfig.Block).
const clusterPoll = 50 * time.Millisecond

// readNewSplit is readNew on Redis Cluster, where one XREADGROUP cannot
// span slots: one XREADGROUP per stream, without BLOCK, in one pipeline
// (go-redis sends each node its share at once), then a short pause when
// none had anything. A blocking read per stream would hold a connection
// per stream and, waited for together, delay every stream by the slowest.
func (r *runner) readNewSplit(loopCtx, handlerCtx context.Context, streams []string, block time.Duration) error {
	pipe := r.rdb().Pipeline()
	cmds := make([]*redis.XStreamSliceCmd, len(streams))
	for i, s := range streams {
		cmds[i] = pipe.XReadGroup(loopCtx, &redis.XReadGroupArgs{
			Group: r.sub.Group, Consumer: r.consumer(), Streams: []string{s, ">"},
			Count: int64(r.g.cfg.BatchSize), Block: -1,
		})
	}
	_, _ = pipe.Exec(loopCtx) // each command's error is read below
	got := false
	var firstErr error
	for _, c := range cmds {
		res, err := c.Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		for _, xs := range res {
			if len(xs.Messages) == 0 {
				continue
			}
			got = true
			deliveries := make(map[string]int64, len(xs.Messages))
			for _, m := range xs.Messages {
				deliveries[m.ID] = 1
			}
			r.handleBatch(handlerCtx, xs.Stream, xs.Messages, deliveries)
		}
	}
	if firstErr != nil {
		if redis.HasErrorPrefix(firstErr, "NOGROUP") {
			if serr := r.setupLive(loopCtx); serr != nil {
				return serr
			}
		}
		return firstErr
	}
	if !got && block >= 0 {
		waitFor(loopCtx, min(block, clusterPoll))
	}
	return nil
}

// setupLive recreates missing groups at the end of their streams.
func (r *runner) setupLive(ctx context.Context) error {
	for _, s := range r.streams {
		if err := createGroup(ctx, r.rdb(), s, r.sub.Group, "$"); err != nil {
			return err
		}
	}
	return createGroup(ctx, r.rdb(), r.retry, r.sub.Group, "0")
}

// drainOwnPending handles the entries delivered to this consumer name but
// never acknowledged (a restart after a crash), oldest first.
func (r *runner) drainOwnPending(loopCtx, handlerCtx context.Context, stream string) bool {
	after := "0"
	for loopCtx.Err() == nil {
		res, err := r.rdb().XReadGroup(loopCtx, &redis.XReadGroupArgs{
			Group: r.sub.Group, Consumer: r.consumer(), Streams: []string{stream, after},
			Count: int64(r.g.cfg.BatchSize),
		}).Result()
		if errors.Is(err, redis.Nil) {
			return true
		}
		if err != nil {
			r.log.Warn("read own pending entries", "stream", stream, "err", err)
			return true // the visibility timeout will bring them back
		}
		if len(res) == 0 || len(res[0].Messages) == 0 {
			return true
		}
		msgs := res[0].Messages
		after = msgs[len(msgs)-1].ID
		r.handleBatch(handlerCtx, stream, msgs, r.deliveryCounts(loopCtx, stream, msgs))
	}
	return false
}

// reclaim takes over entries idle longer than minIdle from any consumer of
// the group (one that crashed, or a failure waiting to be tried again) and
// handles them.
func (r *runner) reclaim(loopCtx, handlerCtx context.Context, stream string, minIdle time.Duration) {
	start := "0-0"
	for loopCtx.Err() == nil {
		msgs, next, err := r.rdb().XAutoClaim(loopCtx, &redis.XAutoClaimArgs{
			Stream: stream, Group: r.sub.Group, Consumer: r.consumer(),
			MinIdle: minIdle, Start: start, Count: int64(r.g.cfg.BatchSize),
		}).Result()
		if err != nil {
			if loopCtx.Err() == nil && !redis.HasErrorPrefix(err, "NOGROUP") {
				r.log.Warn("reclaim idle entries", "stream", stream, "err", err)
			}
			return
		}
		if len(msgs) > 0 {
			r.handleBatch(handlerCtx, stream, msgs, r.deliveryCounts(loopCtx, stream, msgs))
		}
		if next == "0-0" || next == "" {
			return
		}
		start = next
	}
}

// deliveryCounts looks up how often each entry was delivered.
func (r *runner) deliveryCounts(ctx context.Context, stream string, msgs []redis.XMessage) map[string]int64 {
	pipe := r.rdb().Pipeline()
	cmds := make([]*redis.XPendingExtCmd, len(msgs))
	for i, m := range msgs {
		cmds[i] = pipe.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: r.sub.Group, Start: m.ID, End: m.ID, Count: 1})
	}
	_, _ = pipe.Exec(ctx)
	out := make(map[string]int64, len(msgs))
	for i, m := range msgs {
		out[m.ID] = 1
		if p, err := cmds[i].Result(); err == nil && len(p) == 1 {
			out[m.ID] = max(p[0].RetryCount, 1)
		}
	}
	return out
}

// deleteIdleConsumerScript removes a consumer only if it holds no pending
// entries at that moment; XGROUP DELCONSUMER would otherwise drop them.
var deleteIdleConsumerScript = redis.NewScript(`
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #p > 0 then return -1 end
return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
`)

// removeIdleConsumers deletes consumers of the group that have been idle
// past IdleConsumerTimeout and hold nothing, so the group's consumer list
// does not grow with every restart.
func (r *runner) removeIdleConsumers(ctx context.Context) {
	for _, s := range r.all {
		consumers, err := r.rdb().XInfoConsumers(ctx, s, r.sub.Group).Result()
		if err != nil {
			continue
		}
		for _, c := range consumers {
			if c.Name == r.consumer() || c.Pending > 0 || c.Idle < r.g.cfg.IdleConsumerTimeout {
				continue
			}
			n, err := deleteIdleConsumerScript.Run(ctx, r.rdb(), []string{s}, r.sub.Group, c.Name).Int()
			if err == nil && n >= 0 {
				r.log.Info("removed idle consumer", "stream", s, "idle_consumer", c.Name, "idle", c.Idle.String())
			}
		}
	}
}
