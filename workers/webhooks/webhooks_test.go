package webhooks_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/bazaarhq/bazaar/internal/backoff"
	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream"
	"github.com/bazaarhq/bazaar/stream/redistest"
	"github.com/bazaarhq/bazaar/workers"
	"github.com/bazaarhq/bazaar/workers/webhooks"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"))
}

// verify checks a delivery the way the Standard Webhooks specification
// tells a receiver to, written here from its text rather than with the
// sender's code: the signed content is "msg_id.timestamp.payload", the key
// is the base64-decoded part of the secret after "whsec_", the signature
// is the base64 of its HMAC-SHA256, and the header lists space-separated
// "v1,<signature>" entries of which one must match. The timestamp must be
// within five minutes.
func verify(secret string, h http.Header, body []byte, now time.Time) error {
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return errors.New("missing headers")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return err
	}
	if d := now.Sub(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return errors.New("timestamp too far from now")
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "." + string(body)))
	want := mac.Sum(nil)
	for _, s := range strings.Split(sigs, " ") {
		version, sig, ok := strings.Cut(s, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return errors.New("no signature matches")
}

// received is one request the receiver saw.
type received struct {
	header http.Header
	body   []byte
}

// id is the event id the request carried.
func (r received) id() string { return r.header.Get("webhook-id") }

// receiver is a real HTTP server on loopback. It answers with the statuses
// of answers in turn (the last one from then on) unless setStatus fixed
// one; a status of 0 hangs until the request gives up. hold, when set,
// runs before the answer (to hold requests or count them in flight).
type receiver struct {
	srv      *httptest.Server
	mu       sync.Mutex
	got      []received
	answers  []int
	fixed    int
	hold     func()
	inFlight atomic.Int32
	maxIn    atomic.Int32
}

func newReceiver(t *testing.T, answers ...int) *receiver {
	r := &receiver{answers: answers}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	n := r.inFlight.Add(1)
	defer r.inFlight.Add(-1)
	for m := r.maxIn.Load(); n > m && !r.maxIn.CompareAndSwap(m, n); m = r.maxIn.Load() {
	}
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.got = append(r.got, received{req.Header.Clone(), body})
	k := len(r.got)
	status := r.answers[min(k, len(r.answers))-1]
	if r.fixed != 0 {
		status = r.fixed
	}
	hold := r.hold
	r.mu.Unlock()
	if hold != nil {
		hold()
	}
	if status == 0 {
		<-req.Context().Done()
		return
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, "answer "+strconv.Itoa(k))
}

func (r *receiver) setStatus(s int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fixed = s
}

func (r *receiver) requests() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received{}, r.got...)
}

// ids are the event ids of the requests, in arrival order.
func (r *receiver) ids() []string {
	var out []string
	for _, q := range r.requests() {
		out = append(out, q.id())
	}
	return out
}

// bundle is one test's pipeline: its own database, its own Redis database
// for asynq and key prefix for the streams, the outbox relay, the
// "webhooks" consumer group, a real asynq server (workers.Workers, with
// its retry and deferral rules) running the delivery tasks, and a mail
// sink receiving the workers' mail.
type bundle struct {
	db     *sqlx.DB
	svc    *webhooks.Service
	w      *workers.Workers
	insp   *asynq.Inspector
	sink   *workers.MailSink
	seller store.Seller
	// skew moves the service's clock ahead of the real one.
	skew atomic.Int64
}

