package main

import (
	"bytes"
	"context"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
)

// TestOperatorsCommand adds, lists, promotes and revokes an operator from
// the CLI: the credential is printed once and works until revoked, bad
// input is a one-line usage error, and each change is an audit row.
func TestOperatorsCommand(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, dbURL := storetest.NewDB(t)
	getenv := func(k string) string { return map[string]string{"DATABASE_URL": dbURL, "USER": "ivy"}[k] }
	cli := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(ctx, append([]string{"bazaar", "operators"}, args...), getenv, &out, &errOut)
		return out.String(), err
	}

	out, err := cli("list")
	require.NoError(t, err)
	require.Contains(t, out, "no operators")

	out, err = cli("add", "ada", "--role", "operator", "--reason", "on call")
	require.NoError(t, err)
	cred := regexp.MustCompile(`bzr_op_[A-Za-z0-9_-]{43}`).FindString(out)
	require.NotEmpty(t, cred, out)
	op, err := store.ActiveOperatorByHash(ctx, db, store.HashKey(cred))
	require.NoError(t, err, "the printed credential is the operator's")
	require.Equal(t, store.OperatorOperator, op.Role)

	_, err = cli("add", "ada", "--role", "viewer")
	require.EqualError(t, err, `an active operator is named "ada"; revoke it first or pick another name`)
	_, err = cli("add", "bob", "--role", "root")
	require.EqualError(t, err, "operators add: --role must be viewer, operator or admin")
	require.Equal(t, 2, exitCode(err))
	_, err = cli("add")
	require.ErrorContains(t, err, "usage: bazaar operators add NAME --role ROLE")
	_, err = cli("revoke", "nobody")
	require.EqualError(t, err, `no active operator is named "nobody"`)

	out, err = cli("set-role", "ada", "--role", "admin")
	require.NoError(t, err)
	require.Equal(t, "ada is now admin\n", out)
	out, err = cli("list")
	require.NoError(t, err)
	require.Regexp(t, `ada\s+admin\s+`+regexp.QuoteMeta(op.TokenPrefix)+`…`, out)
	require.NotContains(t, out, cred)

	_, err = cli("revoke", "ada", "--reason", "left the team")
	require.NoError(t, err)
	_, err = store.ActiveOperatorByHash(ctx, db, store.HashKey(cred))
	require.ErrorIs(t, err, store.ErrNotFound, "a revoked credential no longer works")
	out, err = cli("list")
	require.NoError(t, err)
	require.Contains(t, out, "no operators")
	out, err = cli("list", "--revoked")
	require.NoError(t, err)
	require.Contains(t, out, "ada")

	rows, _, err := store.ListAuditEntries(ctx, db, store.AuditFilter{Actor: "cli:ivy"}, store.Page{Limit: 10})
	require.NoError(t, err)
	var got []string
	for _, r := range rows {
		got = append(got, r.Action+" "+r.Target+" "+r.Reason)
	}
	require.Equal(t, []string{
		"operator.revoke operator:ada left the team",
		"operator.set_role operator:ada ",
		"operator.create operator:ada on call",
	}, got)
}
