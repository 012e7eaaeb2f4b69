package api

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSecurityHeaders: every response says nosniff, and no page may be
// framed by another site (the monitor and its login form included).
func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	b := limitedSetup(t, Config{Monitor: stubMonitor{}})
	for _, path := range []string{"/healthz", "/openapi.yaml", "/v1/orders", "/nope", "/monitor/login", "/monitor/", "/dev/mail"} {
		for _, token := range []string{"", b.admin} {
			r := b.from("198.51.100.40:1", http.MethodGet, path, token, "Accept", "text/html")
			require.Equal(t, "nosniff", r.header.Get("X-Content-Type-Options"), "%s (status %d)", path, r.code)
			require.Equal(t, "DENY", r.header.Get("X-Frame-Options"), path)
			require.Equal(t, "frame-ancestors 'none'", r.header.Get("Content-Security-Policy"), path)
		}
	}
}

// TestMonitorCookieSecureBehindTrustedProxy: the session cookie is Secure
// when the browser's request was HTTPS, which a TLS-terminating proxy says
// in X-Forwarded-Proto; the header counts only from a trusted proxy.
func TestMonitorCookieSecureBehindTrustedProxy(t *testing.T) {
	t.Parallel()
	b := limitedSetup(t, Config{Monitor: stubMonitor{}, TrustedProxies: []string{"10.0.0.0/8"}})
	cases := []struct {
		peer, proto string
		secure      bool
	}{
		{"10.2.3.4:80", "https", true},
		{"10.2.3.4:80", "http", false},
		{"10.2.3.4:80", "", false},
		{"203.0.113.9:80", "https", false}, // anyone can send the header
	}
	for _, tc := range cases {
		rec := b.postLogin(tc.peer, testAdminToken, "X-Forwarded-Proto", tc.proto)
		require.Equal(t, http.StatusSeeOther, rec.Code)
		cookies := rec.Result().Cookies() //nolint:bodyclose // a recorder's body
		require.Len(t, cookies, 1)
		require.Equal(t, tc.secure, cookies[0].Secure, "%+v", tc)
		require.True(t, cookies[0].HttpOnly)
	}
}
