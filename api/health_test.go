package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/migrations"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
)

// /readyz says ready while the schema is at least this binary's version, so
// the previous release's pods keep serving through a rolling upgrade right
// after "migrate up"; an older or dirty schema is not ready.
func TestReadyzDuringRollingUpgrade(t *testing.T) {
	t.Parallel()
	db, _ := storetest.NewDB(t)
	srv, err := New(Config{DB: db, AdminToken: testAdminToken})
	require.NoError(t, err)
	latest := migrations.Latest()
	tests := []struct {
		name       string
		version    uint
		dirty      bool
		status     int
		migrations string
	}{
		{"current", latest, false, http.StatusOK, "current"},
		{"one version beyond the binary", latest + 1, false, http.StatusOK, "current"},
		{"one version behind the binary", latest - 1, false, http.StatusServiceUnavailable, "pending"},
		{"beyond but dirty", latest + 1, true, http.StatusServiceUnavailable, "dirty"},
		{"current but dirty", latest, true, http.StatusServiceUnavailable, "dirty"},
	}
	for _, tc := range tests {
		_, err := db.Exec(`UPDATE schema_migrations SET version = $1, dirty = $2`, tc.version, tc.dirty)
		require.NoError(t, err)
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		require.Equal(t, tc.status, rec.Code, "%s: %s", tc.name, rec.Body)
		var body struct {
			Ready  bool              `json:"ready"`
			Checks map[string]string `json:"checks"`
		}
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), tc.name)
		require.Equal(t, tc.status == http.StatusOK, body.Ready, tc.name)
		require.Equal(t, map[string]string{"postgres": "ok", "migrations": tc.migrations}, body.Checks, tc.name)
	}
}
