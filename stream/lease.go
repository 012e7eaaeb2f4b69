package stream

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Ordered subscriptions share a group's streams out among its consumers:
// each stream is read by the one consumer holding its lease, so events of a
// subject (which always land in one stream) are handled one after another
// even with several consumer processes. Consumers announce themselves in a
// sorted set and take about an equal share of the streams.

func (r *runner) leaseKey(stream string) string {
	return r.g.cfg.Names.prefix() + "lease:" + r.sub.Group + ":" + stream
}

func (r *runner) membersKey() string {
	return r.g.cfg.Names.prefix() + "members:" + r.sub.Group
}

var renewLeaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

var releaseLeaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// balance renews this consumer's leases, gives up those above its fair
// share and takes free ones below it. A stream taken over has every pending
// entry of the group claimed and handled first, in entry order, before new
// entries are read: those belonged to a consumer that stopped or crashed.
func (r *runner) balance(loopCtx, handlerCtx context.Context) {
	ctx := loopCtx
	ttl := r.g.cfg.LeaseTTL
	now := time.Now()
	if r.owned == nil {
		r.owned = make(map[string]time.Time)
	}
	pipe := r.rdb().Pipeline()
	pipe.ZAdd(ctx, r.membersKey(), redis.Z{Score: float64(now.UnixMilli()), Member: r.consumer()})
	pipe.ZRemRangeByScore(ctx, r.membersKey(), "-inf", strconv.FormatInt(now.Add(-ttl).UnixMilli(), 10))
	card := pipe.ZCard(ctx, r.membersKey())
	pipe.PExpire(ctx, r.membersKey(), 10*ttl)
	if _, err := pipe.Exec(ctx); err != nil {
		if ctx.Err() == nil {
			r.log.Warn("announce consumer", "err", err)
		}
		r.dropExpired(now)
		return
	}
	members := max(int(card.Val()), 1)
	share := (len(r.streams) + members - 1) / members

	for s := range r.owned {
		ok, err := renewLeaseScript.Run(ctx, r.rdb(), []string{r.leaseKey(s)}, r.consumer(), ttl.Milliseconds()).Int()
		switch {
		case err != nil:
			// Keep reading until the lease would have expired anyway.
		case ok == 1:
			r.owned[s] = now
		default:
			r.log.Info("lost stream lease", "stream", s)
			delete(r.owned, s)
		}
	}
	r.dropExpired(now)
	for _, s := range r.streams {
		if len(r.owned) <= share {
			break
		}
		if _, ok := r.owned[s]; ok {
			_ = releaseLeaseScript.Run(ctx, r.rdb(), []string{r.leaseKey(s)}, r.consumer()).Err()
			delete(r.owned, s)
		}
	}
	for _, s := range r.streams {
		if len(r.owned) >= share || ctx.Err() != nil {
			break
		}
		if _, ok := r.owned[s]; ok {
			continue
		}
		got, err := r.rdb().SetNX(ctx, r.leaseKey(s), r.consumer(), ttl).Result()
		if err != nil || !got {
			continue
		}
		r.owned[s] = now
		r.reclaim(loopCtx, handlerCtx, s, 0)
	}
}

// dropExpired forgets leases not renewed within their time to live, which
// another consumer may hold by now.
func (r *runner) dropExpired(now time.Time) {
	for s, at := range r.owned {
		if now.Sub(at) >= r.g.cfg.LeaseTTL {
			delete(r.owned, s)
		}
	}
}

// releaseAll hands this consumer's leases back on Stop, so the other
// consumers take its streams at once rather than after the lease expires.
func (r *runner) releaseAll(ctx context.Context) {
	if !r.sub.OrderedBySubject {
		return
	}
	for s := range r.owned {
		_ = releaseLeaseScript.Run(ctx, r.rdb(), []string{r.leaseKey(s)}, r.consumer()).Err()
	}
	r.owned = nil
	_ = r.rdb().ZRem(ctx, r.membersKey(), r.consumer()).Err()
}
