// Package api is Bazaar's REST API: a gin router whose handlers write
// records and, in the same PostgreSQL transaction, the events they cause.
// No handler writes to Redis; the relay publishes committed events.
package api

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/bazaarhq/bazaar/api/console"
	"github.com/bazaarhq/bazaar/api/printers"
	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/stream"
)

// Config holds the dependencies and settings of the API.
type Config struct {
	DB         *sqlx.DB
	Logger     *slog.Logger
	AdminToken string
	// MaxBodyBytes caps request bodies; larger ones get 413.
	MaxBodyBytes int64
	// Observer, when set, is told after each commit that recorded events.
	Observer store.TxObserver
	// Streams serves the /v1/admin/streams and /v1/admin/dlq routes; they
	// answer 500 without it.
	Streams *stream.Admin
	// Monitor is asynqmon (workers.NewMonitor), served at /monitor behind
	// operator credentials (viewers read only); /monitor answers 404
	// without it.
	Monitor MonitorHandler
	// DevMail lists the development mail sink's mails at /dev/mail; set it
	// only in development ("bazaar dev"). /dev/mail answers 404 without it.
	DevMail Mailbox
	// InvoiceLocation is the time zone whose calendar days make up invoicing
	// periods (the scheduler's BAZAAR_INVOICE_TZ; default UTC).
	InvoiceLocation *time.Location
	// Hub serves the live event routes (GET /v1/events and
	// /v1/sellers/{id}/events, in sse.go); they answer 503 without it.
	Hub *stream.Hub
	// SSE tunes the live event routes: heartbeat, retry hint, write
	// timeout and the browser origins allowed (CORS).
	SSE SSEConfig
	// Registry receives the HTTP and SSE metrics (observability.go); nil
	// leaves them unexported.
	Registry prometheus.Registerer
	// TracerProvider, when set, serves each request in a server span that
	// continues the caller's traceparent and is what the request's events
	// record; nil turns tracing off.
	TracerProvider trace.TracerProvider
	// Printers tunes the polling printer protocols (printers.go): clock,
	// confirmation window, poll rate and receipts per Epson answer.
	Printers PrintersConfig
	// StripeWebhooks applies Stripe's webhook deliveries (POST
	// /v1/webhooks/stripe); the route answers 404 without it.
	StripeWebhooks WebhookHandler
	// Webhooks configures the seller webhook routes (webhooks.go).
	Webhooks WebhooksConfig
	// Redis, when set, holds what every API process shares: the rate
	// limits and live stream caps of Limits (ratelimit.go) and the channel
	// that ends a revoked credential's streams (revoke.go). Without it no
	// limit applies.
	Redis redis.UniversalClient
	// RedisPrefix prefixes those keys and the channel (default "bazaar:").
	RedisPrefix string
	// Limits are the rate limits and stream caps; zero fields get
	// DefaultLimits.
	Limits Limits
	// TrustedProxies are the addresses or CIDR ranges of the reverse
	// proxies whose X-Forwarded-For and X-Forwarded-Proto are believed;
	// none by default, so clients cannot pick the address they are limited
	// by.
	TrustedProxies []string
	// DisablePrepared runs the write path's queries as unnamed statements
	// instead of named prepared ones (store.Statements), for a pooler that
	// cannot carry named statements (BAZAAR_DB_PREPARED=false).
	DisablePrepared bool
	// PausedSellerOrders says what happens to a new order for a paused
	// seller: PausedOrdersAccept (the default) records it, and its events
	// wait with the seller's others; PausedOrdersRefuse answers 423.
	PausedSellerOrders string
	// Tasks is the asynq inspector of the workers' queues: the console's
	// Tasks page reads, pauses and resumes them with it; nil hides them.
	Tasks *asynq.Inspector
}

// Server is the API's HTTP handler with its dependencies.
type Server struct {
	cfg    Config
	log    *slog.Logger
	engine *gin.Engine
	tel    *telemetry
	limitState
	revocations revocations
	// keys caches the API keys authenticate found (keycache.go).
	keys keyCache
	// beforeCommit, when set (by tests), runs last in every write
	// transaction; an error rolls the transaction back.
	beforeCommit func(context.Context, *sqlx.Tx) error
	// printers serves the CloudPRNT and Epson Server Direct Print routes.
	printers *printers.Handler
	// stmts runs the queries of authentication and of writes as prepared
	// statements, unless cfg.DisablePrepared.
	stmts *store.Statements
	// console serves /console (console_mount.go).
	console *console.Console
	// wheel beats the hearts of the streams on hijacked connections (sse_raw.go).
	wheel sseWheel
}

// New validates cfg and builds the router.
func New(cfg Config) (*Server, error) {
	if cfg.DB == nil {
		return nil, errors.New("api: DB is required")
	}
	if cfg.AdminToken == "" {
		return nil, errors.New("api: AdminToken is required")
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	cfg.MaxBodyBytes = cmp.Or(cfg.MaxBodyBytes, 1<<20)
	cfg.PausedSellerOrders = cmp.Or(cfg.PausedSellerOrders, PausedOrdersAccept)
	if cfg.PausedSellerOrders != PausedOrdersAccept && cfg.PausedSellerOrders != PausedOrdersRefuse {
		return nil, fmt.Errorf("api: PausedSellerOrders %q is not %s or %s", cfg.PausedSellerOrders, PausedOrdersAccept, PausedOrdersRefuse)
	}
	tel, err := newTelemetry(cfg.Registry, cfg.TracerProvider)
	if err != nil {
		return nil, fmt.Errorf("api: metrics: %w", err)
	}
	gin.SetMode(gin.ReleaseMode)
	s := &Server{cfg: cfg, log: cfg.Logger, engine: gin.New(), tel: tel, stmts: store.NewStatements(cfg.DB, !cfg.DisablePrepared)}
	conf := cfg.SSE.withDefaults()
	s.wheel = sseWheel{s: s, every: conf.Heartbeat, timeout: conf.WriteTimeout}
	if s.printers, err = s.newPrinters(); err != nil {
		return nil, err
	}
	if err = s.setupLimits(); err != nil {
		return nil, err
	}
	// Unknown paths and methods get problem+json, not redirects.
	s.engine.RedirectTrailingSlash = false
	s.engine.RedirectFixedPath = false
	s.engine.HandleMethodNotAllowed = true
	s.engine.Use(s.securityHeaders, s.requestIDs, s.observe, s.accessLog, s.recoverPanics, s.limitBody, s.limitAnonymous)
	s.engine.NoRoute(s.noRoute)
	s.engine.NoMethod(s.noMethod)
	s.routes()
	if err := s.mountConsole(s.engine); err != nil {
		return nil, fmt.Errorf("api: console: %w", err)
	}
	return s, nil
}

// Handler returns the HTTP handler serving every route.
func (s *Server) Handler() http.Handler { return s.engine }

// Engine exposes the gin engine so other roles can mount routes on the same port.
func (s *Server) Engine() *gin.Engine { return s.engine }
