package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/migrations"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
)

// Every role but dev refuses to start without an admin token of its own,
// in one line naming the variable, before it connects to anything (the
// URLs point at ports nothing listens on).
func TestAdminTokenRequiredOutsideDev(t *testing.T) {
	t.Parallel()
	for _, role := range []string{"serve", "work", "relay", "schedule"} {
		for _, token := range []string{"", defaultAdminToken, " " + defaultAdminToken + " "} {
			env := map[string]string{
				"DATABASE_URL":     "postgres://postgres@127.0.0.1:1/nothing?sslmode=disable",
				"REDIS_URL":        "redis://127.0.0.1:1/0",
				"BAZAAR_SMTP_HOST": "mail.invalid", "BAZAAR_ADMIN_TOKEN": token,
			}
			var out, errOut bytes.Buffer
			err := run(context.Background(), []string{"bazaar", role}, envOf(env), &out, &errOut)
			require.Error(t, err, "%s with token %q", role, token)
			require.Contains(t, err.Error(), "BAZAAR_ADMIN_TOKEN", role)
			require.NotContains(t, err.Error(), "not reachable", role)
			require.NotContains(t, err.Error(), "\n", role)
			require.Empty(t, out.String(), "%s logged before refusing", role)
		}
	}
}

// "-h" after any command or action prints its usage and flags on stdout
// and exits 0, without reaching a server (the URLs point at ports nothing
// listens on).
func TestHelpOfEveryCommand(t *testing.T) {
	t.Parallel()
	env := envOf(map[string]string{
		"DATABASE_URL": "postgres://postgres@127.0.0.1:1/nothing?sslmode=disable",
		"REDIS_URL":    "redis://127.0.0.1:1/0",
	})
	type call struct {
		args  []string
		usage string
		flags []string
	}
	var calls []call
	for name, c := range commands {
		var flags []string
		if c.flags != nil {
			fs := flag.NewFlagSet(name, flag.ContinueOnError)
			c.flags(fs)
			fs.VisitAll(func(f *flag.Flag) { flags = append(flags, "-"+f.Name) })
		}
		for _, h := range []string{"-h", "-help", "--help"} {
			calls = append(calls, call{[]string{name, h}, "usage: bazaar " + name, flags})
		}
		calls = append(calls, call{[]string{"help", name}, "usage: bazaar " + name, flags})
	}
	for _, action := range []string{"up", "down", "status"} {
		calls = append(calls, call{[]string{"migrate", action, "-h"}, "usage: bazaar migrate", []string{"-steps"}})
	}
	for action, a := range dlqActions {
		var flags []string
		fs := flag.NewFlagSet(action, flag.ContinueOnError)
		a.flags(fs, &dlqOptions{})
		fs.VisitAll(func(f *flag.Flag) { flags = append(flags, "-"+f.Name) })
		calls = append(calls, call{[]string{"dlq", action, "-h"}, "usage: bazaar dlq " + action, flags})
		calls = append(calls, call{[]string{"dlq", action, "some-group", "--help"}, "usage: bazaar dlq " + action, flags})
	}
	require.Contains(t, commands, "dlq")
	for _, c := range calls {
		var out, errOut bytes.Buffer
		err := run(context.Background(), append([]string{"bazaar"}, c.args...), env, &out, &errOut)
		require.NoError(t, err, "bazaar %v", c.args)
		require.True(t, strings.HasPrefix(out.String(), c.usage), "bazaar %v printed %q", c.args, out.String())
		for _, f := range c.flags {
			require.Contains(t, out.String(), f, "bazaar %v", c.args)
		}
		require.Empty(t, errOut.String(), "bazaar %v", c.args)
	}

	// A mistake is one line and exit status 2.
	var out bytes.Buffer
	err := run(context.Background(), []string{"bazaar", "relay", "-bogus"}, env, &out, &out)
	require.ErrorContains(t, err, "-bogus")
	require.NotContains(t, err.Error(), "\n")
	require.Equal(t, 2, exitCode(err))
	require.Empty(t, out.String())
}

// "bazaar migrate status" exits non-zero exactly when the roles of this
// binary would not serve on the schema: migrations pending, or dirty.
func TestMigrateStatusExitCode(t *testing.T) {
	t.Parallel()
	db, dbURL := storetest.NewDB(t)
	env := envOf(map[string]string{"DATABASE_URL": dbURL})
	latest := migrations.Latest()
	tests := []struct {
		version uint
		dirty   bool
		out     string
		wantErr string
	}{
		{latest, false, "(up to date)", ""},
		{latest + 1, false, "(database is newer than this binary)", ""},
		{latest - 1, false, "(1 pending)", "1 migration(s) pending"},
		{latest, true, "(dirty", "dirty"},
	}
	for _, tc := range tests {
		_, err := db.Exec(`UPDATE schema_migrations SET version = $1, dirty = $2`, tc.version, tc.dirty)
		require.NoError(t, err)
		var out bytes.Buffer
		err = run(context.Background(), []string{"bazaar", "migrate", "status"}, env, &out, &out)
		require.Contains(t, out.String(), tc.out, "version %d dirty %v", tc.version, tc.dirty)
		if tc.wantErr == "" {
			require.NoError(t, err, "version %d dirty %v", tc.version, tc.dirty)
			continue
		}
		require.ErrorContains(t, err, tc.wantErr, "version %d dirty %v", tc.version, tc.dirty)
		require.Equal(t, 1, exitCode(err))
	}
}

