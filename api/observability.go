package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/bazaarhq/bazaar/stream"
)

// TracerName names the tracer of the API's spans.
const TracerName = "github.com/bazaarhq/bazaar/api"

// telemetry is what the API reports: requests by route, method and status
// with their latency, SSE clients and deliveries, and, when tracing is on,
// a server span per request and a span per event pushed over SSE.
type telemetry struct {
	// tracer is nil when tracing is off; trace context still flows from
	// the request's traceparent header to its events and log lines.
	tracer     trace.Tracer
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	sseClients prometheus.Gauge
	sseSent    prometheus.Counter
	sseSlow    prometheus.Counter
	// rateLimited counts 429 answers by policy; limitFailOpen the checks
	// Redis could not make (the request went through); sseRefused the
	// streams refused by the caps; sseRevoked the streams ended because
	// their credential was revoked.
	rateLimited   *prometheus.CounterVec
	limitFailOpen prometheus.Counter
	sseRefused    *prometheus.CounterVec
	sseRevoked    prometheus.Counter
}

func newTelemetry(reg prometheus.Registerer, tp trace.TracerProvider) (*telemetry, error) {
	t := &telemetry{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bazaar_http_requests_total",
			Help: "API requests answered, by route pattern, method and status.",
		}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bazaar_http_request_duration_seconds",
			Help:    "API request latency by route pattern and method (live event streams excluded).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method"}),
		sseClients: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bazaar_sse_clients",
			Help: "SSE clients connected to this process.",
		}),
		sseSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bazaar_sse_events_sent_total",
			Help: "Events written to SSE clients.",
		}),
		sseSlow: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bazaar_sse_slow_client_disconnects_total",
			Help: "SSE clients disconnected for not keeping up (queue overflow or write timeout).",
		}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bazaar_http_rate_limited_total",
			Help: "Requests answered 429 by a rate limit or stream cap, by policy.",
		}, []string{"policy"}),
		limitFailOpen: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bazaar_rate_limit_fail_open_total",
			Help: "Rate limit and stream cap checks Redis could not make; the request was let through.",
		}),
		sseRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bazaar_sse_streams_refused_total",
			Help: "Live event streams refused because the credential or IP had all its streams open, by scope.",
		}, []string{"scope"}),
		sseRevoked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bazaar_sse_streams_revoked_total",
			Help: "Live event streams ended because their credential was revoked.",
		}),
	}
	if tp != nil {
		t.tracer = tp.Tracer(TracerName)
	}
	if reg == nil {
		return t, nil
	}
	var err error
	if t.requests, err = register(reg, t.requests); err != nil {
		return nil, err
	}
	if t.duration, err = register(reg, t.duration); err != nil {
		return nil, err
	}
	if t.sseClients, err = register(reg, t.sseClients); err != nil {
		return nil, err
	}
	if t.sseSent, err = register(reg, t.sseSent); err != nil {
		return nil, err
	}
	if t.sseSlow, err = register(reg, t.sseSlow); err != nil {
		return nil, err
	}
	if t.rateLimited, err = register(reg, t.rateLimited); err != nil {
		return nil, err
	}
	if t.limitFailOpen, err = register(reg, t.limitFailOpen); err != nil {
		return nil, err
	}
	if t.sseRefused, err = register(reg, t.sseRefused); err != nil {
		return nil, err
	}
	if t.sseRevoked, err = register(reg, t.sseRevoked); err != nil {
		return nil, err
	}
	// Every label value is exported from the start, at zero, so rates and
	// alerts see a series before the first refusal.
	for _, p := range []string{"admin", "storefront", "seller", "printer", policyAnonymous, policyAuthFailures, policyMonitorLogin, "streams-per-credential", "streams-per-ip"} {
		t.rateLimited.WithLabelValues(p)
	}
	for _, scope := range []string{"credential", "ip"} {
		t.sseRefused.WithLabelValues(scope)
	}
	return t, nil
}

// register adds c to reg, or returns the collector already registered
// under its name, so a second server in one process shares the series.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}

// methodLabel bounds the method label: anything a client invents counts
// as "other".
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}

const (
	spanKey      = "bazaar.span"
	streamingKey = "bazaar.streaming"
)

