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
	"strconv"
	"strings"
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
	// Enqueuer enqueues delivery tasks (required).
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
	// Retry is the backoff between attempts (default ceilings from 30s
	// doubling to 6h, full jitter).
	Retry backoff.Policy
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Service delivers seller events to webhook endpoints.
type Service struct {
	cfg    Config
	log    *slog.Logger
	client *http.Client
}

// New validates cfg and returns the service.
func New(cfg Config) (*Service, error) {
	if cfg.DB == nil || cfg.Enqueuer == nil {
		return nil, errors.New("webhooks: DB and Enqueuer are required")
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	cfg.Timeout = cmp.Or(cfg.Timeout, 10*time.Second)
	cfg.MaxAge = cmp.Or(cfg.MaxAge, 72*time.Hour)
	if cfg.Retry.Base == 0 {
		cfg.Retry = backoff.Policy{Base: 30 * time.Second, Max: 6 * time.Hour}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Timeout < 0 || cfg.MaxAge < 0 {
		return nil, errors.New("webhooks: durations must not be negative")
	}
	return &Service{cfg: cfg, log: cfg.Logger, client: newClient(cfg.Timeout, cfg.AllowPrivate)}, nil
}

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

// deliverPayload is the payload of a TypeDeliver task.
type deliverPayload struct {
	EndpointID uuid.UUID `json:"endpoint_id"`
	DeliveryID uuid.UUID `json:"delivery_id"`
}

// HandleEvent records a delivery of env for each enabled endpoint of its
// seller whose topics match the event type, and enqueues its task. Calling
// it again for the same event makes no second delivery.
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
		if err := s.enqueue(ctx, d, "webhook:"+ep.ID.String()+":"+eventID.String()); err != nil {
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

func (s *Service) enqueue(ctx context.Context, d store.WebhookDelivery, taskID string) error {
	p, err := json.Marshal(deliverPayload{EndpointID: d.EndpointID, DeliveryID: d.ID})
	if err != nil {
		return fmt.Errorf("webhooks: %w", err)
	}
	err = s.cfg.Enqueuer.Enqueue(ctx, asynq.NewTask(TypeDeliver, p), taskID,
		asynq.Queue(workers.QueueDefault), asynq.MaxRetry(maxRetry), asynq.Timeout(s.cfg.Timeout+30*time.Second))
	if err != nil {
		return fmt.Errorf("webhooks: %w", err)
	}
	return nil
}

// Redeliver sends the delivery id of endpoint again, as a new task: it
// goes back to pending and starts a new retry window.
func (s *Service) Redeliver(ctx context.Context, endpointID, id uuid.UUID) (store.WebhookDelivery, error) {
	d, err := store.ResetWebhookDelivery(ctx, s.cfg.DB, endpointID, id)
	if err != nil {
		return store.WebhookDelivery{}, err
	}
	return d, s.enqueue(ctx, d, "webhook-redeliver:"+uuid.NewString())
}

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
	if d.Status != store.DeliveryPending {
		return nil
	}
	ep, err := store.WebhookEndpointByID(ctx, s.cfg.DB, p.EndpointID)
	if err != nil {
		return fmt.Errorf("webhooks: %w", err)
	}
	if ep.Disabled {
		err := s.record(ctx, d, store.WebhookAttempt{Status: store.DeliveryFailed, Error: "endpoint disabled"})
		return errors.Join(err, fmt.Errorf("webhooks: endpoint %s disabled: %w", ep.ID, asynq.SkipRetry))
	}
	res := s.send(ctx, ep, d)
	log := s.log.With("endpoint_id", ep.ID, "delivery_id", d.ID, "event_id", d.EventID, "attempt", d.Attempts+1)
	switch {
	case res.err == nil && res.status >= 200 && res.status < 300:
		res.attempt.Status = store.DeliveryDelivered
		return s.record(ctx, d, res.attempt)
	case res.err == nil && res.status == http.StatusGone:
		res.attempt.Status = store.DeliveryFailed
		log.Info("webhook endpoint answered 410 Gone: disabled")
		err := errors.Join(s.record(ctx, d, res.attempt),
			store.DisableWebhookEndpoint(ctx, s.cfg.DB, ep.ID, "the endpoint answered 410 Gone"))
		return errors.Join(err, fmt.Errorf("webhooks: endpoint %s gone: %w", ep.ID, asynq.SkipRetry))
	}
	cause := res.err
	if cause == nil {
		cause = fmt.Errorf("endpoint answered %d", res.status)
	}
	now := s.cfg.Now()
	delay := s.cfg.Retry.Delay(d.Attempts)
	if errors.Is(res.err, ErrUnsafeURL) || now.Add(delay).Sub(d.RetryFrom) > s.cfg.MaxAge {
		res.attempt.Status = store.DeliveryFailed
		log.Warn("webhook delivery failed for good", "error", cause)
		return errors.Join(s.record(ctx, d, res.attempt), fmt.Errorf("webhooks: %w: %w", cause, asynq.SkipRetry))
	}
	next := now.Add(delay)
	res.attempt.Status = store.DeliveryPending
	res.attempt.NextAttemptAt = &next
	if err := s.record(ctx, d, res.attempt); err != nil {
		return err
	}
	return &workers.RetryAfterError{After: delay, Err: fmt.Errorf("webhooks: deliver %s: %w", d.ID, cause)}
}

func (s *Service) record(ctx context.Context, d store.WebhookDelivery, a store.WebhookAttempt) error {
	if err := store.RecordWebhookAttempt(ctx, s.cfg.DB, d.ID, a); err != nil {
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
