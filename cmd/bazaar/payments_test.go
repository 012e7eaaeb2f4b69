package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/workers"
)

func TestLoadPaymentConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		dev     bool
		want    string
		wantErr string
	}{
		{"work must choose", nil, false, "", "BAZAAR_PAYMENT_GATEWAY: is required"},
		{"dev defaults to the sandbox", nil, true, "sandbox", ""},
		{"work with the sandbox", map[string]string{"BAZAAR_PAYMENT_GATEWAY": "sandbox"}, false, "sandbox", ""},
		{"unknown gateway", map[string]string{"BAZAAR_PAYMENT_GATEWAY": "paypal"}, true, "", "BAZAAR_PAYMENT_GATEWAY"},
		{"stripe needs a key", map[string]string{"BAZAAR_PAYMENT_GATEWAY": "stripe"}, false, "", "BAZAAR_STRIPE_SECRET_KEY"},
		{"stripe needs a secret key", map[string]string{"BAZAAR_PAYMENT_GATEWAY": "stripe", "BAZAAR_STRIPE_SECRET_KEY": "pk_test_1"}, false, "", "BAZAAR_STRIPE_SECRET_KEY"},
		{"bad API base", map[string]string{"BAZAAR_PAYMENT_GATEWAY": "stripe", "BAZAAR_STRIPE_SECRET_KEY": "sk_test_1", "BAZAAR_STRIPE_API_BASE": "ftp://x"}, false, "", "BAZAAR_STRIPE_API_BASE"},
		{"fee too high", map[string]string{"BAZAAR_PAYMENT_GATEWAY": "sandbox", "BAZAAR_MARKETPLACE_FEE_BPS": "10001"}, false, "", "BAZAAR_MARKETPLACE_FEE_BPS"},
		{"stripe", map[string]string{
			"BAZAAR_PAYMENT_GATEWAY": "stripe", "BAZAAR_STRIPE_SECRET_KEY": "sk_test_1",
			"BAZAAR_STRIPE_API_BASE": "http://127.0.0.1:12111", "BAZAAR_MARKETPLACE_FEE_BPS": "1000",
		}, false, "stripe", ""},
	}
	for _, tc := range tests {
		pc, err := loadPaymentConfig(envOf(tc.env), tc.dev)
		if tc.wantErr != "" {
			require.ErrorContains(t, err, tc.wantErr, tc.name)
			require.NotContains(t, err.Error(), "\n", tc.name)
			continue
		}
		require.NoError(t, err, tc.name)
		require.Equal(t, tc.want, pc.Gateway, tc.name)
		gw, err := pc.gateway(nil, slog.New(slog.DiscardHandler))
		require.NoError(t, err, tc.name)
		require.Equal(t, tc.want, gw.Name(), tc.name)
		if tc.want == "stripe" {
			require.Equal(t, 1000, pc.FeeBPS)
			require.IsType(t, &workers.StripeGateway{}, gw)
		}
	}
}

func TestPaymentConfigLogMasksTheSecretKey(t *testing.T) {
	t.Parallel()
	pc, err := loadPaymentConfig(envOf(map[string]string{"BAZAAR_PAYMENT_GATEWAY": "stripe", "BAZAAR_STRIPE_SECRET_KEY": "sk_test_secret123"}), false)
	require.NoError(t, err)
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("worker config", "payments", pc)
	require.NotContains(t, buf.String(), "sk_test_secret123")
	require.Contains(t, buf.String(), `"stripe_secret_key":"****"`)
}

func TestWorkRefusesToStartWithoutAGatewayChoice(t *testing.T) {
	t.Parallel()
	env := map[string]string{"BAZAAR_SMTP_HOST": "mail.example", "BAZAAR_HTTP_ADDR": "127.0.0.1:0", "BAZAAR_ADMIN_TOKEN": testAdmin}
	var stderr strings.Builder
	err := run(context.Background(), []string{"bazaar", "work"}, envOf(env), io.Discard, &stderr)
	require.ErrorContains(t, err, "BAZAAR_PAYMENT_GATEWAY: is required: sandbox or stripe")
	require.NotContains(t, err.Error(), "\n")
}
