// Package console is the operator console served at /console: one place to
// see the whole backbone (outbox, relay, streams, consumer groups, dead
// letters, asynq queues, schedules, invoicing, live clients, printers,
// orders, the paused sellers, the alert conditions, the business figures,
// the audit log and the operators) and to repair it (redrive or purge dead
// letters, pause or resume a group or a queue, retry failed invoicing
// accounts, pause or resume a seller, announce maintenance, add, change
// and revoke operators).
//
// It owns its pages (html/template, one stylesheet and a little plain
// JavaScript, all embedded), their live feed (Server-Sent Events at
// /console/live and /console/live/orders), the business figures and their
// Prometheus series (figures.go), the alert evaluator (alerts.go) and the
// dead-letter redrives it runs at a rate (jobs.go).
//
// It may import stream, workers, sql/store and third-party libraries, but
// never package api: the API mounts it with Mount and injects what only it
// knows through Config: who is asking (Authorize), the login check and the
// logout (Login, Logout), the audit log (Audit), and the writes that go
// through the API's transactions, their audit rows included (Announce,
// RetryFailed, CreateOperator, SetOperatorRole, RevokeOperator,
// PauseSeller, ResumeSeller), and the invoice PDF the API renders
// (InvoicePDF, served at /console/invoices/{id}/pdf).
package console
