package store

import (
	"bytes"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"
)

// Keyset pagination: lists are ordered by (created_at, id) and a page starts
// strictly after the last row of the previous one, so rows inserted while a
// client pages through never shift the pages (no gaps, no repeats), unlike
// OFFSET.

// Cursor marks the last row of a page.
type Cursor struct {
	CreatedAt time.Time
	ID        uuid.UUID
}

// Page asks for one page of a list: at most Limit rows after After (from
// the start when After is nil).
type Page struct {
	Limit int
	After *Cursor
}

// DefaultPageLimit is the page size when a caller asks for none.
const DefaultPageLimit = 50

func (p Page) limit() int {
	if p.Limit <= 0 {
		return DefaultPageLimit
	}
	return p.Limit
}

// pageOf trims a result fetched with limit+1 rows to the page and returns
// the cursor of the next page, nil when this is the last one.
func pageOf[T any](rows []T, limit int, key func(T) Cursor) ([]T, *Cursor) {
	if len(rows) <= limit {
		return rows, nil
	}
	rows = rows[:limit]
	next := key(rows[len(rows)-1])
	return rows, &next
}

// uuidArray passes ids as a text array; queries cast it with ::uuid[].
func uuidArray(ids []uuid.UUID) pq.StringArray {
	out := make(pq.StringArray, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}

// sortByID orders products by id (for UUIDv7 ids: by creation), so callers
// see a stable order.
func sortByID(ps []Product) {
	slices.SortFunc(ps, func(a, b Product) int { return bytes.Compare(a.ID[:], b.ID[:]) })
}
