package webhooks_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream"
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

// receiver is a real HTTP server on loopback answering with the statuses
// of answers in turn (the last one from then on); a status of 0 hangs
// until the request gives up.
type receiver struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []received
}

func newReceiver(t *testing.T, answers ...int) *receiver {
	r := &receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got = append(r.got, received{req.Header.Clone(), body})
		n := len(r.got)
		r.mu.Unlock()
		status := answers[min(n, len(answers))-1]
		if status == 0 {
			<-req.Context().Done()
			return
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, "answer "+strconv.Itoa(n))
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) requests() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received{}, r.got...)
}

// taskRecorder keeps the tasks the service enqueues, so the test runs each
// attempt itself instead of waiting for asynq's backoff.
type taskRecorder struct {
	mu    sync.Mutex
	tasks map[string]*asynq.Task
	order []string
}

func (r *taskRecorder) Enqueue(_ context.Context, t *asynq.Task, id string, _ ...asynq.Option) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tasks == nil {
		r.tasks = map[string]*asynq.Task{}
	}
	if _, ok := r.tasks[id]; !ok {
		r.tasks[id] = t
		r.order = append(r.order, id)
	}
	return nil
}

func (r *taskRecorder) all() []*asynq.Task {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*asynq.Task, 0, len(r.order))
	for _, id := range r.order {
		out = append(out, r.tasks[id])
	}
	return out
}

type bundle struct {
	db     *sqlx.DB
	svc    *webhooks.Service
	tasks  *taskRecorder
	seller store.Seller
}

func setup(t *testing.T, mutate func(*webhooks.Config)) *bundle {
	t.Helper()
	db, _ := storetest.NewDB(t)
	rec := &taskRecorder{}
	cfg := webhooks.Config{DB: db, Enqueuer: rec, AllowPrivate: true, Timeout: 2 * time.Second}
	if mutate != nil {
		mutate(&cfg)
	}
	svc, err := webhooks.New(cfg)
	require.NoError(t, err)
	s, err := store.CreateSeller(t.Context(), db, "Shop", "shop-"+uuid.NewString()+"@example.com")
	require.NoError(t, err)
	return &bundle{db: db, svc: svc, tasks: rec, seller: s}
}

func (b *bundle) endpoint(t *testing.T, url string, topics ...string) store.WebhookEndpoint {
	t.Helper()
	secret, err := webhooks.NewSecret()
	require.NoError(t, err)
	ep, err := store.CreateWebhookEndpoint(t.Context(), b.db, store.WebhookEndpoint{
		ID: uuid.New(), SellerID: b.seller.ID, URL: url, Topics: topics, Secret: secret,
	})
	require.NoError(t, err)
	return ep
}

func (b *bundle) event(typ string) stream.Envelope {
	return stream.Envelope{
		ID: uuid.NewString(), Type: typ, Source: "/bazaar", SpecVersion: "1.0", Time: time.Now().UTC(),
		Subject: "order/1", Seller: b.seller.ID.String(), DataContentType: "application/json",
		Data: json.RawMessage(`{"order_id":"1"}`),
	}
}

// run runs one attempt of every task enqueued so far.
func (b *bundle) run(t *testing.T) []error {
	var errs []error
	for _, task := range b.tasks.all() {
		errs = append(errs, b.svc.ProcessTask(t.Context(), task))
	}
	return errs
}

func (b *bundle) deliveries(t *testing.T, ep store.WebhookEndpoint) []store.WebhookDelivery {
	rows, _, err := store.ListWebhookDeliveries(t.Context(), b.db, ep.ID, store.Page{Limit: 50})
	require.NoError(t, err)
	return rows
}

