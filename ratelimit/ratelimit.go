// Package ratelimit holds the limits every Bazaar process shares through
// Redis: request rates, kept with the generic cell rate algorithm of
// github.com/go-redis/redis_rate, and caps on concurrent leases such as
// live event streams. It is a leaf package (the Redis client only), so the
// API and the workers can both use it.
//
// The callers decide what a Redis error means; the API lets the request
// through (fails open), as a rate limit must never take it down.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// Limit lets Rate events happen per Period, Burst of them at once. The
// zero Limit is unset; callers give it a default.
type Limit struct {
	Rate   int
	Period time.Duration
	// Burst is how many events may come at once; zero means Rate.
	Burst int
}

// IsZero reports whether the limit is unset.
func (l Limit) IsZero() bool { return l == Limit{} }

// Quota is the number of events allowed at once.
func (l Limit) Quota() int {
	if l.Burst > 0 {
		return l.Burst
	}
	return l.Rate
}

// Window is the time the whole quota takes to come back once spent.
func (l Limit) Window() time.Duration {
	if l.Rate <= 0 {
		return 0
	}
	return time.Duration(int64(l.Period) * int64(l.Quota()) / int64(l.Rate))
}

// String formats the limit as ParseLimit reads it.
func (l Limit) String() string {
	s := strconv.Itoa(l.Rate) + "/" + l.Period.String()
	if l.Burst > 0 && l.Burst != l.Rate {
		s += "," + strconv.Itoa(l.Burst)
	}
	return s
}

// ParseLimit reads "<rate>/<period>[,<burst>]", such as "100/1s",
// "20/1m" or "10/1m,30".
func ParseLimit(s string) (Limit, error) {
	rate, rest, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return Limit{}, fmt.Errorf("%q is not <rate>/<period>[,<burst>] such as 100/1s", s)
	}
	period, burst, hasBurst := strings.Cut(rest, ",")
	var l Limit
	var err error
	if l.Rate, err = strconv.Atoi(strings.TrimSpace(rate)); err != nil || l.Rate < 1 {
		return Limit{}, fmt.Errorf("%q: the rate must be a whole number of at least 1", s)
	}
	if l.Period, err = time.ParseDuration(strings.TrimSpace(period)); err != nil || l.Period < time.Millisecond {
		return Limit{}, fmt.Errorf("%q: the period must be a duration such as 1s or 1m", s)
	}
	if hasBurst {
		if l.Burst, err = strconv.Atoi(strings.TrimSpace(burst)); err != nil || l.Burst < 1 {
			return Limit{}, fmt.Errorf("%q: the burst must be a whole number of at least 1", s)
		}
	}
	return l, nil
}

// Result is the state of one key after a check.
type Result struct {
	// Allowed reports whether the event may happen.
	Allowed bool
	// Remaining is how many more events may happen at once.
	Remaining int
	// RetryAfter is how long to wait before the next event is allowed;
	// zero when Allowed.
	RetryAfter time.Duration
	// ResetAfter is how long until the whole quota is back.
	ResetAfter time.Duration
}

// Limiter checks rate limits and hands out leases. Every process that
// uses the same Redis and prefix shares them.
type Limiter struct {
	rdb    redis.UniversalClient
	rate   *redis_rate.Limiter
	prefix string
}

// New returns a limiter keeping its state in rdb under prefix (such as
// "bazaar:"). Rate keys are "rate:<prefix>rl:<key>" (redis_rate puts its
// "rate:" first) and lease sets "<prefix>lease:<key>"; all of them expire
// by themselves once idle.
func New(rdb redis.UniversalClient, prefix string) (*Limiter, error) {
	if rdb == nil {
		return nil, errors.New("ratelimit: Redis is required")
	}
	return &Limiter{rdb: rdb, rate: redis_rate.NewLimiter(rdb), prefix: prefix}, nil
}

func (l *Limiter) limit(lim Limit) redis_rate.Limit {
	return redis_rate.Limit{Rate: lim.Rate, Period: lim.Period, Burst: lim.Quota()}
}

