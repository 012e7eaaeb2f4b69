package stream

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCursorRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		pos  []cursorPos
	}{
		{"one stream at zero", []cursorPos{{domain: "order", id: xid{}}}},
		{"eight streams", []cursorPos{
			{"order", 0, xid{1717171717171, 0}},
			{"user", 0, xid{1717171717000, 3}},
			{"product", 0, xid{0, 0}},
			{"inventory", 0, xid{1817171717171, 12}},
			{"payment", 0, xid{1717171717171, 1}},
			{"return", 0, xid{1, 1}},
			{"invoice", 0, xid{^uint64(0) >> 1, ^uint64(0)}},
			{"system", 0, xid{1717171717172, 0}},
		}},
		{"partitions", []cursorPos{{"order", 0, xid{5, 0}}, {"order", 15, xid{4, 9}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := encodeCursor(tt.pos)
			require.NotContains(t, s, "\n")
			require.NotContains(t, s, "\r")
			got, err := decodeCursor(s)
			require.NoError(t, err)
			require.Equal(t, tt.pos, got)
		})
	}
}

func TestCursorEightStreamsStaysShort(t *testing.T) {
	t.Parallel()
	var pos []cursorPos
	for i, d := range Domains {
		pos = append(pos, cursorPos{domain: d, id: xid{1717171717171 + uint64(i*37), uint64(i)}})
	}
	require.Less(t, len(encodeCursor(pos)), 120)
}

func TestDecodeCursorRejectsMalformed(t *testing.T) {
	t.Parallel()
	good := encodeCursor([]cursorPos{{"order", 0, xid{1717171717171, 2}}})
	for _, bad := range []string{
		"", "not base64!", "AA", "Ag", // empty, bad alphabet, version 0, version 2
		good[:len(good)-2], // truncated
		good + "\n",        // newline
		"1717171717171-0",  // a raw stream id is not a cursor
		string(make([]byte, 5000)),
	} {
		_, err := decodeCursor(bad)
		require.Truef(t, errors.Is(err, ErrBadCursor), "cursor %q: err %v", bad, err)
	}
}

func FuzzDecodeCursor(f *testing.F) {
	f.Add(encodeCursor([]cursorPos{{"order", 0, xid{1717171717171, 2}}, {"system", 0, xid{3, 4}}}))
	f.Add("AQ")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		pos, err := decodeCursor(s)
		if err != nil {
			return
		}
		// Whatever decodes must encode back to a cursor with the same positions.
		again, err := decodeCursor(encodeCursor(pos))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if len(again) != len(pos) {
			t.Fatalf("round trip changed length")
		}
		for i := range pos {
			if again[i] != pos[i] {
				t.Fatalf("round trip changed %v to %v", pos[i], again[i])
			}
		}
	})
}

func TestEntryIDOrderAndPrev(t *testing.T) {
	t.Parallel()
	a := xid{5, 0}
	require.True(t, a.prev().less(a))
	require.Equal(t, xid{4, ^uint64(0)}, a.prev())
	require.Equal(t, xid{5, 1}, xid{5, 2}.prev())
	require.Equal(t, xid{}, xid{}.prev())
	id, err := parseXID("1717171717171-42")
	require.NoError(t, err)
	require.Equal(t, "1717171717171-42", id.String())
	for _, bad := range []string{"", "a-1", "1-b", "-1", "1-"} {
		_, err := parseXID(bad)
		require.Errorf(t, err, "%q", bad)
	}
}

func TestPatternsWithin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		patterns []string
		want     bool
	}{
		{[]string{"system.#"}, true},
		{[]string{"system.maintenance"}, true},
		{[]string{"system.*", "system.maintenance"}, true},
		{[]string{"system.#", "order.created"}, false},
		{[]string{"#"}, false},
		{[]string{"*.maintenance"}, false},
		{[]string{"#.maintenance"}, false},
		{nil, false},
	}
	for _, tt := range tests {
		require.Equalf(t, tt.want, PatternsWithin(tt.patterns, "system.#"), "%v", tt.patterns)
	}
}
