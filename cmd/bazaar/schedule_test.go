package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/scheduler"
)

func TestLoadScheduleConfig(t *testing.T) {
	t.Parallel()
	env := func(kv map[string]string) func(string) string {
		return func(k string) string { return kv[k] }
	}
	sc, err := loadScheduleConfig(env(nil))
	require.NoError(t, err)
	require.Equal(t, scheduler.DefaultInvoicingSpec, sc.InvoiceSpec)
	require.Equal(t, time.UTC, sc.Location)
	require.Equal(t, 7*24*time.Hour, sc.CatchUp)
	require.Equal(t, "EUR=1900,GBP=2000,USD=0", sc.Tax.String())
	require.Equal(t, "low", sc.Queue)
	require.Equal(t, 400*24*time.Hour, sc.EventRetention)
	require.False(t, sc.EventArchiveDetach)
	require.Equal(t, 3, sc.EventPartitionsAhead)

	sc, err = loadScheduleConfig(env(map[string]string{
		"BAZAAR_EVENT_RETENTION": "730d", "BAZAAR_EVENT_ARCHIVE": "detach", "BAZAAR_EVENT_PARTITIONS_AHEAD": "6",
	}))
	require.NoError(t, err)
	require.Equal(t, 730*24*time.Hour, sc.EventRetention)
	require.True(t, sc.EventArchiveDetach)
	require.Equal(t, 6, sc.EventPartitionsAhead)
	sc, err = loadScheduleConfig(env(map[string]string{"BAZAAR_EVENT_RETENTION": "2400h"}))
	require.NoError(t, err)
	require.Equal(t, 100*24*time.Hour, sc.EventRetention)
	require.Equal(t, scheduler.DefaultBookkeepingRetention, sc.Retention)

	sc, err = loadScheduleConfig(env(map[string]string{
		"BAZAAR_INVOICE_SCHEDULE": "off", "BAZAAR_INVOICE_TZ": "Europe/Berlin", "BAZAAR_INVOICE_TAX": "EUR=700,*=0",
		"BAZAAR_PROCESSED_EVENTS_RETENTION": "240h",
	}))
	require.NoError(t, err)
	require.Equal(t, 240*time.Hour, sc.Retention.ProcessedEvents)
	require.Empty(t, sc.InvoiceSpec)
	require.Equal(t, "Europe/Berlin", sc.Location.String())
	rate, ok := sc.Tax.Rate("JPY")
	require.True(t, ok)
	require.Zero(t, rate)

	bad := []struct{ key, value, want string }{
		{"BAZAAR_INVOICE_SCHEDULE", "0 2 32 * *", "BAZAAR_INVOICE_SCHEDULE"},
		{"BAZAAR_INVOICE_TZ", "Mars/Olympus", "BAZAAR_INVOICE_TZ"},
		{"BAZAAR_INVOICE_TAX", "EUR=19%", "BAZAAR_INVOICE_TAX"},
		{"BAZAAR_INVOICE_QUEUE", "urgent", "BAZAAR_INVOICE_QUEUE"},
		{"BAZAAR_INVOICE_CHUNK", "0", "BAZAAR_INVOICE_CHUNK"},
		{"BAZAAR_SCHEDULE_POLL", "10ms", "BAZAAR_SCHEDULE_POLL"},
		{"BAZAAR_SCHEDULE_LEASE_TTL", "5s", "BAZAAR_SCHEDULE_LEASE_TTL"},
		{"BAZAAR_SCHEDULE_CATCHUP", "15s", "BAZAAR_SCHEDULE_CATCHUP"},
		{"BAZAAR_SCHEDULE_CATCHUP", "40s", "BAZAAR_SCHEDULE_CATCHUP"},
		{"BAZAAR_INVOICE_SCHEDULE", "* * * * *", "BAZAAR_INVOICE_SCHEDULE"},
		{"BAZAAR_INVOICE_SCHEDULE", "0 */12 * * *", "fires more than once a day"},
		{"BAZAAR_EVENT_RETENTION", "forever", "BAZAAR_EVENT_RETENTION"},
		{"BAZAAR_EVENT_RETENTION", "7d", "at least 31 days"},
		{"BAZAAR_EVENT_ARCHIVE", "s3", "BAZAAR_EVENT_ARCHIVE"},
		{"BAZAAR_EVENT_PARTITIONS_AHEAD", "0", "BAZAAR_EVENT_PARTITIONS_AHEAD"},
		{"BAZAAR_PROCESSED_EVENTS_RETENTION", "1h", "BAZAAR_PROCESSED_EVENTS_RETENTION: must be at least 24h"},
		{"BAZAAR_SENT_EMAILS_RETENTION", "30d", "BAZAAR_SENT_EMAILS_RETENTION"},
	}
	for _, tc := range bad {
		_, err := loadScheduleConfig(env(map[string]string{tc.key: tc.value}))
		require.ErrorContains(t, err, tc.want, tc.key)
	}
}