func setup(t *testing.T, mutate func(*webhooks.Config)) *bundle {
	t.Helper()
	ctx := context.Background()
	db, _ := storetest.NewDB(t)
	b := &bundle{db: db}
	log := slog.New(slog.NewJSONHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))

	b.sink = workers.NewMailSink(workers.MailSinkConfig{})
	require.NoError(t, b.sink.Start(ctx))
	t.Cleanup(func() { _ = b.sink.Stop(context.Background()) })
	host, port, _ := net.SplitHostPort(b.sink.Addr())
	p, _ := strconv.Atoi(port)
	mailer, err := workers.NewSMTPMailer(workers.SMTPConfig{Host: host, Port: p, TLS: workers.TLSNone, From: "bazaar@bazaar.test", Timeout: 2 * time.Second})
	require.NoError(t, err)

	rdb := redis.NewClient(redistest.DB(t))
	t.Cleanup(func() { _ = rdb.Close() })
	b.w, err = workers.New(workers.Config{
		DB: db, Redis: rdb, Logger: log, Mailer: mailer, Concurrency: 8, ShutdownTimeout: 2 * time.Second,
		TaskCheckInterval: 20 * time.Millisecond, DelayedTaskCheckInterval: 50 * time.Millisecond,
		Retry: workers.RetryPolicy{Base: 20 * time.Millisecond, Max: 100 * time.Millisecond},
	})
	require.NoError(t, err)
	b.insp = asynq.NewInspectorFromRedisClient(rdb)
	t.Cleanup(func() { _ = b.insp.Close() })

	cfg := webhooks.Config{
		DB: db, Enqueuer: b.w, Logger: log, AllowPrivate: true, Timeout: 2 * time.Second,
		Retry:    backoff.Policy{Base: 20 * time.Millisecond, Max: 100 * time.Millisecond},
		WaitTurn: 50 * time.Millisecond,
		// Receivers here fail on purpose many times in a row; only the
		// breaker tests want the host's breaker to open.
		Breaker: workers.BreakerConfig{Failures: 1 << 20},
		Now:     func() time.Time { return time.Now().Add(time.Duration(b.skew.Load())) },
	}
	if mutate != nil {
		mutate(&cfg)
	}
	b.svc, err = webhooks.New(cfg)
	require.NoError(t, err)
	b.svc.Register(b.w.Mux())
	require.NoError(t, b.w.Start(ctx))
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, b.w.Stop(sctx))
	})

	streams := redistest.Client(t)
	names := stream.Names{Prefix: redistest.Prefix(t)}
	groups, err := stream.NewGroups(stream.GroupsConfig{Redis: streams, DB: db, Names: names, Logger: log, Block: 100 * time.Millisecond})
	require.NoError(t, err)
	sub := b.svc.Subscription()
	sub.StartFrom = stream.StartBeginning
	require.NoError(t, groups.Add(sub))
	relay, err := stream.NewRelay(stream.RelayConfig{DB: db, Redis: streams, Names: names, Logger: log, PollInterval: 20 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, groups.Start(ctx))
	require.NoError(t, relay.Start(ctx))
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, relay.Stop(sctx))
		require.NoError(t, groups.Stop(sctx))
	})

	b.seller, err = store.CreateSeller(ctx, db, "Shop", "shop-"+uuid.NewString()[:8]+"@example.com")
	require.NoError(t, err)
	return b
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (b *bundle) endpoint(t *testing.T, url string, ordered bool, topics ...string) store.WebhookEndpoint {
	t.Helper()
	secret, err := webhooks.NewSecret()
	require.NoError(t, err)
	ep, err := store.CreateWebhookEndpoint(t.Context(), b.db, store.WebhookEndpoint{
		ID: uuid.New(), SellerID: b.seller.ID, URL: url, Topics: topics, Secret: secret, Ordered: ordered,
	})
	require.NoError(t, err)
	return ep
}

// publish writes events of the seller to the outbox in one transaction, as
// the API does; the relay and the group take them from there. They share
// one subject, so the group hands them over in this order.
func (b *bundle) publish(t *testing.T, types ...string) []uuid.UUID {
	t.Helper()
	var ids []uuid.UUID
	var evs []store.Event
	for _, typ := range types {
		ev, err := store.NewEvent(typ, "order/"+b.seller.ID.String()[:8], &b.seller.ID, 1, map[string]string{"order_id": "1"})
		require.NoError(t, err)
		evs = append(evs, ev)
		ids = append(ids, ev.ID)
	}
	require.NoError(t, store.WithTx(t.Context(), b.db, func(tx *sqlx.Tx) error {
		return store.InsertEvents(t.Context(), tx, evs...)
	}))
	return ids
}

