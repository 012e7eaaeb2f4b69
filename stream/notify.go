package stream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/bazaarhq/bazaar/sql/store"
)

// NotifyChannel is the PostgreSQL channel on which a Notifier tells
// listening relays that events were committed. The payload is empty: the
// relay reads what waits from the outbox, so a NOTIFY carries no data that
// could be lost or reordered.
const NotifyChannel = "bazaar_outbox"

// NotifierConfig configures a Notifier. Zero fields take the defaults noted.
type NotifierConfig struct {
	DB     *sqlx.DB
	Logger *slog.Logger
	// Channel is the NOTIFY channel (default NotifyChannel).
	Channel string
}

// Notifier sends a NOTIFY after transactions that recorded events commit,
// so relays in other processes publish them at once instead of at their
// next poll. It is a store.TxObserver. The NOTIFY runs in a transaction of
// its own, never in the write transaction: a NOTIFY inside a transaction
// takes a database-wide lock at commit that serialises every writer (see
// BenchmarkCommit). Commits are coalesced: at most one NOTIFY is in flight,
// and every commit made while it runs is covered by one more sent after it.
// A NOTIFY that is lost (an error, a relay reconnecting) costs at most the
// relay's poll interval.
type Notifier struct {
	cfg  NotifierConfig
	log  *slog.Logger
	wake chan struct{}

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

var _ store.TxObserver = (*Notifier)(nil)

// NewNotifier validates cfg and returns a stopped notifier.
func NewNotifier(cfg NotifierConfig) (*Notifier, error) {
	if cfg.DB == nil {
		return nil, errors.New("notifier: DB is required")
	}
	cfg.Channel = cmp.Or(cfg.Channel, NotifyChannel)
	cfg.Logger = cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	return &Notifier{cfg: cfg, log: cfg.Logger.With("component", "notifier"), wake: make(chan struct{}, 1)}, nil
}

// EventsCommitted asks for a NOTIFY; it never blocks, so writers can call
// it after every commit.
func (n *Notifier) EventsCommitted() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// Start launches the loop that sends the NOTIFYs. It runs until Stop.
func (n *Notifier) Start(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cancel != nil {
		return errors.New("notifier: already started")
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	n.cancel, n.done = cancel, make(chan struct{})
	go func() { defer close(n.done); n.loop(runCtx) }()
	n.log.Info("notifier started", "channel", n.cfg.Channel)
	return nil
}

// Stop ends the loop and waits for it or for ctx. It may be called twice
// or without Start. A commit not yet announced is found by the relays'
// poll.
func (n *Notifier) Stop(ctx context.Context) error {
	n.mu.Lock()
	cancel, done := n.cancel, n.done
	n.cancel = nil
	n.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop notifier: %w", ctx.Err())
	}
}

func (n *Notifier) loop(ctx context.Context) {
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.wake:
		}
		_, err := n.cfg.DB.ExecContext(ctx, `SELECT pg_notify($1, '')`, n.cfg.Channel)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			failures++
			// The relays' poll covers what is not announced, so an outage
			// only slows delivery: log it without flooding.
			if failures&(failures-1) == 0 {
				n.log.Warn("notify relays; they fall back to polling", "err", err, "attempt", failures)
			}
			if !waitFor(ctx, retryDelay(failures, 5*time.Second)) {
				return
			}
		case failures > 0:
			n.log.Info("notifying resumed", "failed_attempts", failures)
			failures = 0
		}
	}
}

// listen wakes the relay on every NOTIFY on the channel, over a
// connection of its own to dsn (not through a transaction pooler, which
// cannot hold a LISTEN). The poll keeps running beside it: a NOTIFY sent
// while the connection is down is never delivered, so each reconnection
// wakes the relay once too, and what is lost in between costs at most one
// poll interval.
func (r *Relay) listen(ctx context.Context) {
	channel := cmp.Or(r.cfg.ListenChannel, NotifyChannel)
	l := pq.NewListener(r.cfg.ListenDSN, 10*time.Millisecond, 2*time.Second, func(ev pq.ListenerEventType, err error) {
		switch ev {
		case pq.ListenerEventConnected:
			// Events committed before the LISTEN took effect were
			// announced to nobody.
			r.log.Info("listening for commits", "channel", channel)
			r.EventsCommitted()
		case pq.ListenerEventDisconnected:
			r.log.Warn("listen connection lost; polling until it is back", "err", err)
		case pq.ListenerEventReconnected:
			r.log.Info("listen connection back", "channel", channel)
			r.EventsCommitted()
		case pq.ListenerEventConnectionAttemptFailed:
			// Reported by Disconnected once; retries would flood the log.
		}
	})
	defer func() { _ = l.Close() }()
	if err := l.Listen(channel); err != nil {
		// Only a closed listener or a repeated channel fail here; a
		// connection not yet up is retried by the listener itself.
		r.log.Error("listen for commits; polling only", "err", err)
		return
	}
	// A connection that died without a FIN is noticed only on a write.
	ping := time.NewTicker(30 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.Notify:
			// nil after a reconnection, which the callback handled.
			r.EventsCommitted()
		case <-ping.C:
			_ = l.Ping()
		}
	}
}
