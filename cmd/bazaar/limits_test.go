package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/ratelimit"
)

func TestLoadLimits(t *testing.T) {
	t.Parallel()
	env := func(kv map[string]string) func(string) string {
		return func(k string) string { return kv[k] }
	}
	ac, err := loadAPIConfig(env(nil))
	require.NoError(t, err)
	require.Zero(t, ac.Limits, "unset limits keep api.DefaultLimits")
	require.Empty(t, ac.TrustedProxies)

	ac, err = loadAPIConfig(env(map[string]string{
		"BAZAAR_RATE_LIMIT_SELLER": "5/1m", "BAZAAR_RATE_LIMIT_AUTH_FAILURES": "10/1m,30",
		"BAZAAR_SSE_MAX_STREAMS_PER_IP": "3", "BAZAAR_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1",
	}))
	require.NoError(t, err)
	require.Equal(t, ratelimit.Limit{Rate: 5, Period: time.Minute}, ac.Limits.Seller)
	require.Equal(t, ratelimit.Limit{Rate: 10, Period: time.Minute, Burst: 30}, ac.Limits.AuthFailures)
	require.Equal(t, 3, ac.Limits.StreamsPerIP)
	require.Equal(t, []string{"10.0.0.0/8", "192.0.2.1"}, ac.TrustedProxies)

	for key, value := range map[string]string{
		"BAZAAR_RATE_LIMIT_PRINTER":             "fast",
		"BAZAAR_RATE_LIMIT_MONITOR_LOGIN":       "0/1m",
		"BAZAAR_SSE_MAX_STREAMS_PER_CREDENTIAL": "-1",
		"BAZAAR_TRUSTED_PROXIES":                "proxy.local",
	} {
		_, err := loadAPIConfig(env(map[string]string{key: value}))
		require.ErrorContains(t, err, key)
	}
}
