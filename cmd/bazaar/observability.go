package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/bazaarhq/bazaar/scheduler"
	"github.com/bazaarhq/bazaar/sql/migrations"
	"github.com/bazaarhq/bazaar/stream"
	"github.com/bazaarhq/bazaar/workers"
)

// tracingConfig is the OpenTelemetry part of the configuration, read from
// the standard OTEL_* variables. Tracing is on when an OTLP endpoint is set.
type tracingConfig struct {
	// Endpoint is the full URL spans are posted to (OTLP over HTTP with
	// protobuf); empty turns tracing off.
	Endpoint    string
	ServiceName string
}

// loadTracingConfig reads OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as it
// is) or OTEL_EXPORTER_OTLP_ENDPOINT (a base URL, "/v1/traces" appended),
// OTEL_SERVICE_NAME, and the switches OTEL_SDK_DISABLED and
// OTEL_TRACES_EXPORTER. Only OTLP over HTTP with protobuf is built in
// (the collector's port 4318); the exporter itself reads the remaining
// OTEL_EXPORTER_OTLP_* settings (headers, timeout, compression, TLS) and
// the SDK the sampler (OTEL_TRACES_SAMPLER).
func loadTracingConfig(getenv func(string) string) (tracingConfig, error) {
	r := &envReader{getenv: getenv}
	tc := tracingConfig{ServiceName: r.str("OTEL_SERVICE_NAME", "bazaar")}
	if r.boolean("OTEL_SDK_DISABLED", false) {
		return tc, r.wrapErr()
	}
	switch exp := r.str("OTEL_TRACES_EXPORTER", "otlp"); exp {
	case "none":
		return tc, r.wrapErr()
	case "otlp":
	default:
		r.fail("OTEL_TRACES_EXPORTER", "%q is not otlp or none", exp)
	}
	for _, key := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p := r.str(key, ""); p != "" && p != "http/protobuf" {
			r.fail(key, "%q is not supported; Bazaar sends http/protobuf (the collector's port 4318)", p)
		}
	}
	if v := r.str("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ""); v != "" {
		tc.Endpoint = r.url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", v, "http", "https")
	} else if v := r.str("OTEL_EXPORTER_OTLP_ENDPOINT", ""); v != "" {
		base := r.url("OTEL_EXPORTER_OTLP_ENDPOINT", v, "http", "https")
		if u, err := url.Parse(base); err == nil {
			u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/traces"
			tc.Endpoint = u.String()
		}
	}
	return tc, r.wrapErr()
}

func (r *envReader) wrapErr() error {
	if r.err != nil {
		return fmt.Errorf("config: %w", r.err)
	}
	return nil
}

// observability is one process's metrics registry and, when tracing is
// on, its OpenTelemetry tracer provider exporting over OTLP. It is a
// component: list it first in runComponents so it stops last and the
// spans of everything else are flushed.
type observability struct {
	// Registry holds the process's metrics: Go runtime and process
	// metrics, and whatever the roles register.
	Registry *prometheus.Registry
	sdk      *sdktrace.TracerProvider
	log      *slog.Logger
}

// newObservability builds the registry and, when an OTLP endpoint is
// configured, the tracer provider; role ("serve", "work", ...) is recorded
// on every span's resource. Without an endpoint there is no SDK at all.
func newObservability(ctx context.Context, getenv func(string) string, role string, log *slog.Logger) (*observability, error) {
	tc, err := loadTracingConfig(getenv)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfoCollector(currentBuild()))
	o := &observability{Registry: reg, log: log.With("component", "observability")}
	if tc.Endpoint == "" {
		return o, nil
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(tc.Endpoint))
	if err != nil {
		return nil, fmt.Errorf("otlp exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(tc.ServiceName), attribute.String("bazaar.role", role)),
		resource.WithFromEnv(), // OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME win
		resource.WithTelemetrySDK(),
		resource.WithHost(),
	)
	if err != nil {
		return nil, fmt.Errorf("otel resource: %w", err)
	}
	o.sdk = sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	// Export failures (a collector down) are reported through OTel's
	// global error handler; route them to the log.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		o.log.Warn("tracing", "err", err)
	}))
	o.log.Info("tracing on", "endpoint", redactURL(tc.Endpoint), "service", tc.ServiceName)
	return o, nil
}

// TracerProvider returns the provider to hand to api, stream, workers
// (their Config.TracerProvider), or nil when tracing is off.
func (o *observability) TracerProvider() trace.TracerProvider {
	if o.sdk == nil {
		return nil
	}
	return o.sdk
}

// Start does nothing: the tracer provider runs from construction.
func (o *observability) Start(context.Context) error { return nil }

// Stop flushes the spans still buffered and shuts the exporter down. It
// may be called twice.
func (o *observability) Stop(ctx context.Context) error {
	if o.sdk == nil {
		return nil
	}
	if err := o.sdk.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("flush traces: %w", err)
	}
	return nil
}

// MetricsHandler serves the registry in the Prometheus text format. A
// collector that cannot read its store leaves its series out instead of
// failing the whole scrape.
func (o *observability) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(o.Registry, promhttp.HandlerOpts{
		ErrorLog:          promLogger{o.log},
		ErrorHandling:     promhttp.ContinueOnError,
		Registry:          o.Registry,
		Timeout:           30 * time.Second,
		EnableOpenMetrics: false,
	})
}

