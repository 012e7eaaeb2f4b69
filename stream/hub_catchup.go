package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/bazaarhq/bazaar/sql/store"
)

// ResetType is the SSE event type sent when a subscriber's cursor cannot be
// honoured: it is older than both the stream and the event log keep, or the
// stream was recreated. The subscriber continues from the current end of
// that stream and should reload its state (a printer lists unprinted orders).
const ResetType = "reset"

// catchUp reads the gap between a resume cursor and the live fan-out,
// merging the subscription's streams by entry id.
type catchUp struct {
	s       *Subscriber
	st      []catchStream // by the subscription's local stream index
	resets  []int
	covered []bool
}

type catchStream struct {
	scan  xid         // read up to here
	buf   []*hubEntry // read, matching, not yet delivered
	atEnd bool        // the last read reached the stream's end
}

func newCatchUp(s *Subscriber, resume []cursorPos) *catchUp {
	c := &catchUp{s: s, st: make([]catchStream, len(s.streams)), covered: make([]bool, len(s.streams))}
	have := make([]bool, len(s.streams))
	for _, p := range resume {
		i, ok := s.hub.byName[cursorKey{p.domain, p.partition}]
		if !ok || s.local[i] < 0 {
			continue
		}
		j := s.local[i]
		have[j] = true
		s.cursor[j] = p.id
		c.st[j].scan = p.id
	}
	// A stream the cursor does not mention (the topics or partitions
	// changed) starts live where the hub is now, which is not a resume.
	for j := range have {
		if !have[j] {
			c.st[j].scan = s.cursor[j]
			c.st[j].atEnd = true
			c.resets = append(c.resets, j)
		}
	}
	return c
}

// next returns the next event of the gap, or live=true once the gap is
// read and the subscription has joined the live fan-out.
func (c *catchUp) next(ctx context.Context) (ev LiveEvent, live bool, err error) {
	s := c.s
	for {
		select {
		case <-s.done:
			return LiveEvent{}, false, s.doneErr
		default:
		}
		if len(c.resets) > 0 {
			j := c.resets[0]
			c.resets = c.resets[1:]
			return c.resetEvent(j), false, nil
		}
		for j := range c.st {
			cs := &c.st[j]
			for len(cs.buf) == 0 && !cs.atEnd && len(c.resets) == 0 {
				if err := c.fetch(ctx, j); err != nil {
					return LiveEvent{}, false, err
				}
			}
		}
		if len(c.resets) > 0 {
			continue
		}
		best := -1
		for j := range c.st {
			if len(c.st[j].buf) > 0 && (best < 0 || c.st[j].buf[0].id.less(c.st[best].buf[0].id)) {
				best = j
			}
		}
		if best >= 0 {
			cs := &c.st[best]
			e := cs.buf[0]
			cs.buf[0] = nil
			cs.buf = cs.buf[1:]
			s.cursor[best] = e.id
			if len(cs.buf) == 0 {
				s.cursor[best] = cs.scan
			}
			return s.event(e), false, nil
		}
		if s.state.CompareAndSwap(stateCatching, stateLive) {
			return LiveEvent{}, true, nil
		}
		// The live queue overflowed while the gap was read, so it has a
		// hole: empty it and read the gap again from where the
		// subscription is.
		s.state.Store(stateCatching)
		s.q.clear()
		clear(s.batch)
		s.batch = s.batch[:0]
		for j := range c.st {
			c.st[j].atEnd = false
		}
	}
}

func (c *catchUp) resetEvent(j int) LiveEvent {
	st := c.s.hub.streams[c.s.streams[j]]
	data, _ := json.Marshal(map[string]any{
		"reason":    "cursor_expired",
		"stream":    st.domain,
		"partition": st.partition,
	})
	return LiveEvent{ID: c.s.Cursor(), Type: ResetType, Data: data}
}

// reset gives up on the gap of stream j: it continues from to, the
// stream's current end, and the subscriber is told with a reset event.
func (c *catchUp) reset(j int, to xid) {
	cs := &c.st[j]
	cs.scan = to
	cs.buf = nil
	cs.atEnd = false
	c.s.cursor[j] = to
	c.resets = append(c.resets, j)
}