func TestDeliverySignedAndMatchedByTopic(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	rcv := newReceiver(t, 204)
	ep := b.endpoint(t, rcv.srv.URL, "order.#")
	other := b.endpoint(t, rcv.srv.URL, "return.*")

	env := b.event("order.created")
	require.NoError(t, b.svc.HandleEvent(t.Context(), env))
	require.NoError(t, b.svc.HandleEvent(t.Context(), env), "a redelivered event")
	require.NoError(t, b.svc.HandleEvent(t.Context(), stream.Envelope{ID: uuid.NewString(), Type: "order.created"}), "no seller")
	require.Len(t, b.tasks.all(), 1)
	require.Equal(t, []error{nil}, b.run(t))

	got := rcv.requests()
	require.Len(t, got, 1)
	require.NoError(t, verify(ep.Secret, got[0].header, got[0].body, time.Now()))
	require.Error(t, verify(other.Secret, got[0].header, got[0].body, time.Now()), "another endpoint's secret")
	require.Equal(t, env.ID, got[0].header.Get("webhook-id"))
	var sent stream.Envelope
	require.NoError(t, json.Unmarshal(got[0].body, &sent))
	require.Equal(t, env.ID, sent.ID)
	require.Equal(t, "order.created", sent.Type)
	require.JSONEq(t, `{"order_id":"1"}`, string(sent.Data))

	ds := b.deliveries(t, ep)
	require.Len(t, ds, 1)
	require.Equal(t, store.DeliveryDelivered, ds[0].Status)
	require.Equal(t, 1, ds[0].Attempts)
	require.Equal(t, 204, ds[0].ResponseStatus)
	require.Empty(t, b.deliveries(t, other))
}

func TestDeliveryRetriedAfterFailure(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	rcv := newReceiver(t, 500, 200)
	ep := b.endpoint(t, rcv.srv.URL, "#")
	require.NoError(t, b.svc.HandleEvent(t.Context(), b.event("order.shipped")))

	errs := b.run(t)
	var ra *workers.RetryAfterError
	require.ErrorAs(t, errs[0], &ra, "a failure asks for a retry")
	require.Positive(t, ra.After)
	require.False(t, errors.Is(errs[0], asynq.SkipRetry))
	d := b.deliveries(t, ep)[0]
	require.Equal(t, store.DeliveryPending, d.Status)
	require.Equal(t, 500, d.ResponseStatus)
	require.Equal(t, "answer 1", d.ResponseExcerpt)
	require.NotNil(t, d.NextAttemptAt)

	require.Equal(t, []error{nil}, b.run(t))
	d = b.deliveries(t, ep)[0]
	require.Equal(t, store.DeliveryDelivered, d.Status)
	require.Equal(t, 2, d.Attempts)
	got := rcv.requests()
	require.Len(t, got, 2)
	require.Equal(t, got[0].header.Get("webhook-id"), got[1].header.Get("webhook-id"), "the id is stable across retries")
	for _, r := range got {
		require.NoError(t, verify(ep.Secret, r.header, r.body, time.Now()))
	}
}

func TestDeliveryGivesUpAfterMaxAge(t *testing.T) {
	t.Parallel()
	later := time.Now().Add(73 * time.Hour)
	b := setup(t, func(c *webhooks.Config) { c.Now = func() time.Time { return later } })
	rcv := newReceiver(t, 503)
	ep := b.endpoint(t, rcv.srv.URL, "#")
	require.NoError(t, b.svc.HandleEvent(t.Context(), b.event("order.created")))
	errs := b.run(t)
	require.ErrorIs(t, errs[0], asynq.SkipRetry)
	require.Equal(t, store.DeliveryFailed, b.deliveries(t, ep)[0].Status)
}

func TestDeliveryTimesOut(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *webhooks.Config) { c.Timeout = 300 * time.Millisecond })
	rcv := newReceiver(t, 0)
	ep := b.endpoint(t, rcv.srv.URL, "#")
	require.NoError(t, b.svc.HandleEvent(t.Context(), b.event("order.created")))
	errs := b.run(t)
	var ra *workers.RetryAfterError
	require.ErrorAs(t, errs[0], &ra)
	d := b.deliveries(t, ep)[0]
	require.Equal(t, store.DeliveryPending, d.Status)
	// The client's header timeout or the request's deadline, whichever
	// fires first on a loaded machine: both say the receiver took too long.
	require.Regexp(t, `timeout awaiting response headers|deadline exceeded`, d.LastError)
}

