package main

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/jmoiron/sqlx"

	"github.com/bazaarhq/bazaar/api"
	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/workers"
)

// paymentConfig is how orders are charged: the gateway and its settings.
type paymentConfig struct {
	// Gateway is "sandbox" or "stripe".
	Gateway         string
	StripeSecretKey string
	// StripeAPIBase points the Stripe client elsewhere (stripe-mock).
	StripeAPIBase string
	// FeeBPS is the marketplace's default commission in basis points.
	FeeBPS int
}

// loadPaymentConfig reads the gateway choice. "work" must be told which
// gateway charges, so that nobody ships the sandbox by accident; "dev"
// defaults to the sandbox.
func loadPaymentConfig(getenv func(string) string, dev bool) (paymentConfig, error) {
	r := &envReader{getenv: getenv}
	def := ""
	if dev {
		def = "sandbox"
	}
	pc := paymentConfig{
		Gateway:         r.str("BAZAAR_PAYMENT_GATEWAY", def),
		StripeSecretKey: r.str("BAZAAR_STRIPE_SECRET_KEY", ""),
		FeeBPS:          int(r.integer("BAZAAR_MARKETPLACE_FEE_BPS", 0)),
	}
	if r.str("BAZAAR_STRIPE_API_BASE", "") != "" {
		pc.StripeAPIBase = r.url("BAZAAR_STRIPE_API_BASE", "", "https", "http")
	}
	switch pc.Gateway {
	case "":
		r.fail("BAZAAR_PAYMENT_GATEWAY", "is required: sandbox or stripe (bazaar dev defaults to sandbox)")
	case "sandbox":
	case "stripe":
		if !strings.HasPrefix(pc.StripeSecretKey, "sk_") && !strings.HasPrefix(pc.StripeSecretKey, "rk_") {
			r.fail("BAZAAR_STRIPE_SECRET_KEY", "is required with BAZAAR_PAYMENT_GATEWAY=stripe: a secret key such as sk_test_...")
		}
	default:
		r.fail("BAZAAR_PAYMENT_GATEWAY", "%q is not one of sandbox, stripe", pc.Gateway)
	}
	if pc.FeeBPS > 10_000 {
		r.fail("BAZAAR_MARKETPLACE_FEE_BPS", "must be from 0 to 10000 basis points")
	}
	if r.err != nil {
		return paymentConfig{}, fmt.Errorf("config: %w", r.err)
	}
	return pc, nil
}

// LogValue masks the secret key.
func (p paymentConfig) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("gateway", p.Gateway),
		slog.String("stripe_secret_key", mask(p.StripeSecretKey)),
		slog.String("stripe_api_base", p.StripeAPIBase),
		slog.Int("marketplace_fee_bps", p.FeeBPS),
	)
}

// gateway builds the configured payment gateway. The sandbox keeps its
// state in db, shared by every work process.
func (p paymentConfig) gateway(db *sqlx.DB, log *slog.Logger) (workers.PaymentGateway, error) {
	if p.Gateway != "stripe" {
		return workers.NewSandboxGatewayDB(db), nil
	}
	g, err := workers.NewStripeGateway(workers.StripeConfig{SecretKey: p.StripeSecretKey, APIBase: p.StripeAPIBase, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return g, nil
}

// stripeWebhooks builds the handler of POST /v1/webhooks/stripe from
// BAZAAR_STRIPE_WEBHOOK_SECRET; without a secret the route answers 404.
func stripeWebhooks(getenv func(string) string, db *sqlx.DB, log *slog.Logger, obs store.TxObserver) (api.WebhookHandler, error) {
	secret := strings.TrimSpace(getenv("BAZAAR_STRIPE_WEBHOOK_SECRET"))
	if secret == "" {
		return nil, nil
	}
	h, err := workers.NewStripeWebhooks(workers.StripeWebhooksConfig{
		DB: db, Secret: secret, Logger: log.With("component", "stripe_webhooks"), Observer: obs,
	})
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return h, nil
}
