package stream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"

	"github.com/bazaarhq/bazaar/internal/backoff"
	"github.com/bazaarhq/bazaar/sql/store"
)

// Hub errors returned by Subscribe and Subscriber.Next.
var (
	// ErrSlowConsumer means the subscriber's queue overflowed; it was
	// disconnected and resumes from the last id it received.
	ErrSlowConsumer = errors.New("subscriber too slow: queue overflowed")
	// ErrHubStopped means the hub is stopped or was never started.
	ErrHubStopped = errors.New("event hub stopped")
	// ErrBadTopic means a topic pattern is not dot-separated words,
	// '*' or '#'.
	ErrBadTopic = errors.New("malformed topic pattern")
)

// HubConfig configures a Hub. Zero fields get defaults.
type HubConfig struct {
	// Redis is read with XREAD and XRANGE. On a single server all streams
	// share one blocking XREAD (one connection); on a cluster client, where
	// one XREAD cannot span slots, every stream is read without blocking in
	// one pipeline, every 50ms (at most Block) while nothing arrives.
	Redis redis.UniversalClient
	// DB is the event log that serves resumes older than a stream still
	// keeps. Without it such a resume gets a reset event.
	DB *sqlx.DB
	// Names are the stream names the relay publishes to.
	Names  Names
	Logger *slog.Logger
	// QueueSize bounds each subscriber's queue (default 1024). It should
	// exceed what one read can bring (ReadCount per stream), or a burst
	// disconnects subscribers that are not slow at all.
	QueueSize int
	// ReadCount is the XREAD COUNT per stream (default 128, at most
	// QueueSize/2).
	ReadCount int64
	// Block is how long one XREAD waits for new entries (default 1s); it
	// also bounds how long Stop waits for a reader.
	Block time.Duration
	// CatchUpBatch is the page size of resume reads (default 256).
	CatchUpBatch int64
}

// HubStats are counters of a running hub.
type HubStats struct {
	// Subscribers is the number of open subscriptions.
	Subscribers int
	// Enqueued counts entries handed to subscriber queues.
	Enqueued uint64
	// Dropped counts subscribers disconnected because their queue overflowed.
	Dropped uint64
}

// Hub reads every event stream once per process and fans the entries out
// in memory to many subscribers, each filtered by topic patterns and
// optionally by seller. Subscribers resume exactly from a cursor (the SSE
// id of the last event they received), reading the gap from the streams or,
// past their trim, from the event log, before joining the live fan-out.
type Hub struct {
	cfg     HubConfig
	log     *slog.Logger
	streams []hubStream
	byKey   map[string]int
	// byName finds a stream by domain and partition when decoding cursors.
	byName map[cursorKey]int

	mu       sync.Mutex
	pos      []xid // last id fanned out, per stream
	ready    chan struct{}
	stopCh   chan struct{} // closed by Stop, releasing Subscribe waiters
	isReady  bool
	running  bool
	stopped  bool
	global   map[*Subscriber]struct{}
	bySeller map[string]map[*Subscriber]struct{}
	subs     int
	// matchCache is guarded by mu.
	matchCache map[matchKey]bool

	lifeMu sync.Mutex
	cancel context.CancelFunc
	wg     sync.WaitGroup

	enqueued atomic.Uint64
	dropped  atomic.Uint64
}

type hubStream struct {
	key       string
	domain    string
	partition int
}

type cursorKey struct {
	domain    string
	partition int
}

// hubEntry is one stream entry as the hub fans it out; it is shared,
// read-only, by every subscriber it is queued for.
type hubEntry struct {
	stream  int
	id      xid
	typ     string
	seller  string
	eventID string
	data    []byte
}

