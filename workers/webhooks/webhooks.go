package webhooks

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"

	"github.com/bazaarhq/bazaar/internal/backoff"
	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/stream"
	"github.com/bazaarhq/bazaar/workers"
)

// Group is the consumer group that turns events into deliveries.
const Group = "webhooks"

// TypeDeliver is the task type of one delivery of one event to one
// endpoint.
const TypeDeliver = "webhook:deliver"

const (
	// maxBody is how much of an answer is read; the rest is dropped.
	maxBody = 64 << 10
	// maxExcerpt is how much of an answer the delivery log keeps.
	maxExcerpt = 1 << 10
	// maxRetry is asynq's budget; MaxAge ends the retries first.
	maxRetry = 100
)

// Enqueuer enqueues a task under a TaskID, treating a TaskID already taken
// as done (workers.Workers is one).
type Enqueuer interface {
	Enqueue(ctx context.Context, t *asynq.Task, taskID string, opts ...asynq.Option) error
}

// Config configures a Service. Zero fields take the defaults noted.
type Config struct {
	// DB is the PostgreSQL pool (required).
	DB *sqlx.DB
	// Enqueuer enqueues delivery tasks and the mail telling a seller an
	// endpoint was disabled (required).
	Enqueuer Enqueuer
	Logger   *slog.Logger
	// AllowPrivate allows http:// URLs and loopback and private addresses,
	// for development and tests only (BAZAAR_WEBHOOK_ALLOW_PRIVATE).
	AllowPrivate bool
	// Timeout bounds one attempt, connection to last byte (default 10s).
	Timeout time.Duration
	// MaxAge is how long after the first attempt a delivery is retried
	// (default 72h).
	MaxAge time.Duration
	// DisableAfter is how long an endpoint may fail without a delivered
	// attempt before it is disabled and its seller mailed (default 120h,
	// BAZAAR_WEBHOOK_DISABLE_AFTER).
	DisableAfter time.Duration
	// Retry is the backoff between attempts (default ceilings from 30s
	// doubling to 6h, full jitter).
	Retry backoff.Policy
	// Breaker tunes the circuit breaker kept per receiver host (default 5
	// failures in a row open it for 30s).
	Breaker workers.BreakerConfig
	// WaitTurn is how long a task of an ordered endpoint's delivery that
	// is not the next in line waits before it looks again (default 30s).
	// Only tasks left over from a change of the endpoint (made ordered, a
	// redelivery of older events) wait so: in the normal course only the
	// next delivery has a task.
	WaitTurn time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Service delivers seller events to webhook endpoints.
type Service struct {
	cfg    Config
	log    *slog.Logger
	client *http.Client

	mu       sync.Mutex
	breakers map[string]*workers.Breaker
}

// New validates cfg and returns the service.
func New(cfg Config) (*Service, error) {
	if cfg.DB == nil || cfg.Enqueuer == nil {
		return nil, errors.New("webhooks: DB and Enqueuer are required")
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	cfg.Timeout = cmp.Or(cfg.Timeout, 10*time.Second)
	cfg.MaxAge = cmp.Or(cfg.MaxAge, 72*time.Hour)
	cfg.DisableAfter = cmp.Or(cfg.DisableAfter, DefaultDisableAfter)
	cfg.WaitTurn = cmp.Or(cfg.WaitTurn, 30*time.Second)
	if cfg.Retry.Base == 0 {
		cfg.Retry = backoff.Policy{Base: 30 * time.Second, Max: 6 * time.Hour}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Timeout < 0 || cfg.MaxAge < 0 || cfg.DisableAfter < 0 || cfg.WaitTurn < 0 {
		return nil, errors.New("webhooks: durations must not be negative")
	}
	return &Service{
		cfg: cfg, log: cfg.Logger, client: newClient(cfg.Timeout, cfg.AllowPrivate),
		breakers: map[string]*workers.Breaker{},
	}, nil
}

// DefaultDisableAfter is how long an endpoint fails before it is disabled
// unless Config.DisableAfter says otherwise.
const DefaultDisableAfter = 5 * 24 * time.Hour

// Register puts the delivery task's handler on mux.
func (s *Service) Register(mux *asynq.ServeMux) {
	mux.HandleFunc(TypeDeliver, s.ProcessTask)
}

// Subscription is the consumer group "webhooks": every event ("#"), each
// matched against its seller's endpoints.
func (s *Service) Subscription() stream.Subscription {
	return stream.Subscription{
		Group:    Group,
		Patterns: []string{"#"},
		Handler: func(ctx context.Context, msg stream.Message) error {
			return s.HandleEvent(ctx, msg.Envelope)
		},
		Concurrency:      4,
		OrderedBySubject: true,
		MaxDeliveries:    10,
	}
}

// deliverPayload is the payload of a TypeDeliver task: one generation of
// one delivery.
type deliverPayload struct {
	EndpointID uuid.UUID `json:"endpoint_id"`
	DeliveryID uuid.UUID `json:"delivery_id"`
	Generation int       `json:"generation,omitempty"`
}

// HandleEvent records a delivery of env for each enabled endpoint of its
// seller whose topics match the event type, and enqueues its task (for an
// ordered endpoint, the task of its next delivery, which may be an earlier
// one). Calling it again for the same event makes no second delivery.
func (s *Service) HandleEvent(ctx context.Context, env stream.Envelope) error {
	sellerID, err := uuid.Parse(env.Seller)
	if err != nil {
		return nil // not a seller's event
	}
	eventID, err := uuid.Parse(env.ID)
	if err != nil {
		return nil
	}
	eps, err := store.ActiveWebhookEndpoints(ctx, s.cfg.DB, sellerID)
	if err != nil {
		return fmt.Errorf("webhooks: %w", err)
	}
	var body []byte
	for _, ep := range eps {
		if !matches(ep.Topics, env.Type) {
			continue
		}
		if body == nil {
			if body, err = json.Marshal(env); err != nil {
				return fmt.Errorf("webhooks: encode event: %w", err)
			}
		}
		d, err := store.EnsureWebhookDelivery(ctx, s.cfg.DB, store.WebhookDelivery{
			ID: uuid.New(), EndpointID: ep.ID, EventID: eventID, EventType: env.Type, Payload: body,
		})
		if err != nil {
			return fmt.Errorf("webhooks: %w", err)
		}
		if ep.Ordered {
			err = s.advance(ctx, ep.ID)
		} else {
			err = s.enqueue(ctx, d.Ref())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func matches(patterns []string, topic string) bool {
	for _, p := range patterns {
		if stream.MatchTopic(p, topic) {
			return true
		}
	}
	return false
}

// taskID is the TaskID of one generation of a delivery: every enqueuer of
// it (the event's handler, the delivery before it on an ordered endpoint)
// names the same task, so it runs once.
func taskID(r store.WebhookDeliveryRef) string {
	id := "webhook:" + r.EndpointID.String() + ":" + r.EventID.String()
	if r.Generation > 0 {
		id += ":" + strconv.Itoa(r.Generation)
	}
	return id
}

func (s *Service) enqueue(ctx context.Context, r store.WebhookDeliveryRef) error {
	p, err := json.Marshal(deliverPayload{EndpointID: r.EndpointID, DeliveryID: r.ID, Generation: r.Generation})
	if err != nil {
		return fmt.Errorf("webhooks: %w", err)
	}
	err = s.cfg.Enqueuer.Enqueue(ctx, asynq.NewTask(TypeDeliver, p), taskID(r),
		asynq.Queue(workers.QueueDefault), asynq.MaxRetry(maxRetry), asynq.Timeout(s.cfg.Timeout+30*time.Second))
	if err != nil {
		return fmt.Errorf("webhooks: %w", err)
	}
	return nil
}

// advance enqueues the task of the next delivery of an ordered endpoint,
// if it has one pending. Its TaskID makes a second call, or a call while
// that task waits for a retry, a no-op.
func (s *Service) advance(ctx context.Context, endpointID uuid.UUID) error {
	head, err := store.WebhookDeliveryHead(ctx, s.cfg.DB, endpointID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("webhooks: %w", err)
	}
	return s.enqueue(ctx, head)
}

// Redeliver sends the delivery id of endpoint again, in a new generation
// with a new retry window (for an ordered endpoint, in its turn).
func (s *Service) Redeliver(ctx context.Context, endpointID, id uuid.UUID) (store.WebhookDelivery, error) {
	d, err := store.ResetWebhookDelivery(ctx, s.cfg.DB, endpointID, id)
	if err != nil {
		return store.WebhookDelivery{}, err
	}
	ep, err := store.WebhookEndpointByID(ctx, s.cfg.DB, endpointID)
	if err != nil {
		return store.WebhookDelivery{}, fmt.Errorf("webhooks: %w", err)
	}
	if ep.Ordered {
		return d, s.advance(ctx, endpointID)
	}
	return d, s.enqueue(ctx, d.Ref())
}

// RedeliverSince sends again every delivery of endpoint recorded at or
// after since, each in a new generation with a new retry window, and
// returns how many. An ordered endpoint gets them one at a time in their
// original order; a call that fails part way may be repeated.
func (s *Service) RedeliverSince(ctx context.Context, endpointID uuid.UUID, since time.Time) (int, error) {
	ep, err := store.WebhookEndpointByID(ctx, s.cfg.DB, endpointID)
	if err != nil {
		return 0, fmt.Errorf("webhooks: %w", err)
	}
	refs, err := store.ResetWebhookDeliveriesSince(ctx, s.cfg.DB, endpointID, since)
	if err != nil {
		return 0, err
	}
	if ep.Ordered {
		return len(refs), s.advance(ctx, endpointID)
	}
	for _, r := range refs {
		if err := s.enqueue(ctx, r); err != nil {
			return 0, err
		}
	}
	return len(refs), nil
}

// Resume enqueues a task for every pending delivery of endpoint, for an
// endpoint that stopped being ordered: its deliveries that waited for
// their turn have no task yet. Those that have one are not queued twice.
func (s *Service) Resume(ctx context.Context, endpointID uuid.UUID) error {
	refs, err := store.PendingWebhookDeliveries(ctx, s.cfg.DB, endpointID)
	if err != nil {
		return err
	}
	for _, r := range refs {
		if err := s.enqueue(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

// errNotNext is the wait of an ordered endpoint's delivery for the one
// before it.
var errNotNext = errors.New("an earlier delivery of this ordered endpoint is not finished")

// ProcessTask is the TypeDeliver handler: one attempt of one delivery.
func (s *Service) ProcessTask(ctx context.Context, t *asynq.Task) error {
	var p deliverPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("webhooks: payload: %w: %w", err, asynq.SkipRetry)
	}
	d, err := store.GetWebhookDelivery(ctx, s.cfg.DB, p.EndpointID, p.DeliveryID)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("webhooks: %w: %w", err, asynq.SkipRetry) // endpoint deleted
	}
	if err != nil {
		return fmt.Errorf("webhooks: %w", err)
	}
	if d.Status != store.DeliveryPending || d.Generation != p.Generation {
		return nil // done, or taken over by a redelivery
	}
	ep, err := store.WebhookEndpointByID(ctx, s.cfg.DB, p.EndpointID)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("webhooks: %w: %w", err, asynq.SkipRetry)
	}
	if err != nil {
		return fmt.Errorf("webhooks: %w", err)
	}
	log := s.log.With("endpoint_id", ep.ID, "delivery_id", d.ID, "event_id", d.EventID, "attempt", d.Attempts+1)
	if ep.Disabled {
		_, err := store.FailPendingWebhookDeliveries(ctx, s.cfg.DB, ep.ID, "endpoint disabled")
		return errors.Join(err, fmt.Errorf("webhooks: endpoint %s disabled: %w", ep.ID, asynq.SkipRetry))
	}
	if ep.Ordered {
		head, err := store.WebhookDeliveryHead(ctx, s.cfg.DB, ep.ID)
		if err != nil {
			return fmt.Errorf("webhooks: %w", err)
		}
		if head.ID != d.ID {
			// Not counted as an attempt: the delivery before it sends
			// this one's task when it is done; this task looks again.
			return &workers.DeferredError{Dependency: "delivery " + head.ID.String(), RetryAfter: s.cfg.WaitTurn, Err: errNotNext}
		}
	}
	var res sendResult
	called := false
	berr := s.breaker(ep.URL).Do(func() error {
		called = true
		res = s.send(ctx, ep, d)
		return hostFailure(ctx, res)
	})
	if !called {
		return s.hostDown(ctx, log, ep, d, berr)
	}
	var tripped *workers.DeferredError
	errors.As(berr, &tripped)
	now := s.cfg.Now()
	res.attempt.At = now
	switch {
	case res.err == nil && res.status >= 200 && res.status < 300:
		res.attempt.Status = store.DeliveryDelivered
		return errors.Join(s.record(ctx, d, res.attempt), s.next(ctx, ep))
	case res.err == nil && res.status == http.StatusGone:
		res.attempt.Status = store.DeliveryFailed
		log.Info("webhook endpoint answered 410 Gone: disabled")
		// Disabled first, so a delivery seen failed has its endpoint
		// disabled already.
		err := errors.Join(s.disable(ctx, log, ep, "the endpoint answered 410 Gone"), s.record(ctx, d, res.attempt))
		return errors.Join(err, fmt.Errorf("webhooks: endpoint %s gone: %w", ep.ID, asynq.SkipRetry))
	}
	cause := res.err
	if cause == nil {
		cause = fmt.Errorf("endpoint answered %d", res.status)
	}
	res.attempt.ReceiverFailed = true
	delay := s.cfg.Retry.Delay(d.Attempts)
	if tripped != nil {
		// The host's breaker opened on this failure: no sooner than its
		// probe.
		delay = max(delay, tripped.RetryAfter)
	}
	if errors.Is(res.err, ErrUnsafeURL) || now.Add(delay).Sub(d.RetryFrom) > s.cfg.MaxAge {
		res.attempt.Status = store.DeliveryFailed
		log.Warn("webhook delivery failed for good", "error", cause)
		since, err := store.RecordWebhookAttempt(ctx, s.cfg.DB, d.ID, res.attempt)
		err = errors.Join(err, s.disableIfFailing(ctx, log, ep, since, now))
		return errors.Join(err, s.next(ctx, ep), fmt.Errorf("webhooks: %w: %w", cause, asynq.SkipRetry))
	}
	next := now.Add(delay)
	res.attempt.Status = store.DeliveryPending
	res.attempt.NextAttemptAt = &next
	since, err := store.RecordWebhookAttempt(ctx, s.cfg.DB, d.ID, res.attempt)
	if err != nil {
		return fmt.Errorf("webhooks: %w", err)
	}
	if disabled, err := s.failingTooLong(ctx, log, ep, since, now); disabled || err != nil {
		return errors.Join(err, fmt.Errorf("webhooks: endpoint %s disabled: %w", ep.ID, asynq.SkipRetry))
	}
	return &workers.RetryAfterError{After: delay, Err: fmt.Errorf("webhooks: deliver %s: %w", d.ID, cause)}
}

// hostDown handles a delivery whose host's breaker is open: no request,
// no attempt counted. The delivery waits for the breaker's probe (asynq
// does not count a DeferredError against the task's retries either), but
// its retry window keeps running: when the wait would end past MaxAge it
// is given up, and an endpoint failing for DisableAfter is disabled
// whether or not its own deliveries were the ones that probed.
func (s *Service) hostDown(ctx context.Context, log *slog.Logger, ep store.WebhookEndpoint, d store.WebhookDelivery, berr error) error {
	var de *workers.DeferredError
	if !errors.As(berr, &de) {
		return fmt.Errorf("webhooks: %w", berr)
	}
	now := s.cfg.Now()
	if disabled, err := s.failingTooLong(ctx, log, ep, ep.FailingSince, now); disabled || err != nil {
		return errors.Join(err, fmt.Errorf("webhooks: endpoint %s disabled: %w", ep.ID, asynq.SkipRetry))
	}
	if now.Add(de.RetryAfter).Sub(d.RetryFrom) > s.cfg.MaxAge {
		log.Warn("webhook delivery failed for good: its host stayed down", "host", hostOf(ep.URL))
		err := store.FailWebhookDelivery(ctx, s.cfg.DB, d.ID, "not sent: host "+hostOf(ep.URL)+" kept failing (circuit open) until the retry window ended")
		return errors.Join(err, s.next(ctx, ep), fmt.Errorf("webhooks: %w: %w", berr, asynq.SkipRetry))
	}
	if err := store.DeferWebhookDelivery(ctx, s.cfg.DB, d.ID, now.Add(de.RetryAfter),
		"not sent: host "+hostOf(ep.URL)+" is failing (circuit open); waiting for it to recover"); err != nil {
		return fmt.Errorf("webhooks: %w", err)
	}
	return de
}

// next moves an ordered endpoint on to its next delivery.
func (s *Service) next(ctx context.Context, ep store.WebhookEndpoint) error {
	if !ep.Ordered {
		return nil
	}
	return s.advance(ctx, ep.ID)
}

// disableIfFailing disables ep when its failure streak (since) has lasted
// DisableAfter at now.
func (s *Service) disableIfFailing(ctx context.Context, log *slog.Logger, ep store.WebhookEndpoint, since *time.Time, now time.Time) error {
	_, err := s.failingTooLong(ctx, log, ep, since, now)
	return err
}

// failingTooLong disables ep, and reports so, when it has failed without
// a delivered attempt since since for DisableAfter at now.
func (s *Service) failingTooLong(ctx context.Context, log *slog.Logger, ep store.WebhookEndpoint, since *time.Time, now time.Time) (bool, error) {
	if since == nil || now.Sub(*since) < s.cfg.DisableAfter {
		return false, nil
	}
	reason := fmt.Sprintf("no delivery succeeded since %s (%s): disabled after %s of failures",
		since.UTC().Format(time.RFC3339), roundDays(now.Sub(*since)), roundDays(s.cfg.DisableAfter))
	log.Warn("webhook endpoint failing too long: disabled", "failing_since", since.UTC())
	return true, s.disable(ctx, log, ep, reason)
}

// roundDays writes d in days when it is at least one, else as a duration.
func roundDays(d time.Duration) string {
	if d >= 24*time.Hour {
		days := int(d / (24 * time.Hour))
		if days == 1 {
			return "1 day"
		}
		return strconv.Itoa(days) + " days"
	}
	return d.Round(time.Second).String()
}

// disable disables ep (failing its pending deliveries) and, if this call
// did it, queues the mail that tells the seller.
func (s *Service) disable(ctx context.Context, log *slog.Logger, ep store.WebhookEndpoint, reason string) error {
	at, err := store.DisableWebhookEndpoint(ctx, s.cfg.DB, ep.ID, reason)
	if err != nil || at == nil {
		return err
	}
	t, err := workers.NewWebhookDisabledTask(ep.ID, *at)
	if err == nil {
		err = s.cfg.Enqueuer.Enqueue(ctx, t, "email:webhook_disabled:"+ep.ID.String()+":"+strconv.FormatInt(at.UnixMicro(), 10))
	}
	if err != nil {
		log.Error("webhook endpoint disabled, but its seller's mail could not be queued", "error", err)
		return fmt.Errorf("webhooks: mail: %w", err)
	}
	return nil
}

// breaker returns the circuit breaker of the host of rawURL, making it on
// first use. The breakers live in the process; one that is closed is
// forgotten when there are too many.
func (s *Service) breaker(rawURL string) *workers.Breaker {
	host := hostOf(rawURL)
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.breakers[host]; ok {
		return b
	}
	if len(s.breakers) >= maxBreakers {
		for h, b := range s.breakers {
			if !b.Open() {
				delete(s.breakers, h)
			}
		}
	}
	// No registry: a label per host would be unbounded. The breaker's
	// effect shows in the delivery log ("circuit open").
	b, err := workers.NewBreaker("webhook_host", s.cfg.Breaker, nil, nil)
	if err != nil {
		panic(err) // only metric registration fails, and there is none
	}
	s.breakers[host] = b
	return b
}

// maxBreakers bounds the per-host breakers a process keeps.
const maxBreakers = 4096

// hostOf is the host (and port) of a URL, lower case: what one breaker
// covers.
func hostOf(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return rawURL
	}
	return strings.ToLower(u.Host)
}

// hostFailure is what the host's breaker counts of an attempt: no answer
// (refused, reset, timed out) or a 5xx. Other answers, 4xx included, show
// a host that works; a URL Bazaar refused to call says nothing of the
// host; the task's own end (shutdown) is no one's failure.
func hostFailure(ctx context.Context, res sendResult) error {
	switch {
	case res.err == nil && res.status < 500:
		return nil
	case res.err == nil:
		return fmt.Errorf("answered %d", res.status)
	case errors.Is(res.err, ErrUnsafeURL):
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	}
	// A new error, so a receiver's timeout (a context.DeadlineExceeded
	// inside) counts, which Breaker excludes as the task's own.
	return errors.New(res.err.Error())
}

func (s *Service) record(ctx context.Context, d store.WebhookDelivery, a store.WebhookAttempt) error {
	if _, err := store.RecordWebhookAttempt(ctx, s.cfg.DB, d.ID, a); err != nil {
		return fmt.Errorf("webhooks: %w", err)
	}
	return nil
}

type sendResult struct {
	status  int
	err     error
	attempt store.WebhookAttempt
}

// send makes one attempt: a signed POST of the stored envelope.
func (s *Service) send(ctx context.Context, ep store.WebhookEndpoint, d store.WebhookDelivery) sendResult {
	now := s.cfg.Now()
	ts := now.Unix()
	sig, err := Signature(ep.Secrets(now), d.EventID.String(), ts, d.Payload)
	if err != nil {
		return sendResult{err: err, attempt: store.WebhookAttempt{Error: err.Error()}}
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(d.Payload))
	if err != nil {
		return sendResult{err: fmt.Errorf("%w: %w", ErrUnsafeURL, err), attempt: store.WebhookAttempt{Error: err.Error()}}
	}
	req.Header.Set("Content-Type", "application/cloudevents+json")
	req.Header.Set("User-Agent", "Bazaar-Webhooks/1")
	req.Header.Set("webhook-id", d.EventID.String())
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("webhook-signature", sig)
	start := time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		return sendResult{err: err, attempt: store.WebhookAttempt{LatencyMS: int(time.Since(start).Milliseconds()), Error: err.Error()}}
	}
	defer resp.Body.Close()
	body, rerr := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	a := store.WebhookAttempt{
		ResponseStatus:  resp.StatusCode,
		LatencyMS:       int(time.Since(start).Milliseconds()),
		ResponseExcerpt: excerpt(body),
	}
	if rerr != nil {
		a.Error = rerr.Error()
	}
	return sendResult{status: resp.StatusCode, attempt: a}
}

// excerpt is the start of an answer as valid UTF-8, for the log.
func excerpt(b []byte) string {
	if len(b) > maxExcerpt {
		b = b[:maxExcerpt]
		for len(b) > 0 && !utf8.Valid(b) {
			b = b[:len(b)-1]
		}
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// ClientEnqueuer enqueues with an asynq client, for processes that run no
// workers (the API, to redeliver): a TaskID already taken counts as done.
type ClientEnqueuer struct {
	Client *asynq.Client
}

// Enqueue enqueues t under taskID.
func (e ClientEnqueuer) Enqueue(ctx context.Context, t *asynq.Task, taskID string, opts ...asynq.Option) error {
	_, err := e.Client.EnqueueContext(ctx, t, append(opts, asynq.TaskID(taskID))...)
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("enqueue %s: %w", taskID, err)
	}
	return nil
}