// untraced are routes whose requests get no span: probes, which would
// flood the traces with nothing to see.
var untraced = map[string]bool{"/healthz": true, "/readyz": true}

// observe is the middleware that counts and times each request by its
// route pattern (gin's FullPath, never the raw path, so ids do not become
// labels) and, with tracing on, serves it in a server span that continues
// the caller's traceparent. The span's context is what the request's
// events record as their traceparent (eventTraceParent). With tracing off,
// a valid traceparent header still goes into the request context, so log
// lines carry its trace id and events carry it on.
func (s *Server) observe(c *gin.Context) {
	start := time.Now()
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	method := methodLabel(c.Request.Method)
	ctx := stream.ContextWithTraceParent(c.Request.Context(), traceParent(c))
	var span trace.Span
	if s.tel.tracer != nil && !untraced[route] {
		ctx, span = s.tel.tracer.Start(ctx, c.Request.Method+" "+route,
			trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(
				semconv.HTTPRequestMethodKey.String(method),
				semconv.HTTPRoute(route),
				attribute.String("bazaar.request_id", requestID(c)),
			))
		c.Set(spanKey, span)
	}
	if ctx != c.Request.Context() {
		c.Request = c.Request.WithContext(ctx)
	}
	c.Next()

	status := c.Writer.Status()
	s.tel.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	if c.GetBool(streamingKey) {
		return // its span ended when the stream began; its duration is the client's stay
	}
	s.tel.duration.WithLabelValues(route, method).Observe(time.Since(start).Seconds())
	endRequestSpan(span, status)
}

func endRequestSpan(span trace.Span, status int) {
	if span == nil {
		return
	}
	span.SetAttributes(semconv.HTTPResponseStatusCode(status))
	if status >= http.StatusInternalServerError {
		span.SetStatus(codes.Error, http.StatusText(status))
	}
	span.End()
}

// streamStarted tells observe that the request turned into a long-lived
// stream: its span ends now (it covered the subscription), and its
// duration stays out of the latency histogram.
func (s *Server) streamStarted(c *gin.Context) {
	c.Set(streamingKey, true)
	if v, ok := c.Get(spanKey); ok {
		endRequestSpan(v.(trace.Span), http.StatusOK)
	}
}

// eventTraceParent is the traceparent the request's events record: its
// server span with tracing on, so the relay, consumers and tasks join the
// request's trace; the caller's valid traceparent header with tracing off.
func (s *Server) eventTraceParent(ctx context.Context, c *gin.Context) string {
	if tp := stream.TraceParentOf(ctx); tp != "" {
		return tp
	}
	return traceParent(c)
}

// ssePush is one event being written to an SSE client.
type ssePush struct {
	t    *telemetry
	span trace.Span
}

// startPush begins writing ev to a client: with tracing on, in a span that
// continues the event's trace (the traceparent of its envelope).
func (t *telemetry) startPush(ctx context.Context, ev stream.LiveEvent) ssePush {
	if t.tracer == nil || ev.EventID == "" {
		return ssePush{t: t}
	}
	var env struct {
		TraceParent string `json:"traceparent"`
	}
	if json.Unmarshal(ev.Data, &env) != nil || env.TraceParent == "" {
		return ssePush{t: t}
	}
	ctx = stream.ContextWithTraceParent(context.WithoutCancel(ctx), env.TraceParent)
	_, span := t.tracer.Start(ctx, "sse push "+ev.Type,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			semconv.MessagingSystemKey.String("sse"),
			semconv.MessagingOperationName("send"),
			semconv.MessagingMessageID(ev.EventID),
			attribute.String("bazaar.event.type", ev.Type),
		))
	return ssePush{t: t, span: span}
}

// end counts the event as sent when its write succeeded and ends its
// span. A failed write ends the stream; report it once with
// sseWriteFailed.
func (p ssePush) end(err error) {
	if err == nil {
		p.t.sseSent.Inc()
	}
	if p.span != nil {
		if err != nil {
			p.span.RecordError(err)
			p.span.SetStatus(codes.Error, "write failed")
		}
		p.span.End()
	}
}

// sseWriteFailed counts a stream that ended because a write failed: a
// client that did not take its events within the write timeout was too
// slow; one that went away was not.
func (t *telemetry) sseWriteFailed(err error) {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.sseSlow.Inc()
	}
}
