package stream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// trimStep caps how many entries one length-based trim looks past, so a
// long backlog is trimmed over several passes without blocking Redis.
const trimStep = 10000

// idAtScript returns the id of the entry at a 0-based position from the
// start of a stream, or false when the stream is shorter. Running it in
// Redis sends back one id instead of the entries before it.
var idAtScript = redis.NewScript(`
local r = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', tonumber(ARGV[1]) + 1)
if #r <= tonumber(ARGV[1]) then return false end
return r[#r][1]
`)

func (r *Relay) trimLoop(ctx context.Context) {
	if r.cfg.MaxLen == 0 && r.cfg.MaxAge == 0 {
		return
	}
	t := time.NewTicker(r.cfg.TrimInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := r.Trim(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("trim streams", "err", err)
		}
	}
}

// Trim trims every domain stream once by the configured length and age,
// never past the oldest entry a consumer group has not acknowledged, and
// returns how many entries it removed.
func (r *Relay) Trim(ctx context.Context) (int64, error) {
	var total int64
	var errs []error
	for _, d := range Domains {
		for _, s := range r.cfg.Names.Streams(d) {
			n, err := trimStream(ctx, r.cfg.Redis, s, r.cfg.MaxLen, r.cfg.MaxAge, time.Now())
			total += n
			if err != nil {
				errs = append(errs, fmt.Errorf("trim %s: %w", s, err))
			}
		}
	}
	return total, errors.Join(errs...)
}

// trimStream removes entries below a cut: the length cut (so about maxLen
// remain) or the age cut, whichever removes more, lowered to the safe floor.
// Redis 7.0 has no trim mode that spares unacknowledged entries (8.2's
// ACKED), so the floor is computed here from every group's position, which
// works on 7.0 and on newer servers alike.
func trimStream(ctx context.Context, rdb redis.UniversalClient, stream string, maxLen int64, maxAge time.Duration, now time.Time) (int64, error) {
	var cut xid
	if maxAge > 0 {
		cut = xid{ms: uint64(now.Add(-maxAge).UnixMilli())}
	}
	if maxLen > 0 {
		n, err := rdb.XLen(ctx, stream).Result()
		if err != nil {
			return 0, err
		}
		if over := n - maxLen; over > 0 {
			res, err := idAtScript.Run(ctx, rdb, []string{stream}, min(over, trimStep)).Text()
			if err != nil && !errors.Is(err, redis.Nil) {
				return 0, err
			}
			if err == nil {
				id, perr := parseXID(res)
				if perr != nil {
					return 0, perr
				}
				if cut.less(id) {
					cut = id
				}
			}
		}
	}
	if cut == (xid{}) {
		return 0, nil
	}
	floor, ok, err := safeFloor(ctx, rdb, stream)
	if err != nil {
		return 0, err
	}
	if ok && floor.less(cut) {
		cut = floor
	}
	n, err := rdb.XTrimMinIDApprox(ctx, stream, cut.String(), 0).Result()
	if err != nil {
		return 0, err
	}
	return n, nil
}

// safeFloor returns the lowest entry id some group still needs: its oldest
// pending entry, or the entry after the last one delivered to it. ok is
// false when the stream has no groups (or does not exist).
func safeFloor(ctx context.Context, rdb redis.UniversalClient, stream string) (floor xid, ok bool, err error) {
	groups, err := rdb.XInfoGroups(ctx, stream).Result()
	if err != nil {
		if isMissingKey(err) {
			return xid{}, false, nil
		}
		return xid{}, false, err
	}
	for _, g := range groups {
		last, err := parseXID(g.LastDeliveredID)
		if err != nil {
			return xid{}, false, err
		}
		need := last.next()
		if g.Pending > 0 {
			p, err := rdb.XPending(ctx, stream, g.Name).Result()
			if err != nil {
				return xid{}, false, err
			}
			if p.Count > 0 {
				lo, err := parseXID(p.Lower)
				if err != nil {
					return xid{}, false, err
				}
				if lo.less(need) {
					need = lo
				}
			}
		}
		if !ok || need.less(floor) {
			floor, ok = need, true
		}
	}
	return floor, ok, nil
}

// isMissingKey reports Redis's error reply for a stream that does not exist.
func isMissingKey(err error) bool { return redis.HasErrorPrefix(err, "no such key") }