func (b *bundle) deliveries(t *testing.T, ep store.WebhookEndpoint) []store.WebhookDelivery {
	t.Helper()
	rows, _, err := store.ListWebhookDeliveries(context.Background(), b.db, ep.ID, store.Page{Limit: 100})
	require.NoError(t, err)
	return rows
}

// delivery returns the delivery of event to ep; a zero one (no attempts,
// no status) while none is recorded yet.
func (b *bundle) delivery(t *testing.T, ep store.WebhookEndpoint, event uuid.UUID) store.WebhookDelivery {
	t.Helper()
	for _, d := range b.deliveries(t, ep) {
		if d.EventID == event {
			return d
		}
	}
	return store.WebhookDelivery{}
}

func (b *bundle) reload(t *testing.T, ep store.WebhookEndpoint) store.WebhookEndpoint {
	t.Helper()
	got, err := store.WebhookEndpointByID(context.Background(), b.db, ep.ID)
	require.NoError(t, err)
	return got
}

// eventually waits up to 20s for cond, failing with msg.
func eventually(t *testing.T, msg string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// idle waits until asynq holds no task that is still to run in the
// default queue: after it, nothing more will reach a receiver unless
// something new is enqueued.
func (b *bundle) idle(t *testing.T) {
	t.Helper()
	eventually(t, "the task queue to drain", func() bool {
		info, err := b.insp.GetQueueInfo(workers.QueueDefault)
		if err != nil {
			return errors.Is(err, asynq.ErrQueueNotFound)
		}
		return info.Pending+info.Active+info.Scheduled+info.Retry == 0
	})
}

func status(t *testing.T, b *bundle, ep store.WebhookEndpoint, event uuid.UUID, want string) func() bool {
	return func() bool { return b.delivery(t, ep, event).Status == want }
}

func TestDeliverySignedAndMatchedByTopic(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	rcv := newReceiver(t, 204)
	ep := b.endpoint(t, rcv.srv.URL, false, "order.#")
	otherRcv := newReceiver(t, 204)
	other := b.endpoint(t, otherRcv.srv.URL, false, "return.*")

	ids := b.publish(t, "order.created")
	eventually(t, "delivered", func() bool {
		ds := b.deliveries(t, ep)
		return len(ds) == 1 && ds[0].Status == store.DeliveryDelivered
	})

	got := rcv.requests()
	require.Len(t, got, 1)
	require.NoError(t, verify(ep.Secret, got[0].header, got[0].body, time.Now()))
	require.Error(t, verify(other.Secret, got[0].header, got[0].body, time.Now()), "another endpoint's secret")
	require.Equal(t, ids[0].String(), got[0].id())
	var sent stream.Envelope
	require.NoError(t, json.Unmarshal(got[0].body, &sent))
	require.Equal(t, ids[0].String(), sent.ID)
	require.Equal(t, "order.created", sent.Type)
	require.Equal(t, b.seller.ID.String(), sent.Seller)
	require.JSONEq(t, `{"order_id":"1"}`, string(sent.Data))

	d := b.deliveries(t, ep)[0]
	require.Equal(t, 1, d.Attempts)
	require.Equal(t, 204, d.ResponseStatus)
	require.Empty(t, b.deliveries(t, other))

	// The same event again (a redelivery by the group) makes no second
	// delivery, and nothing more is sent.
	require.NoError(t, b.svc.HandleEvent(t.Context(), sent))
	b.idle(t)
	require.Len(t, b.deliveries(t, ep), 1)
	require.Len(t, rcv.requests(), 1)
	require.Empty(t, otherRcv.requests())
}

func TestDeliveryRetriedAfterFailure(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	rcv := newReceiver(t, 500, 200)
	ep := b.endpoint(t, rcv.srv.URL, false, "#")
	ids := b.publish(t, "order.shipped")

	eventually(t, "delivered on the retry", status(t, b, ep, ids[0], store.DeliveryDelivered))
	d := b.delivery(t, ep, ids[0])
	require.Equal(t, 2, d.Attempts)
	require.Equal(t, 200, d.ResponseStatus)
	require.Equal(t, "answer 2", d.ResponseExcerpt)
	got := rcv.requests()
	require.Len(t, got, 2)
	require.Equal(t, got[0].id(), got[1].id(), "the id is stable across retries")
	for _, r := range got {
		require.NoError(t, verify(ep.Secret, r.header, r.body, time.Now()))
	}
	require.Nil(t, b.reload(t, ep).FailingSince, "a delivered attempt ends the failure streak")
}

func TestDeliveryGivesUpAfterMaxAge(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.skew.Store(int64(73 * time.Hour))
	rcv := newReceiver(t, 503)
	ep := b.endpoint(t, rcv.srv.URL, false, "#")
	ids := b.publish(t, "order.created")
	eventually(t, "given up", status(t, b, ep, ids[0], store.DeliveryFailed))
	b.idle(t)
	require.Equal(t, 1, b.delivery(t, ep, ids[0]).Attempts)
	require.Len(t, rcv.requests(), 1)
}

func TestDeliveryTimesOut(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *webhooks.Config) { c.Timeout = 300 * time.Millisecond })
	rcv := newReceiver(t, 0)
	ep := b.endpoint(t, rcv.srv.URL, false, "#")
	ids := b.publish(t, "order.created")
	// The client's header timeout or the request's deadline, whichever
	// fires first on a loaded machine: both say the receiver took too long.
	eventually(t, "a timed-out attempt in the log", func() bool {
		d := b.delivery(t, ep, ids[0])
		return d.Attempts >= 1 && (strings.Contains(d.LastError, "timeout awaiting response headers") ||
			strings.Contains(d.LastError, "deadline exceeded"))
	})
	d := b.delivery(t, ep, ids[0])
	require.Equal(t, store.DeliveryPending, d.Status, "retried")
	require.NotNil(t, b.reload(t, ep).FailingSince)
}

