package api

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/bazaarhq/bazaar/sql/store"
)

// Role is what a credential may do.
type Role string

// The roles. Admin is the static token from the configuration or an
// operator of role admin; viewer and operator are named operators
// (operators.go); storefront, seller and printer are API keys.
const (
	// RoleAdmin may do everything.
	RoleAdmin Role = "admin"
	// RoleViewer is an operator who reads everything an admin reads and
	// changes nothing.
	RoleViewer = Role(store.OperatorViewer)
	// RoleOperator is an operator who also repairs: redrive, retry, run,
	// pause and resume, announcements, retry-failed.
	RoleOperator = Role(store.OperatorOperator)
	// RoleStorefront acts for buyers across all sellers.
	RoleStorefront = Role(store.KeyStorefront)
	// RoleSeller acts on one seller's data only.
	RoleSeller = Role(store.KeySeller)
	// RolePrinter reads one seller's data and events, and changes nothing.
	RolePrinter = Role(store.KeyPrinter)
)

// Key secret prefixes, so a leaked key is recognisable (and scannable) by kind.
const (
	prefixSeller     = "bzr_sk_"
	prefixStorefront = "bzr_sf_"
	prefixPrinter    = "bzr_pr_"
)

// Principal is the authenticated caller of a request.
type Principal struct {
	Role Role
	// SellerID is the seller of a seller or printer key; zero otherwise.
	SellerID uuid.UUID
	// KeyID is the API key used; zero for the admin token and operators.
	KeyID uuid.UUID
	// OperatorID and OperatorName name the operator of an operator
	// credential or console session; zero for the static admin token and
	// API keys.
	OperatorID   uuid.UUID
	OperatorName string
}

// ID names the principal in idempotency records: each key has its own
// key space.
func (p Principal) ID() string {
	if p.OperatorID != uuid.Nil {
		return "operator:" + p.OperatorID.String()
	}
	if p.Role == RoleAdmin {
		return "admin"
	}
	return keyPrincipalPrefix + p.KeyID.String()
}

// Sees reports whether the principal may see the data of a seller: admin
// and storefront see every seller, seller and printer keys only their own.
// Handlers answer 404 for data a principal does not see, so no key can
// learn whether another seller's record exists.
func (p Principal) Sees(sellerID uuid.UUID) bool {
	switch p.Role {
	case RoleAdmin, RoleStorefront, RoleViewer, RoleOperator:
		return true
	case RoleSeller, RolePrinter:
		return p.SellerID == sellerID
	}
	return false
}

const principalKey = "bazaar.principal"

// authenticate resolves the Authorization: Bearer credential to a
// Principal stored in the gin context (read it with principalOf), or
// answers 401. Use it on any route that needs a caller. A /v1/admin
// request without Authorization may instead carry the console session
// cookie (operators.go).
func (s *Server) authenticate(c *gin.Context) {
	if c.GetHeader("Authorization") == "" && strings.HasPrefix(c.Request.URL.Path, "/v1/admin/") {
		if ck, err := c.Request.Cookie(sessionCookie); err == nil && ck.Value != "" {
			s.authenticateSession(c)
			return
		}
	}
	p, ok := s.bearerPrincipal(c)
	if !ok {
		return
	}
	c.Set(principalKey, p)
	c.Next()
}

// bearerPrincipal resolves the Authorization: Bearer credential under the
// failure and per-credential limits; false when it has answered (401,
// 429, 5xx).
func (s *Server) bearerPrincipal(c *gin.Context) (Principal, bool) {
	header := c.GetHeader("Authorization")
	token, ok := bearer(header)
	if !ok && header == "" {
		s.fail(c, withDetail(errUnauthorized, "Send Authorization: Bearer <token>."))
		return Principal{}, false
	}
	// A client that failed too often is refused before its credential is
	// looked at, so guessing gets no answer at all.
	failKey := "authfail:" + c.ClientIP()
	if !s.failuresLeft(c, failKey, policyAuthFailures, s.limits.AuthFailures) {
		return Principal{}, false
	}
	if !ok {
		s.failed(c, failKey, s.limits.AuthFailures)
		s.fail(c, withDetail(errUnauthorized, "Send Authorization: Bearer <token>."))
		return Principal{}, false
	}
	// Compare digests so the comparison takes the same time whatever the
	// token's length.
	given, admin := sha256.Sum256([]byte(token)), sha256.Sum256([]byte(s.cfg.AdminToken))
	var p Principal
	switch {
	case subtle.ConstantTimeCompare(given[:], admin[:]) == 1:
		p = Principal{Role: RoleAdmin}
	case strings.HasPrefix(token, store.OperatorTokenPrefix):
		op, err := store.ActiveOperatorByHash(c.Request.Context(), s.cfg.DB, given[:])
		if errors.Is(err, store.ErrNotFound) {
			s.failed(c, failKey, s.limits.AuthFailures)
			s.fail(c, withDetail(errUnauthorized, "The token is unknown or revoked."))
			return Principal{}, false
		}
		if err != nil {
			s.fail(c, err)
			return Principal{}, false
		}
		p = operatorPrincipal(op)
	default:
		key, err := s.apiKey(c, given[:])
		if errors.Is(err, store.ErrNotFound) {
			s.failed(c, failKey, s.limits.AuthFailures)
			s.fail(c, withDetail(errUnauthorized, "The token is unknown or revoked."))
			return Principal{}, false
		}
		if err != nil {
			s.fail(c, err)
			return Principal{}, false
		}
		p = Principal{Role: Role(key.Role), KeyID: key.ID}
		if key.SellerID != nil {
			p.SellerID = *key.SellerID
		}
	}
	if s.limiter != nil && !s.allow(c, "cred:"+p.ID(), string(p.Role), s.limits.forRole(p.Role)) {
		return Principal{}, false
	}
	return p, true
}

