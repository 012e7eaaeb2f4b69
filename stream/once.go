package stream

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/bazaarhq/bazaar/sql/store"
)

// Once wraps a handler whose effects are PostgreSQL writes so that each
// event changes the database once per group, however often it is
// delivered: fn runs in a transaction that also records (group, event id)
// in processed_events, and a redelivered event finds the record and commits
// nothing new. group should be the subscription's group.
func Once(db *sqlx.DB, group string, fn func(ctx context.Context, tx *sqlx.Tx, msg Message) error) Handler {
	return func(ctx context.Context, msg Message) error {
		id, err := uuid.Parse(msg.ID)
		if err != nil {
			return fmt.Errorf("event id %q: %w", msg.ID, err)
		}
		return store.WithTx(ctx, db, func(tx *sqlx.Tx) error {
			first, err := store.MarkProcessed(ctx, tx, group, id)
			if err != nil || !first {
				return err
			}
			return fn(ctx, tx, msg)
		})
	}
}