func TestGoneDisablesEndpointAndMailsSeller(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	rcv := newReceiver(t, 410)
	ep := b.endpoint(t, rcv.srv.URL, false, "#")
	witness := newReceiver(t, 200)
	wep := b.endpoint(t, witness.srv.URL, false, "#")
	ids := b.publish(t, "order.created")
	eventually(t, "failed with the 410 recorded", func() bool {
		d := b.delivery(t, ep, ids[0])
		return d.Status == store.DeliveryFailed && d.ResponseStatus == http.StatusGone
	})
	got := b.reload(t, ep)
	require.True(t, got.Disabled)
	require.Equal(t, "the endpoint answered 410 Gone", got.DisabledReason)
	require.NotNil(t, got.DisabledAt)
	eventually(t, "the seller mailed", func() bool { return b.sink.Count(b.seller.Email, "was disabled") == 1 })

	// A disabled endpoint receives nothing more: the witness endpoint
	// shows the second event went through the group.
	more := b.publish(t, "order.shipped")
	eventually(t, "the witness got the second event", status(t, b, wep, more[0], store.DeliveryDelivered))
	require.Len(t, b.deliveries(t, ep), 1)
	require.Len(t, rcv.requests(), 1)
}

func TestRotationSignsWithBothSecrets(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	rcv := newReceiver(t, 200)
	ep := b.endpoint(t, rcv.srv.URL, false, "#")
	fresh, err := webhooks.NewSecret()
	require.NoError(t, err)
	_, err = store.RotateWebhookSecret(t.Context(), b.db, b.seller.ID, ep.ID, fresh, time.Now().Add(time.Hour))
	require.NoError(t, err)
	ids := b.publish(t, "order.created")
	eventually(t, "delivered", status(t, b, ep, ids[0], store.DeliveryDelivered))
	r := rcv.requests()[0]
	require.Len(t, strings.Fields(r.header.Get("webhook-signature")), 2)
	require.NoError(t, verify(ep.Secret, r.header, r.body, time.Now()), "the old secret")
	require.NoError(t, verify(fresh, r.header, r.body, time.Now()), "the new secret")

	// After the window only the new secret signs.
	_, err = store.RotateWebhookSecret(t.Context(), b.db, b.seller.ID, ep.ID, fresh, time.Now().Add(-time.Second))
	require.NoError(t, err)
	more := b.publish(t, "order.shipped")
	eventually(t, "delivered", status(t, b, ep, more[0], store.DeliveryDelivered))
	r = rcv.requests()[1]
	require.Len(t, strings.Fields(r.header.Get("webhook-signature")), 1)
	require.NoError(t, verify(fresh, r.header, r.body, time.Now()))
	require.Error(t, verify(ep.Secret, r.header, r.body, time.Now()))
}

