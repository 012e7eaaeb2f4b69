package stream

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
)

// ErrBadCursor means a resume cursor (an SSE Last-Event-ID) is not one this
// hub wrote: it is malformed, not a client's position that expired.
var ErrBadCursor = errors.New("malformed event cursor")

func (id xid) isZero() bool { return id.ms == 0 && id.seq == 0 }

// prev returns the id just below id, so that an exclusive range from
// prev starts at id. The zero id has no predecessor and is returned unchanged.
func (id xid) prev() xid {
	switch {
	case id.seq > 0:
		return xid{id.ms, id.seq - 1}
	case id.ms > 0:
		return xid{id.ms - 1, ^uint64(0)}
	default:
		return id
	}
}

// cursorVersion leads every encoded cursor so the format can change
// without old clients' ids being misread.
const cursorVersion = 1

// cursorPos is one stream's position inside a cursor, named by domain and
// partition rather than by key so a cursor survives a prefix change and
// stays short.
type cursorPos struct {
	domain    string
	partition int
	id        xid
}

// encodeCursor writes positions as base64url: a version byte, then per
// stream the domain, partition and id, with milliseconds stored as the
// difference to the previous stream's so that a cursor over eight streams
// stays around a hundred characters.
func encodeCursor(pos []cursorPos) string {
	buf := make([]byte, 0, 1+len(pos)*16)
	buf = append(buf, cursorVersion)
	var prevMs uint64
	for _, p := range pos {
		buf = binary.AppendUvarint(buf, uint64(len(p.domain)))
		buf = append(buf, p.domain...)
		buf = binary.AppendUvarint(buf, uint64(p.partition))
		buf = binary.AppendVarint(buf, int64(p.id.ms-prevMs))
		buf = binary.AppendUvarint(buf, p.id.seq)
		prevMs = p.id.ms
	}
	return base64.RawURLEncoding.EncodeToString(buf)
}

// decodeCursor reads what encodeCursor wrote. Any deviation is ErrBadCursor.
func decodeCursor(s string) ([]cursorPos, error) {
	if s == "" || len(s) > 4096 {
		return nil, ErrBadCursor
	}
	// The decoder skips CR and LF; a cursor is the URL alphabet only.
	for i := range len(s) {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '-' && c != '_' {
			return nil, ErrBadCursor
		}
	}
	buf, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(buf) == 0 || buf[0] != cursorVersion {
		return nil, ErrBadCursor
	}
	buf = buf[1:]
	var out []cursorPos
	var prevMs uint64
	for len(buf) > 0 {
		n, k := binary.Uvarint(buf)
		if k <= 0 || n == 0 || n > 64 || uint64(len(buf)-k) < n {
			return nil, ErrBadCursor
		}
		buf = buf[k:]
		domain := string(buf[:n])
		buf = buf[n:]
		part, k := binary.Uvarint(buf)
		if k <= 0 || part > 1<<16 {
			return nil, ErrBadCursor
		}
		buf = buf[k:]
		delta, k := binary.Varint(buf)
		if k <= 0 {
			return nil, ErrBadCursor
		}
		buf = buf[k:]
		seq, k := binary.Uvarint(buf)
		if k <= 0 {
			return nil, ErrBadCursor
		}
		buf = buf[k:]
		ms := prevMs + uint64(delta)
		prevMs = ms
		out = append(out, cursorPos{domain: domain, partition: int(part), id: xid{ms: ms, seq: seq}})
	}
	if len(out) == 0 {
		return nil, ErrBadCursor
	}
	return out, nil
}
