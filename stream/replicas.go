package stream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bazaarhq/bazaar/sql/store"
)

// ErrReplicas means fewer replicas than RelayConfig.MinReplicas acknowledged
// a batch in time; the batch stays unpublished and is retried.
var ErrReplicas = errors.New("not enough replicas acknowledged the batch")

// awaitReplicas waits until MinReplicas replicas of every primary that got
// entries of pubs have them. WAIT counts the writes of the connection it
// runs on, and the XADD pipeline may have used other connections (several,
// on a cluster): so each primary gets a small write on one connection, to
// a key in the slot of one of its streams, then WAIT on that connection.
// Replication is one ordered log per primary, so once a replica has that
// write it has every entry added before it.
func (r *Relay) awaitReplicas(ctx context.Context, pubs []store.Publication) error {
	if r.cfg.MinReplicas == 0 || len(pubs) == 0 {
		return nil
	}
	type target struct {
		node *redis.Client
		key  string
		name string // in errors: the node's address on a cluster
	}
	var targets []target
	switch c := r.cfg.Redis.(type) {
	case *redis.ClusterClient:
		seen := make(map[string]bool)
		for _, p := range pubs {
			node, err := c.MasterForKey(ctx, p.Stream)
			if err != nil {
				return fmt.Errorf("wait for replicas: primary of %s: %w", p.Stream, err)
			}
			if addr := node.Options().Addr; !seen[addr] {
				seen[addr] = true
				targets = append(targets, target{node, r.waitKey(p.Stream), addr})
			}
		}
	case *redis.Client:
		targets = append(targets, target{c, r.waitKey(pubs[0].Stream), "the primary"})
	default:
		return fmt.Errorf("wait for replicas: unsupported Redis client %T", r.cfg.Redis)
	}
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() { errs[i] = r.waitOn(ctx, t.node, t.key, t.name) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// waitOn writes key on one connection of node and waits for MinReplicas
// replicas to acknowledge it.
func (r *Relay) waitOn(ctx context.Context, node *redis.Client, key, name string) error {
	conn := node.Conn()
	defer conn.Close()
	if err := conn.Set(ctx, key, time.Now().UnixMilli(), time.Minute).Err(); err != nil {
		return fmt.Errorf("wait for replicas of %s: %w", name, err)
	}
	n, err := conn.Wait(ctx, r.cfg.MinReplicas, r.cfg.ReplicaTimeout).Result()
	if err != nil {
		return fmt.Errorf("wait for replicas of %s: %w", name, err)
	}
	if n < int64(r.cfg.MinReplicas) {
		return fmt.Errorf("%w: %d of %d replicas of %s within %s", ErrReplicas, n, r.cfg.MinReplicas, name, r.cfg.ReplicaTimeout)
	}
	return nil
}

// waitKey is a key in the same cluster slot as stream: it carries the
// stream's hash tag, or the whole stream name as one.
func (r *Relay) waitKey(stream string) string {
	return r.cfg.Names.prefix() + "relay:wait:{" + hashTag(stream) + "}"
}

// hashTag is the part of key Redis Cluster hashes to pick its slot.
func hashTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}