func TestRedeliver(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	rcv := newReceiver(t, 200)
	ep := b.endpoint(t, rcv.srv.URL, false, "#")
	ids := b.publish(t, "order.created")
	eventually(t, "delivered", status(t, b, ep, ids[0], store.DeliveryDelivered))
	d := b.delivery(t, ep, ids[0])
	again, err := b.svc.Redeliver(t.Context(), ep.ID, d.ID)
	require.NoError(t, err)
	require.Equal(t, 1, again.Generation)
	eventually(t, "sent again", func() bool { return len(rcv.requests()) == 2 })
	eventually(t, "delivered again", func() bool { return b.delivery(t, ep, ids[0]).Attempts == 2 })
	require.Equal(t, []string{ids[0].String(), ids[0].String()}, rcv.ids())
}

func TestRedeliverSince(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	rcv := newReceiver(t, 200)
	ep := b.endpoint(t, rcv.srv.URL, false, "#")
	ids := b.publish(t, "order.created", "order.confirmed", "order.shipped")
	for _, id := range ids {
		eventually(t, "delivered", status(t, b, ep, id, store.DeliveryDelivered))
	}
	// The first delivery was recorded two hours ago.
	_, err := b.db.Exec(`UPDATE webhook_deliveries SET created_at = now() - interval '2 hours' WHERE event_id = $1`, ids[0])
	require.NoError(t, err)

	n, err := b.svc.RedeliverSince(t.Context(), ep.ID, time.Now().Add(-time.Hour))
	require.NoError(t, err)
	require.Equal(t, 2, n)
	eventually(t, "both sent again", func() bool { return len(rcv.requests()) == 5 })
	b.idle(t)
	require.ElementsMatch(t, []string{ids[1].String(), ids[2].String()}, rcv.ids()[3:])
	require.Equal(t, 1, b.delivery(t, ep, ids[0]).Attempts, "older than since: not sent again")
	for _, id := range ids[1:] {
		d := b.delivery(t, ep, id)
		require.Equal(t, store.DeliveryDelivered, d.Status)
		require.Equal(t, 2, d.Attempts)
		require.Equal(t, 1, d.Generation)
	}
}

