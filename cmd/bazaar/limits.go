package main

import (
	"net/netip"
	"strings"

	"github.com/bazaarhq/bazaar/api"
	"github.com/bazaarhq/bazaar/ratelimit"
)

// loadLimits reads the API's rate limits, stream caps and trusted proxies
// (README "Rate limits"); unset limits keep api.DefaultLimits.
func loadLimits(r *envReader) (api.Limits, []string) {
	var l api.Limits
	l.Admin = r.limit("BAZAAR_RATE_LIMIT_ADMIN")
	l.Storefront = r.limit("BAZAAR_RATE_LIMIT_STOREFRONT")
	l.Seller = r.limit("BAZAAR_RATE_LIMIT_SELLER")
	l.Printer = r.limit("BAZAAR_RATE_LIMIT_PRINTER")
	l.Anonymous = r.limit("BAZAAR_RATE_LIMIT_ANONYMOUS")
	l.AuthFailures = r.limit("BAZAAR_RATE_LIMIT_AUTH_FAILURES")
	l.MonitorLogin = r.limit("BAZAAR_RATE_LIMIT_MONITOR_LOGIN")
	l.StreamsPerCredential = int(r.integer("BAZAAR_SSE_MAX_STREAMS_PER_CREDENTIAL", 0))
	l.StreamsPerIP = int(r.integer("BAZAAR_SSE_MAX_STREAMS_PER_IP", 0))
	var proxies []string
	for _, p := range strings.Split(r.str("BAZAAR_TRUSTED_PROXIES", ""), ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if _, err := netip.ParsePrefix(p); err != nil {
			if _, err := netip.ParseAddr(p); err != nil {
				r.fail("BAZAAR_TRUSTED_PROXIES", "%q is not an IP address or CIDR range such as 10.0.0.0/8", p)
				continue
			}
		}
		proxies = append(proxies, p)
	}
	return l, proxies
}

// limit reads a rate limit such as "100/1s"; unset is the zero Limit.
func (r *envReader) limit(key string) ratelimit.Limit {
	v := r.str(key, "")
	if v == "" {
		return ratelimit.Limit{}
	}
	l, err := ratelimit.ParseLimit(v)
	if err != nil {
		r.fail(key, "%s", err.Error())
	}
	return l
}