// Allow takes one event from key's quota. On a Redis error the result is
// Allowed, so callers that fail open need only log the error.
func (l *Limiter) Allow(ctx context.Context, key string, lim Limit) (Result, error) {
	res, err := l.rate.Allow(ctx, l.prefix+"rl:"+key, l.limit(lim))
	if err != nil {
		return Result{Allowed: true, Remaining: lim.Quota()}, fmt.Errorf("rate limit %s: %w", key, err)
	}
	out := Result{Allowed: res.Allowed > 0, Remaining: res.Remaining, ResetAfter: max(res.ResetAfter, 0)}
	if !out.Allowed {
		out.RetryAfter = max(res.RetryAfter, time.Millisecond)
	}
	return out, nil
}

// Check reports whether key has an event left, taking none: a guard
// before work whose failures alone count (Allow is called on failure).
func (l *Limiter) Check(ctx context.Context, key string, lim Limit) (Result, error) {
	res, err := l.rate.AllowN(ctx, l.prefix+"rl:"+key, l.limit(lim), 0)
	if err != nil {
		return Result{Allowed: true, Remaining: lim.Quota()}, fmt.Errorf("rate limit %s: %w", key, err)
	}
	out := Result{Allowed: res.Remaining >= 1, Remaining: res.Remaining, ResetAfter: max(res.ResetAfter, 0)}
	if !out.Allowed {
		// The next event is allowed once one emission interval's worth of
		// quota is back: the reset time less the rest of the quota.
		interval := lim.Period / time.Duration(lim.Rate)
		out.RetryAfter = max(res.ResetAfter-time.Duration(lim.Quota()-1)*interval, time.Millisecond)
	}
	return out, nil
}

// Lease is one slot of a capped set, held until released or, if its holder
// dies, until it expires.
type Lease struct {
	key string
	id  string
}

// acquireScript drops the expired leases of the set, then adds one unless
// the set is full. Scores are expiry times in Redis's own clock, so
// processes with skewed clocks agree.
var acquireScript = redis.NewScript(`
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", now)
if redis.call("ZCARD", KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call("ZADD", KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call("PEXPIRE", KEYS[1], ARGV[2])
return 1
`)

// refreshScript moves a lease's expiry on, putting it back if Redis lost
// it meanwhile (a restart): the holder is still there.
var refreshScript = redis.NewScript(`
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call("ZADD", KEYS[1], now + tonumber(ARGV[1]), ARGV[2])
local ttl = redis.call("PTTL", KEYS[1])
if ttl < tonumber(ARGV[1]) then
  redis.call("PEXPIRE", KEYS[1], ARGV[1])
end
return 1
`)

// Acquire takes a slot of key's set of at most limit leases, valid for
// ttl unless refreshed. ok is false when the set is full. id names the
// lease and must be unique (a UUID). On a Redis error ok is true, with a
// lease whose refresh and release are harmless.
func (l *Limiter) Acquire(ctx context.Context, key, id string, limit int, ttl time.Duration) (lease Lease, ok bool, err error) {
	lease = Lease{key: l.prefix + "lease:" + key, id: id}
	n, err := acquireScript.Run(ctx, l.rdb, []string{lease.key}, limit, ttl.Milliseconds(), id).Int()
	if err != nil {
		return lease, true, fmt.Errorf("lease %s: %w", key, err)
	}
	return lease, n == 1, nil
}

// Refresh extends a lease by ttl from now.
func (l *Limiter) Refresh(ctx context.Context, lease Lease, ttl time.Duration) error {
	if err := refreshScript.Run(ctx, l.rdb, []string{lease.key}, ttl.Milliseconds(), lease.id).Err(); err != nil {
		return fmt.Errorf("refresh lease: %w", err)
	}
	return nil
}

// Release gives a lease's slot back.
func (l *Limiter) Release(ctx context.Context, lease Lease) error {
	if err := l.rdb.ZRem(ctx, lease.key, lease.id).Err(); err != nil {
		return fmt.Errorf("release lease: %w", err)
	}
	return nil
}

// Seconds rounds d up to whole seconds, at least 1, for headers such as
// Retry-After.
func Seconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}