func TestOrderedEndpointOneAtATimeInOrder(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	// The ordered endpoint fails until told otherwise; the unordered one
	// holds each request until three are in flight at once, which it
	// reaches only if its deliveries run in parallel.
	ordered := newReceiver(t, 500)
	oep := b.endpoint(t, ordered.srv.URL, true, "#")
	parallel := newReceiver(t, 200)
	threeIn := make(chan struct{})
	var once sync.Once
	parallel.hold = func() {
		if parallel.inFlight.Load() >= 3 {
			once.Do(func() { close(threeIn) })
		}
		select {
		case <-threeIn:
		case <-time.After(15 * time.Second):
		}
	}
	pep := b.endpoint(t, parallel.srv.URL, false, "#")

	types := []string{"order.created", "order.confirmed", "order.paid", "order.shipped", "order.delivered"}
	ids := b.publish(t, types...)
	for _, id := range ids {
		eventually(t, "the unordered endpoint delivered", status(t, b, pep, id, store.DeliveryDelivered))
	}
	require.GreaterOrEqual(t, parallel.maxIn.Load(), int32(3), "unordered deliveries ran in parallel")

	// Meanwhile the ordered endpoint retried its first event and sent
	// nothing else: the later ones wait, without an attempt.
	eventually(t, "the first event retried", func() bool { return b.delivery(t, oep, ids[0]).Attempts >= 2 })
	for _, id := range ordered.ids() {
		require.Equal(t, ids[0].String(), id)
	}
	for _, id := range ids[1:] {
		require.Zero(t, b.delivery(t, oep, id).Attempts)
	}

	ordered.setStatus(200)
	for _, id := range ids {
		eventually(t, "the ordered endpoint delivered", status(t, b, oep, id, store.DeliveryDelivered))
	}
	require.Equal(t, int32(1), ordered.maxIn.Load(), "one at a time")
	var distinct []string
	for _, id := range ordered.ids() {
		if len(distinct) == 0 || distinct[len(distinct)-1] != id {
			distinct = append(distinct, id)
		}
	}
	want := make([]string, len(ids))
	for i, id := range ids {
		want[i] = id.String()
	}
	require.Equal(t, want, distinct, "in event order, each event's retries before the next event")
	for _, id := range ids[1:] {
		require.Equal(t, 1, b.delivery(t, oep, id).Attempts)
	}
}

func TestOrderedRedeliverSinceKeepsOrder(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	rcv := newReceiver(t, 200)
	ep := b.endpoint(t, rcv.srv.URL, true, "#")
	ids := b.publish(t, "order.created", "order.confirmed", "order.shipped", "order.delivered")
	for _, id := range ids {
		eventually(t, "delivered", status(t, b, ep, id, store.DeliveryDelivered))
	}
	n, err := b.svc.RedeliverSince(t.Context(), ep.ID, time.Now().Add(-time.Hour))
	require.NoError(t, err)
	require.Equal(t, 4, n)
	eventually(t, "all sent again", func() bool { return len(rcv.requests()) == 8 })
	b.idle(t)
	got := rcv.ids()
	for i, id := range ids {
		require.Equal(t, id.String(), got[i])
		require.Equal(t, id.String(), got[4+i], "again in order")
	}
	require.Equal(t, int32(1), rcv.maxIn.Load())
}

