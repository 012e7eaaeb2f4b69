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

const activeAPIKeyWithIdempotencyQuery = `
SELECT k.id, k.role, k.seller_id, k.name, k.key_hash, k.key_prefix, k.created_at, k.revoked_at,
       r.principal IS NOT NULL AS found,
       coalesce(r.principal, '') AS principal, coalesce(r.key, '') AS key,
       coalesce(r.method, '') AS method, coalesce(r.path, '') AS path,
       coalesce(r.request_hash, ''::bytea) AS request_hash, coalesce(r.status, 0) AS status,
       coalesce(r.content_type, '') AS content_type, coalesce(r.response, ''::bytea) AS response,
       coalesce(r.created_at, now()) AS r_created_at, coalesce(r.expires_at, now()) AS expires_at
FROM api_keys k
LEFT JOIN LATERAL (
    SELECT ` + idempotencyColumns + ` FROM idempotency_keys
    WHERE principal = $2 || k.id::text AND key = $3 AND expires_at > now()
) r ON true
WHERE k.key_hash = $1 AND k.revoked_at IS NULL`

// ActiveAPIKeyWithIdempotency is ActiveAPIKeyByHash and, in the same round
// trip, GetIdempotencyRecord of idemKey for the principal prefix+key id
// (found reports whether there is a record). ErrNotFound when there is no
// such key.
func ActiveAPIKeyWithIdempotency(ctx context.Context, q sqlx.QueryerContext, hash []byte, prefix, idemKey string) (k APIKey, found bool, rec IdempotencyRecord, err error) {
	var row struct {
		ID        uuid.UUID  `db:"id"`
		Role      KeyRole    `db:"role"`
		SellerID  *uuid.UUID `db:"seller_id"`
		Name      string     `db:"name"`
		KeyHash   []byte     `db:"key_hash"`
		KeyPrefix string     `db:"key_prefix"`
		CreatedAt time.Time  `db:"created_at"`
		RevokedAt *time.Time `db:"revoked_at"`
		Found     bool       `db:"found"`
		Principal string     `db:"principal"`
		Key       string     `db:"key"`
		Method    string     `db:"method"`
		Path      string     `db:"path"`
		Hash      []byte     `db:"request_hash"`
		Status    int        `db:"status"`
		Type      string     `db:"content_type"`
		Response  []byte     `db:"response"`
		RCreated  time.Time  `db:"r_created_at"`
		Expires   time.Time  `db:"expires_at"`
	}
	if err := sqlx.GetContext(ctx, q, &row, activeAPIKeyWithIdempotencyQuery, hash, prefix, idemKey); err != nil {
		return APIKey{}, false, IdempotencyRecord{}, fmt.Errorf("api key by hash: %w", translate(err))
	}
	k = APIKey{
		ID: row.ID, Role: row.Role, SellerID: row.SellerID, Name: row.Name, KeyHash: row.KeyHash,
		KeyPrefix: row.KeyPrefix, CreatedAt: row.CreatedAt, RevokedAt: row.RevokedAt,
	}
	rec = IdempotencyRecord{
		Principal: row.Principal, Key: row.Key, Method: row.Method, Path: row.Path, RequestHash: row.Hash,
		Status: row.Status, ContentType: row.Type, Response: row.Response, CreatedAt: row.RCreated, ExpiresAt: row.Expires,
	}
	return k, row.Found, rec, nil
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