// NewHub validates cfg and builds a stopped hub.
func NewHub(cfg HubConfig) (*Hub, error) {
	if cfg.Redis == nil {
		return nil, errors.New("hub: Redis is required")
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	cfg.QueueSize = cmp.Or(cfg.QueueSize, 1024)
	cfg.ReadCount = max(min(cmp.Or(cfg.ReadCount, 128), int64(cfg.QueueSize/2)), 1)
	cfg.Block = cmp.Or(cfg.Block, time.Second)
	cfg.CatchUpBatch = cmp.Or(cfg.CatchUpBatch, 256)
	h := &Hub{
		cfg:      cfg,
		log:      cfg.Logger,
		byKey:    map[string]int{},
		byName:   map[cursorKey]int{},
		global:   map[*Subscriber]struct{}{},
		bySeller: map[string]map[*Subscriber]struct{}{},
		ready:    make(chan struct{}),
		stopCh:   make(chan struct{}),

		matchCache: map[matchKey]bool{},
	}
	for _, d := range Domains {
		for p, key := range cfg.Names.Streams(d) {
			h.byKey[key] = len(h.streams)
			h.byName[cursorKey{d, p}] = len(h.streams)
			h.streams = append(h.streams, hubStream{key: key, domain: d, partition: p})
		}
	}
	h.pos = make([]xid, len(h.streams))
	return h, nil
}

// Start launches the stream readers. It does not wait for Redis: while
// Redis is unreachable the readers retry and Subscribe waits for them.
func (h *Hub) Start(ctx context.Context) error {
	h.lifeMu.Lock()
	defer h.lifeMu.Unlock()
	h.mu.Lock()
	if h.running || h.stopped {
		h.mu.Unlock()
		return errors.New("hub: already started")
	}
	h.running = true
	h.mu.Unlock()
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	h.cancel = cancel
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.run(runCtx)
	}()
	return nil
}

// Stop ends the readers and disconnects every subscriber with
// ErrHubStopped. It tolerates a second call and a call without Start.
func (h *Hub) Stop(ctx context.Context) error {
	h.lifeMu.Lock()
	defer h.lifeMu.Unlock()
	h.mu.Lock()
	if !h.stopped {
		h.stopped = true
		close(h.stopCh)
	}
	var all []*Subscriber
	for s := range h.global {
		all = append(all, s)
	}
	for _, m := range h.bySeller {
		for s := range m {
			all = append(all, s)
		}
	}
	h.global = map[*Subscriber]struct{}{}
	h.bySeller = map[string]map[*Subscriber]struct{}{}
	h.subs = 0
	h.mu.Unlock()
	for _, s := range all {
		s.kick(ErrHubStopped)
	}
	if h.cancel == nil {
		return nil
	}
	h.cancel()
	done := make(chan struct{})
	go func() { h.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop hub: %w", ctx.Err())
	}
}

// Stats returns the hub's counters.
func (h *Hub) Stats() HubStats {
	h.mu.Lock()
	n := h.subs
	h.mu.Unlock()
	return HubStats{Subscribers: n, Enqueued: h.enqueued.Load(), Dropped: h.dropped.Load()}
}

// run loads the streams' current positions, then runs the readers until
// ctx ends.
func (h *Hub) run(ctx context.Context) {
	all := make([]int, len(h.streams))
	for i := range all {
		all[i] = i
	}
	for attempt := 0; ; attempt++ {
		pos, err := h.lastIDs(ctx, all)
		if err == nil {
			h.mu.Lock()
			copy(h.pos, pos)
			h.isReady = true
			close(h.ready)
			h.mu.Unlock()
			break
		}
		if ctx.Err() != nil {
			return
		}
		h.log.Warn("hub: read stream positions", "err", err, "attempt", attempt+1)
		if !sleepCtx(ctx, hubBackoff.Delay(attempt)) {
			return
		}
	}
	if _, ok := h.cfg.Redis.(*redis.ClusterClient); ok {
		h.readSplit(ctx, all)
		return
	}
	h.read(ctx, all)
}

// hubClusterPoll is how long readSplit pauses when no stream had anything
// (at most HubConfig.Block).
const hubClusterPoll = 50 * time.Millisecond

