package api

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/bazaarhq/bazaar/ratelimit"
)

// Limits are the API's request rate limits and live stream caps, shared
// by every API process through Redis (Config.Redis). Zero fields get the
// defaults of DefaultLimits.
type Limits struct {
	// Admin, Storefront, Seller and Printer limit each credential of that
	// role; each operator (viewer, operator, admin) gets the Admin limit
	// of its own.
	Admin, Storefront, Seller, Printer ratelimit.Limit
	// Anonymous limits each client IP's requests that carry no credential.
	Anonymous ratelimit.Limit
	// AuthFailures limits each client IP's failed authentications: once
	// spent, the IP's requests with any credential get 429 until it
	// refills, so tokens cannot be guessed.
	AuthFailures ratelimit.Limit
	// MonitorLogin limits each client IP's failed /monitor logins the same
	// way.
	MonitorLogin ratelimit.Limit
	// StreamsPerCredential caps the live event streams open at once with
	// one credential; StreamsPerIP those without one, per client IP.
	StreamsPerCredential int
	StreamsPerIP         int
	// CallTimeout bounds each Redis call of a check; past it the request
	// goes through unchecked (fail open). Short, so an outage costs
	// requests little.
	CallTimeout time.Duration
}

// DefaultLimits are the limits of the zero Limits fields.
var DefaultLimits = Limits{
	Admin:                ratelimit.Limit{Rate: 100, Period: time.Second},
	Storefront:           ratelimit.Limit{Rate: 200, Period: time.Second},
	Seller:               ratelimit.Limit{Rate: 50, Period: time.Second},
	Printer:              ratelimit.Limit{Rate: 10, Period: time.Second},
	Anonymous:            ratelimit.Limit{Rate: 20, Period: time.Second},
	AuthFailures:         ratelimit.Limit{Rate: 20, Period: time.Minute},
	MonitorLogin:         ratelimit.Limit{Rate: 5, Period: time.Minute},
	StreamsPerCredential: 100,
	StreamsPerIP:         10,
	CallTimeout:          250 * time.Millisecond,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	pick := func(v, def ratelimit.Limit) ratelimit.Limit {
		if v.IsZero() {
			return def
		}
		return v
	}
	l.Admin = pick(l.Admin, d.Admin)
	l.Storefront = pick(l.Storefront, d.Storefront)
	l.Seller = pick(l.Seller, d.Seller)
	l.Printer = pick(l.Printer, d.Printer)
	l.Anonymous = pick(l.Anonymous, d.Anonymous)
	l.AuthFailures = pick(l.AuthFailures, d.AuthFailures)
	l.MonitorLogin = pick(l.MonitorLogin, d.MonitorLogin)
	l.StreamsPerCredential = cmp.Or(l.StreamsPerCredential, d.StreamsPerCredential)
	l.StreamsPerIP = cmp.Or(l.StreamsPerIP, d.StreamsPerIP)
	l.CallTimeout = cmp.Or(l.CallTimeout, d.CallTimeout)
	return l
}

// forRole is the limit of a credential of role.
func (l Limits) forRole(r Role) ratelimit.Limit {
	switch r {
	case RoleAdmin, RoleViewer, RoleOperator:
		return l.Admin
	case RoleStorefront:
		return l.Storefront
	case RoleSeller:
		return l.Seller
	}
	return l.Printer
}

// The policy names of the RateLimit-Policy and RateLimit headers; the
// credential policies are named after their role.
const (
	policyAnonymous    = "anonymous"
	policyAuthFailures = "auth-failures"
	policyMonitorLogin = "monitor-login"
)

// unlimitedRoutes are the routes without rate limits: probes, which must
// answer whoever asks as often as they ask.
var unlimitedRoutes = map[string]bool{"/healthz": true, "/readyz": true}

// limitAnonymous holds requests without a credential to the per-IP
// Anonymous limit. Requests to /v1 with a credential are limited by
// authenticate (per credential, or as failures), and so are /v1/admin
// requests with the console session; /monitor limits its own logins.
func (s *Server) limitAnonymous(c *gin.Context) {
	route := c.FullPath()
	if s.limiter == nil || unlimitedRoutes[route] || strings.HasPrefix(route, monitorRoot) {
		c.Next()
		return
	}
	if strings.HasPrefix(route, "/v1/") && (c.GetHeader("Authorization") != "" || c.Query("access_token") != "") {
		c.Next()
		return
	}
	// A console session on /v1/admin is limited per operator by
	// authenticateSession, like a credential.
	if strings.HasPrefix(route, "/v1/admin/") {
		if ck, err := c.Request.Cookie(sessionCookie); err == nil && ck.Value != "" {
			c.Next()
			return
		}
	}
	if s.allow(c, "anon:"+c.ClientIP(), policyAnonymous, s.limits.Anonymous) {
		c.Next()
	}
}

// allow takes one request from key's quota and sets the RateLimit headers;
// over the limit it answers 429 and returns false. A Redis error lets the
// request through.
func (s *Server) allow(c *gin.Context, key, policy string, lim ratelimit.Limit) bool {
	var res ratelimit.Result
	if !s.limitCall(c, func(ctx context.Context) (err error) {
		res, err = s.limiter.Allow(ctx, key, lim)
		return err
	}) {
		return true
	}
	rateLimitHeaders(c, policy, lim, res)
	if res.Allowed {
		return true
	}
	s.rateLimited(c, policy, res.RetryAfter, "Too many requests; retry after the time in Retry-After.")
	return false
}

