package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/bazaarhq/bazaar/stream"
)

// Config is every setting of every role, read from the environment once at
// start and validated before anything connects.
type Config struct {
	DatabaseURL string
	RedisURL    string
	RedisPrefix string
	// Redis is the topology (single node, Cluster or Sentinel) every role
	// connects to; see redis.go.
	Redis redisConfig
	// StreamPartitions splits each domain stream by subject hash; every
	// process of one deployment must use the same value.
	StreamPartitions int
	HTTPAddr         string
	AdminToken       string
	LogLevel         slog.Level
	LogFormat        string
	ShutdownTimeout  time.Duration
	MaxBodyBytes     int64

	// DBMaxConns caps the PostgreSQL pool of each process
	// (BAZAAR_DB_MAX_CONNS; docs/operations.md has the budget per role).
	DBMaxConns int
	// DatabaseDirectURL reaches PostgreSQL without a transaction pooler,
	// for what needs a session of its own: migrations, which hold a session
	// advisory lock, and the relay's LISTEN ("bazaar relay -listen")
	// (BAZAAR_DATABASE_DIRECT_URL; default DATABASE_URL).
	DatabaseDirectURL string
	// OutboxNotify is BAZAAR_OUTBOX_NOTIFY (default false): the roles that
	// record events send a NOTIFY after each commit (coalesced), so relays
	// run with -listen publish at once rather than at their next poll.
	OutboxNotify bool
}

// defaultAdminToken lets a developer follow the README at once with "bazaar
// dev"; every other role refuses to start with it (setup).
const defaultAdminToken = "dev-admin-token"

// envReader reads typed values and keeps the first error, which names the
// variable, so a bad setting fails in one readable line.
type envReader struct {
	getenv func(string) string
	err    error
}

func (r *envReader) fail(key, format string, a ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%s: %s", key, fmt.Sprintf(format, a...))
	}
}

func (r *envReader) str(key, def string) string {
	if v := strings.TrimSpace(r.getenv(key)); v != "" {
		return v
	}
	return def
}

func (r *envReader) duration(key string, def time.Duration) time.Duration {
	v := r.str(key, "")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		r.fail(key, "%q is not a duration such as 30s or 5m", v)
		return def
	}
	return d
}

func (r *envReader) integer(key string, def int64) int64 {
	v := r.str(key, "")
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		r.fail(key, "%q is not a non-negative whole number", v)
		return def
	}
	return n
}

func (r *envReader) boolean(key string, def bool) bool {
	v := r.str(key, "")
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.fail(key, "%q is not true or false", v)
		return def
	}
	return b
}

func (r *envReader) url(key, def string, schemes ...string) string {
	v := r.str(key, def)
	u, err := url.Parse(v)
	if err != nil || u.Host == "" {
		r.fail(key, "%q is not a URL such as %s", redactURL(v), def)
		return v
	}
	for _, s := range schemes {
		if u.Scheme == s {
			return v
		}
	}
	r.fail(key, "scheme %q is not one of %s", u.Scheme, strings.Join(schemes, ", "))
	return v
}

func (r *envReader) addr(key, def string) string {
	v := r.str(key, def)
	if _, _, err := net.SplitHostPort(v); err != nil {
		r.fail(key, "%q is not a host:port address such as :8080", v)
	}
	return v
}

func loadConfig(getenv func(string) string) (Config, error) {
	r := &envReader{getenv: getenv}
	c := Config{
		DatabaseURL:      r.url("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bazaar?sslmode=disable", "postgres", "postgresql"),
		RedisURL:         r.url("REDIS_URL", "redis://127.0.0.1:6379/0", "redis", "rediss"),
		RedisPrefix:      r.str("BAZAAR_REDIS_PREFIX", "bazaar:"),
		StreamPartitions: int(r.integer("BAZAAR_STREAM_PARTITIONS", 1)),
		HTTPAddr:         r.addr("BAZAAR_HTTP_ADDR", ":8080"),
		AdminToken:       r.str("BAZAAR_ADMIN_TOKEN", defaultAdminToken),
		LogFormat:        r.str("BAZAAR_LOG_FORMAT", "auto"),
		ShutdownTimeout:  r.duration("BAZAAR_SHUTDOWN_TIMEOUT", 30*time.Second),
		MaxBodyBytes:     r.integer("BAZAAR_MAX_BODY_BYTES", 1<<20),
	}
	c.Redis = loadRedisConfig(r, c.RedisURL)
	c.DBMaxConns = int(r.integer("BAZAAR_DB_MAX_CONNS", 25))
	c.DatabaseDirectURL = r.url("BAZAAR_DATABASE_DIRECT_URL", c.DatabaseURL, "postgres", "postgresql")
	c.OutboxNotify = r.boolean("BAZAAR_OUTBOX_NOTIFY", false)
	if c.DBMaxConns < 1 || c.DBMaxConns > 10_000 {
		r.fail("BAZAAR_DB_MAX_CONNS", "must be from 1 to 10000")
	}
	lvl := r.str("BAZAAR_LOG_LEVEL", "info")
	if err := c.LogLevel.UnmarshalText([]byte(lvl)); err != nil {
		r.fail("BAZAAR_LOG_LEVEL", "%q is not one of debug, info, warn, error", lvl)
	}
	switch c.LogFormat {
	case "auto", "json", "text":
	default:
		r.fail("BAZAAR_LOG_FORMAT", "%q is not one of auto, json, text", c.LogFormat)
	}
	if len(c.AdminToken) < 12 {
		r.fail("BAZAAR_ADMIN_TOKEN", "must be at least 12 characters")
	}
	if !strings.HasSuffix(c.RedisPrefix, ":") {
		r.fail("BAZAAR_REDIS_PREFIX", "%q must end with a colon", c.RedisPrefix)
	}
	if c.StreamPartitions < 1 || c.StreamPartitions > 1024 {
		r.fail("BAZAAR_STREAM_PARTITIONS", "must be from 1 to 1024")
	}
	if c.MaxBodyBytes < 1024 {
		r.fail("BAZAAR_MAX_BODY_BYTES", "must be at least 1024")
	}
	if r.err != nil {
		return Config{}, fmt.Errorf("config: %w", r.err)
	}
	return c, nil
}

// LogValue masks secrets so the config can be logged whole at start.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("database_url", redactURL(c.DatabaseURL)),
		slog.String("redis_url", redactURL(c.RedisURL)),
		slog.String("redis_prefix", c.RedisPrefix),
		slog.Any("redis", c.Redis),
		slog.Int("stream_partitions", c.StreamPartitions),
		slog.String("http_addr", c.HTTPAddr),
		slog.String("admin_token", mask(c.AdminToken)),
		slog.String("log_level", c.LogLevel.String()),
		slog.String("log_format", c.LogFormat),
		slog.Duration("shutdown_timeout", c.ShutdownTimeout),
		slog.Int64("max_body_bytes", c.MaxBodyBytes),
		slog.Int("db_max_conns", c.DBMaxConns),
		slog.String("database_direct_url", redactURL(c.DatabaseDirectURL)),
		slog.Bool("outbox_notify", c.OutboxNotify),
	)
}

func mask(s string) string {
	if s == "" {
		return ""
	}
	return "****"
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparseable)"
	}
	return u.Redacted()
}

// names returns the Redis key names every role of one deployment shares.
func (c Config) names() stream.Names {
	return stream.Names{Prefix: c.RedisPrefix, Partitions: c.StreamPartitions}
}
