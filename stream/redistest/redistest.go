// Package redistest isolates tests that share one Redis server: Prefix gives
// a test its own key prefix and deletes its keys afterwards, and DB leases a
// whole logical database for code that cannot take a prefix (asynq).
//
// The server is the one at TEST_REDIS_URL (default redis://127.0.0.1:6379/0).
package redistest

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// URL is the Redis server tests use.
func URL() string {
	if u := os.Getenv("TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

var counter atomic.Int64

// Client returns a client on database 0 of the test server, closed in t.Cleanup.
func Client(t testing.TB) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(URL())
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	c := redis.NewClient(opt)
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("redistest: redis at %s: %v", URL(), err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Prefix returns a key prefix unique to this test ("bazaar:t123-4:") and
// deletes every key under it when the test ends.
func Prefix(t testing.TB) string {
	t.Helper()
	p := fmt.Sprintf("bazaar:t%d-%d-%d:", os.Getpid(), time.Now().UnixNano()%1e6, counter.Add(1))
	c := Client(t)
	t.Cleanup(func() {
		ctx := context.Background()
		iter := c.Scan(ctx, 0, p+"*", 1000).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
	})
	return p
}

// DB leases a logical database (1..15) of the test server for this test,
// flushes it before and after use, and returns client options for it. It
// waits while all are leased by other tests.
func DB(t testing.TB) *redis.Options {
	t.Helper()
	ctx := context.Background()
	c := Client(t)
	owner := fmt.Sprintf("%d-%d", os.Getpid(), counter.Add(1))
	deadline := time.Now().Add(2 * time.Minute)
	for {
		for n := 1; n <= 15; n++ {
			key := fmt.Sprintf("bazaar:test:dblease:%d", n)
			ok, err := c.SetNX(ctx, key, owner, 10*time.Minute).Result()
			if err != nil {
				t.Fatalf("redistest: lease db: %v", err)
			}
			if !ok {
				continue
			}
			opt, _ := redis.ParseURL(URL())
			opt.DB = n
			dbc := redis.NewClient(opt)
			dbc.FlushDB(ctx)
			t.Cleanup(func() {
				dbc.FlushDB(context.Background())
				_ = dbc.Close()
				if v, _ := c.Get(context.Background(), key).Result(); v == owner {
					c.Del(context.Background(), key)
				}
			})
			return opt
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: no free Redis database after 2m")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
