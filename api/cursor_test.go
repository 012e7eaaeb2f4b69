package api

import (
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
)

// FuzzDecodeCursor: whatever a client sends as ?cursor=, the decoder
// either refuses it or returns a cursor the list queries can run with,
// and an accepted cursor is exactly the one the API would have sent.
func FuzzDecodeCursor(f *testing.F) {
	id := uuid.MustParse("0190a5c4-7b1e-7cc2-9b3a-2f4e5d6c7b8a")
	for _, at := range []time.Time{time.Now(), minCursorTime, maxCursorTime, time.Unix(0, 0)} {
		f.Add(*encodeCursor(&store.Cursor{CreatedAt: at, ID: id}))
	}
	for _, s := range []string{
		"gAAAAAAAAAABAQEBAQEBAQEBAQEBAQEB", // int64 minimum microseconds
		"f_________wEBAQEBAQEBAQEBAQEBAQE", // int64 maximum
		"", "AAAA", "gAAAAAAAAAABAQEBAQEBAQEBAQEBAQE=", "gAAAAAAAAAABAQEBAQEBAQEBAQEBAQEBAA",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cur, err := decodeCursor(s)
		if err != nil {
			return
		}
		if cur.CreatedAt.Before(minCursorTime) || cur.CreatedAt.After(maxCursorTime) {
			t.Fatalf("decodeCursor(%q) accepted time %v", s, cur.CreatedAt)
		}
		if got := *encodeCursor(&cur); got != s {
			t.Fatalf("decodeCursor(%q) accepted a cursor that encodes as %q", s, got)
		}
	})
}

// Every list refuses a cursor whose time PostgreSQL cannot represent with
// a 400 naming the parameter, and runs a cursor at either bound.
func TestListCursorOutOfRange(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := uuid.New()
	lists := []struct {
		path  string
		token string
	}{
		{"/v1/sellers", b.admin},
		{"/v1/sellers/" + b.sellerA.String() + "/products", b.keyA},
		{"/v1/orders", b.admin},
		{"/v1/returns", b.admin},
		{"/v1/admin/invoicing/runs", b.admin},
		{"/v1/invoices", b.admin},
		{"/v1/sellers/" + b.sellerA.String() + "/unprinted-orders", b.printerA},
	}
	bad := []string{
		"gAAAAAAAAAABAQEBAQEBAQEBAQEBAQEB",
		"f_________wEBAQEBAQEBAQEBAQEBAQE",
		*encodeCursor(&store.Cursor{CreatedAt: minCursorTime.Add(-time.Microsecond), ID: id}),
		*encodeCursor(&store.Cursor{CreatedAt: maxCursorTime.Add(time.Microsecond), ID: id}),
	}
	good := []string{
		*encodeCursor(&store.Cursor{CreatedAt: minCursorTime, ID: id}),
		*encodeCursor(&store.Cursor{CreatedAt: maxCursorTime, ID: id}),
	}
	for _, l := range lists {
		for _, cur := range bad {
			p := b.do(http.MethodGet, l.path+"?cursor="+cur, l.token, nil).problem(http.StatusBadRequest, "invalid-parameter")
			require.Equal(t, "cursor", p["errors"].([]any)[0].(map[string]any)["field"], "%s cursor %s", l.path, cur)
		}
		for _, cur := range good {
			b.do(http.MethodGet, l.path+"?cursor="+cur, l.token, nil).status(http.StatusOK)
		}
	}
}