// readSplit is read on Redis Cluster, where one XREAD cannot span slots:
// one XREAD per stream, without BLOCK, in one pipeline (go-redis sends
// each node its share at once), then a short pause when none had
// anything. A blocking reader per stream would hold a pooled connection
// per stream and starve every other command of the process once the
// streams outnumber the pool.
func (h *Hub) readSplit(ctx context.Context, idx []int) {
	failures := 0
	cmds := make([]*redis.XStreamSliceCmd, len(idx))
	for ctx.Err() == nil {
		pipe := h.cfg.Redis.Pipeline()
		h.mu.Lock()
		for j, i := range idx {
			cmds[j] = pipe.XRead(ctx, &redis.XReadArgs{Streams: []string{h.streams[i].key, h.pos[i].String()}, Count: h.cfg.ReadCount, Block: -1})
		}
		h.mu.Unlock()
		_, _ = pipe.Exec(ctx) // each command's error is read below
		var res []redis.XStream
		var firstErr error
		for _, c := range cmds {
			r, err := c.Result()
			switch {
			case errors.Is(err, redis.Nil):
			case err != nil:
				if firstErr == nil {
					firstErr = err
				}
			default:
				res = append(res, r...)
			}
		}
		h.fanOut(res)
		if firstErr != nil {
			if ctx.Err() != nil {
				return
			}
			h.log.Warn("hub: xread", "err", firstErr, "streams", len(idx))
			if !sleepCtx(ctx, hubBackoff.Delay(failures)) {
				return
			}
			failures++
			continue
		}
		failures = 0
		got := false
		for _, xs := range res {
			got = got || len(xs.Messages) > 0
		}
		if !got && !sleepCtx(ctx, min(h.cfg.Block, hubClusterPoll)) {
			return
		}
	}
}

// lastIDs returns the last generated id of each stream (0-0 when it does
// not exist yet).
func (h *Hub) lastIDs(ctx context.Context, idx []int) ([]xid, error) {
	out := make([]xid, len(idx))
	for j, i := range idx {
		info, err := h.cfg.Redis.XInfoStream(ctx, h.streams[i].key).Result()
		if err != nil {
			if isNoSuchKey(err) {
				continue
			}
			return nil, fmt.Errorf("xinfo %s: %w", h.streams[i].key, err)
		}
		id, err := parseXID(info.LastGeneratedID)
		if err != nil {
			return nil, err
		}
		out[j] = id
	}
	return out, nil
}

func isNoSuchKey(err error) bool {
	return err != nil && strings.Contains(err.Error(), "no such key")
}

// read runs one XREAD BLOCK loop over the given streams until ctx ends.
func (h *Hub) read(ctx context.Context, idx []int) {
	args := make([]string, 2*len(idx))
	for j, i := range idx {
		args[j] = h.streams[i].key
	}
	failures := 0
	for ctx.Err() == nil {
		h.mu.Lock()
		for j, i := range idx {
			args[len(idx)+j] = h.pos[i].String()
		}
		h.mu.Unlock()
		res, err := h.cfg.Redis.XRead(ctx, &redis.XReadArgs{Streams: args, Count: h.cfg.ReadCount, Block: h.cfg.Block}).Result()
		if errors.Is(err, redis.Nil) {
			failures = 0
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			h.log.Warn("hub: xread", "err", err, "streams", len(idx))
			if !sleepCtx(ctx, hubBackoff.Delay(failures)) {
				return
			}
			failures++
			continue
		}
		failures = 0
		h.fanOut(res)
	}
}

// fanOut queues each entry for every subscriber entitled to it. Positions
// advance under the same lock that registers subscribers, which is what
// makes a subscriber's starting point exact.
func (h *Hub) fanOut(res []redis.XStream) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, xs := range res {
		si, ok := h.byKey[xs.Stream]
		if !ok {
			continue
		}
		for _, m := range xs.Messages {
			id, err := parseXID(m.ID)
			if err != nil || !h.pos[si].less(id) {
				continue
			}
			h.pos[si] = id
			e := entryFromValues(si, id, m.Values)
			if e == nil {
				h.log.Warn("hub: entry without envelope", "stream", xs.Stream, "entry_id", m.ID)
				continue
			}
			for s := range h.global {
				h.offer(s, e)
			}
			if e.seller != "" {
				for s := range h.bySeller[e.seller] {
					h.offer(s, e)
				}
			} else if strings.HasPrefix(e.typ, "system.") {
				for _, m := range h.bySeller {
					for s := range m {
						h.offer(s, e)
					}
				}
			}
		}
	}
}

