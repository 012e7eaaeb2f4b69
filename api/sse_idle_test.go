package api

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream/redistest"
)

// BenchmarkSSEIdle holds many idle event streams open on one API process
// (TestSSELoadServer, in a process of its own) and reports what each costs
// the server: heap and goroutine stacks, and resident memory.
//
//	go test -run '^$' -bench SSEIdle -benchtime 1x ./api/
//
// BAZAAR_SSE_IDLE (default 20000) is the number of connections. Each is a
// descriptor in both processes, so the soft open-file limit is raised to
// the hard one; when that is too low for all of them the benchmark opens
// as many as fit and says so.
func BenchmarkSSEIdle(b *testing.B) {
	want := envInt("BAZAAR_SSE_IDLE", 20000)
	limit := raiseFileLimit()
	// The server process needs a few descriptors of its own beside the
	// connections: its listener, PostgreSQL, Redis, the runtime.
	const spare = 500
	clients := want
	if uint64(want)+spare > limit {
		clients = int(limit) - spare
		b.Logf("open-file hard limit %d: %d connections instead of %d (raise it with ulimit -Hn)", limit, clients, want)
	}
	if clients <= 0 {
		b.Skipf("open-file limit %d", limit)
	}
	db, dbURL := storetest.NewDB(b)
	db.SetMaxOpenConns(2)
	prefix := redistest.Prefix(b)
	addr, mem := startLoadServer(b, dbURL, prefix)

	for range b.N {
		before := mem()
		conns := make([]net.Conn, clients)
		var next atomic.Int64
		var failed atomic.Value
		var wg sync.WaitGroup
		start := time.Now()
		for range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1)) - 1
					if i >= clients || failed.Load() != nil {
						return
					}
					conn, err := openIdle(addr)
					if err != nil {
						failed.Store(err)
						return
					}
					conns[i] = conn
				}
			}()
		}
		wg.Wait()
		opened := time.Since(start)
		if err, _ := failed.Load().(error); err != nil {
			b.Fatalf("connection %d: %v", next.Load(), err)
		}
		after := mem()
		require.Equal(b, clients, after.Subscribers-before.Subscribers, "every client subscribed")
		heap := float64(after.HeapInuse+after.StackInuse-before.HeapInuse-before.StackInuse) / float64(clients)
		rss := float64(after.RSS-before.RSS) / float64(clients)
		b.ReportMetric(float64(clients), "conns")
		b.ReportMetric(heap, "heap+stack-B/conn")
		b.ReportMetric(rss, "rss-B/conn")
		b.Logf("%d idle streams opened in %s; server RSS %d MiB -> %d MiB (%.1f KiB/conn), heap+stacks %.1f KiB/conn, %d goroutines (%d before)",
			clients, opened.Round(time.Millisecond), before.RSS>>20, after.RSS>>20, rss/1024, heap/1024, after.Goroutines, before.Goroutines)
		for _, c := range conns {
			_ = c.Close()
		}
	}
}

// openIdle opens an anonymous stream of the announcements and returns
// once its ready event arrived; nothing reads the connection afterwards.
func openIdle(addr string) (net.Conn, error) {
	conn, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	fmt.Fprintf(conn, "GET /v1/events?topics=system.%%23 HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", addr)
	r := bufio.NewReaderSize(conn, 1024)
	status, err := r.ReadString('\n')
	if err != nil || !strings.Contains(status, " 200 ") {
		_ = conn.Close()
		return nil, fmt.Errorf("status %q: %w", status, err)
	}
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("before the ready event: %w", err)
		}
		if bytes.HasPrefix(line, []byte("event: ready")) {
			break
		}
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}
