package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream"
	"github.com/bazaarhq/bazaar/stream/redistest"
)

// twoProcesses is two API servers on one PostgreSQL and one Redis, each
// with its own hub and Redis client, as two serve processes are.
type twoProcesses struct {
	a, b *sseBundle
}

func twoProcessSetup(t *testing.T, limits Limits) twoProcesses {
	t.Helper()
	limits.CallTimeout = 10 * time.Second // see limitedSetup
	db, _ := storetest.NewDB(t)
	shared := redistest.Client(t)
	prefix := limitPrefix(t, shared)
	names := stream.Names{Prefix: prefix}
	var out [2]*sseBundle
	for i := range out {
		out[i] = apiProcess(t, db, names, prefix, limits)
	}
	a := out[0]
	a.front = a.key(a.admin, "/v1/storefront-keys")
	a.sellerA = a.seller("Seller A")
	a.keyA = a.key(a.admin, "/v1/sellers/"+a.sellerA.String()+"/keys")
	a.printerA = a.newPrinter(a.admin, a.sellerA)
	b := out[1]
	b.front, b.sellerA, b.keyA, b.printerA = a.front, a.sellerA, a.keyA, a.printerA
	return twoProcesses{a: a, b: b}
}

// apiProcess is one API process: its own Redis client, hub, revocation
// listener and HTTP server.
func apiProcess(t *testing.T, db *sqlx.DB, names stream.Names, prefix string, limits Limits) *sseBundle {
	t.Helper()
	opt, err := redis.ParseURL(redistest.URL())
	require.NoError(t, err)
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	hub := sseHub(t, db, names)
	srv, err := New(Config{
		DB: db, AdminToken: testAdminToken, MaxBodyBytes: 64 << 10, Hub: hub,
		// A long heartbeat: only a revocation or a cap ends a stream here.
		SSE:   SSEConfig{Heartbeat: time.Minute, Retry: 500 * time.Millisecond},
		Redis: rdb, RedisPrefix: prefix, Limits: limits,
	})
	require.NoError(t, err)
	require.NoError(t, srv.Start(context.Background()))
	t.Cleanup(func() { require.NoError(t, srv.Stop(context.Background())) })
	b := &sseBundle{testBundle: &testBundle{t: t, srv: srv, db: db, admin: testAdminToken, observed: &observer{}}, rdb: rdb, names: names, hub: hub}
	b.http = httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		_ = hub.Stop(context.Background())
		b.http.Close()
	})
	return b
}

// TestStreamCapsHoldAcrossProcesses: the live stream caps count the
// streams of every API process (Redis leases): past the cap 429, counted
// in a metric, and a closed stream frees its slot.
func TestStreamCapsHoldAcrossProcesses(t *testing.T) {
	t.Parallel()
	p := twoProcessSetup(t, Limits{StreamsPerIP: 2, StreamsPerCredential: 1})

	first := p.a.mustStream("/v1/events", "")
	require.Equal(t, "ready", first.next(t).event)
	second := p.b.mustStream("/v1/events", "")
	require.Equal(t, "ready", second.next(t).event)
	_, res := p.a.open("/v1/events", "") //nolint:bodyclose // open replaced and closed it
	require.Equal(t, http.StatusTooManyRequests, res.StatusCode)
	require.NotEmpty(t, res.Header.Get("Retry-After"))
	_, res = p.b.open("/v1/events", "") //nolint:bodyclose // as above
	require.Equal(t, http.StatusTooManyRequests, res.StatusCode)
	require.Equal(t, 1.0, testutil.ToFloat64(p.b.srv.tel.sseRefused.WithLabelValues("ip")))

	// Closing a stream gives its slot back at once.
	second.close()
	require.Eventually(t, func() bool {
		c, res := p.b.open("/v1/events", "") //nolint:bodyclose // sseConn.close closes it
		if c == nil {
			return false
		}
		require.Equal(t, http.StatusOK, res.StatusCode)
		return true
	}, 5*time.Second, 20*time.Millisecond)

	// A credential's cap is its own, whatever the address.
	printer := p.a.mustStream("/v1/sellers/"+p.a.sellerA.String()+"/events", p.a.printerA.secret)
	require.Equal(t, "ready", printer.next(t).event)
	_, res = p.b.open("/v1/sellers/"+p.a.sellerA.String()+"/events", p.a.printerA.secret) //nolint:bodyclose // as above
	require.Equal(t, http.StatusTooManyRequests, res.StatusCode)
	require.Equal(t, 1.0, testutil.ToFloat64(p.b.srv.tel.sseRefused.WithLabelValues("credential")))
	p.b.mustStream("/v1/sellers/"+p.a.sellerA.String()+"/events", p.a.keyA).close()
}

// TestRevokingAKeyEndsItsStreamsOnEveryProcess: a printer's stream on
// process B ends when its token is revoked through process A, and the
// reconnect gets 401.
func TestRevokingAKeyEndsItsStreamsOnEveryProcess(t *testing.T) {
	t.Parallel()
	p := twoProcessSetup(t, Limits{})
	path := "/v1/sellers/" + p.a.sellerA.String() + "/events?topics=order.created"
	onB := p.b.mustStream(path, p.a.printerA.secret)
	require.Equal(t, "ready", onB.next(t).event)
	onA := p.a.mustStream(path, p.a.printerA.secret)
	require.Equal(t, "ready", onA.next(t).event)
	seller := p.b.mustStream(path, p.a.keyA)
	require.Equal(t, "ready", seller.next(t).event)

	start := time.Now()
	p.a.do(http.MethodDelete, "/v1/sellers/"+p.a.sellerA.String()+"/keys/"+p.a.printerA.id, p.a.keyA, nil).status(http.StatusNoContent)
	for _, c := range []*sseConn{onB, onA} {
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
			t.Fatal("the revoked token's stream is still open")
		}
	}
	t.Logf("streams ended %v after the revocation was sent", time.Since(start))
	require.Equal(t, 1.0, testutil.ToFloat64(p.b.srv.tel.sseRevoked))

	_, res := p.b.open(path, p.a.printerA.secret) //nolint:bodyclose // open replaced and closed it
	require.Equal(t, http.StatusUnauthorized, res.StatusCode)
	// The seller's own stream goes on.
	select {
	case <-seller.done:
		t.Fatal("another key's stream ended")
	default:
	}
}
