// Package webhooks delivers a seller's events to the HTTPS endpoints the
// seller registered, following the Standard Webhooks specification: each
// delivery is a POST of the CloudEvents JSON envelope with the headers
// webhook-id (the event id), webhook-timestamp and webhook-signature
// ("v1," + base64 HMAC-SHA256 over "id.timestamp.body", keyed with the
// endpoint's whsec_ secret; two signatures during a secret rotation).
//
// It owns the consumer group "webhooks" (binding "#", matching each event
// of a seller against its endpoints' topic patterns), the asynq task type
// webhook:deliver (one task per endpoint and event, retried with backoff
// and jitter for up to three days), the delivery log rows, and the safety
// rules for the URLs it calls: https only, public addresses only (checked
// when an endpoint is registered and again by the dialer at each
// connection), no redirects, a 10 s timeout and a 64 KiB read of each
// answer. Config.AllowPrivate lifts the first two for development and
// tests.
//
// It also owns what keeps a receiver's trouble contained: ordered
// endpoints (one task at a time, for the oldest pending delivery, each
// finished delivery queuing the next), redelivery rounds (a generation per
// delivery, so each round has TaskIDs of its own), a circuit breaker per
// receiver host (a refused call is no attempt; the task waits as a
// workers.DeferredError), and the failure streak after which an endpoint
// is disabled and its seller mailed (the workers' email:webhook_disabled
// task).
//
// It imports workers (for its retry and error types), stream (envelopes,
// topic patterns), sql/store and internal/backoff; api and cmd import it,
// never the reverse.
package webhooks
