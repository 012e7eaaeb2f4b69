package api

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// revocations ends the live streams of revoked credentials on every API
// process: revoking a key publishes its id on a Redis channel, and each
// process's listener (Server.Start) cancels the streams it serves with
// that key. A stream's reconnect then fails authentication (401).
type revocations struct {
	mu      sync.Mutex
	streams map[uuid.UUID]map[*liveStream]struct{}
	ps      *redis.PubSub
	done    chan struct{}
}

// liveStream is one open stream, ended by its cancel.
type liveStream struct {
	cancel context.CancelFunc
}

// revocationChannel is the Redis channel of revoked key ids.
func (s *Server) revocationChannel() string { return s.redisPrefix() + "api:revoked" }

// track registers a stream served with key until the returned func is
// called; a revocation of key cancels ctx's child.
func (r *revocations) track(ctx context.Context, key uuid.UUID) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	if key == uuid.Nil {
		return ctx, cancel
	}
	ls := &liveStream{cancel: cancel}
	r.mu.Lock()
	if r.streams == nil {
		r.streams = map[uuid.UUID]map[*liveStream]struct{}{}
	}
	if r.streams[key] == nil {
		r.streams[key] = map[*liveStream]struct{}{}
	}
	r.streams[key][ls] = struct{}{}
	r.mu.Unlock()
	return ctx, func() {
		cancel()
		r.mu.Lock()
		delete(r.streams[key], ls)
		if len(r.streams[key]) == 0 {
			delete(r.streams, key)
		}
		r.mu.Unlock()
	}
}

// end cancels every stream served with key and returns how many.
func (r *revocations) end(key uuid.UUID) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	for ls := range r.streams[key] {
		ls.cancel()
	}
	return len(r.streams[key])
}

// Start listens for revocations, so that revoking a credential through any
// API process ends its live streams here. It returns once the
// subscription is in place. Without Config.Redis it does nothing.
func (s *Server) Start(ctx context.Context) error {
	r := &s.revocations
	if s.cfg.Redis == nil || r.ps != nil {
		return nil
	}
	r.ps = s.cfg.Redis.Subscribe(ctx, s.revocationChannel())
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err := r.ps.Receive(sctx)
	cancel()
	if err != nil {
		// go-redis subscribes again once Redis answers; until then a
		// revocation ends streams only on the process that made it.
		s.log.Warn("revocation listener: subscribe", "err", err)
	}
	r.done = make(chan struct{})
	ch := r.ps.Channel()
	go func() {
		defer close(r.done)
		for msg := range ch {
			key, err := uuid.Parse(msg.Payload)
			if err != nil {
				continue
			}
			s.keys.clear()
			if n := r.end(key); n > 0 {
				s.tel.sseRevoked.Add(float64(n))
				s.log.Info("live streams of a revoked key ended", "key_id", key.String(), "streams", n)
			}
		}
	}()
	return nil
}

// Stop ends the console's redrives and the revocation listener. A second Stop, or a Stop without
// Start, does nothing.
func (s *Server) Stop(context.Context) error {
	if s.console != nil {
		s.console.Close() // ends the console's redrives
	}
	r := &s.revocations
	if r.ps == nil {
		return nil
	}
	err := r.ps.Close()
	<-r.done
	r.ps = nil
	return err
}

// announceRevocation tells every API process that key is revoked. The
// revocation is committed already; if Redis cannot take the message, the
// streams of key on other processes end at their reconnect instead, and
// this process ends its own at once.
func (s *Server) announceRevocation(ctx context.Context, key uuid.UUID) {
	if s.cfg.Redis == nil {
		return
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := s.cfg.Redis.Publish(pctx, s.revocationChannel(), key.String()).Err(); err != nil {
		if n := s.revocations.end(key); n > 0 {
			s.tel.sseRevoked.Add(float64(n))
		}
		s.log.Error("announce revocation", "err", err, "key_id", key.String())
	}
}
