package store

import (
	"context"
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
)

// KeyRole is what an API key may do.
type KeyRole string

// The roles of API keys. The admin role is a static token from the
// configuration and has no key row.
const (
	// KeyStorefront acts for the storefront: users, orders and returns on
	// behalf of buyers, across all sellers.
	KeyStorefront KeyRole = "storefront"
	// KeySeller acts for one seller on that seller's data only.
	KeySeller KeyRole = "seller"
	// KeyPrinter reads one seller's data and events (receipt printers).
	KeyPrinter KeyRole = "printer"
)

// APIKey is a stored credential. The secret itself is never stored: only
// its SHA-256, which is what a presented key is looked up by.
type APIKey struct {
	ID        uuid.UUID  `db:"id"`
	Role      KeyRole    `db:"role"`
	SellerID  *uuid.UUID `db:"seller_id"`
	Name      string     `db:"name"`
	KeyHash   []byte     `db:"key_hash"`
	KeyPrefix string     `db:"key_prefix"`
	CreatedAt time.Time  `db:"created_at"`
	RevokedAt *time.Time `db:"revoked_at"`
}

// HashKey returns the digest a key secret is stored and looked up by.
// A plain SHA-256 suffices: the secrets are 256 random bits, not passwords.
func HashKey(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

const apiKeyColumns = `id, role, seller_id, name, key_hash, key_prefix, created_at, revoked_at`

const insertAPIKeyQuery = `
INSERT INTO api_keys (id, role, seller_id, name, key_hash, key_prefix)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING ` + apiKeyColumns

// CreateAPIKey stores a key for secret (hashed) and returns the row.
// sellerID must be nil for storefront keys and set for the others.
func CreateAPIKey(ctx context.Context, q sqlx.QueryerContext, role KeyRole, sellerID *uuid.UUID, name, secret, prefix string) (APIKey, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return APIKey{}, fmt.Errorf("api key id: %w", err)
	}
	var k APIKey
	if err := sqlx.GetContext(ctx, q, &k, insertAPIKeyQuery, id, role, sellerID, name, HashKey(secret), prefix); err != nil {
		return APIKey{}, fmt.Errorf("create %s key: %w", role, translate(err))
	}
	return k, nil
}

const activeAPIKeyByHashQuery = `
SELECT ` + apiKeyColumns + ` FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL`

// ActiveAPIKeyByHash finds the unrevoked key whose secret hashes to hash;
// ErrNotFound when there is none.
func ActiveAPIKeyByHash(ctx context.Context, q sqlx.QueryerContext, hash []byte) (APIKey, error) {
	var k APIKey
	if err := sqlx.GetContext(ctx, q, &k, activeAPIKeyByHashQuery, hash); err != nil {
		return APIKey{}, fmt.Errorf("api key by hash: %w", translate(err))
	}
	return k, nil
}

const listAPIKeysQuery = `
SELECT ` + apiKeyColumns + ` FROM api_keys
WHERE seller_id IS NOT DISTINCT FROM $1 AND role = ANY($2)
ORDER BY created_at, id`

// ListAPIKeys returns the keys (revoked ones too) of one seller, or the
// storefront keys when sellerID is nil, oldest first.
func ListAPIKeys(ctx context.Context, q sqlx.QueryerContext, sellerID *uuid.UUID) ([]APIKey, error) {
	roles := `{seller,printer}`
	if sellerID == nil {
		roles = `{storefront}`
	}
	out := []APIKey{}
	if err := sqlx.SelectContext(ctx, q, &out, listAPIKeysQuery, sellerID, roles); err != nil {
		return nil, fmt.Errorf("list api keys: %w", translate(err))
	}
	return out, nil
}

const revokeAPIKeyQuery = `
UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
WHERE id = $1 AND seller_id IS NOT DISTINCT FROM $2
RETURNING ` + apiKeyColumns

// RevokeAPIKey revokes a key of one seller (a storefront key when sellerID
// is nil). Revoking twice keeps the first time. ErrNotFound when the key
// does not exist or belongs elsewhere.
func RevokeAPIKey(ctx context.Context, q sqlx.QueryerContext, id uuid.UUID, sellerID *uuid.UUID) (APIKey, error) {
	var k APIKey
	if err := sqlx.GetContext(ctx, q, &k, revokeAPIKeyQuery, id, sellerID); err != nil {
		return APIKey{}, fmt.Errorf("revoke api key %s: %w", id, translate(err))
	}
	return k, nil
}
