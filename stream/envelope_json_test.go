package stream

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
)

// The relay's encoder must write what json.Marshal writes: consumers and
// SSE clients of older releases decode the same documents.
func TestEnvelopeJSONMatchesMarshal(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 3, 11, 40, 0, 123456000, time.UTC)
	cases := map[string]Envelope{
		"minimal": {ID: "e1", Type: "order.created", Source: "/bazaar", SpecVersion: "1.0", Time: at, Subject: "ord-1", DataContentType: "application/json", Data: json.RawMessage(`{"total":1250}`)},
		"every field": {
			ID: "e2", Type: "order.paid", Source: "/bazaar", SpecVersion: "1.0", Time: at.Add(-time.Hour), Subject: "ord-2",
			Seller: "s-1", RequestID: "req-9", TraceParent: "00-aa-bb-01", DataSchema: "https://example.com/s", DataContentType: "application/json",
			Data: json.RawMessage(`{"items":[1,2,3],"note":"x"}`),
		},
		"escapes": {
			ID: "e3", Type: "t", Subject: "a\"b\\c\n\r\t\b\f\x01\x1f<>&\u2028\u2029é日本\xff\xfe", Time: time.Time{},
			DataContentType: "application/json", Data: json.RawMessage(`"plain"`),
		},
		"no data":            {ID: "e4", Time: at},
		"data with spaces":   {ID: "e5", Time: at, Data: json.RawMessage("{\"n\": 1,\n \"m\": [1, 2]}")},
		"time with offset":   {ID: "e6", Time: at.In(time.FixedZone("x", 3600))},
		"time, whole second": {ID: "e7", Time: at.Truncate(time.Second)},
	}
	for name, env := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			want, err := json.Marshal(env)
			require.NoError(t, err)
			got, err := env.appendJSON(nil)
			require.NoError(t, err)
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("appendJSON differs from json.Marshal (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEnvelopeJSONRejectsWhatMarshalRejects(t *testing.T) {
	t.Parallel()
	for name, env := range map[string]Envelope{
		"invalid data": {ID: "e1", Data: json.RawMessage(`{"n":`)},
		"year 10000":   {ID: "e2", Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		_, wantErr := json.Marshal(env)
		require.Error(t, wantErr, name)
		_, err := env.appendJSON(nil)
		require.Error(t, err, name)
	}
}
