// Package workers runs the marketplace's reactions to its events as asynq
// tasks: welcome and order mail, points, customer segments, stock
// reservations, payments and the order saga that ties them together,
// deferred follow-ups and reminders.
//
// Consumer groups on the event streams (see Subscriptions) turn each event
// into tasks with a deterministic TaskID derived from the group and the
// event id, so an event delivered twice enqueues once. Task handlers write
// their records and the events they cause in one PostgreSQL transaction
// (the outbox), keyed so that a task run twice changes nothing twice.
// Failed tasks are retried with exponential backoff and jitter; a task
// that exhausts its retries, or fails permanently, is archived in Redis
// for a person to run again from asynqmon (NewMonitor), and recorded in
// the task_failures table.
//
// Workers is the asynq server with Start and Stop; it never traps signals.
package workers
