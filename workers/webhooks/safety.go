package webhooks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"
)

// ErrUnsafeURL is an endpoint URL Bazaar will not call: not https, or a
// host that resolves to an address that is not public.
var ErrUnsafeURL = errors.New("webhook URL not allowed")

// metadata is the cloud providers' instance metadata address, refused even
// when private addresses are allowed: it hands out credentials.
var metadata = netip.MustParseAddr("169.254.169.254")

// nonPublic are ranges outside netip's predicates that are not reachable
// on the internet: shared address space (CGNAT), IETF protocol
// assignments, benchmarking, and "this network".
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
}

// allowedAddr reports whether Bazaar may connect to a: a public unicast
// address, or with allowPrivate any address but the metadata service.
func allowedAddr(a netip.Addr, allowPrivate bool) bool {
	a = a.Unmap()
	if !a.IsValid() || a == metadata {
		return false
	}
	if allowPrivate {
		return true
	}
	if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// CheckURL reports, as an ErrUnsafeURL, why raw may not be an endpoint:
// its scheme is not https (http too with allowPrivate), it has no host or
// carries credentials, or its host resolves to an address allowedAddr
// refuses. The dialer checks again at each connection, as DNS answers
// change.
func CheckURL(ctx context.Context, raw string, allowPrivate bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnsafeURL, err)
	}
	switch {
	case u.Scheme != "https" && (!allowPrivate || u.Scheme != "http"):
		return fmt.Errorf("%w: the scheme must be https", ErrUnsafeURL)
	case u.Hostname() == "":
		return fmt.Errorf("%w: no host", ErrUnsafeURL)
	case u.User != nil:
		return fmt.Errorf("%w: credentials in the URL", ErrUnsafeURL)
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", u.Hostname())
	if err != nil {
		return fmt.Errorf("%w: resolve %s: %w", ErrUnsafeURL, u.Hostname(), err)
	}
	for _, a := range addrs {
		if !allowedAddr(a, allowPrivate) {
			return fmt.Errorf("%w: %s resolves to %s, which is not a public address", ErrUnsafeURL, u.Hostname(), a)
		}
	}
	return nil
}

// newClient returns the HTTP client of deliveries: its dialer refuses
// addresses allowedAddr refuses (so a DNS answer changed since
// registration cannot reach the internal network), it follows no
// redirects, and it gives up after timeout.
func newClient(timeout time.Duration, allowPrivate bool) *http.Client {
	d := &net.Dialer{
		Timeout: timeout,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: %w", ErrUnsafeURL, err)
			}
			if !allowedAddr(ap.Addr(), allowPrivate) {
				return fmt.Errorf("%w: %s is not a public address", ErrUnsafeURL, ap.Addr())
			}
			return nil
		},
	}
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:                 nil, // a proxy would dial for us, past the check
			DialContext:           d.DialContext,
			TLSHandshakeTimeout:   timeout,
			ResponseHeaderTimeout: timeout,
			MaxIdleConnsPerHost:   2,
			IdleConnTimeout:       90 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