// credentialID is what revoking ends the live streams of: the API key or
// the operator; zero for the static admin token.
func (p Principal) credentialID() uuid.UUID {
	if p.OperatorID != uuid.Nil {
		return p.OperatorID
	}
	return p.KeyID
}

// keyPrincipalPrefix prefixes a key's id in Principal.ID.
const keyPrincipalPrefix = "key:"

// idemPrecheckKey holds the idempotency record authenticate read with the
// API key, for the idempotency middleware (idemPrecheck).
const idemPrecheckKey = "bazaar.idempotency_precheck"

// idemPrecheck is the outcome of looking up a request's Idempotency-Key.
type idemPrecheck struct {
	key   string
	found bool
	rec   store.IdempotencyRecord
}

// apiKey looks up the active key of a token's hash. For a POST with an
// Idempotency-Key it reads the key's idempotency record in the same round
// trip and leaves it to the idempotency middleware.
//
// A key found is kept in s.keys for keyCacheTTL, so most requests of a
// busy key skip this round trip; revoking clears the cache (revokeKey and
// the revocation listener).
func (s *Server) apiKey(c *gin.Context, hash []byte) (store.APIKey, error) {
	h := [32]byte(hash)
	key, gen, ok := s.keys.get(h)
	if ok {
		return key, nil
	}
	ctx := c.Request.Context()
	idem := c.GetHeader(HeaderIdempotencyKey)
	var err error
	if c.Request.Method != http.MethodPost || idem == "" {
		key, err = store.ActiveAPIKeyByHash(ctx, s.stmts.DB(), hash)
	} else {
		var found bool
		var rec store.IdempotencyRecord
		key, found, rec, err = store.ActiveAPIKeyWithIdempotency(ctx, s.stmts.DB(), hash, keyPrincipalPrefix, idem)
		if err == nil {
			c.Set(idemPrecheckKey, &idemPrecheck{key: idem, found: found, rec: rec})
		}
	}
	if err == nil {
		s.keys.put(h, key, gen)
	}
	return key, err
}

func bearer(header string) (string, bool) {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// principalOf returns the caller authenticate stored.
func principalOf(c *gin.Context) Principal {
	p, _ := c.Get(principalKey)
	pr, _ := p.(Principal)
	return pr
}

// requireRole answers 403 unless the caller has one of roles. Put it after
// authenticate. Operator roles rank viewer < operator < admin, and:
//   - a route open to admin is open to viewers and operators for reads
//     (GET, HEAD): a viewer reads everything an admin reads;
//   - a route open to operator is open to admin too.
//
// So mutating routes list operator when operators may use them, admin
// when only admins may.
func (s *Server) requireRole(roles ...Role) gin.HandlerFunc {
	return func(c *gin.Context) {
		p := principalOf(c)
		if !mayUse(p.Role, c.Request.Method, roles) {
			s.fail(c, withDetail(errForbidden, "This route is not open to "+string(p.Role)+" credentials."))
			return
		}
		c.Next()
	}
}

// mayUse reports whether role may call a route open to roles with method.
func mayUse(role Role, method string, roles []Role) bool {
	if slices.Contains(roles, role) {
		return true
	}
	rank := staffRank(role)
	if rank == 0 {
		return false
	}
	for _, r := range roles {
		if min := staffRank(r); min > 0 && rank >= min {
			return true
		}
	}
	read := method == http.MethodGet || method == http.MethodHead
	return read && slices.Contains(roles, RoleAdmin)
}

// staffRank orders the operator roles; 0 for API key roles.
func staffRank(r Role) int {
	switch r {
	case RoleViewer:
		return 1
	case RoleOperator:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// newSecret makes a key secret: a kind prefix and 256 random bits.
func newSecret(prefix string) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// displayPrefix is the part of a secret kept in clear to recognise a key
// in listings.
func displayPrefix(secret string) string { return secret[:len(prefixSeller)+5] }