// failuresLeft reports whether key may fail once more, answering 429 when
// it may not: it guards a credential check before the check runs, so a
// locked-out client learns nothing, even from a right guess.
func (s *Server) failuresLeft(c *gin.Context, key, policy string, lim ratelimit.Limit) bool {
	if s.limiter == nil {
		return true
	}
	var res ratelimit.Result
	if !s.limitCall(c, func(ctx context.Context) (err error) {
		res, err = s.limiter.Check(ctx, key, lim)
		return err
	}) || res.Allowed {
		return true
	}
	rateLimitHeaders(c, policy, lim, res)
	s.rateLimited(c, policy, res.RetryAfter, "Too many failed authentications from this address; retry after the time in Retry-After.")
	return false
}

// failed counts one failed credential check against key.
func (s *Server) failed(c *gin.Context, key string, lim ratelimit.Limit) {
	if s.limiter == nil {
		return
	}
	s.limitCall(c, func(ctx context.Context) error {
		_, err := s.limiter.Allow(ctx, key, lim)
		return err
	})
}

// After a failed call the checks are skipped for a while, so a Redis
// outage costs requests neither its timeouts nor its dial retries.
const limitPause = time.Second

// limitCall runs one limiter call; false means Redis did not answer (or is
// being given a pause after failing), and the caller lets the request
// through: a rate limit must not take the API down.
func (s *Server) limitCall(c *gin.Context, call func(context.Context) error) bool {
	if time.Now().UnixNano() < s.limitDownUntil.Load() {
		s.limitUnavailable(c, nil)
		return false
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.limits.CallTimeout)
	defer cancel()
	if err := call(ctx); err != nil {
		if c.Request.Context().Err() == nil { // not the client leaving
			s.limitDownUntil.Store(time.Now().Add(limitPause).UnixNano())
		}
		s.limitUnavailable(c, err)
		return false
	}
	return true
}

// rateLimitHeaders sets the RateLimit-Policy and RateLimit fields of the
// IETF httpapi draft (draft-ietf-httpapi-ratelimit-headers): the quota q
// per window w seconds, and the remaining quota r with the seconds t until
// it is whole again (or, when spent, until the next request may pass).
func rateLimitHeaders(c *gin.Context, policy string, lim ratelimit.Limit, res ratelimit.Result) {
	c.Header("RateLimit-Policy", strconv.Quote(policy)+";q="+strconv.Itoa(lim.Quota())+";w="+strconv.Itoa(ratelimit.Seconds(lim.Window())))
	reset := res.ResetAfter
	if !res.Allowed {
		reset = res.RetryAfter
	}
	remaining := max(res.Remaining, 0)
	if !res.Allowed {
		remaining = 0
	}
	t := int(reset.Seconds() + 0.999)
	c.Header("RateLimit", strconv.Quote(policy)+";r="+strconv.Itoa(remaining)+";t="+strconv.Itoa(t))
}

// rateLimited answers 429 with Retry-After and counts it.
func (s *Server) rateLimited(c *gin.Context, policy string, retry time.Duration, detail string) {
	s.tel.rateLimited.WithLabelValues(policy).Inc()
	c.Header("Retry-After", strconv.Itoa(ratelimit.Seconds(retry)))
	s.fail(c, withDetail(errRateLimited, detail))
}

// limitLogEvery spaces the log lines of a Redis outage: every request
// fails the same way, and one line per interval says so.
const limitLogEvery = 10 * time.Second

// limitUnavailable counts a check Redis could not make (err) or that was
// skipped during a pause (nil), and logs at most one line per
// limitLogEvery with the number of checks skipped meanwhile.
func (s *Server) limitUnavailable(c *gin.Context, err error) {
	s.tel.limitFailOpen.Inc()
	s.limitSkipped.Add(1)
	if err == nil {
		return
	}
	now := time.Now().UnixNano()
	last := s.limitLogged.Load()
	if now-last < int64(limitLogEvery) || !s.limitLogged.CompareAndSwap(last, now) {
		return
	}
	s.logFor(c).Warn("rate limits unchecked, requests let through: redis unavailable",
		"err", err, "checks_skipped", s.limitSkipped.Swap(0))
}

// limitState is the Server's rate limiting: the limiter (nil without
// Redis) and the log throttle of limitUnavailable.
type limitState struct {
	limiter *ratelimit.Limiter
	limits  Limits
	trusted []netip.Prefix
	// limitDownUntil (unix ns) pauses the checks after a Redis failure.
	limitDownUntil atomic.Int64
	limitLogged    atomic.Int64
	limitSkipped   atomic.Int64
}

// parseTrustedProxies reads the trusted proxies as gin does: addresses or
// CIDR ranges.
func parseTrustedProxies(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, v := range list {
		if p, err := netip.ParsePrefix(v); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(v)
		if err != nil {
			return nil, err
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// fromTrustedProxy reports whether the request's peer is a trusted proxy,
// whose X-Forwarded-* headers may be believed.
func (s *Server) fromTrustedProxy(c *gin.Context) bool {
	a, err := netip.ParseAddr(c.RemoteIP())
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range s.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// setupLimits reads the trusted proxies into gin (so c.ClientIP believes
// X-Forwarded-For only from them) and builds the limiter when Redis is set.
func (s *Server) setupLimits() error {
	if err := s.engine.SetTrustedProxies(s.cfg.TrustedProxies); err != nil {
		return fmt.Errorf("api: TrustedProxies: %w", err)
	}
	trusted, err := parseTrustedProxies(s.cfg.TrustedProxies)
	if err != nil {
		return fmt.Errorf("api: TrustedProxies: %w", err)
	}
	s.trusted = trusted
	s.limits = s.cfg.Limits.withDefaults()
	if s.cfg.Redis == nil {
		return nil
	}
	s.limiter, err = ratelimit.New(s.cfg.Redis, s.redisPrefix())
	return err
}

func (s *Server) redisPrefix() string { return cmp.Or(s.cfg.RedisPrefix, "bazaar:") }
