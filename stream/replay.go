package stream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"

	"github.com/bazaarhq/bazaar/sql/store"
)

// A group started from a time is created at the end of each stream while
// the relays are held off (store.LockPublishExclusive), so every event
// published up to that cut is marked in PostgreSQL with its stream entry
// id, and every later one arrives through the group. The replay then hands
// the handler, in seq order, the logged events from the time on whose entry
// id is at or below the group's starting id on their stream; the live read
// takes everything above it. Progress is kept in Redis, so a restart
// resumes the replay, and the live read waits until the replay is done.

func (r *runner) replayKey() string     { return r.g.cfg.Names.prefix() + "replay:" + r.sub.Group }
func (r *runner) replayLockKey() string { return r.replayKey() + ":lock" }

// setupReplay creates the groups for a subscription that starts from a
// time, and records the replay to do, unless the group already existed.
func (r *runner) setupReplay(ctx context.Context) error {
	existed := false
	for _, s := range r.streams {
		groups, err := r.rdb().XInfoGroups(ctx, s).Result()
		if err != nil && !isMissingKey(err) {
			return fmt.Errorf("inspect %s: %w", s, err)
		}
		for _, g := range groups {
			if g.Name == r.sub.Group {
				existed = true
			}
		}
	}
	pending, err := r.rdb().Exists(ctx, r.replayKey()).Result()
	if err != nil {
		return fmt.Errorf("replay state of %s: %w", r.sub.Group, err)
	}
	if existed && pending == 0 {
		return r.setupLive(ctx) // created before: its position stands
	}
	if pending == 0 {
		// A replay from before the retention would silently miss the
		// dropped months: refuse it.
		if err := store.CheckEventLogCovers(ctx, r.g.cfg.DB, r.sub.StartFrom.at); err != nil {
			return fmt.Errorf("group %s: start at: %w", r.sub.Group, err)
		}
		err := r.rdb().HSet(ctx, r.replayKey(),
			"since", r.sub.StartFrom.at.UTC().Format(time.RFC3339Nano), "cursor", "0").Err()
		if err != nil {
			return fmt.Errorf("record replay of %s: %w", r.sub.Group, err)
		}
	}
	return store.WithTx(ctx, r.g.cfg.DB, func(tx *sqlx.Tx) error {
		if err := store.LockPublishExclusive(ctx, tx); err != nil {
			return err
		}
		for _, s := range r.streams {
			start, err := r.cutID(ctx, tx, s)
			if err != nil {
				return err
			}
			if err := createGroup(ctx, r.rdb(), s, r.sub.Group, start); err != nil {
				return err
			}
		}
		return nil
	})
}

// cutID is where a replaying group starts on stream: after the last entry
// the stream or the log knows of. The log matters when the stream lost
// its data (a Redis restart without persistence): new entries then still
// get higher ids, and must not be mistaken for replayed ones.
func (r *runner) cutID(ctx context.Context, tx *sqlx.Tx, stream string) (string, error) {
	cut := xid{}
	info, err := r.rdb().XInfoStream(ctx, stream).Result()
	switch {
	case err == nil:
		if cut, err = parseXID(info.LastGeneratedID); err != nil {
			return "", err
		}
	case !isMissingKey(err):
		return "", fmt.Errorf("inspect %s: %w", stream, err)
	}
	logged, err := store.LastStreamID(ctx, tx, stream)
	if err != nil || logged == "" {
		return cut.String(), err
	}
	id, err := parseXID(logged)
	if err != nil {
		return "", err
	}
	if cut.less(id) {
		cut = id
	}
	return cut.String(), nil
}

// replay hands the logged history to the handler. It returns false when
// the loop is stopping before the replay finished.
func (r *runner) replay(loopCtx, handlerCtx context.Context) bool {
	for {
		n, err := r.rdb().Exists(loopCtx, r.replayKey()).Result()
		if err == nil && n == 0 {
			return true
		}
		if err == nil {
			got, lerr := r.rdb().SetNX(loopCtx, r.replayLockKey(), r.consumer(), r.g.cfg.LeaseTTL).Result()
			if lerr == nil && got {
				done, rerr := r.replayHistory(loopCtx, handlerCtx)
				_ = releaseLeaseScript.Run(context.WithoutCancel(loopCtx), r.rdb(), []string{r.replayLockKey()}, r.consumer()).Err()
				if rerr != nil && loopCtx.Err() == nil {
					r.log.Error("replay history; will retry", "err", rerr)
				}
				if done {
					return true
				}
			}
			// Another consumer of the group is replaying: wait for it.
		}
		if !waitFor(loopCtx, 200*time.Millisecond) {
			return false
		}
	}
}

func (r *runner) replayHistory(loopCtx, handlerCtx context.Context) (done bool, err error) {
	state, err := r.rdb().HGetAll(loopCtx, r.replayKey()).Result()
	if err != nil {
		return false, err
	}
	since, err := time.Parse(time.RFC3339Nano, state["since"])
	if err != nil {
		return false, fmt.Errorf("replay state: since: %w", err)
	}
	cursor, err := strconv.ParseInt(state["cursor"], 10, 64)
	if err != nil {
		return false, fmt.Errorf("replay state: cursor: %w", err)
	}
	bounds := make(map[string]xid, len(r.streams))
	for _, s := range r.streams {
		groups, err := r.rdb().XInfoGroups(loopCtx, s).Result()
		if err != nil {
			return false, fmt.Errorf("inspect %s: %w", s, err)
		}
		for _, g := range groups {
			if g.Name == r.sub.Group {
				if bounds[s], err = parseXID(g.LastDeliveredID); err != nil {
					return false, err
				}
			}
		}
	}
	r.log.Info("replaying history", "since", since, "from_seq", cursor)
	replayed := 0
	for loopCtx.Err() == nil {
		events, err := store.PublishedSince(loopCtx, r.g.cfg.DB, since, r.streams, cursor, r.g.cfg.BatchSize)
		if err != nil {
			return false, err
		}
		if len(events) == 0 {
			if err := r.rdb().Del(loopCtx, r.replayKey()).Err(); err != nil {
				return false, err
			}
			r.log.Info("replay finished; reading live", "events", replayed)
			return true, nil
		}
		var items []*item
		for _, e := range events {
			if e.Stream == nil || e.StreamID == nil || !r.matches(e.Type) {
				continue
			}
			id, err := parseXID(*e.StreamID)
			if err != nil {
				return false, err
			}
			if b, ok := bounds[*e.Stream]; !ok || b.less(id) {
				continue // arrives through the group
			}
			env := EnvelopeOf(e)
			values, err := env.Values()
			if err != nil {
				return false, err
			}
			items = append(items, &item{stream: *e.Stream, msg: redis.XMessage{ID: *e.StreamID, Values: values}, env: env, deliv: 1, run: true})
		}
		// In-place retries keep a subject's history in order.
		r.runAll(handlerCtx, items, true)
		pipe := r.rdb().Pipeline()
		for _, it := range items {
			if it.verdict == leave {
				return false, errors.New("replay interrupted")
			}
			if it.verdict == dead {
				r.queueDead(loopCtx, pipe, it)
			}
		}
		cursor = events[len(events)-1].Seq
		replayed += len(items)
		pipe.HSet(loopCtx, r.replayKey(), "cursor", strconv.FormatInt(cursor, 10))
		pipe.PExpire(loopCtx, r.replayLockKey(), r.g.cfg.LeaseTTL)
		if _, err := pipe.Exec(loopCtx); err != nil {
			return false, err
		}
	}
	return false, nil
}