// The link-time values win; without them the module version and the VCS
// stamp Go records stand in.
func TestBuildInfo(t *testing.T) {
	t.Parallel()
	stamped := &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.time", Value: "2026-11-30T10:00:00Z"}, {Key: "vcs.modified", Value: "true"},
	}}
	require.Equal(t, buildInfo{Version: "v2.0.0", Commit: "def456", Time: "2026-12-01T00:00:00Z", GoVersion: runtime.Version(), Modified: true},
		resolveBuild("v2.0.0", "def456", "2026-12-01T00:00:00Z", stamped))
	require.Equal(t, buildInfo{Version: "v1.4.0", Commit: "abc123", Time: "2026-11-30T10:00:00Z", GoVersion: runtime.Version(), Modified: true},
		resolveBuild("", "", "", stamped))
	require.Equal(t, buildInfo{Version: "dev", Commit: "unknown", Time: "unknown", GoVersion: runtime.Version()},
		resolveBuild("", "", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}))

	var out bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"bazaar", "version"}, envOf(nil), &out, &out))
	b := currentBuild()
	require.Equal(t, "bazaar "+b.Version+"\n", strings.SplitAfter(out.String(), "\n")[0])
	require.Contains(t, out.String(), "go:     "+runtime.Version()+"\n")

	// Every role's registry carries the same build as bazaar_build_info.
	o, err := newObservability(context.Background(), envOf(nil), "relay", testLog())
	require.NoError(t, err)
	mfs, err := o.Registry.Gather()
	require.NoError(t, err)
	var found bool
	for _, mf := range mfs {
		if mf.GetName() != "bazaar_build_info" {
			continue
		}
		require.Len(t, mf.GetMetric(), 1)
		m := mf.GetMetric()[0]
		require.Equal(t, 1.0, m.GetGauge().GetValue())
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		require.Equal(t, map[string]string{"version": b.Version, "commit": b.Commit, "go_version": runtime.Version()}, labels)
		found = true
	}
	require.True(t, found, "no bazaar_build_info")
}

// recorder is a component that records whether it was started.
type recorder struct{ started, stopped bool }

func (r *recorder) Start(context.Context) error { r.started = true; return nil }
func (r *recorder) Stop(context.Context) error  { r.stopped = true; return nil }

// A port already taken fails in one line naming the variable, before any
// other part has started, and the ports bound so far are released.
func TestTakenPortFailsBeforeAnythingStarts(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = taken.Close() })
	hc, err := loadHTTPConfig(envOf(nil))
	require.NoError(t, err)
	free := newHTTPServer("BAZAAR_METRICS_ADDR", "127.0.0.1:0", http.NotFoundHandler(), hc, testLog())
	busy := newHTTPServer("BAZAAR_HTTP_ADDR", taken.Addr().String(), http.NotFoundHandler(), hc, testLog())
	rec := &recorder{}
	err = runComponents(context.Background(), testLog(), time.Second, rec, free, busy)
	require.ErrorContains(t, err, "BAZAAR_HTTP_ADDR: ")
	require.ErrorContains(t, err, "address already in use")
	require.NotContains(t, err.Error(), "\n")
	require.False(t, rec.started, "a part started before the ports were bound")
	require.Empty(t, free.Addr(), "the free port stays bound")
}

// A DATABASE_URL parameter lib/pq does not know is a configuration error
// naming the variable, not a server that is "not reachable".
func TestBadSSLModeIsAConfigError(t *testing.T) {
	t.Parallel()
	// A made-up password, to see that the error does not repeat it.
	env := envOf(map[string]string{"DATABASE_URL": "postgres://postgres:secret@127.0.0.1:5432/bazaar?sslmode=bogus"}) //nolint:gosec // not a credential
	for _, args := range [][]string{{"migrate", "status"}, {"dlq", "list"}} {
		err := run(context.Background(), append([]string{"bazaar"}, args...), env, io.Discard, io.Discard)
		require.ErrorContains(t, err, "DATABASE_URL", "bazaar %v", args)
		require.ErrorContains(t, err, `"sslmode": "bogus" is not supported`, "bazaar %v", args)
		require.NotContains(t, err.Error(), "not reachable", "bazaar %v", args)
		require.NotContains(t, err.Error(), "secret", "bazaar %v", args)
	}
}