func entryFromValues(si int, id xid, v map[string]any) *hubEntry {
	env, ok := v[FieldEnvelope].(string)
	if !ok {
		return nil
	}
	typ, _ := v[FieldType].(string)
	seller, _ := v[FieldSeller].(string)
	eid, _ := v[FieldID].(string)
	return &hubEntry{stream: si, id: id, typ: typ, seller: seller, eventID: eid, data: []byte(env)}
}

// offer queues e for s without ever blocking the reader. Called with h.mu held.
func (h *Hub) offer(s *Subscriber, e *hubEntry) {
	if s.local[e.stream] < 0 || !s.matches(e, h.matchCache) {
		return
	}
	if s.q.push(e, h.cfg.QueueSize) {
		h.enqueued.Add(1)
		return
	}
	// A subscriber still catching up only notes the loss and reads the gap
	// again; a live one is disconnected and resumes by its last id.
	if s.state.CompareAndSwap(stateCatching, stateLagged) || s.state.Load() == stateLagged {
		return
	}
	h.removeLocked(s)
	h.dropped.Add(1)
	s.kick(ErrSlowConsumer)
}

func (h *Hub) removeLocked(s *Subscriber) {
	if s.seller == "" {
		if _, ok := h.global[s]; ok {
			delete(h.global, s)
			h.subs--
		}
		return
	}
	m := h.bySeller[s.seller]
	if _, ok := m[s]; ok {
		delete(m, s)
		h.subs--
		if len(m) == 0 {
			delete(h.bySeller, s.seller)
		}
	}
}

// SubscribeOptions selects what a subscription receives and where it starts.
type SubscribeOptions struct {
	// Patterns are AMQP topic patterns over event types ("order.*",
	// "system.#"). Empty means "#".
	Patterns []string
	// Seller, when set, limits the subscription to that seller's events
	// plus the public system events (which carry no seller).
	Seller string
	// Cursor is the SSE id of the last event the client received; empty
	// starts at the current end of the streams.
	Cursor string
}

