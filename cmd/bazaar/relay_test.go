package main

import (
	"flag"
	"io"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/stream"
)

// TestDevRelayTrimsLikeTheRelayRole: "bazaar dev" builds its relay with
// the stream limits "bazaar relay" uses by default, so its streams are
// trimmed instead of growing for as long as it runs.
func TestDevRelayTrimsLikeTheRelayRole(t *testing.T) {
	t.Parallel()
	obs := &observability{Registry: prometheus.NewRegistry()}
	names := stream.Names{Prefix: "bazaar:"}

	// The relay role's flags, parsed from an empty command line.
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	commands["relay"].flags(fs)
	require.NoError(t, fs.Parse(nil))
	flagValue := func(name string) string { return fs.Lookup(name).Value.String() }

	dev := devRelayConfig(nil, nil, names, nil, obs)
	require.EqualValues(t, 1_000_000, dev.MaxLen, "dev keeps about a million entries per stream")
	require.Equal(t, 7*24*time.Hour, dev.MaxAge, "dev drops entries older than a week")
	require.Equal(t, flagValue("maxlen"), strconv.FormatInt(dev.MaxLen, 10))
	require.Equal(t, flagValue("maxage"), dev.MaxAge.String())
	require.Equal(t, flagValue("trim-interval"), dev.TrimInterval.String())
	require.Equal(t, flagValue("batch"), strconv.Itoa(dev.BatchSize))
	require.Equal(t, flagValue("lanes"), strconv.Itoa(dev.Lanes))
	require.Equal(t, flagValue("poll"), dev.PollInterval.String())
}
