package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream"
	"github.com/bazaarhq/bazaar/stream/redistest"
)

func observedSetup(t *testing.T, tp trace.TracerProvider) (*testBundle, *prometheus.Registry) {
	t.Helper()
	db, _ := storetest.NewDB(t)
	reg := prometheus.NewPedanticRegistry()
	srv, err := New(Config{DB: db, AdminToken: testAdminToken, Registry: reg, TracerProvider: tp})
	require.NoError(t, err)
	return &testBundle{t: t, srv: srv, db: db, admin: testAdminToken, observed: &observer{}}, reg
}

// Requests are counted by route pattern, never by raw path, so ids do not
// become labels; methods a client invents count as "other".
func TestHTTPMetricsByRoute(t *testing.T) {
	t.Parallel()
	b, reg := observedSetup(t, nil)
	id := b.seller("Metered")
	b.do(http.MethodGet, "/v1/sellers/"+id.String(), b.admin, nil).status(http.StatusOK)
	b.do(http.MethodGet, "/v1/sellers/"+uuid.NewString(), b.admin, nil).status(http.StatusNotFound)
	b.do(http.MethodGet, "/v1/sellers/"+uuid.NewString(), b.admin, nil).status(http.StatusNotFound)
	b.serve(http.MethodGet, "/no/such/"+uuid.NewString(), "", nil).status(http.StatusNotFound)
	b.serve("BREW", "/v1/sellers", b.admin, nil)

	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP bazaar_http_requests_total API requests answered, by route pattern, method and status.
# TYPE bazaar_http_requests_total counter
bazaar_http_requests_total{method="GET",route="/v1/sellers/:id",status="200"} 1
bazaar_http_requests_total{method="GET",route="/v1/sellers/:id",status="404"} 2
bazaar_http_requests_total{method="GET",route="unmatched",status="404"} 1
bazaar_http_requests_total{method="POST",route="/v1/sellers",status="201"} 1
bazaar_http_requests_total{method="other",route="unmatched",status="405"} 1
`), "bazaar_http_requests_total"))
	require.EqualValues(t, 3, sampleCount(t, reg, "bazaar_http_request_duration_seconds", "route", "/v1/sellers/:id"))
}

func sampleCount(t *testing.T, g prometheus.Gatherer, name, label, value string) uint64 {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	var n uint64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					n += m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return n
}

func recorderProvider(t *testing.T) (*sdktrace.TracerProvider, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp, rec
}

func endedSpan(t *testing.T, rec *tracetest.SpanRecorder, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	var found []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == name {
			found = append(found, s)
		}
	}
	require.Len(t, found, 1, "spans named %q", name)
	return found[0]
}

// With tracing on, each request has a server span that continues the
// caller's traceparent, and the request's events record that span, so
// whatever the events cause joins the request's trace.
func TestRequestSpanIsTheEventsTraceParent(t *testing.T) {
	t.Parallel()
	tp, rec := recorderProvider(t)
	b, _ := observedSetup(t, tp)

	id := b.do(http.MethodPost, "/v1/sellers", b.admin, map[string]any{"name": "Traced", "email": "t@example.com"},
		"traceparent", testTraceParent).status(http.StatusCreated).id()
	span := endedSpan(t, rec, "POST /v1/sellers")
	require.Equal(t, trace.SpanKindServer, span.SpanKind())
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", span.SpanContext().TraceID().String())
	require.Equal(t, "00f067aa0ba902b7", span.Parent().SpanID().String())
	require.True(t, span.Parent().IsRemote())
	require.Equal(t, "00-4bf92f3577b34da6a3ce929d0e0e4736-"+span.SpanContext().SpanID().String()+"-01",
		b.lastEvent(id, "seller.created").TraceParent)

	// Without a traceparent the request starts a trace.
	id = b.seller("Untraced caller")
	var root sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "POST /v1/sellers" && !s.Parent().IsValid() {
			root = s
		}
	}
	require.NotNil(t, root)
	require.Equal(t, stream.TraceParentOf(trace.ContextWithSpanContext(context.Background(), root.SpanContext())),
		b.lastEvent(id, "seller.created").TraceParent)

	// Probes are not traced.
	b.serve(http.MethodGet, "/healthz", "", nil).status(http.StatusOK)
	for _, s := range rec.Ended() {
		require.NotContains(t, s.Name(), "healthz")
	}
}

// An SSE connection counts as a client while it is open; each event
// written counts as sent and, with tracing on, is a span in the event's
// trace. The stream's duration stays out of the latency histogram.
func TestSSEMetricsAndPushSpans(t *testing.T) {
	t.Parallel()
	tp, rec := recorderProvider(t)
	db, _ := storetest.NewDB(t)
	rdb := redistest.Client(t)
	names := stream.Names{Prefix: redistest.Prefix(t)}
	relay, err := stream.NewRelay(stream.RelayConfig{DB: db, Redis: rdb, Names: names, PollInterval: 20 * time.Millisecond, TracerProvider: tp})
	require.NoError(t, err)
	require.NoError(t, relay.Start(context.Background()))
	t.Cleanup(func() { require.NoError(t, relay.Stop(context.Background())) })
	hub := sseHub(t, db, names)
	reg := prometheus.NewPedanticRegistry()
	srv, err := New(Config{DB: db, AdminToken: testAdminToken, Observer: relay, Hub: hub, Registry: reg, TracerProvider: tp})
	require.NoError(t, err)
	b := &sseBundle{testBundle: &testBundle{t: t, srv: srv, db: db, admin: testAdminToken, observed: &observer{}}, hub: hub}
	b.http = httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		_ = hub.Stop(context.Background())
		b.http.Close()
	})

	conn, res := b.open("/v1/events", b.admin)
	t.Cleanup(func() { _ = res.Body.Close() })
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, "ready", (<-conn.events).event)
	require.Equal(t, 1.0, testutil.ToFloat64(srv.tel.sseClients))

	id := b.do(http.MethodPost, "/v1/sellers", b.admin, map[string]any{"name": "Live", "email": "l@example.com"},
		"traceparent", testTraceParent).status(http.StatusCreated).id()
	var got sseEvent
	select {
	case got = <-conn.events:
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
	}
	require.Equal(t, "seller.created", got.event)
	require.Contains(t, got.data, id.String())
	require.Eventually(t, func() bool { return testutil.ToFloat64(srv.tel.sseSent) == 1 }, 5*time.Second, 10*time.Millisecond)

	var push sdktrace.ReadOnlySpan
	require.Eventually(t, func() bool {
		for _, s := range rec.Ended() {
			if s.Name() == "sse push seller.created" {
				push = s
				return true
			}
		}
		return false
	}, 5*time.Second, 10*time.Millisecond)
	// The relay ends its publish span after marking the row published, which
	// may come after the hub has already pushed the entry.
	require.Eventually(t, func() bool {
		for _, s := range rec.Ended() {
			if s.Name() == "publish seller.created" {
				return true
			}
		}
		return false
	}, 5*time.Second, 10*time.Millisecond)
	publish := endedSpan(t, rec, "publish seller.created")
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", push.SpanContext().TraceID().String())
	require.Equal(t, publish.SpanContext().SpanID(), push.Parent().SpanID(), "pushed as a child of its publication")

	conn.close()
	require.Eventually(t, func() bool { return testutil.ToFloat64(srv.tel.sseClients) == 0 }, 5*time.Second, 10*time.Millisecond)
	require.EqualValues(t, 0, sampleCount(t, reg, "bazaar_http_request_duration_seconds", "route", "/v1/events"))
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(srv.tel.requests.WithLabelValues("/v1/events", "GET", "200")) == 1
	}, 5*time.Second, 10*time.Millisecond)
	// The stream's own span ended when the stream began.
	require.Equal(t, trace.SpanKindServer, endedSpan(t, rec, "GET /v1/events").SpanKind())
}

// A stream that ends on a write timeout counts as a slow client; a client
// that went away does not.
func TestSSEWriteFailures(t *testing.T) {
	t.Parallel()
	tel, err := newTelemetry(nil, nil)
	require.NoError(t, err)
	tel.sseWriteFailed(fmt.Errorf("flush: %w", os.ErrDeadlineExceeded))
	tel.sseWriteFailed(io.ErrClosedPipe)
	require.Equal(t, 1.0, testutil.ToFloat64(tel.sseSlow))
	// A failed write of a batch counts none of its events as sent.
	for range 3 {
		tel.startPush(context.Background(), stream.LiveEvent{}).end(io.ErrClosedPipe)
	}
	tel.startPush(context.Background(), stream.LiveEvent{}).end(nil)
	require.Equal(t, 1.0, testutil.ToFloat64(tel.sseSent))
}
