package api

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// Creating a key with an Idempotency-Key stores no secret: the stored
// response holds the key's metadata only, and a replay answers the same
// key without its secret.
func TestIdempotentKeyCreationStoresNoSecret(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for i, tc := range []struct{ path, token string }{
		{"/v1/sellers/" + b.sellerA.String() + "/keys", b.keyA},
		{"/v1/sellers/" + b.sellerA.String() + "/printer-tokens", b.admin},
		{"/v1/storefront-keys", b.admin},
	} {
		body := map[string]any{"name": "till 2"}
		idemKey := fmt.Sprintf("key-once-%d", i)
		first := b.do(http.MethodPost, tc.path, tc.token, body, HeaderIdempotencyKey, idemKey).status(http.StatusCreated).json()
		secret, _ := first["key"].(string)
		require.NotEmpty(t, secret, tc.path)

		var stored []byte
		require.NoError(t, b.db.Get(&stored, `SELECT response FROM idempotency_keys WHERE key = $1`, idemKey))
		require.NotContains(t, string(stored), secret, tc.path)
		require.NotContains(t, string(stored), `"key"`, tc.path)

		again := b.do(http.MethodPost, tc.path, tc.token, body, HeaderIdempotencyKey, idemKey).status(http.StatusCreated)
		require.Equal(t, "true", again.header.Get(HeaderIdempotencyReplayed))
		replay := again.json()
		require.NotContains(t, string(again.body), secret, tc.path)
		require.NotContains(t, replay, "key", tc.path)
		delete(first, "key")
		require.Equal(t, first, replay, tc.path)

		// The secret shown once still works.
		b.do(http.MethodGet, "/v1/sellers/"+b.sellerA.String(), secret, nil).status(http.StatusOK)
	}
}