func TestDisabledAfterFailingTooLongAndSellerMailed(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	rcv := newReceiver(t, 500)
	ep := b.endpoint(t, rcv.srv.URL, false, "#")

	// A failure starts the streak; a delivery ends it.
	first := b.publish(t, "order.created")
	eventually(t, "a failed attempt", func() bool { return b.delivery(t, ep, first[0]).Attempts >= 1 })
	require.NotNil(t, b.reload(t, ep).FailingSince)
	rcv.setStatus(200)
	eventually(t, "delivered", status(t, b, ep, first[0], store.DeliveryDelivered))
	require.Nil(t, b.reload(t, ep).FailingSince)

	// A new streak, a day long: not yet.
	rcv.setStatus(500)
	second := b.publish(t, "order.confirmed")
	eventually(t, "a failed attempt", func() bool { return b.delivery(t, ep, second[0]).Attempts >= 1 })
	streak := b.reload(t, ep).FailingSince
	require.NotNil(t, streak)
	b.skew.Store(int64(24 * time.Hour))
	attempts := b.delivery(t, ep, second[0]).Attempts
	eventually(t, "retried a day later", func() bool { return b.delivery(t, ep, second[0]).Attempts > attempts+1 })
	require.False(t, b.reload(t, ep).Disabled)

	// Five days and a minute after the streak began: disabled, why
	// recorded, pending deliveries failed, the seller mailed once.
	b.skew.Store(int64(webhooks.DefaultDisableAfter + time.Minute))
	eventually(t, "disabled", func() bool { return b.reload(t, ep).Disabled })
	got := b.reload(t, ep)
	require.Contains(t, got.DisabledReason, "no delivery succeeded since "+streak.UTC().Format(time.RFC3339))
	require.Contains(t, got.DisabledReason, "5 days")
	require.Equal(t, store.DeliveryFailed, b.delivery(t, ep, second[0]).Status)
	eventually(t, "the seller mailed", func() bool { return b.sink.Count(b.seller.Email, "was disabled") == 1 })
	mail := b.sink.Mails()[0]
	require.Contains(t, mail.Subject, rcv.srv.URL)
	require.Contains(t, mail.Text, "no delivery succeeded since")
	require.Contains(t, mail.Text, "/webhooks/"+ep.ID.String()+"/redeliver")
	eventually(t, "the mail recorded", func() bool {
		n, err := store.CountSentEmails(t.Context(), b.db, "webhook_disabled")
		require.NoError(t, err)
		return n == 1
	})
	b.idle(t)
	require.Equal(t, 1, b.sink.Count(b.seller.Email, "was disabled"), "one mail per disabling")
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func TestHostBreakerDefersWithoutSpendingAttempts(t *testing.T) {
	t.Parallel()
	// Two failures in a row open the host's breaker, which stays open
	// longer than the test.
	b := setup(t, func(c *webhooks.Config) {
		c.Breaker = workers.BreakerConfig{Failures: 2, OpenFor: 10 * time.Minute}
	})
	addr := deadAddr(t)
	a := b.endpoint(t, "http://"+addr+"/a", false, "#")
	c := b.endpoint(t, "http://"+addr+"/c", false, "#")
	alive := newReceiver(t, 200)
	other := b.endpoint(t, alive.srv.URL, false, "#")
	dead := func() []store.WebhookDelivery { return append(b.deliveries(t, a), b.deliveries(t, c)...) }

	// The first event's deliveries fail (one of them may be retried
	// first) and open the breaker: both then wait for its probe, minutes
	// away.
	first := b.publish(t, "order.created")
	eventually(t, "the breaker open for both", func() bool {
		ds := dead()
		if len(ds) != 2 {
			return false
		}
		for _, d := range ds {
			if d.NextAttemptAt == nil || time.Until(*d.NextAttemptAt) < 5*time.Minute {
				return false
			}
		}
		return true
	})
	before := 0
	for _, d := range dead() {
		before += d.Attempts
	}
	require.GreaterOrEqual(t, before, 2, "two failures in a row opened it")

	// Every later delivery to that host, of either endpoint, waits
	// without an attempt and without spending its task's retries.
	later := b.publish(t, "order.confirmed", "order.shipped", "order.delivered")
	var waiting []store.WebhookDelivery
	eventually(t, "the later deliveries deferred", func() bool {
		waiting = waiting[:0]
		for _, d := range dead() {
			if d.EventID != first[0] && strings.Contains(d.LastError, "circuit open") {
				waiting = append(waiting, d)
			}
		}
		return len(waiting) == 6
	})
	after := 0
	for _, d := range dead() {
		require.Equal(t, store.DeliveryPending, d.Status)
		after += d.Attempts
	}
	require.Equal(t, before, after, "no attempt while the breaker is open")
	retry, err := b.insp.ListRetryTasks(workers.QueueDefault, asynq.PageSize(100))
	require.NoError(t, err)
	retried := map[string]int{}
	for _, task := range retry {
		retried[task.ID] = task.Retried
	}
	for _, d := range waiting {
		require.Zero(t, d.Attempts)
		require.NotNil(t, d.NextAttemptAt)
		require.WithinDuration(t, time.Now().Add(10*time.Minute), *d.NextAttemptAt, 2*time.Minute)
		n, ok := retried["webhook:"+d.EndpointID.String()+":"+d.EventID.String()]
		require.True(t, ok, "held by asynq for later")
		require.Zero(t, n, "its retry budget unspent")
	}

	// Another host is not held up.
	for _, id := range append(first, later...) {
		eventually(t, "the live host delivered", status(t, b, other, id, store.DeliveryDelivered))
	}
}

func TestHostBreakerRecovers(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *webhooks.Config) {
		c.Breaker = workers.BreakerConfig{Failures: 2, OpenFor: 300 * time.Millisecond}
	})
	addr := deadAddr(t)
	a := b.endpoint(t, "http://"+addr+"/a", false, "#")
	c := b.endpoint(t, "http://"+addr+"/c", false, "#")
	ids := b.publish(t, "order.created", "order.confirmed", "order.shipped")
	eventually(t, "the breaker open", func() bool {
		for _, d := range b.deliveries(t, a) {
			if strings.Contains(d.LastError, "circuit open") {
				return true
			}
		}
		for _, d := range b.deliveries(t, c) {
			if strings.Contains(d.LastError, "circuit open") {
				return true
			}
		}
		return false
	})

	// The host comes back on the same address: the breaker's probe goes
	// through and every delivery follows.
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	var got atomic.Int32
	srv := &http.Server{ReadHeaderTimeout: time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		got.Add(1)
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	for _, id := range ids {
		eventually(t, "delivered to a", status(t, b, a, id, store.DeliveryDelivered))
		eventually(t, "delivered to c", status(t, b, c, id, store.DeliveryDelivered))
	}
	require.Equal(t, int32(6), got.Load(), "each delivered once")
}

