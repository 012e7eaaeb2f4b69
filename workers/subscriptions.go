package workers

import (
	"context"

	"github.com/bazaarhq/bazaar/stream"
)

// SubscriptionOptions tune the consumer groups Subscriptions returns.
type SubscriptionOptions struct {
	// Concurrency is how many events each group handles at once in this
	// process (default 8).
	Concurrency int
	// MaxDeliveries is how often an event is tried before it goes to the
	// group's dead letters (default 10). Group handlers only enqueue, so an
	// event fails only while Redis or PostgreSQL is unreachable.
	MaxDeliveries int
	// StartFrom is where a group that does not exist yet starts (default:
	// new events only).
	StartFrom stream.StartPosition
}

// Subscriptions returns the consumer groups of every service as stream
// subscriptions, to add to a stream.Groups. Events of one subject (an
// order) are handled in order, so an order's cancellation never overtakes
// its creation (which would leave its follow-up scheduled).
func (w *Workers) Subscriptions(opts SubscriptionOptions) []stream.Subscription {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 8
	}
	if opts.MaxDeliveries <= 0 {
		opts.MaxDeliveries = 10
	}
	groups := w.Groups()
	subs := make([]stream.Subscription, 0, len(groups))
	for _, g := range groups {
		handle := g.Handle
		subs = append(subs, stream.Subscription{
			Group:    g.Name,
			Patterns: g.Patterns,
			Handler: func(ctx context.Context, msg stream.Message) error {
				return handle(ctx, msg.Envelope)
			},
			Concurrency:      opts.Concurrency,
			OrderedBySubject: true,
			MaxDeliveries:    opts.MaxDeliveries,
			StartFrom:        opts.StartFrom,
		})
	}
	return subs
}
