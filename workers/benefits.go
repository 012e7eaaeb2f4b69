package workers

import (
	"context"
	"errors"
	"fmt"

	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"

	"github.com/bazaarhq/bazaar/sql/store"
)

// Points are granted when an order is delivered, not when it is
// confirmed: a confirmed order can still be cancelled, and points given
// for goods never received would have to be clawed back.

// openPointsAccount opens a zero balance for a new user, once.
func (w *Workers) openPointsAccount(ctx context.Context, t *asynq.Task) error {
	p, err := decode[UserPayload](t)
	if err != nil {
		return err
	}
	opened, err := store.OpenPointsAccount(ctx, w.db, p.UserID)
	if errors.Is(err, store.ErrReferenced) {
		return permanent(err)
	}
	if err != nil {
		return err
	}
	Logger(ctx, w.log).Info("points account", "user_id", p.UserID, "opened", opened)
	return nil
}

// pointsFor converts an amount in minor units into points.
func (w *Workers) pointsFor(minor int64) int64 { return minor / 100 * w.cfg.PointsPerUnit }

// grantPoints credits a delivered order's points, once per order.
func (w *Workers) grantPoints(ctx context.Context, t *asynq.Task) error {
	_, o, err := w.orderOf(ctx, t)
	if err != nil {
		return err
	}
	if o.Status != store.OrderDelivered {
		Logger(ctx, w.log).Info("order not delivered; no points", "order_id", o.ID, "status", o.Status)
		return nil
	}
	points := w.pointsFor(o.TotalMinor)
	var granted bool
	err = w.inTx(ctx, func(tx *sqlx.Tx) (int, error) {
		// The welcome task may not have run yet; the account opens here too.
		if _, err := store.OpenPointsAccount(ctx, tx, o.UserID); err != nil {
			return 0, err
		}
		_, ok, err := store.AddPoints(ctx, tx, o.UserID, points, "order delivered", "grant:"+o.ID.String())
		granted = ok
		return 0, err
	})
	if err != nil {
		return fmt.Errorf("grant points: %w", err)
	}
	Logger(ctx, w.log).Info("points granted", "order_id", o.ID, "user_id", o.UserID, "points", points, "first", granted)
	return nil
}

// revokePoints takes back the points of the goods of an accepted return,
// never more than the order earned.
func (w *Workers) revokePoints(ctx context.Context, t *asynq.Task) error {
	_, r, err := w.returnOf(ctx, t)
	if err != nil {
		return err
	}
	if r.Status != store.ReturnStatusAccepted {
		return nil
	}
	err = w.inTx(ctx, func(tx *sqlx.Tx) (int, error) {
		earned, err := store.PointsForSource(ctx, tx, "grant:"+r.OrderID.String())
		if err != nil || earned == 0 {
			return 0, err
		}
		take := min(w.pointsFor(int64(r.Quantity)*r.UnitPriceMinor), earned)
		if take == 0 {
			return 0, nil
		}
		_, _, err = store.AddPoints(ctx, tx, r.UserID, -take, "return accepted", "revoke:"+r.ID.String())
		return 0, err
	})
	if err != nil {
		return fmt.Errorf("revoke points: %w", err)
	}
	Logger(ctx, w.log).Info("points of return taken back", "return_id", r.ID, "user_id", r.UserID)
	return nil
}
