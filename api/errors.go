package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/workers"
)

// ProblemBase prefixes every problem type URI. The types are stable: clients
// branch on them, and openapi.yaml lists them.
const ProblemBase = "https://bazaar.dev/problems/"

// Problem is an RFC 9457 problem details object, the body of every error
// response (Content-Type application/problem+json).
type Problem struct {
	Type      string       `json:"type"`
	Title     string       `json:"title"`
	Status    int          `json:"status"`
	Detail    string       `json:"detail,omitempty"`
	Instance  string       `json:"instance,omitempty"`
	RequestID string       `json:"request_id,omitempty"`
	Errors    []FieldError `json:"errors,omitempty"`
}

// FieldError names one bad input: a body field (dotted path), a query or
// path parameter, or a header.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// API-level error kinds. Handlers return these (or store sentinels),
// wrapped with withDetail when the client should learn more; fail turns
// them into problems.
var (
	errUnauthorized         = errors.New("unauthorized")
	errForbidden            = errors.New("forbidden")
	errRouteNotFound        = errors.New("route not found")
	errMethodNotAllowed     = errors.New("method not allowed")
	errMalformedJSON        = errors.New("malformed json")
	errValidation           = errors.New("validation failed")
	errInvalidParameter     = errors.New("invalid parameter")
	errUnsupportedMediaType = errors.New("unsupported media type")
	errPayloadTooLarge      = errors.New("payload too large")
	errIdempotencyReused    = errors.New("idempotency key reused with another request")
	errIdempotencyInFlight  = errors.New("idempotency key in flight")
	errPanic                = errors.New("handler panicked")
	errUnavailable          = errors.New("service unavailable")
	errRateLimited          = errors.New("rate limited")
)

// problemKind is the public face of one error kind.
type problemKind struct {
	slug   string
	title  string
	status int
}

// kinds maps error kinds to problems, checked in order with errors.Is.
// This table is the one place errors become HTTP statuses.
var kinds = []struct {
	err  error
	kind problemKind
}{
	{errUnauthorized, problemKind{"unauthorized", "Missing or invalid credentials", http.StatusUnauthorized}},
	{errForbidden, problemKind{"forbidden", "Not allowed for this credential", http.StatusForbidden}},
	{errRouteNotFound, problemKind{"not-found", "Not found", http.StatusNotFound}},
	{errMethodNotAllowed, problemKind{"method-not-allowed", "Method not allowed", http.StatusMethodNotAllowed}},
	{errMalformedJSON, problemKind{"malformed-json", "Request body is not valid JSON", http.StatusBadRequest}},
	{errInvalidParameter, problemKind{"invalid-parameter", "Invalid parameter", http.StatusBadRequest}},
	{errValidation, problemKind{"validation", "Request body is invalid", http.StatusUnprocessableEntity}},
	{errUnsupportedMediaType, problemKind{"unsupported-media-type", "Request body must be application/json", http.StatusUnsupportedMediaType}},
	{errPayloadTooLarge, problemKind{"payload-too-large", "Request body is too large", http.StatusRequestEntityTooLarge}},
	{errIdempotencyReused, problemKind{"idempotency-key-reused", "Idempotency key was used for another request", http.StatusUnprocessableEntity}},
	{errIdempotencyInFlight, problemKind{"idempotency-in-flight", "A request with this idempotency key is in progress", http.StatusConflict}},
	{errUnavailable, problemKind{"unavailable", "Temporarily unavailable", http.StatusServiceUnavailable}},
	{workers.ErrBadSignature, problemKind{"bad-signature", "Webhook signature does not verify", http.StatusBadRequest}},
	{errRateLimited, problemKind{"rate-limited", "Too many requests", http.StatusTooManyRequests}},
	{errSellerPaused, problemKind{"seller-paused", "The seller is paused", http.StatusLocked}},
	{store.ErrNotFound, problemKind{"not-found", "Not found", http.StatusNotFound}},
	{store.ErrInsufficientStock, problemKind{"insufficient-stock", "Not enough stock", http.StatusConflict}},
	{store.ErrInvalidTransition, problemKind{"invalid-transition", "Not allowed in the current state", http.StatusConflict}},
	{store.ErrConflict, problemKind{"conflict", "Conflicts with an existing record", http.StatusConflict}},
	{store.ErrReferenced, problemKind{"validation", "Request body is invalid", http.StatusUnprocessableEntity}},
	{errPrinterPollTooFast, problemKind{"printer-poll-too-fast", "The printer polls faster than allowed", http.StatusTooManyRequests}},
}