func TestUnsafeURLsRefused(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	for _, u := range []string{
		"http://127.0.0.1/hook",
		"https://127.0.0.1/hook",
		"https://10.0.0.1/hook",
		"https://192.168.1.1/hook",
		"https://169.254.169.254/latest/meta-data",
		"https://[::1]/hook",
		"https://0.0.0.0/hook",
		"https://localhost/hook",
		"https://user:pw@93.184.215.14/hook",
		"ftp://93.184.215.14/hook",
	} {
		require.ErrorIs(t, webhooks.CheckURL(ctx, u, false), webhooks.ErrUnsafeURL, u)
	}
	require.NoError(t, webhooks.CheckURL(ctx, "https://93.184.215.14/hook", false), "a public address")
	require.NoError(t, webhooks.CheckURL(ctx, "http://127.0.0.1:8080/hook", true), "allowed for development")
	require.ErrorIs(t, webhooks.CheckURL(ctx, "http://169.254.169.254/", true), webhooks.ErrUnsafeURL, "metadata, always")
}

func TestDialerRefusesPrivateAtDelivery(t *testing.T) {
	t.Parallel()
	// An endpoint whose address turned private after registration (stored
	// directly here) is refused by the dialer: nothing reaches the
	// receiver, and the delivery fails for good.
	b := setup(t, func(c *webhooks.Config) { c.AllowPrivate = false })
	rcv := newReceiver(t, 200)
	ep := b.endpoint(t, rcv.srv.URL, false, "#")
	ids := b.publish(t, "order.created")
	eventually(t, "failed", status(t, b, ep, ids[0], store.DeliveryFailed))
	d := b.delivery(t, ep, ids[0])
	require.Contains(t, d.LastError, webhooks.ErrUnsafeURL.Error())
	require.Equal(t, 1, d.Attempts)
	require.Empty(t, rcv.requests())
}

func TestRedirectsNotFollowed(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	target := newReceiver(t, 200)
	redirect := httptest.NewServer(http.RedirectHandler(target.srv.URL, http.StatusTemporaryRedirect))
	t.Cleanup(redirect.Close)
	ep := b.endpoint(t, redirect.URL, false, "#")
	ids := b.publish(t, "order.created")
	eventually(t, "an attempt", func() bool { return b.delivery(t, ep, ids[0]).Attempts >= 1 })
	require.Equal(t, http.StatusTemporaryRedirect, b.delivery(t, ep, ids[0]).ResponseStatus)
	require.Empty(t, target.requests())
}
