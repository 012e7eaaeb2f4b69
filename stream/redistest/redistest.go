// Package redistest isolates tests from each other and from anyone else's
// Redis data: Prefix gives a test its own key prefix and deletes its keys
// afterwards, DB leases a whole logical database for code that cannot take
// a prefix (asynq), and StartServer runs a redis-server of a test's own
// that it may stop and restart.
//
// Unless TEST_REDIS_URL is set, each test binary starts one redis-server of
// its own on a free port the first time a test asks for Redis (URL, Client,
// Prefix or DB); the kernel stops it when the binary exits, however it
// exits. Tests then hold the only data on that server. With TEST_REDIS_URL
// set, tests use that server and still touch only keys they created: DB
// leases only an empty database and deletes the keys that appeared in it.
// No server is ever flushed: a leased database is emptied key by key.
package redistest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

var (
	sharedOnce sync.Once
	shared     *Server
	sharedErr  error
	counter    atomic.Int64
)

// external reports whether TEST_REDIS_URL names a server to use instead of
// the binary's own.
func external() (string, bool) {
	u := os.Getenv("TEST_REDIS_URL")
	return u, u != ""
}

// URL is the Redis server tests use: TEST_REDIS_URL when set, else the test
// binary's own server, started on first use. It panics when that server
// cannot start, which fails the calling test.
func URL() string {
	u, err := serverURL()
	if err != nil {
		panic(err.Error())
	}
	return u
}

func serverURL() (string, error) {
	if u, ok := external(); ok {
		return u, nil
	}
	sharedOnce.Do(func() { shared, sharedErr = startServer("", "") })
	if sharedErr != nil {
		return "", fmt.Errorf("redistest: own redis-server: %w", sharedErr)
	}
	return shared.URL(), nil
}

func parseURL(t testing.TB) *redis.Options {
	t.Helper()
	u, err := serverURL()
	if err != nil {
		t.Fatal(err)
	}
	opt, err := redis.ParseURL(u)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	return opt
}

// Client returns a client on database 0 of the test server, closed in t.Cleanup.
func Client(t testing.TB) *redis.Client {
	t.Helper()
	opt := parseURL(t)
	c := redis.NewClient(opt)
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("redistest: redis at %s: %v", opt.Addr, err)
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

// ownDBs are the logical databases of the binary's own server not leased
// to a test right now.
var ownDBs = func() chan int {
	ch := make(chan int, 15)
	for n := 1; n <= 15; n++ {
		ch <- n
	}
	return ch
}()

// DB leases a logical database (1..15) of the test server for this test and
// returns client options for it; the database is empty when the test gets
// it and emptied when the test ends. It waits while all are leased by other
// tests.
func DB(t testing.TB) *redis.Options {
	t.Helper()
	opt := parseURL(t)
	if _, ok := external(); ok {
		return externalDB(t, opt)
	}
	select {
	case n := <-ownDBs:
		opt.DB = n
	case <-time.After(2 * time.Minute):
		t.Fatalf("redistest: no free Redis database after 2m")
	}
	// The lease makes this database the test's alone, and every lease
	// deletes its keys when it ends, so the next test finds it empty.
	c := redis.NewClient(opt)
	t.Cleanup(func() {
		defer func() { ownDBs <- opt.DB }()
		defer c.Close()
		if err := deleteKeys(context.Background(), c); err != nil {
			t.Errorf("redistest: empty database %d: %v", opt.DB, err)
		}
	})
	return opt
}

// deleteKeys deletes every key of c's database, one SCAN page at a time:
// used only on a database leased to the test, whose keys are its own.
func deleteKeys(ctx context.Context, c *redis.Client) error {
	iter := c.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		if err := c.Del(ctx, iter.Val()).Err(); err != nil {
			return err
		}
	}
	return iter.Err()
}

// externalDB leases a database of a server the test does not own: only one
// that is empty (one with keys belongs to someone), leased across processes
// by a key in database 0, and afterwards it deletes the keys that appeared
// in it during the lease, which are this test's.
func externalDB(t testing.TB, opt *redis.Options) *redis.Options {
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
			o := *opt
			o.DB = n
			dbc := redis.NewClient(&o)
			release := func() {
				_ = dbc.Close()
				if v, _ := c.Get(context.Background(), key).Result(); v == owner {
					c.Del(context.Background(), key)
				}
			}
			if size, err := dbc.DBSize(ctx).Result(); err != nil || size > 0 {
				release()
				continue
			}
			t.Cleanup(func() {
				if err := deleteKeys(context.Background(), dbc); err != nil {
					t.Errorf("redistest: empty database %d: %v", n, err)
				}
				release()
			})
			return &o
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: no free, empty Redis database at %s after 2m", opt.Addr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
