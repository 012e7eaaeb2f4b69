package api

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v85"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/workers"
)

func TestAdminSetsASellersConnectedAccountAndCommission(t *testing.T) {
	t.Parallel()
	b := setup(t)
	path := "/v1/sellers/" + b.sellerA.String()

	got := b.do(http.MethodPatch, path, b.admin, map[string]any{"stripe_account": "acct_1Nv0FGQ9RKHgCVdK", "fee_bps": 750}).status(http.StatusOK).json()
	require.Equal(t, "acct_1Nv0FGQ9RKHgCVdK", got["stripe_account"])
	require.EqualValues(t, 750, got["fee_bps"])
	s, err := store.GetSeller(context.Background(), b.db, b.sellerA)
	require.NoError(t, err)
	require.Equal(t, "acct_1Nv0FGQ9RKHgCVdK", s.StripeAccount)
	require.Equal(t, 750, *s.FeeBPS)

	// Leaving a field out keeps it; null gives the marketplace's fee back.
	got = b.do(http.MethodPatch, path, b.admin, map[string]any{"fee_bps": nil}).status(http.StatusOK).json()
	require.Nil(t, got["fee_bps"])
	require.Equal(t, "acct_1Nv0FGQ9RKHgCVdK", got["stripe_account"])

	// Bad input changes nothing.
	for _, body := range []map[string]any{
		{"stripe_account": "cus_123"}, {"fee_bps": 10001}, {"fee_bps": -1}, {},
	} {
		b.do(http.MethodPatch, path, b.admin, body).status(http.StatusUnprocessableEntity)
	}
	b.do(http.MethodPatch, "/v1/sellers/"+uuid.NewString(), b.admin, map[string]any{"fee_bps": 1}).status(http.StatusNotFound)
	b.do(http.MethodPatch, path, b.keyA, map[string]any{"fee_bps": 0}).status(http.StatusForbidden)
	s, err = store.GetSeller(context.Background(), b.db, b.sellerA)
	require.NoError(t, err)
	require.Equal(t, "acct_1Nv0FGQ9RKHgCVdK", s.StripeAccount)
	require.Nil(t, s.FeeBPS)
}

func TestStripeWebhookVerifiesTheSignatureAndAppliesEachEventOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const secret = "whsec_api_test" //nolint:gosec // a test signing secret, not a credential
	payload := []byte(`{"id":"evt_api_1","object":"event","api_version":"` + stripe.APIVersion + `","type":"payment_intent.succeeded",` +
		`"data":{"object":{"id":"pi_unknown","object":"payment_intent","metadata":{}}}}`)
	sign := func(key string, at time.Time) string {
		ts := strconv.FormatInt(at.Unix(), 10)
		mac := hmac.New(sha256.New, []byte(key))
		mac.Write([]byte(ts + "." + string(payload)))
		return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
	}

	// Not configured: the route is not there.
	b.do(http.MethodPost, "/v1/webhooks/stripe", "", payload, "Stripe-Signature", sign(secret, time.Now())).status(http.StatusNotFound)

	hooks, err := workers.NewStripeWebhooks(workers.StripeWebhooksConfig{DB: b.db, Secret: secret})
	require.NoError(t, err)
	b.srv.cfg.StripeWebhooks = hooks

	for name, sig := range map[string]string{
		"no signature": "", "another secret": sign("whsec_other", time.Now()), "too old": sign(secret, time.Now().Add(-time.Hour)),
	} {
		r := b.do(http.MethodPost, "/v1/webhooks/stripe", "", payload, "Stripe-Signature", sig).status(http.StatusBadRequest)
		require.Equal(t, ProblemBase+"bad-signature", r.json()["type"], name)
	}
	var n int
	require.NoError(t, b.db.Get(&n, `SELECT count(*) FROM provider_events`))
	require.Zero(t, n, "a bad delivery records nothing")

	for range 2 {
		r := b.do(http.MethodPost, "/v1/webhooks/stripe", "", payload, "Stripe-Signature", sign(secret, time.Now())).status(http.StatusOK)
		require.Equal(t, true, r.json()["received"])
	}
	require.NoError(t, b.db.Get(&n, `SELECT count(*) FROM provider_events WHERE id = 'evt_api_1'`))
	require.Equal(t, 1, n)
}