var internalKind = problemKind{"internal", "Internal server error", http.StatusInternalServerError}

// detailError carries what the client may read about an error: a detail
// sentence and field errors. The wrapped error picks the problem kind and
// is logged, never shown, so driver text cannot leak.
type detailError struct {
	err    error
	detail string
	fields []FieldError
}

func (e *detailError) Error() string { return e.detail + ": " + e.err.Error() }
func (e *detailError) Unwrap() error { return e.err }

// withDetail wraps err with a client-facing detail and field errors.
func withDetail(err error, detail string, fields ...FieldError) error {
	return &detailError{err: err, detail: detail, fields: fields}
}

// invalid is a 422 validation problem listing fields.
func invalid(fields ...FieldError) error {
	return withDetail(errValidation, "One or more fields are invalid.", fields...)
}

// badParam is a 400 invalid-parameter problem for one query, path or header value.
func badParam(name, message string) error {
	return withDetail(errInvalidParameter, "Parameter "+name+" is invalid.", FieldError{Field: name, Message: message})
}

// problemFor builds the problem for err.
func problemFor(err error) Problem {
	kind := internalKind
	var maxErr *http.MaxBytesError
	if errors.As(err, &maxErr) {
		err = withDetail(errPayloadTooLarge, "The request body exceeds the size limit.")
	}
	if dependencyUnavailable(err) {
		err = withDetail(errUnavailable, "A service this request needs is unavailable; retry shortly.")
	}
	for _, k := range kinds {
		if errors.Is(err, k.err) {
			kind = k.kind
			break
		}
	}
	p := Problem{Type: ProblemBase + kind.slug, Title: kind.title, Status: kind.status}
	var de *detailError
	if errors.As(err, &de) {
		p.Detail = de.detail
		p.Errors = de.fields
	}
	return p
}

// fail answers the request with the problem for err and stops the chain.
// Server errors are logged with the request id; client errors are left to
// the request log.
func (s *Server) fail(c *gin.Context, err error) {
	p := problemFor(err)
	if p.Status >= http.StatusInternalServerError && errors.Is(c.Request.Context().Err(), context.Canceled) {
		// The client went away (it timed out or was killed): no server
		// fault, and nobody reads an answer. Recorded as 499, outside the
		// 5xx figures and alerts.
		s.logFor(c).Info("request cancelled by client", "err", err)
		c.AbortWithStatus(StatusClientClosedRequest)
		return
	}
	p.Instance = c.Request.URL.Path
	p.RequestID = requestID(c)
	switch {
	case p.Status == http.StatusServiceUnavailable:
		c.Header("Retry-After", retryAfterUnavailable)
		s.logFor(c).Warn("request failed: unavailable", "err", err)
	case p.Status >= http.StatusInternalServerError:
		s.logFor(c).Error("request failed", "err", err)
	}
	// The printer routes ask for Basic credentials and say so themselves.
	if p.Status == http.StatusUnauthorized && c.Writer.Header().Get("WWW-Authenticate") == "" {
		c.Header("WWW-Authenticate", `Bearer realm="bazaar"`)
	}
	body, mErr := json.Marshal(p)
	if mErr != nil {
		body = []byte(`{"type":"` + ProblemBase + `internal","title":"Internal server error","status":500}`)
	}
	c.Abort()
	c.Data(p.Status, "application/problem+json", body)
}

// StatusClientClosedRequest is the status logged and counted for a request
// whose client went away before it was answered (nginx's 499).
const StatusClientClosedRequest = 499

// retryAfterUnavailable is the Retry-After of 503 answers, in seconds: a
// PostgreSQL restart or a Redis failover usually takes a few.
const retryAfterUnavailable = "2"

// dependencyUnavailable reports whether err means PostgreSQL or Redis could
// not serve the request now (down, restarting, unreachable, out of
// connections), so the client should retry, rather than that the request
// or the server is wrong.
func dependencyUnavailable(err error) bool {
	return store.Unavailable(err) ||
		errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrPoolExhausted) || errors.Is(err, redis.ErrClosed) ||
		redis.IsLoadingError(err) || redis.IsClusterDownError(err) || redis.IsTryAgainError(err) ||
		redis.IsMasterDownError(err) || redis.IsMaxClientsError(err)
}

func isConflict(err error) bool { return errors.Is(err, store.ErrConflict) }
