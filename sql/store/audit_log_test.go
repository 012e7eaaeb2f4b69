package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
)

// auditRows is how many rows TestAuditListUsesIndexes loads: years of
// repairs by 50 operators.
const auditRows = 200_000

// TestAuditListUsesIndexes runs GET /v1/admin/audit's query with each
// filter against a large audit log and fails when PostgreSQL (EXPLAIN
// ANALYZE) scans audit_log sequentially or reads or sorts more than about
// a page of it.
func TestAuditListUsesIndexes(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 200,000 audit rows; runs without -short")
	}
	t.Parallel()
	ctx := context.Background()
	db, _ := storetest.NewDB(t)
	_, err := db.ExecContext(ctx, fmt.Sprintf(`
INSERT INTO audit_log (id, at, actor, role, action, target, result, request_id)
SELECT ('00000000-0000-7000-8000-' || lpad(to_hex(n), 12, '0'))::uuid,
       timestamptz '2024-01-01' + n * interval '5 minutes',
       'op-' || (n %% 50), 'operator', 'action.' || (n %% 10), 'target:' || (n %% 1000), 'ok', 'r' || n
FROM generate_series(1, %d) n`, auditRows))
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, `ANALYZE audit_log`)
	require.NoError(t, err)

	first := store.Page{Limit: 50}
	mid := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
	_, deep, err := store.ListAuditEntries(ctx, db, store.AuditFilter{Actor: "op-7"}, store.Page{Limit: 500})
	require.NoError(t, err)
	require.NotNil(t, deep)
	cases := map[string]struct {
		f store.AuditFilter
		p store.Page
	}{
		"everything":                {store.AuditFilter{}, first},
		"an actor":                  {store.AuditFilter{Actor: "op-7"}, first},
		"an actor, deep page":       {store.AuditFilter{Actor: "op-7"}, store.Page{Limit: 50, After: deep}},
		"an action":                 {store.AuditFilter{Action: "action.3"}, first},
		"a target":                  {store.AuditFilter{Target: "target:42"}, first},
		"since":                     {store.AuditFilter{Since: mid}, first},
		"until":                     {store.AuditFilter{Until: mid}, first},
		"an actor in a time window": {store.AuditFilter{Actor: "op-7", Since: mid.Add(-30 * 24 * time.Hour), Until: mid}, first},
	}
	for name, c := range cases {
		e := &explainer{DB: db}
		rows, _, err := store.ListAuditEntries(ctx, e, c.f, c.p)
		require.NoError(t, err, name)
		require.NotEmpty(t, rows, name)
		require.Len(t, e.plans, 1, name)
		for _, bad := range checkAuditPlan(e.plans[0].plan) {
			t.Errorf("%s: %s\nplan: %s", name, bad, e.plans[0].raw)
		}
	}
}

func checkAuditPlan(n planNode) []string {
	var bad []string
	touched := (n.Rows + n.Removed + n.Rechecked) * max(n.Loops, 1)
	switch {
	case n.Relation == "audit_log" && n.NodeType == "Seq Scan":
		bad = append(bad, "sequential scan of audit_log")
	case n.Relation == "audit_log" && touched > maxTouched:
		bad = append(bad, fmt.Sprintf("%s of audit_log read %.0f rows", n.NodeType, touched))
	case n.NodeType == "Sort" && touched > maxTouched:
		bad = append(bad, fmt.Sprintf("sort of %.0f rows", touched))
	}
	for _, c := range n.Plans {
		bad = append(bad, checkAuditPlan(c)...)
	}
	return bad
}

// TestAuditEntryRoundTrip: a row keeps what was written, parameters as
// JSON, and commits or rolls back with the transaction it is written in.
func TestAuditEntryRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := storetest.NewDB(t)
	opID := uuid.New()
	count := int64(3)
	in := store.AuditEntry{
		Actor: "ada", ActorID: &opID, Role: "operator", Action: "dlq.redrive", Target: "group:payments",
		Reason: "gateway fixed", Params: store.RawJSON(`{"all": true}`), Result: "ok", Count: &count, RequestID: "req-1",
	}
	err := store.WithTx(ctx, db, func(tx *sqlx.Tx) error {
		if _, err := store.InsertAuditEntry(ctx, tx, in); err != nil {
			return err
		}
		return fmt.Errorf("the effect failed")
	})
	require.EqualError(t, err, "the effect failed")
	rows, _, err := store.ListAuditEntries(ctx, db, store.AuditFilter{}, store.Page{})
	require.NoError(t, err)
	require.Empty(t, rows, "rolled back with its transaction")

	out, err := store.InsertAuditEntry(ctx, db, in)
	require.NoError(t, err)
	rows, next, err := store.ListAuditEntries(ctx, db, store.AuditFilter{Actor: "ada"}, store.Page{})
	require.NoError(t, err)
	require.Nil(t, next)
	require.Len(t, rows, 1)
	got := rows[0]
	require.Equal(t, out.ID, got.ID)
	require.JSONEq(t, `{"all": true}`, string(got.Params))
	got.ID, got.At, got.Params, in.Params = uuid.Nil, time.Time{}, nil, nil
	require.Equal(t, in, got)
}
