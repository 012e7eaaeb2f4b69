package stream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/bazaarhq/bazaar/sql/store"
)

// ErrNoEventLog means an operation needs the PostgreSQL event log and
// Admin has no DB.
var ErrNoEventLog = errors.New("stream admin: the event log (DB) is required")

// ReplaySeller hands one seller's published events from since on, in the
// order they were recorded, to one consumer group again, for a seller
// whose integration lost data. The events go to the group's retry stream,
// which only that group reads, so no other group and no other seller's
// work sees anything; only the domain streams the group reads are
// replayed, and the group skips the types its patterns do not bind, as
// for any entry. Handlers are idempotent, so what the group had done
// already is done once. It returns how many events were queued.
func (a *Admin) ReplaySeller(ctx context.Context, group string, seller uuid.UUID, since time.Time) (int, error) {
	if a.cfg.DB == nil {
		return 0, ErrNoEventLog
	}
	streams, err := a.streamsOf(ctx, group)
	if err != nil {
		return 0, err
	}
	if len(streams) == 0 {
		return 0, fmt.Errorf("%w %q", ErrUnknownGroup, group)
	}
	retry := a.cfg.Names.Retry(group)
	var cursor int64
	queued := 0
	for {
		events, err := store.SellerPublishedSince(ctx, a.cfg.DB, seller, since, streams, cursor, 500)
		if err != nil {
			return queued, err
		}
		if len(events) == 0 {
			return queued, nil
		}
		pipe := a.cfg.Redis.Pipeline()
		for _, e := range events {
			values, err := EnvelopeOf(e).Values()
			if err != nil {
				return queued, err
			}
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: retry, Values: values})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return queued, fmt.Errorf("replay events of seller %s to %s: %w", seller, group, err)
		}
		queued += len(events)
		cursor = events[len(events)-1].Seq
	}
}

// streamsOf lists the domain streams on which group exists.
func (a *Admin) streamsOf(ctx context.Context, group string) ([]string, error) {
	if group == "" {
		return nil, fmt.Errorf("%w: empty name", ErrUnknownGroup)
	}
	var out []string
	for _, s := range a.domainStreams() {
		groups, err := a.cfg.Redis.XInfoGroups(ctx, s).Result()
		if isMissingKey(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("inspect groups of %s: %w", s, err)
		}
		for _, g := range groups {
			if g.Name == group {
				out = append(out, s)
			}
		}
	}
	return out, nil
}
