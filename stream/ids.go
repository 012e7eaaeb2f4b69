package stream

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// xid is a parsed stream entry id ("1700000000000-3").
type xid struct{ ms, seq uint64 }

func parseXID(s string) (xid, error) {
	msPart, seqPart, ok := strings.Cut(s, "-")
	ms, err := strconv.ParseUint(msPart, 10, 64)
	if err != nil {
		return xid{}, fmt.Errorf("stream entry id %q: %w", s, err)
	}
	if !ok {
		return xid{ms: ms}, nil
	}
	seq, err := strconv.ParseUint(seqPart, 10, 64)
	if err != nil {
		return xid{}, fmt.Errorf("stream entry id %q: %w", s, err)
	}
	return xid{ms: ms, seq: seq}, nil
}

func (id xid) String() string {
	return strconv.FormatUint(id.ms, 10) + "-" + strconv.FormatUint(id.seq, 10)
}

func (id xid) less(o xid) bool { return id.ms < o.ms || (id.ms == o.ms && id.seq < o.seq) }

// next is the smallest id above id.
func (id xid) next() xid {
	if id.seq == ^uint64(0) {
		return xid{ms: id.ms + 1}
	}
	return xid{ms: id.ms, seq: id.seq + 1}
}

func (id xid) time() time.Time { return time.UnixMilli(int64(id.ms)) }

// compareIDs orders two entry ids; unparseable ids sort first.
func compareIDs(a, b string) int {
	x, errA := parseXID(a)
	y, errB := parseXID(b)
	switch {
	case errA != nil || errB != nil:
		return strings.Compare(a, b)
	case x.less(y):
		return -1
	case y.less(x):
		return 1
	}
	return 0
}

// EntryTime returns when a stream entry was added, read from its id.
func EntryTime(id string) (time.Time, bool) {
	e, err := parseXID(id)
	if err != nil {
		return time.Time{}, false
	}
	return e.time(), true
}