// fetch reads the next page of stream j after its scan position: from the
// stream when nothing after that position was trimmed, from the event log
// otherwise. XINFO and XRANGE run in one MULTI so a trim cannot slip
// between the check and the read.
func (c *catchUp) fetch(ctx context.Context, j int) error {
	s := c.s
	h := s.hub
	i := s.streams[j]
	key := h.streams[i].key
	cs := &c.st[j]
	var info *redis.XInfoStreamCmd
	var rng *redis.XMessageSliceCmd
	_, err := h.cfg.Redis.TxPipelined(ctx, func(p redis.Pipeliner) error {
		info = p.XInfoStream(ctx, key)
		rng = p.XRangeN(ctx, key, "("+cs.scan.String(), "+", h.cfg.CatchUpBatch)
		return nil
	})
	if err != nil && info == nil {
		return fmt.Errorf("catch up %s: %w", key, err)
	}
	var lastGen, first xid
	hasFirst, deleted := false, false
	switch ierr := info.Err(); {
	case ierr == nil:
		v := info.Val()
		if lastGen, err = parseXID(v.LastGeneratedID); err != nil {
			return err
		}
		// Redis before 7.0 reports no entries-added; assume deletions.
		deleted = v.EntriesAdded == 0 || v.EntriesAdded > v.Length
		if v.Length > 0 {
			if first, err = parseXID(v.FirstEntry.ID); err != nil {
				return err
			}
			hasFirst = true
		}
	case isNoSuchKey(ierr):
	default:
		return fmt.Errorf("catch up %s: %w", key, ierr)
	}
	if err := rng.Err(); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("catch up %s: %w", key, err)
	}
	if lastGen.less(cs.scan) {
		// The cursor is past the stream's end: the stream was recreated.
		c.reset(j, lastGen)
		return nil
	}
	// Entries after the scan position may be gone from the stream when
	// entries were ever deleted and the stream starts past the position (or
	// is empty though it had entries past it): trimming removes the oldest.
	// Redis 7.0 records max-deleted-entry-id only for XDEL, not for trims,
	// hence the first entry's id decides. An entry the relay deleted again
	// mid-stream (a failed pipeline) was added anew later, so XRANGE past
	// the first entry loses nothing.
	until := lastGen
	if hasFirst {
		until = first.prev()
	}
	if deleted && cs.scan.less(until) {
		return c.fetchLog(ctx, j, until, lastGen)
	}
	msgs := rng.Val()
	for _, m := range msgs {
		id, err := parseXID(m.ID)
		if err != nil {
			return err
		}
		cs.scan = id
		if e := entryFromValues(i, id, m.Values); e != nil && s.matches(e, nil) {
			cs.buf = append(cs.buf, e)
		}
	}
	cs.atEnd = int64(len(msgs)) < h.cfg.CatchUpBatch
	if len(cs.buf) == 0 {
		s.cursor[j] = cs.scan
	}
	return nil
}

// fetchLog reads the trimmed part of stream j, from its scan position up to
// until (inclusive), from the Postgres event log, where the relay recorded
// each event's stream entry id. end is the stream's last id, where a reset
// continues.
func (c *catchUp) fetchLog(ctx context.Context, j int, until, end xid) error {
	s := c.s
	h := s.hub
	i := s.streams[j]
	key := h.streams[i].key
	cs := &c.st[j]
	if h.cfg.DB == nil {
		c.reset(j, end)
		return nil
	}
	if !c.covered[j] {
		// The log must reach back to the cursor, or events between the
		// cursor and the log's start are gone for good.
		ok := cs.scan.isZero()
		if !ok {
			var err error
			ok, err = store.EventLogReaches(ctx, h.cfg.DB, key, cs.scan.ms, cs.scan.seq)
			if err != nil {
				return fmt.Errorf("catch up %s: %w", key, err)
			}
		}
		if !ok {
			c.reset(j, end)
			return nil
		}
		c.covered[j] = true
	}
	var seller *uuid.UUID
	if u, err := uuid.Parse(s.seller); err == nil {
		seller = &u
	}
	limit := int(h.cfg.CatchUpBatch)
	rows, err := store.EventLogRange(ctx, h.cfg.DB, store.EventLogQuery{
		Stream:   key,
		AfterMs:  cs.scan.ms,
		AfterSeq: cs.scan.seq,
		UntilMs:  until.ms,
		UntilSeq: until.seq,
		Seller:   seller,
		Limit:    limit,
	})
	if err != nil {
		return fmt.Errorf("catch up %s from the event log: %w", key, err)
	}
	for _, r := range rows {
		if r.StreamID == nil {
			continue
		}
		id, err := parseXID(*r.StreamID)
		if err != nil {
			return err
		}
		cs.scan = id
		env := EnvelopeOf(r)
		data, err := json.Marshal(env)
		if err != nil {
			return fmt.Errorf("marshal envelope %s: %w", env.ID, err)
		}
		e := &hubEntry{stream: i, id: id, typ: env.Type, seller: env.Seller, eventID: env.ID, data: data}
		if s.matches(e, nil) {
			cs.buf = append(cs.buf, e)
		}
	}
	if len(rows) < limit && cs.scan.less(until) {
		cs.scan = until
	}
	cs.atEnd = false
	if len(cs.buf) == 0 {
		s.cursor[j] = cs.scan
	}
	return nil
}