// WithMetrics serves /metrics from the registry and everything else from
// h; the API process uses it around its router, so scrapes stay out of the
// access log and the request metrics.
func (o *observability) WithMetrics(h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", o.MetricsHandler())
	mux.Handle("/", h)
	return mux
}

type promLogger struct{ log *slog.Logger }

func (l promLogger) Println(v ...any) { l.log.Warn("metrics", "err", fmt.Sprint(v...)) }

// CollectBackbone registers the collector of the event backbone's state:
// parts picks the outbox (PostgreSQL), stream lengths and consumer groups
// (Redis). relay reports the outbox and streams, work the groups, dev all.
func (o *observability) CollectBackbone(db *sqlx.DB, rdb redis.UniversalClient, names stream.Names, parts stream.CollectParts) error {
	c, err := stream.NewCollector(stream.CollectorConfig{DB: db, Redis: rdb, Names: names, Parts: parts, Logger: o.log})
	if err != nil {
		return err
	}
	return o.Registry.Register(c)
}

// CollectQueues registers the collector of the asynq queues by state.
func (o *observability) CollectQueues(rdb redis.UniversalClient) error {
	c, err := workers.NewQueueCollector(workers.QueueCollectorConfig{Redis: rdb, Logger: o.log})
	if err != nil {
		return err
	}
	return o.Registry.Register(c)
}

// CollectSchedules registers the collector of schedules and invoice runs;
// it reports while leading returns true (nil: always).
func (o *observability) CollectSchedules(db *sqlx.DB, leading func() bool) error {
	c, err := scheduler.NewCollector(scheduler.CollectorConfig{DB: db, Leading: leading, Logger: o.log})
	if err != nil {
		return err
	}
	return o.Registry.Register(c)
}

// readyCheck is one dependency /readyz asks about.
type readyCheck struct {
	name string
	// check returns "" when the dependency is fine, else what is wrong.
	check func(ctx context.Context) string
}

// postgresReady checks that PostgreSQL answers and its schema is at least
// the one this binary expects (a newer one serves during a rolling upgrade).
func postgresReady(db *sqlx.DB) readyCheck {
	return readyCheck{name: "postgres", check: func(ctx context.Context) string {
		st, err := migrations.CurrentStatus(ctx, db.DB)
		switch {
		case err != nil:
			return "unreachable"
		case st.Dirty:
			return "migrations dirty"
		case !st.Serves():
			return "migrations pending"
		}
		return ""
	}}
}

// redisReady checks that Redis answers.
func redisReady(rdb redis.UniversalClient) readyCheck {
	return readyCheck{name: "redis", check: func(ctx context.Context) string {
		if err := rdb.Ping(ctx).Err(); err != nil {
			return "unreachable"
		}
		return ""
	}}
}

// OpsHandler serves /healthz (the process is alive), /readyz (each of
// checks passes, within two seconds) and /metrics: what a role without the
// API listens with.
func (o *observability) OpsHandler(checks ...readyCheck) http.Handler {
	mux := probes(checks...)
	mux.Handle("GET /metrics", o.MetricsHandler())
	return mux
}

// MetricsServer is the listener of BAZAAR_METRICS_ADDR, serving /metrics
// alone.
func (o *observability) MetricsServer(hc httpConfig, log *slog.Logger) *httpServer {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", o.MetricsHandler())
	return newHTTPServer("BAZAAR_METRICS_ADDR", hc.MetricsAddr, mux, hc, log)
}

// OpsServers are the HTTP listeners of a role without the API (work,
// relay, schedule): the probes on addr (BAZAAR_HTTP_ADDR), with /metrics
// beside them unless BAZAAR_METRICS_ADDR gives it a listener of its own.
func (o *observability) OpsServers(addr string, hc httpConfig, log *slog.Logger, checks ...readyCheck) []component {
	if hc.MetricsAddr == "" {
		return []component{newHTTPServer("BAZAAR_HTTP_ADDR", addr, o.OpsHandler(checks...), hc, log)}
	}
	return []component{o.MetricsServer(hc, log), newHTTPServer("BAZAAR_HTTP_ADDR", addr, probes(checks...), hc, log)}
}

// probes serves /healthz and /readyz.
func probes(checks ...readyCheck) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		ready := true
		results := map[string]string{}
		for _, c := range checks {
			if problem := c.check(ctx); problem != "" {
				ready = false
				results[c.name] = problem
			} else {
				results[c.name] = "ok"
			}
		}
		status := http.StatusOK
		if !ready {
			status = http.StatusServiceUnavailable
		}
		writeJSON(w, status, map[string]any{"ready": ready, "checks": results})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// traceLogHandler adds the trace_id and span_id of the span in a record's
// context to the record, so the log lines of one request, event or task
// can be found by the trace they belong to. Records logged without a
// context, or with one that carries no span, are left as they are.
type traceLogHandler struct{ slog.Handler }

// withTraceIDs wraps h with traceLogHandler.
func withTraceIDs(h slog.Handler) slog.Handler { return traceLogHandler{h} }

func (h traceLogHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r = r.Clone()
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceLogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return traceLogHandler{h.Handler.WithAttrs(attrs)}
}

func (h traceLogHandler) WithGroup(name string) slog.Handler {
	return traceLogHandler{h.Handler.WithGroup(name)}
}
