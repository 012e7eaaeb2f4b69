package api

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
)

// An HTTP/1.1 event stream is served on the hijacked connection: the
// handler writes the response head itself, hands the connection to one
// small goroutine (rawStream.pump) and returns, so net/http's connection
// goroutine, its background reader, its read and write buffers and the gin
// context are all released while the stream lasts. What stays per client
// is the socket, the subscriber and that goroutine. Heartbeats, slot
// refreshes and noticing a client that left are done for every stream by
// one timer wheel (sseWheel) instead of a timer per stream.

// rawStream is one event stream on a hijacked connection.
type rawStream struct {
	conn net.Conn
	// mu serialises the pump's writes and the wheel's heartbeats.
	mu   sync.Mutex
	last atomic.Int64 // unix nanoseconds of the last write
	// cancel ends the stream: the client left, a write failed, or the
	// wheel found the connection closed.
	cancel context.CancelFunc
	slot   *streamSlot
	// bucket is the wheel bucket holding the stream, wheelInFlight while
	// the wheel works on it, wheelRemoved once it ended. Guarded by the
	// wheel's mu.
	bucket int
}

const (
	wheelInFlight = -2
	wheelRemoved  = -1
)

// hijack takes over an HTTP/1.x connection and writes the response head
// with the headers set so far. ok is false when the connection cannot be
// hijacked (HTTP/2, a test recorder); the caller then streams through the
// ResponseWriter.
func hijack(c *gin.Context) (net.Conn, bool, error) {
	if c.Request.ProtoMajor != 1 {
		return nil, false, nil
	}
	conn, rw, err := http.NewResponseController(c.Writer).Hijack()
	if err != nil {
		return nil, false, nil //nolint:nilerr // not hijackable: stream through the ResponseWriter
	}
	// Bytes the client sent after its request (none, for an SSE client)
	// are dropped with net/http's buffers.
	_ = rw
	h := c.Writer.Header().Clone()
	// The body runs until the connection closes: no length, no chunking,
	// and the connection is not reused.
	h.Set("Connection", "close")
	h.Del("Content-Length")
	h.Del("Transfer-Encoding")
	var head bytes.Buffer
	head.WriteString("HTTP/1.1 200 OK\r\n")
	_ = h.Write(&head)
	head.WriteString("\r\n")
	if _, err := conn.Write(head.Bytes()); err != nil {
		_ = conn.Close()
		return nil, true, err
	}
	return conn, true, nil
}

// write sends p under the write deadline and notes the time.
func (st *rawStream) write(p []byte, timeout time.Duration) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.writeLocked(p, timeout)
}

func (st *rawStream) writeLocked(p []byte, timeout time.Duration) error {
	now := time.Now()
	if err := st.conn.SetWriteDeadline(now.Add(timeout)); err != nil {
		return err
	}
	_, err := st.conn.Write(p)
	st.last.Store(now.UnixNano())
	return err
}

// connWriter is the io.Writer of an sseWriter on a raw stream.
type connWriter struct {
	st      *rawStream
	timeout time.Duration
}

func (w connWriter) Write(p []byte) (int, error) {
	if err := w.st.write(p, w.timeout); err != nil {
		return 0, err
	}
	return len(p), nil
}

// heartbeatFrame is the comment sent on a stream idle for a heartbeat.
var heartbeatFrame = []byte(": heartbeat\n\n")

// heartbeatWait bounds a heartbeat's write: a stream idle for a whole
// heartbeat has an empty socket buffer unless its client stopped reading,
// and the wheel must not wait long on one client; the bound is generous
// because a loaded machine may pause the wheel between setting the deadline
// and writing.
const heartbeatWait = time.Second

// wheelTicks is the number of wheel ticks per heartbeat (at most): a
// heartbeat is sent between Heartbeat and Heartbeat·(1+1/wheelTicks) after
// the last write.
const wheelTicks = 8

// wheelProbe is how often the wheel looks whether a stream's client closed
// its connection, so a client that left stops counting (the clients gauge,
// its stream slot) within about this time rather than a heartbeat.
const wheelProbe = 2 * time.Second

