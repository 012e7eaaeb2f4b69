package main

import (
	"log/slog"
	"time"
)

// httpConfig is the part of the configuration every role's HTTP listeners
// share: how long a client may take, and where /metrics is served.
type httpConfig struct {
	// ReadHeaderTimeout bounds reading a request's headers.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included, so a
	// client trickling its body cannot hold a connection.
	ReadTimeout time.Duration
	// WriteTimeout bounds a response from the end of its request's
	// headers. Live event streams set a deadline per write instead
	// (BAZAAR_SSE_WRITE_TIMEOUT), so they are not cut by it.
	WriteTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle this long.
	IdleTimeout time.Duration
	// MaxHeaderBytes caps the request line and headers.
	MaxHeaderBytes int
	// MetricsAddr, when set, is a listener of its own for /metrics.
	MetricsAddr string
}

func loadHTTPConfig(getenv func(string) string) (httpConfig, error) {
	r := &envReader{getenv: getenv}
	hc := httpConfig{
		ReadHeaderTimeout: r.duration("BAZAAR_HTTP_READ_HEADER_TIMEOUT", 10*time.Second),
		ReadTimeout:       r.duration("BAZAAR_HTTP_READ_TIMEOUT", 30*time.Second),
		WriteTimeout:      r.duration("BAZAAR_HTTP_WRITE_TIMEOUT", 60*time.Second),
		IdleTimeout:       r.duration("BAZAAR_HTTP_IDLE_TIMEOUT", 120*time.Second),
		MaxHeaderBytes:    int(r.integer("BAZAAR_HTTP_MAX_HEADER_BYTES", 64<<10)),
	}
	if v := r.str("BAZAAR_METRICS_ADDR", ""); v != "" {
		hc.MetricsAddr = r.addr("BAZAAR_METRICS_ADDR", v)
	}
	for _, t := range []struct {
		key string
		d   time.Duration
	}{
		{"BAZAAR_HTTP_READ_HEADER_TIMEOUT", hc.ReadHeaderTimeout},
		{"BAZAAR_HTTP_READ_TIMEOUT", hc.ReadTimeout},
		{"BAZAAR_HTTP_WRITE_TIMEOUT", hc.WriteTimeout},
		{"BAZAAR_HTTP_IDLE_TIMEOUT", hc.IdleTimeout},
	} {
		if t.d == 0 {
			r.fail(t.key, "must be more than 0")
		}
	}
	if hc.ReadHeaderTimeout > hc.ReadTimeout {
		r.fail("BAZAAR_HTTP_READ_HEADER_TIMEOUT", "must not be longer than BAZAAR_HTTP_READ_TIMEOUT (%s)", hc.ReadTimeout)
	}
	if hc.MaxHeaderBytes < 4096 {
		r.fail("BAZAAR_HTTP_MAX_HEADER_BYTES", "must be at least 4096")
	}
	return hc, r.wrapErr()
}

// LogValue lets the settings be logged at start.
func (hc httpConfig) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Duration("read_header_timeout", hc.ReadHeaderTimeout),
		slog.Duration("read_timeout", hc.ReadTimeout),
		slog.Duration("write_timeout", hc.WriteTimeout),
		slog.Duration("idle_timeout", hc.IdleTimeout),
		slog.Int("max_header_bytes", hc.MaxHeaderBytes),
		slog.String("metrics_addr", hc.MetricsAddr),
	)
}
