// Package store is Bazaar's PostgreSQL layer: the domain records as plain
// structs, the sentinel errors every caller branches on, the queries, the
// transaction helper and the outbox that records events in the same
// transaction as the records they describe.
//
// Queries are package functions taking a sqlx.ExtContext, so the same query
// runs on the pool or inside a transaction. The package imports only the
// standard library, sqlx, lib/pq and uuid (ids are part of the records).
package store