// sseWheel sends the heartbeats of every raw stream of a server, refreshes
// their stream slots and ends the streams whose clients left. Streams sit
// in buckets by the tick they are due at, so a tick touches only those.
// Its goroutine runs while there are streams and exits with the last one.
type sseWheel struct {
	s       *Server
	every   time.Duration
	timeout time.Duration

	mu      sync.Mutex
	buckets []map[*rawStream]struct{}
	cur     int
	n       int
	running bool
}

func (w *sseWheel) tick() time.Duration {
	return max(min(w.every/wheelTicks, wheelProbe/wheelTicks), time.Millisecond)
}

// span is the most ticks a stream waits for its next visit.
func (w *sseWheel) span() int {
	return max(int(min(w.every, wheelProbe)/w.tick()), 1)
}

// add puts st on the wheel.
func (w *sseWheel) add(st *rawStream) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.buckets == nil {
		w.buckets = make([]map[*rawStream]struct{}, w.span()+1)
		for i := range w.buckets {
			w.buckets[i] = map[*rawStream]struct{}{}
		}
	}
	w.placeLocked(st, w.span())
	w.n++
	if !w.running {
		w.running = true
		go w.run()
	}
}

// remove takes st off the wheel once its stream ended.
func (w *sseWheel) remove(st *rawStream) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if st.bucket == wheelRemoved {
		return
	}
	if st.bucket >= 0 {
		delete(w.buckets[st.bucket], st)
	}
	st.bucket = wheelRemoved
	w.n--
}

func (w *sseWheel) placeLocked(st *rawStream, ticks int) {
	b := (w.cur + min(max(ticks, 1), len(w.buckets)-1)) % len(w.buckets)
	w.buckets[b][st] = struct{}{}
	st.bucket = b
}

func (w *sseWheel) run() {
	t := time.NewTicker(w.tick())
	defer t.Stop()
	var (
		due   []*rawStream
		ticks []int
	)
	for range t.C {
		w.mu.Lock()
		if w.n == 0 {
			w.running = false
			w.mu.Unlock()
			return
		}
		due = due[:0]
		for st := range w.buckets[w.cur] {
			st.bucket = wheelInFlight
			due = append(due, st)
		}
		clear(w.buckets[w.cur])
		w.mu.Unlock()

		now := time.Now()
		ticks = ticks[:0]
		var refresh []*streamSlot
		for _, st := range due {
			next, beat := w.visit(st, now)
			ticks = append(ticks, next)
			if beat && st.slot != nil {
				refresh = append(refresh, st.slot)
			}
		}
		if len(refresh) > 0 {
			// Redis round trips must not hold up the heartbeats.
			go refreshSlots(refresh)
		}

		w.mu.Lock()
		for i, st := range due {
			if st.bucket == wheelInFlight {
				w.placeLocked(st, ticks[i])
			}
		}
		clear(due)
		w.cur = (w.cur + 1) % len(w.buckets)
		w.mu.Unlock()
	}
}

// visit looks at a due stream: it ends the stream when the client left
// and sends a heartbeat when the stream was idle for one. It returns in
// how many ticks the stream is due again and whether it sent a heartbeat.
func (w *sseWheel) visit(st *rawStream, now time.Time) (int, bool) {
	tick := w.tick()
	if !st.mu.TryLock() {
		return 1, false // the pump is writing: the stream is not idle
	}
	defer st.mu.Unlock()
	if peerClosed(st.conn) {
		st.cancel()
		return w.span(), false
	}
	idle := now.Sub(time.Unix(0, st.last.Load()))
	if left := w.every - idle; left > tick/2 {
		return min(int((left+tick-1)/tick), w.span()), false
	}
	if err := st.writeLocked(heartbeatFrame, min(heartbeatWait, w.timeout)); err != nil {
		w.s.tel.sseWriteFailed(err)
		st.cancel()
	}
	return min(int(w.every/tick), w.span()), true
}

func refreshSlots(slots []*streamSlot) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, sl := range slots {
		sl.refresh(ctx)
	}
}
