package api

import (
	"context"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/bazaarhq/bazaar/ratelimit"
)

// streamLeaseTTL is how long a live stream's slot outlives its last
// refresh; the stream refreshes it every heartbeat, so a process that dies
// frees its slots within this time.
func streamLeaseTTL(conf SSEConfig) time.Duration {
	return 3*conf.Heartbeat + conf.WriteTimeout
}

// streamSlot is a live stream's slot in its credential's or IP's cap.
type streamSlot struct {
	s     *Server
	lease ratelimit.Lease
	ttl   time.Duration
	every time.Duration
	next  time.Time
}

// acquireStream takes a slot for a new live stream, or answers 429 and
// returns false when the caller has all its streams open. A nil slot
// means no cap applies.
func (s *Server) acquireStream(c *gin.Context, id string) (*streamSlot, bool) {
	if s.limiter == nil {
		return nil, true
	}
	key, limit, scope := "streams:ip:"+c.ClientIP(), s.limits.StreamsPerIP, "ip"
	if p, ok := c.Get(principalKey); ok {
		key, limit, scope = "streams:cred:"+p.(Principal).ID(), s.limits.StreamsPerCredential, "credential"
	}
	conf := s.cfg.SSE.withDefaults()
	ttl := streamLeaseTTL(conf)
	var (
		lease ratelimit.Lease
		ok    bool
	)
	if !s.limitCall(c, func(ctx context.Context) (err error) {
		lease, ok, err = s.limiter.Acquire(ctx, key, id, limit, ttl)
		return err
	}) {
		return nil, true
	}
	if !ok {
		s.tel.sseRefused.WithLabelValues(scope).Inc()
		detail := "This address has " + strconv.Itoa(limit) + " live event streams open already; close one first."
		if scope == "credential" {
			detail = "This credential has " + strconv.Itoa(limit) + " live event streams open already; close one first."
		}
		s.rateLimited(c, "streams-per-"+scope, conf.Heartbeat, detail)
		return nil, false
	}
	return &streamSlot{s: s, lease: lease, ttl: ttl, every: conf.Heartbeat, next: time.Now().Add(conf.Heartbeat)}, true
}

// refresh keeps the slot alive; it is due once per heartbeat.
func (sl *streamSlot) refresh(ctx context.Context) {
	if sl == nil || time.Now().Before(sl.next) {
		return
	}
	sl.next = time.Now().Add(sl.every)
	if err := sl.s.limiter.Refresh(ctx, sl.lease, sl.ttl); err != nil {
		sl.s.tel.limitFailOpen.Inc()
	}
}

// release gives the slot back once the stream has ended.
func (sl *streamSlot) release(ctx context.Context) {
	if sl == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := sl.s.limiter.Release(ctx, sl.lease); err != nil {
		sl.s.tel.limitFailOpen.Inc() // the slot expires by itself
	}
}