// Subscribe registers a subscription. It waits, within ctx, until the
// readers know the streams' positions. A malformed cursor is ErrBadCursor,
// a malformed pattern ErrBadTopic.
func (h *Hub) Subscribe(ctx context.Context, opts SubscribeOptions) (*Subscriber, error) {
	raw := opts.Patterns
	if len(raw) == 0 {
		raw = []string{"#"}
	}
	patterns, err := compilePatterns(raw)
	if err != nil {
		return nil, err
	}
	var resume []cursorPos
	if opts.Cursor != "" {
		var err error
		if resume, err = decodeCursor(opts.Cursor); err != nil {
			return nil, err
		}
	}
	s := &Subscriber{
		hub:      h,
		patterns: patterns,
		seller:   opts.Seller,
		local:    make([]int, len(h.streams)),
		q:        subQueue{notify: make(chan struct{}, 1)},
		done:     make(chan struct{}),
	}
	for i := range s.local {
		s.local[i] = -1
	}
	for _, d := range domainsOf(patterns) {
		for p := range max(h.cfg.Names.Partitions, 1) {
			i := h.byName[cursorKey{d, p}]
			s.local[i] = len(s.streams)
			s.streams = append(s.streams, i)
		}
	}
	slices.Sort(s.streams)
	for j, i := range s.streams {
		s.local[i] = j
	}
	s.cursor = make([]xid, len(s.streams))

	h.mu.Lock()
	up := h.running && !h.stopped
	h.mu.Unlock()
	if !up {
		return nil, ErrHubStopped
	}
	select {
	case <-h.ready:
	case <-h.stopCh:
		return nil, ErrHubStopped
	case <-ctx.Done():
		return nil, fmt.Errorf("subscribe: %w", ctx.Err())
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped || !h.running {
		return nil, ErrHubStopped
	}
	// The live starting point is the hub's position at registration; a
	// resume reads from its cursor up to at least there before going live.
	for j, i := range s.streams {
		s.cursor[j] = h.pos[i]
	}
	if resume != nil {
		s.catch = newCatchUp(s, resume)
		s.state.Store(stateCatching)
	} else {
		s.state.Store(stateLive)
	}
	if s.seller == "" {
		h.global[s] = struct{}{}
	} else {
		m := h.bySeller[s.seller]
		if m == nil {
			m = map[*Subscriber]struct{}{}
			h.bySeller[s.seller] = m
		}
		m[s] = struct{}{}
	}
	h.subs++
	return s, nil
}

// Subscriber states: catching up from a cursor (overflow only marks the
// subscription lagged), lagged (the live queue lost entries; the gap is
// read again), and live (overflow disconnects).
const (
	stateCatching int32 = iota
	stateLagged
	stateLive
)

// Subscriber is one subscriber of a Hub. Next is not safe for
// concurrent use; Close may be called from any goroutine.
type Subscriber struct {
	hub      *Hub
	patterns []Pattern
	seller   string
	streams  []int // hub stream indexes this subscription reads, ascending
	local    []int // hub stream index -> position in streams, or -1
	cursor   []xid
	q        subQueue
	batch    []*hubEntry // taken from q, being delivered
	state    atomic.Int32
	catch    *catchUp

	done     chan struct{}
	doneOnce sync.Once
	doneErr  error
}

// LiveEvent is one message for a subscriber.
type LiveEvent struct {
	// ID is the SSE id: the subscriber's position in every stream it reads,
	// after this event. Resuming from it continues right after this event.
	ID string
	// Type is the event type, or "reset" when the subscriber's cursor is
	// older than both the stream and the event log keep.
	Type string
	// EventID is the envelope id (empty for a reset).
	EventID string
	// Seller is the envelope's seller, if any.
	Seller string
	// Data is the envelope as JSON, or the reset's reason.
	Data []byte
}

// Cursor returns the subscription's current position as an SSE id.
func (s *Subscriber) Cursor() string {
	pos := make([]cursorPos, len(s.streams))
	for j, i := range s.streams {
		st := s.hub.streams[i]
		pos[j] = cursorPos{domain: st.domain, partition: st.partition, id: s.cursor[j]}
	}
	return encodeCursor(pos)
}

// WillReceive reports whether the subscriber is still to receive the
// recorded event e from the streams, that is whether e is not yet
// published or lies after the subscriber's position. A caller that hands a
// subscriber an older event itself (the current announcement) asks first,
// so nothing arrives twice. An event whose stream position is not recorded
// yet is looked up among the stream's newest entries.
func (s *Subscriber) WillReceive(ctx context.Context, e store.Event) (bool, error) {
	key := s.hub.cfg.Names.ForEvent(e.Type, e.Subject)
	if e.Stream != nil {
		key = *e.Stream
	}
	i, ok := s.hub.byKey[key]
	if !ok || s.local[i] < 0 {
		return false, nil
	}
	var entry string
	if e.StreamID != nil {
		entry = *e.StreamID
	} else {
		// The relay adds to the stream before it records where: look.
		msgs, err := s.hub.cfg.Redis.XRevRangeN(ctx, key, "+", "-", 256).Result()
		if err != nil {
			return false, fmt.Errorf("look up %s: %w", e.ID, err)
		}
		for _, m := range msgs {
			if v, _ := m.Values[FieldID].(string); v == e.ID.String() {
				entry = m.ID
				break
			}
		}
		if entry == "" {
			return true, nil // not published yet
		}
	}
	id, err := parseXID(entry)
	if err != nil {
		return false, err
	}
	return s.cursor[s.local[i]].less(id), nil
}

// Buffered reports whether Next has a live event ready without waiting,
// so a writer can batch what is queued into one write.
func (s *Subscriber) Buffered() bool {
	if s.catch != nil {
		return false
	}
	if len(s.batch) > 0 {
		return true
	}
	s.q.mu.Lock()
	n := len(s.q.buf)
	s.q.mu.Unlock()
	return n > 0
}

// Next returns the next event, first from the gap a resume left and then
// live. It returns ErrSlowConsumer when the subscriber fell too far behind,
// ErrHubStopped when the hub stops, or ctx's error (after which Next may be
// called again: a deadline is how callers interleave heartbeats).
func (s *Subscriber) Next(ctx context.Context) (LiveEvent, error) {
	if s.catch != nil {
		ev, live, err := s.catch.next(ctx)
		if err != nil || !live {
			return ev, err
		}
		s.catch = nil
	}
	for {
		// A disconnect takes effect before whatever is still queued.
		select {
		case <-s.done:
			return LiveEvent{}, s.doneErr
		default:
		}
		if len(s.batch) == 0 {
			s.batch = s.q.take(s.batch)
		}
		if len(s.batch) > 0 {
			e := s.batch[0]
			s.batch[0] = nil
			s.batch = s.batch[1:]
			j := s.local[e.stream]
			if !s.cursor[j].less(e.id) {
				continue // already delivered by the catch-up read
			}
			s.cursor[j] = e.id
			return s.event(e), nil
		}
		select {
		case <-s.q.notify:
		case <-s.done:
			return LiveEvent{}, s.doneErr
		case <-ctx.Done():
			return LiveEvent{}, ctx.Err()
		}
	}
}

func (s *Subscriber) event(e *hubEntry) LiveEvent {
	return LiveEvent{ID: s.Cursor(), Type: e.typ, EventID: e.eventID, Seller: e.seller, Data: e.data}
}

// Close unregisters the subscription. It is safe to call more than once.
func (s *Subscriber) Close() {
	s.hub.mu.Lock()
	s.hub.removeLocked(s)
	s.hub.mu.Unlock()
	s.kick(ErrHubStopped)
}

func (s *Subscriber) kick(err error) {
	s.doneOnce.Do(func() {
		s.doneErr = err
		close(s.done)
	})
}

// matches reports whether the subscription wants e. cache, when not nil,
// memoises pattern matches; the fan-out passes the hub's (under h.mu).
func (s *Subscriber) matches(e *hubEntry, cache map[matchKey]bool) bool {
	if s.seller != "" && e.seller != s.seller && (e.seller != "" || !strings.HasPrefix(e.typ, "system.")) {
		return false
	}
	for _, p := range s.patterns {
		if cache == nil {
			if p.Match(e.typ) {
				return true
			}
			continue
		}
		k := matchKey{p.String(), e.typ}
		m, ok := cache[k]
		if !ok {
			if len(cache) > 1<<14 {
				clear(cache)
			}
			m = p.Match(e.typ)
			cache[k] = m
		}
		if m {
			return true
		}
	}
	return false
}

// matchKey memoises one pattern against one event type: there are few of
// each, while the fan-out would match them once per subscriber and entry.
type matchKey struct{ pattern, typ string }

// subQueue is a subscriber's bounded queue. It is a slice rather than a
// buffered channel so an idle subscriber costs no buffer: memory grows only
// with the backlog of a slow one.
type subQueue struct {
	mu     sync.Mutex
	buf    []*hubEntry
	notify chan struct{} // capacity 1: "buf may be non-empty"
}

// push appends e unless the queue already holds limit entries.
func (q *subQueue) push(e *hubEntry, limit int) bool {
	q.mu.Lock()
	if len(q.buf) >= limit {
		q.mu.Unlock()
		return false
	}
	q.buf = append(q.buf, e)
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
	return true
}

// take returns everything queued, handing spare (emptied) back to the
// queue to reuse its array.
func (q *subQueue) take(spare []*hubEntry) []*hubEntry {
	q.mu.Lock()
	out := q.buf
	q.buf = spare[:0]
	q.mu.Unlock()
	return out
}

// clear drops everything queued.
func (q *subQueue) clear() {
	q.mu.Lock()
	clear(q.buf)
	q.buf = q.buf[:0]
	q.mu.Unlock()
}

// hubBackoff is the wait after a failed read: its ceiling doubles from
// 100ms to 5s, the wait drawn from zero to it (full jitter).
var hubBackoff = backoff.Policy{Base: 100 * time.Millisecond, Max: 5 * time.Second}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
