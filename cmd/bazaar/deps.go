package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/mattn/go-isatty"
	"github.com/redis/go-redis/v9"
)

func newLogger(c Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	text := c.LogFormat == "text"
	if c.LogFormat == "auto" {
		if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
			text = true
		}
	}
	// Lines logged with a context that carries a span get its trace_id
	// (observability.go).
	if text {
		return slog.New(withTraceIDs(slog.NewTextHandler(w, opts)))
	}
	return slog.New(withTraceIDs(slog.NewJSONHandler(w, opts)))
}

// setup loads the config and makes the logger every long-running role
// starts with. Only role "dev" may run with the development admin token:
// anywhere else the documented default would let anyone in.
func setup(env *environment, role string) (Config, *slog.Logger, error) {
	cfg, err := loadConfig(env.getenv)
	if err != nil {
		return Config{}, nil, err
	}
	if role != "dev" && cfg.AdminToken == defaultAdminToken {
		return Config{}, nil, fmt.Errorf("config: BAZAAR_ADMIN_TOKEN: unset or the development default %q; %q needs a secret of its own (at least 12 characters)", defaultAdminToken, "bazaar "+role)
	}
	log := newLogger(cfg, env.stdout)
	log.Info("config", "config", cfg)
	if cfg.AdminToken == defaultAdminToken {
		log.Warn("BAZAAR_ADMIN_TOKEN is the development default; set your own outside development")
	}
	return cfg, log, nil
}

func openDB(ctx context.Context, c Config) (*sqlx.DB, error) {
	return openPostgres(ctx, "DATABASE_URL", c.DatabaseURL, c.DBMaxConns)
}

// openDirectDB opens a small pool on BAZAAR_DATABASE_DIRECT_URL (by default
// DATABASE_URL) for work that needs a session of its own, which a
// transaction pooler such as PgBouncer does not give: migrations hold a
// session advisory lock from start to end.
func openDirectDB(ctx context.Context, c Config) (*sqlx.DB, error) {
	key := "BAZAAR_DATABASE_DIRECT_URL"
	if c.DatabaseDirectURL == c.DatabaseURL {
		key = "DATABASE_URL"
	}
	return openPostgres(ctx, key, c.DatabaseDirectURL, 2)
}

// openPostgres opens a pool of at most maxConns connections on dsn, which
// came from the variable key, and checks that it answers.
func openPostgres(ctx context.Context, key, dsn string, maxConns int) (*sqlx.DB, error) {
	// lib/pq reads its parameters (sslmode, connect_timeout, ...) only when
	// it connects, where a bad one would read as "not reachable".
	if _, err := pq.NewConfig(dsn); err != nil {
		return nil, fmt.Errorf("config: %s: %s", key, strings.TrimPrefix(err.Error(), "pq: "))
	}
	db, err := sqlx.Open("postgres", dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("postgres at %s is not reachable (start it with \"make up\"): %w", redactURL(dsn), err)
	}
	return db, nil
}

// connect opens the PostgreSQL pool and the Redis client every
// long-running role needs; closeAll closes both, Redis first.
func connect(ctx context.Context, c Config) (db *sqlx.DB, rdb redis.UniversalClient, closeAll func(), err error) {
	db, err = openDB(ctx, c)
	if err != nil {
		return nil, nil, nil, err
	}
	rdb, err = openRedis(ctx, c)
	if err != nil {
		_ = db.Close()
		return nil, nil, nil, err
	}
	return db, rdb, func() { _ = rdb.Close(); _ = db.Close() }, nil
}

// component is a long-running part with the lifecycle of house rule 8.
type component interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
}

// httpServer runs an http.Server as a component.
type httpServer struct {
	srv *http.Server
	// key is the variable the address came from, named when it cannot be
	// bound.
	key  string
	log  *slog.Logger
	ln   net.Listener
	done chan error
}

// newHTTPServer serves h on addr, which came from the variable key, with
// the timeouts of hc.
func newHTTPServer(key, addr string, h http.Handler, hc httpConfig, log *slog.Logger) *httpServer {
	return &httpServer{
		srv: &http.Server{
			Addr:              addr,
			Handler:           h,
			ReadHeaderTimeout: hc.ReadHeaderTimeout,
			ReadTimeout:       hc.ReadTimeout,
			// Live event streams move the write deadline on every write
			// (api/sse.go), so this bounds only the other responses.
			WriteTimeout:   hc.WriteTimeout,
			IdleTimeout:    hc.IdleTimeout,
			MaxHeaderBytes: hc.MaxHeaderBytes,
		},
		key: key,
		log: log,
	}
}