func TestGoneDisablesEndpoint(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	rcv := newReceiver(t, 410)
	ep := b.endpoint(t, rcv.srv.URL, "#")
	require.NoError(t, b.svc.HandleEvent(t.Context(), b.event("order.created")))
	errs := b.run(t)
	require.ErrorIs(t, errs[0], asynq.SkipRetry)
	got, err := store.GetWebhookEndpoint(t.Context(), b.db, b.seller.ID, ep.ID)
	require.NoError(t, err)
	require.True(t, got.Disabled)
	require.Equal(t, store.DeliveryFailed, b.deliveries(t, ep)[0].Status)

	// A disabled endpoint receives nothing more.
	require.NoError(t, b.svc.HandleEvent(t.Context(), b.event("order.shipped")))
	require.Len(t, b.tasks.all(), 1)
}

func TestRotationSignsWithBothSecrets(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	rcv := newReceiver(t, 200)
	ep := b.endpoint(t, rcv.srv.URL, "#")
	fresh, err := webhooks.NewSecret()
	require.NoError(t, err)
	_, err = store.RotateWebhookSecret(t.Context(), b.db, b.seller.ID, ep.ID, fresh, time.Now().Add(time.Hour))
	require.NoError(t, err)
	require.NoError(t, b.svc.HandleEvent(t.Context(), b.event("order.created")))
	require.Equal(t, []error{nil}, b.run(t))
	r := rcv.requests()[0]
	require.Len(t, strings.Fields(r.header.Get("webhook-signature")), 2)
	require.NoError(t, verify(ep.Secret, r.header, r.body, time.Now()), "the old secret")
	require.NoError(t, verify(fresh, r.header, r.body, time.Now()), "the new secret")

	// After the window only the new secret signs.
	_, err = store.RotateWebhookSecret(t.Context(), b.db, b.seller.ID, ep.ID, fresh, time.Now().Add(-time.Second))
	require.NoError(t, err)
	ep2, err := store.GetWebhookEndpoint(t.Context(), b.db, b.seller.ID, ep.ID)
	require.NoError(t, err)
	require.Equal(t, []string{fresh}, ep2.Secrets(time.Now()))
}

func TestRedeliver(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	rcv := newReceiver(t, 200)
	ep := b.endpoint(t, rcv.srv.URL, "#")
	require.NoError(t, b.svc.HandleEvent(t.Context(), b.event("order.created")))
	require.Equal(t, []error{nil}, b.run(t))
	d := b.deliveries(t, ep)[0]
	_, err := b.svc.Redeliver(t.Context(), ep.ID, d.ID)
	require.NoError(t, err)
	tasks := b.tasks.all()
	require.Len(t, tasks, 2)
	require.NoError(t, b.svc.ProcessTask(t.Context(), tasks[1]))
	require.Len(t, rcv.requests(), 2)
	require.Equal(t, 2, b.deliveries(t, ep)[0].Attempts)
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
	ep := b.endpoint(t, rcv.srv.URL, "#")
	require.NoError(t, b.svc.HandleEvent(t.Context(), b.event("order.created")))
	errs := b.run(t)
	require.ErrorIs(t, errs[0], webhooks.ErrUnsafeURL)
	require.ErrorIs(t, errs[0], asynq.SkipRetry)
	require.Empty(t, rcv.requests())
	require.Equal(t, store.DeliveryFailed, b.deliveries(t, ep)[0].Status)
}

func TestRedirectsNotFollowed(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	target := newReceiver(t, 200)
	redirect := httptest.NewServer(http.RedirectHandler(target.srv.URL, http.StatusTemporaryRedirect))
	t.Cleanup(redirect.Close)
	ep := b.endpoint(t, redirect.URL, "#")
	require.NoError(t, b.svc.HandleEvent(t.Context(), b.event("order.created")))
	errs := b.run(t)
	require.Error(t, errs[0])
	require.Empty(t, target.requests())
	require.Equal(t, http.StatusTemporaryRedirect, b.deliveries(t, ep)[0].ResponseStatus)
}