// endStreamsOnShutdown stops the hub as soon as the HTTP server starts
// shutting down: live event streams never end by themselves, so Shutdown
// would otherwise wait the whole timeout for them. Their clients reconnect
// to another process and resume from their last event id.
func (s *httpServer) endStreamsOnShutdown(hub interface{ Stop(context.Context) error }) *httpServer {
	// RegisterOnShutdown hands no context; Hub.Stop returns at once.
	s.srv.RegisterOnShutdown(func() { _ = hub.Stop(context.Background()) }) //nolint:contextcheck // see above
	return s
}

// Listen binds the address without serving yet; runComponents calls it
// before starting anything, so a port already taken fails in one line
// before the other parts have begun their work. Start calls it too.
func (s *httpServer) Listen(ctx context.Context) error {
	if s.ln != nil {
		return nil
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", s.srv.Addr)
	if err != nil {
		return fmt.Errorf("%s: %w", s.key, err)
	}
	s.ln = ln
	return nil
}

// Addr is the bound address (with the port chosen for ":0"), "" before
// Listen.
func (s *httpServer) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

func (s *httpServer) Start(ctx context.Context) error {
	if err := s.Listen(ctx); err != nil {
		return err
	}
	s.done = make(chan error, 1)
	s.log.Info("http listening", "addr", s.Addr())
	go func(ln net.Listener) {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}(s.ln)
	return nil
}

func (s *httpServer) Stop(ctx context.Context) error {
	if s.done == nil {
		// Bound but never started: release the port.
		if s.ln != nil {
			_ = s.ln.Close()
			s.ln = nil
		}
		return nil
	}
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	if serr := <-s.done; serr != nil && err == nil {
		err = serr
	}
	s.done = nil
	s.ln = nil
	return err
}

// listener is a component that binds its port before any part starts.
type listener interface {
	component
	Listen(ctx context.Context) error
}

// runComponents starts parts in order, waits for ctx to end (a signal), then
// stops them in reverse order within the shutdown timeout.
func runComponents(ctx context.Context, log *slog.Logger, timeout time.Duration, parts ...component) error {
	for i, p := range parts {
		l, ok := p.(listener)
		if !ok {
			continue
		}
		if err := l.Listen(ctx); err != nil {
			for _, q := range parts[:i] {
				if l, ok := q.(listener); ok {
					_ = l.Stop(ctx)
				}
			}
			return err
		}
	}
	started := 0
	var startErr error
	for _, p := range parts {
		if err := p.Start(ctx); err != nil {
			startErr = err
			break
		}
		started++
	}
	if startErr == nil {
		<-ctx.Done()
		log.Info("shutting down", "timeout", timeout.String())
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	var errs []error
	for i := started - 1; i >= 0; i-- {
		if err := parts[i].Stop(sctx); err != nil {
			errs = append(errs, err)
		}
	}
	// Listeners bound but not started when a part failed to start.
	for _, p := range parts[started:] {
		if l, ok := p.(listener); ok {
			_ = l.Stop(sctx)
		}
	}
	if startErr != nil {
		return startErr
	}
	return errors.Join(errs...)
}

// ensureDatabase creates the database of DATABASE_URL when the server
// answers but the database does not exist yet, so "bazaar dev" works on a
// fresh server. Other roles expect "bazaar migrate" to have run.
func ensureDatabase(ctx context.Context, c Config, log *slog.Logger) error {
	// CREATE DATABASE needs the server itself, not a pooler in front of it.
	u, err := url.Parse(c.DatabaseDirectURL)
	if err != nil {
		return fmt.Errorf("BAZAAR_DATABASE_DIRECT_URL: %w", err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	if name == "" || name == "postgres" {
		return nil
	}
	admin := *u
	admin.Path = "/postgres"
	db, err := sql.Open("postgres", admin.String())
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer db.Close()
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var exists bool
	if err := db.QueryRowContext(pctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		// Without rights on the maintenance database, leave it to openDB
		// to report what is wrong.
		return nil
	}
	if exists {
		return nil
	}
	if _, err := db.ExecContext(pctx, `CREATE DATABASE `+pq.QuoteIdentifier(name)); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	log.Info("created database", "database", name)
	return nil
}
